"""How much of a model's error on paired images is global tone: the PSNR each output would reach
if its brightness were right.

    python benchmarks/global_tone.py --data runs/rain_mix_p21/val_heavy --model dual_stage_derain
    python benchmarks/global_tone.py --data OUT/val_styles --model dual_stage_derain --weights ckpt.safetensors

Per image: the Y-channel PSNR as ``derainzoo eval`` computes it (8-bit rounding, whole image), the
mean error (output - clean, levels of 255, negative = darker; ``eval``'s ``mean_error``), and the
PSNR of the **offset oracle**: the output with each RGB channel's mean moved onto the clean
image's (then clamped and rounded). The gap between the two means is what a perfect estimate of
each image's overall brightness would buy; the rest of the error is rain left behind, detail
lost and colour within the image. The **local offset oracle** does the same in cells of
``--cell`` pixels (default 64) and blends the cells' offsets bilinearly, so it also takes off a
veil that varies smoothly over the frame (curtains, uneven haze) but not streaks or lost detail:
the gap between the two oracles is the smooth, spatially varying part of the error. The oracles
need the ground truth, so they are a diagnosis, never a method. With a ``rain_params.json``
beside the pairs (a rendered set) the styles of each image are listed. Writes
``benchmarks/results/<tag>.{csv,md}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
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


def local_offset_corrected(output: Tensor, clean: Tensor, cell: int) -> Tensor:
    """``output`` with a smooth per-channel offset taken off, clamped to [0, 1]: the mean error
    of each ``cell`` x ``cell`` block (the last row and column of blocks may be smaller),
    interpolated bilinearly between the blocks' centres.

    Args:
        output: derained images ``(B, 3, H, W)`` in ``[0, 1]``.
        clean: their ground truths, same shape.
        cell: block side in pixels; a cell as large as the image is
            [`offset_corrected`][offset_corrected].
    """
    if cell < 1:
        raise ValueError(f"cell must be a positive number of pixels, got {cell}")
    block_error = F.avg_pool2d(output - clean, cell, ceil_mode=True, count_include_pad=False)
    offset = F.interpolate(block_error, size=output.shape[-2:], mode="bilinear", align_corners=False)
    return (output - offset).clamp(0, 1)


def tone_scores(output: Tensor, clean: Tensor, cell: int = 64) -> dict[str, float]:
    """PSNR, PSNR of the two offset oracles and mean error (levels of 255) of one ``(1, 3, H, W)``
    output; ``cell`` is the local oracle's block side."""
    output = output.float()
    rounded = quantize(output)
    return {
        "psnr": psnr_y(rounded, clean).item(),
        "psnr offset oracle": psnr_y(quantize(offset_corrected(output, clean)), clean).item(),
        "psnr local offset oracle": psnr_y(quantize(local_offset_corrected(output, clean, cell)), clean).item(),
        "mean error": mean_error(rounded, clean).item(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a paired folder (rain/ + norain/)")
    parser.add_argument("--model", default="dual_stage_derain")
    parser.add_argument("--weights", type=Path, help="a safetensors file (default: the bundled weights)")
    parser.add_argument("--cell", type=int, default=64, help="block side of the local offset oracle, in pixels")
    parser.add_argument("--tag", default=None, help="results file name (default: global_tone_<folder>)")
    args = parser.parse_args()
    if args.cell < 1:
        parser.error(f"--cell must be a positive number of pixels, got {args.cell}")
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
        scores = tone_scores(derain(rainy[None], model, tile_size=0, scale=None), clean[None], args.cell)
        row = {"image": stem, **{name: round(value, 2) for name, value in scores.items()}}
        if rain_params:
            row["styles"] = " ".join(rain_params.get(stem, {}).get("styles", [])) or "none"
        rows.append(row)
    psnr_columns = ("psnr", "psnr offset oracle", "psnr local offset oracle")
    summary = {
        "image": "mean",
        **{column: round(float(np.mean([row[column] for row in rows])), 2) for column in psnr_columns},
        "mean error": round(float(np.mean([abs(row["mean error"]) for row in rows])), 2),
    }
    if rain_params:
        summary["styles"] = ""
    rows.append(summary)
    weights = args.weights or "bundled weights"
    notes = [
        f"{args.model} ({weights}) on {args.data}; the mean row's mean error is the mean of |mean error|",
        f"local offset oracle: {args.cell}-pixel cells",
    ]
    print(write_results(args.tag or f"global_tone_{args.data.name}", header, rows, notes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
