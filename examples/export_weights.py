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
from derainzoo.hub import BUNDLED_WEIGHTS_DIR, read_safetensors, save_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", type=Path, help="trained weights (e.g. best_ema.safetensors)")
    parser.add_argument("--model", required=True)
    parser.add_argument("--tag", required=True, help="pretrained tag, e.g. rain100l")
    parser.add_argument("--out", type=Path, default=BUNDLED_WEIGHTS_DIR)
    parser.add_argument("--dtype", choices=["float16", "float32"], default="float16")
    parser.add_argument("--ema", action="store_true", help="weights is a train.py checkpoint: export its EMA weights")
    args = parser.parse_args()

    state_dict, metadata = read_safetensors(args.weights)
    if args.ema:
        ema = {name.removeprefix("ema."): tensor for name, tensor in state_dict.items() if name.startswith("ema.")}
        if not ema:
            parser.error(f"{args.weights} has no 'ema.' tensors: is it a train.py checkpoint (last.safetensors)?")
        model = derainzoo.create_model(args.model)
        model.load_state_dict(ema)
        # Only the weights travel: without the optimizer/scheduler entries, loaders see a weights file.
        metadata = {key: value for key, value in metadata.items() if key not in ("param_groups", "scheduler")}
    else:
        model = derainzoo.create_model(args.model, weights=args.weights)
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
