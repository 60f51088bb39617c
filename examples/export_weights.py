"""Package trained weights for bundling: half precision safetensors + sha256, named by tag.

    python examples/export_weights.py runs/tiny/best_ema.safetensors --model dual_stage_derain_tiny \
        --tag rain100l --out src/derainzoo/weights

A training checkpoint of ``examples/train.py`` (``last.safetensors``, written at every
``--ckpt-every`` and when ``--time-limit`` stops a run) holds the EMA weights under ``ema.``:
``--ema`` exports those.

Several files are blended into one: their weighted mean, tensor by tensor, with ``--blend`` giving
one coefficient per file (normalised to sum to 1; equal by default). This is timm's
``avg_checkpoints.py`` and the weight-space interpolation of WiSE-FT (Wortsman et al., 2022): it
makes sense only for weights of one training lineage (a fine-tuned model and the weights it started
from, or checkpoints of one run), whose mean stays in the same basin of the loss. For example, a
third of the way from the bundled weights towards a fine-tuned run:

    python examples/export_weights.py src/derainzoo/weights/dual_stage_derain.rain_mix.safetensors \
        runs/p6/best_ema.safetensors --blend 2 1 --model dual_stage_derain --tag rain_mix --out blended

A routed model (``dual_stage_derain_routed``) is written from its two experts' files, the light
expert's first, with ``--experts``:

    python examples/export_weights.py src/derainzoo/weights/dual_stage_derain.rain_mix.safetensors \
        runs/rain_heavy_p1/ema_step001600.safetensors --experts --model dual_stage_derain_routed \
        --tag rain_mix --out src/derainzoo/weights

Loads the weights into the architecture first (so a file for another variant is refused), then
writes ``OUT/<model>.<tag>.safetensors`` and its ``.sha256``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

import derainzoo
from derainzoo._helpers import BUNDLED_WEIGHTS_DIR, WeightsMismatchError, load_weights, read_safetensors, save_weights
from derainzoo.models import RoutedDerain
from derainzoo.training import load_training_state


def load_for_export(path: Path, model_name: str, ema: bool) -> tuple[nn.Module, dict[str, str]]:
    """The model built from ``path`` (its EMA weights if ``ema``) and the metadata to carry over."""
    if ema:
        model = derainzoo.create_model(model_name)
        step, _ = load_training_state(path, model=derainzoo.create_model(model_name), ema_model=model)
        # Only the weights travel: none of the optimizer/scheduler state, so loaders see a weights file.
        return model, {"step": str(step)}
    model = derainzoo.create_model(model_name, weights=path)
    _, metadata = read_safetensors(path)
    return model, metadata


def load_experts(paths: list[Path], model_name: str) -> tuple[nn.Module, dict[str, str]]:
    """The routed model ``model_name`` with its light expert read from ``paths[0]`` and its heavy
    expert from ``paths[1]``, and the metadata naming them."""
    model = derainzoo.create_model(model_name)
    if not isinstance(model, RoutedDerain):
        raise ValueError(f"--experts builds a routed model; {model_name} is a {type(model).__name__}")
    for expert, path in zip(model.experts, paths, strict=True):
        load_weights(expert, path)
    return model, {"experts": f"light: {paths[0].name}, heavy: {paths[1].name}"}


def blend_state_dicts(state_dicts: list[dict[str, torch.Tensor]], coefficients: list[float]) -> dict[str, torch.Tensor]:
    """Weighted mean of same-architecture state dicts, computed in float32.

    Args:
        state_dicts: state dicts with the same keys and shapes.
        coefficients: one non-negative weight per state dict, normalised here to sum to 1.

    Tensors that are not floating point (counters, indices) cannot be interpolated and are
    taken from the first state dict.
    """
    total = sum(coefficients)
    blended = {}
    for name, first in state_dicts[0].items():
        if not first.is_floating_point():
            blended[name] = first
            continue
        mean = sum(c / total * sd[name].float() for c, sd in zip(coefficients, state_dicts, strict=True))
        blended[name] = mean.to(first.dtype)
    return blended


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", type=Path, nargs="+", help="trained weights (e.g. best_ema.safetensors)")
    parser.add_argument("--model", required=True)
    parser.add_argument("--tag", required=True, help="pretrained tag, e.g. rain100l")
    parser.add_argument("--out", type=Path, default=BUNDLED_WEIGHTS_DIR)
    parser.add_argument("--dtype", choices=["float16", "float32"], default="float16")
    parser.add_argument("--ema", action="store_true", help="weights are train.py checkpoints: export their EMA weights")
    parser.add_argument(
        "--blend",
        type=float,
        nargs="+",
        metavar="W",
        help="with several weights files: one non-negative coefficient per file (default: equal)",
    )
    parser.add_argument(
        "--experts", action="store_true", help="two weights files: the light and the heavy expert of a routed model"
    )
    args = parser.parse_args()
    if args.experts and (len(args.weights) != 2 or args.blend is not None or args.ema):
        parser.error("--experts takes exactly two weights files (light, heavy), without --blend or --ema")

    coefficients = args.blend if args.blend is not None else [1.0] * len(args.weights)
    if len(coefficients) != len(args.weights):
        parser.error(f"--blend has {len(coefficients)} coefficients for {len(args.weights)} weights files")
    if min(coefficients) < 0 or sum(coefficients) <= 0:
        parser.error(f"--blend coefficients must be non-negative with a positive sum, got {coefficients}")

    try:
        if args.experts:
            loaded = [load_experts(args.weights, args.model)]
        else:
            loaded = [load_for_export(path, args.model, args.ema) for path in args.weights]
    except (WeightsMismatchError, ValueError) as error:
        parser.error(str(error))
    model, metadata = loaded[0]
    if len(loaded) > 1:
        model.load_state_dict(blend_state_dicts([m.state_dict() for m, _ in loaded], coefficients))
        metadata = {"blend": " + ".join(f"{c:g} x {p.name}" for c, p in zip(coefficients, args.weights, strict=True))}
    path = args.out / f"{args.model}.{args.tag}.safetensors"
    checksum = save_weights(
        model,
        path,
        dtype=getattr(torch, args.dtype),
        metadata={
            **metadata,
            "architecture": args.model,
            "tag": args.tag,
            "source": ", ".join(p.name for p in args.weights),
        },
    )
    print(f"{path} ({path.stat().st_size / 1e6:.2f} MB) sha256 {checksum}")


if __name__ == "__main__":
    main()
