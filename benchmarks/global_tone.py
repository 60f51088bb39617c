"""How much of a model's error on paired images is global tone: the PSNR each output would reach
if its brightness were right.

    python benchmarks/global_tone.py --data runs/rain_mix_p21/val_heavy --model dual_stage_derain
    python benchmarks/global_tone.py --data OUT/val_styles --model dual_stage_derain --weights ckpt.safetensors

Per image: the Y-channel PSNR as ``derainzoo eval`` computes it (8-bit rounding, whole image), the
mean error (output - clean, levels of 255, negative = darker; ``eval``'s ``mean_error``), and the
PSNR of the **offset oracle**: the output with each RGB channel's mean moved onto the clean
image's (then clamped and rounded). The gap between the two means is what a perfect estimate of
each image's overall brightness would buy; the rest of the error is rain left behind, detail
lost and colour within the image. The oracle needs the ground truth, so it is a diagnosis, never
a method. With a ``rain_params.json`` beside the pairs (a rendered set) the styles of each image
are listed. Writes ``benchmarks/results/<tag>.{csv,md}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from common import machine_header, write_results
from torch import Tensor
from tqdm import tqdm

import derainzoo
from derainzoo.data import RAIN_PARAMS_FILE, PairedImageFolder
from derainzoo.inference import derain
from derainzoo.metrics import mean_error, psnr_y, quantize


def offset_corrected(output: Tensor, clean: Tensor) -> Tensor:
    """``output`` with each channel's mean over pixels moved onto ``clean``'s, clamped to [0, 1].

    Args:
        output: derained images ``(B, 3, H, W)`` in ``[0, 1]``.
        clean: their ground truths, same shape.
    """
    return (output - (output - clean).mean(dim=(-2, -1), keepdim=True)).clamp(0, 1)


def tone_scores(output: Tensor, clean: Tensor) -> dict[str, float]:
    """PSNR, PSNR of the offset oracle and mean error (levels of 255) of one ``(1, 3, H, W)`` output."""
    output = output.float()
    rounded = quantize(output)
    return {
        "psnr": psnr_y(rounded, clean).item(),
        "psnr offset oracle": psnr_y(quantize(offset_corrected(output, clean)), clean).item(),
        "mean error": mean_error(rounded, clean).item(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a paired folder (rain/ + norain/)")
    parser.add_argument("--model", default="dual_stage_derain")
    parser.add_argument("--weights", type=Path, help="a safetensors file (default: the bundled weights)")
    parser.add_argument("--tag", default=None, help="results file name (default: global_tone_<folder>)")
    args = parser.parse_args()
    header = machine_header(torch.device("cpu"))
    print(header)
    model = derainzoo.create_model(args.model, pretrained=args.weights is None, weights=args.weights).eval()
    pairs = PairedImageFolder(args.data)
    params_file = args.data / RAIN_PARAMS_FILE
    rain_params = json.loads(params_file.read_text()) if params_file.exists() else {}
    rows = []
    for index in tqdm(range(len(pairs)), desc="derain", unit="image"):
        rainy, clean, stem = pairs[index]
        # Whole images at their own size, as `derainzoo eval` scores them (derain() would tile big ones).
        scores = tone_scores(derain(rainy[None], model, tile_size=0, scale=None), clean[None])
        row = {"image": stem, **{name: round(value, 2) for name, value in scores.items()}}
        if rain_params:
            row["styles"] = " ".join(rain_params.get(stem, {}).get("styles", [])) or "none"
        rows.append(row)
    summary = {
        "image": "mean",
        "psnr": round(float(np.mean([row["psnr"] for row in rows])), 2),
        "psnr offset oracle": round(float(np.mean([row["psnr offset oracle"] for row in rows])), 2),
        "mean error": round(float(np.mean([abs(row["mean error"]) for row in rows])), 2),
    }
    if rain_params:
        summary["styles"] = ""
    rows.append(summary)
    weights = args.weights or "bundled weights"
    notes = [
        f"{args.model} ({weights}) on {args.data}; the mean row's mean error is the mean of |mean error|",
    ]
    print(write_results(args.tag or f"global_tone_{args.data.name}", header, rows, notes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
