"""Package trained weights for bundling: half precision safetensors + sha256, named by tag.

    python examples/export_weights.py runs/tiny/best_ema.safetensors --model dual_stage_derain_tiny \
        --tag rain100l --out src/derainzoo/weights

A training checkpoint of ``examples/train.py`` (``last.safetensors``, written at every
``--ckpt-every`` and when ``--time-limit`` stops a run) holds the EMA weights under ``ema.``:
``--ema`` exports those.

Loads the weights into the architecture first (so a file for another variant is refused), then
writes ``OUT/<model>.<tag>.safetensors`` and its ``.sha256``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import derainzoo
from derainzoo._helpers import BUNDLED_WEIGHTS_DIR, WeightsMismatchError, read_safetensors, save_weights
from derainzoo.training import load_training_state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", type=Path, help="trained weights (e.g. best_ema.safetensors)")
    parser.add_argument("--model", required=True)
    parser.add_argument("--tag", required=True, help="pretrained tag, e.g. rain100l")
    parser.add_argument("--out", type=Path, default=BUNDLED_WEIGHTS_DIR)
    parser.add_argument("--dtype", choices=["float16", "float32"], default="float16")
    parser.add_argument("--ema", action="store_true", help="weights is a train.py checkpoint: export its EMA weights")
    args = parser.parse_args()

    if args.ema:
        model = derainzoo.create_model(args.model)
        try:
            step, _ = load_training_state(args.weights, model=derainzoo.create_model(args.model), ema_model=model)
        except WeightsMismatchError as error:
            parser.error(str(error))
        # Only the weights travel: none of the optimizer/scheduler state, so loaders see a weights file.
        metadata = {"step": str(step)}
    else:
        model = derainzoo.create_model(args.model, weights=args.weights)
        _, metadata = read_safetensors(args.weights)
    path = args.out / f"{args.model}.{args.tag}.safetensors"
    checksum = save_weights(
        model,
        path,
        dtype=getattr(torch, args.dtype),
        metadata={**metadata, "architecture": args.model, "tag": args.tag, "source": args.weights.name},
    )
    print(f"{path} ({path.stat().st_size / 1e6:.2f} MB) sha256 {checksum}")


if __name__ == "__main__":
    main()
