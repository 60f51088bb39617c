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
beside the pairs (a rendered set) the styles of each image are listed.

Whether a frame's brightness error could be read off the frame is asked of the **dark level**
(the dark-channel prior of haze removal: in a clear outdoor scene some pixel of nearly every
patch is near black in one channel, so a veil shows as a raised floor): the 1st percentile of
the minimum over RGB and over a 15 x 15 window, in levels, of the clean image, the rainy input and
the output. With several ``--data`` folders (one mean row each) the notes give the correlation of
the mean error with each dark level over all frames. Writes ``benchmarks/results/<tag>.{csv,md}``.

    python benchmarks/global_tone.py --model dual_stage_derain_routed --tag dark_level_routed \
        --data runs/val_heavy_preset runs/val_heavy_wide runs/val_heavy_haze runs/val_heavy_haze_curtain
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


def dark_level(image: Tensor, window: int = 15, percentile: float = 1.0) -> float:
    """The floor of an image's dark channel, in levels of 255: the ``percentile`` of the minimum
    over RGB and over a ``window`` x ``window`` neighbourhood (cut at the borders).

    Args:
        image: ``(1, 3, H, W)`` in ``[0, 1]``.
        window: odd side of the neighbourhood, in pixels.
        percentile: in ``[0, 100]``.
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be an odd positive number of pixels, got {window}")
    darkest_channel = image.float().amin(dim=1, keepdim=True)
    # A minimum filter is a max-pool of the negation; its padding never wins the max.
    dark_channel = -F.max_pool2d(-darkest_channel, window, stride=1, padding=window // 2)
    return 255.0 * float(np.percentile(dark_channel.flatten().numpy(), percentile))


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


DARK_COLUMNS = ("dark clean", "dark rainy", "dark output")
"""The per-frame dark levels, in the order the correlations are noted."""


def score_folder(model: torch.nn.Module, folder: Path, cell: int, with_set: bool) -> list[dict[str, object]]:
    """One row per pair of ``folder``: PSNR, oracles, mean error, dark levels, and the styles if
    rendered; ``with_set`` adds a column naming the folder."""
    pairs = PairedImageFolder(folder)
    params_file = folder / RAIN_PARAMS_FILE
    rain_params = json.loads(params_file.read_text()) if params_file.exists() else {}
    named = {"set": folder.name} if with_set else {}
    rows = []
    for index in tqdm(range(len(pairs)), desc=folder.name, unit="image"):
        rainy, clean, stem = pairs[index]
        # Whole images at their own size, as `derainzoo eval` scores them (derain() would tile big ones).
        output = derain(rainy[None], model, tile_size=0, scale=None)
        scores = tone_scores(output, clean[None], cell)
        levels = (dark_level(clean[None]), dark_level(rainy[None]), dark_level(output.clamp(0, 1)))
        row = {**named, "image": stem, **{name: round(value, 2) for name, value in scores.items()}}
        row.update({column: round(level, 1) for column, level in zip(DARK_COLUMNS, levels, strict=True)})
        if rain_params:
            row["styles"] = " ".join(rain_params.get(stem, {}).get("styles", [])) or "none"
        elif with_set:
            row["styles"] = ""  # not rendered here; the column stays for the other sets' rows
        rows.append(row)
    return rows


def mean_row(frames: list[dict[str, object]]) -> dict[str, object]:
    """The mean of each score over ``frames`` (rows of [`score_folder`][score_folder]); the
    mean error's is the mean of its size."""
    named = {"set": frames[0]["set"]} if "set" in frames[0] else {}
    psnr_columns = ("psnr", "psnr offset oracle", "psnr local offset oracle")
    summary = {
        **named,
        "image": "mean",
        **{column: round(float(np.mean([row[column] for row in frames])), 2) for column in psnr_columns},
        "mean error": round(float(np.mean([abs(row["mean error"]) for row in frames])), 2),
        **{column: round(float(np.mean([row[column] for row in frames])), 1) for column in DARK_COLUMNS},
    }
    if "styles" in frames[0]:
        summary["styles"] = ""
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="paired folders (rain/ + norain/)")
    parser.add_argument("--model", default="dual_stage_derain")
    parser.add_argument("--weights", type=Path, help="a safetensors file (default: the bundled weights)")
    parser.add_argument("--cell", type=int, default=64, help="block side of the local offset oracle, in pixels")
    parser.add_argument("--tag", default=None, help="results file name (default: global_tone_<folders>)")
    args = parser.parse_args()
    if args.cell < 1:
        parser.error(f"--cell must be a positive number of pixels, got {args.cell}")
    header = machine_header(torch.device("cpu"))
    print(header)
    model = derainzoo.create_model(args.model, pretrained=args.weights is None, weights=args.weights).eval()
    rows, frames = [], []
    for folder in args.data:
        folder_frames = score_folder(model, folder, args.cell, with_set=len(args.data) > 1)
        rows.extend([*folder_frames, mean_row(folder_frames)])
        frames.extend(folder_frames)
    weights = args.weights or "bundled weights"
    notes = [
        f"{args.model} ({weights}) on {', '.join(map(str, args.data))}; a mean row's mean error is the mean of |mean error|",
        f"local offset oracle: {args.cell}-pixel cells; dark level: 1st percentile of the 15-px dark channel, levels",
    ]
    if len(frames) >= 3:
        errors = [row["mean error"] for row in frames]
        correlations = [float(np.corrcoef([row[column] for row in frames], errors)[0, 1]) for column in DARK_COLUMNS]
        notes.append(
            f"correlation of the mean error with the dark level of {' / '.join(DARK_COLUMNS)} over "
            f"{len(frames)} frames: {' / '.join(f'{value:.2f}' for value in correlations)}"
        )
    tag = args.tag or "global_tone_" + "_".join(folder.name for folder in args.data)
    print(write_results(tag, header, rows, notes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
