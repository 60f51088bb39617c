"""What routing each frame to a heavy-rain expert buys: two derainers, one rule by frame.

    python benchmarks/routed_experts.py --heavy-weights runs/rain_heavy_p1/ema_step000600.safetensors \\
        --holdout ../shared/data/Rain100L_train --set thick=runs/val_heavy_wide --photos ../shared/data/real_rain

The rule is the library's (``derainzoo.models.RoutedDerain``, registered as
``dual_stage_derain_routed``): the *light* expert (default: the bundled weights) derains every
frame; the mean rain it removed, ``a = mean |rainy - light(rainy)|`` in levels of 255 over the
whole frame, sets the heavy expert's share ``w = clamp((a - low) / (high - low), 0, 1)``, and the
output is ``(1 - w) * light + w * heavy``. The band defaults to ``DEFAULT_ROUTING_BAND`` (15 / 35
levels, calibrated for the bundled pair by this benchmark's threshold sweep; ``--band 40 60`` was
the first, the renderer's ``heavy`` preset's mean ``|rainy - clean|``). The router runs the heavy
expert only on routed frames; this benchmark runs both on every frame, to score each.

Per set: the Y-channel PSNR of each expert and of the routed output (whole images, 8-bit rounding,
as ``derainzoo eval``), the mean error (levels, negative = darker), how many frames route and
with what mean weight; ``--holdout`` scores the last 10 pairs of a training folder, the
validation split of ``examples/train.py --val-count 10``. With ``--photos`` (no ground truth)
each photo's removed rain ``a`` and weight are listed at the watch size of ``examples/train.py``
(long side 640), so the rule's effect on real photos is seen. Writes
``benchmarks/results/<tag>.{csv,md}`` and each scored frame (removed rain, weight, each output's
PSNR and mean error) to ``<tag>_frames.{csv,md}``, and the mean PSNR of a hard switch at each
threshold of removed rain over all those frames to ``<tag>_thresholds.{csv,md}``: where the
experts cross. ``--second-pass`` adds the column ``routed twice``: the routed output derained once
more by the same rule and kept on the frames the first pass routed, by the first pass's weight
(a frame left to the light expert stays exactly as it was).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from common import machine_header, parse_named_folder, write_results
from tqdm import tqdm

import derainzoo
from derainzoo.data import PairedImageFolder
from derainzoo.image_io import folder_images, load_image, to_batch
from derainzoo.metrics import mean_error, psnr_y, quantize
from derainzoo.models.routed_derain import (
    DEFAULT_ROUTING_BAND,
    blend_frames,
    check_routing_band,
    removed_rain,
    routing_weight,
)

PHOTO_LONG_SIDE = 640
"""Long side the ``--photos`` are brought down to (``examples/train.py``'s watch size)."""


EXPERTS_AND_ROUTED = ("light", "heavy", "routed", "routed twice")
"""The outputs a frame is scored on; ``routed twice`` only with ``second_pass``."""


def route(
    light_model: torch.nn.Module, heavy_model: torch.nn.Module, rainy: torch.Tensor, low: float, high: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Both experts' outputs for ``rainy`` ``(B, 3, H, W)``, clamped to ``[0, 1]``, then the rain the
    light one removed and the heavy one's weight, ``(B,)`` each: the rule of ``RoutedDerain``, with
    every expert run on every frame so each can be scored."""
    light = light_model(rainy).clamp(0, 1)
    heavy = heavy_model(rainy).clamp(0, 1)
    removed = removed_rain(rainy, light)
    return light, heavy, removed, routing_weight(removed, low, high)


def score_frames(
    light_model: torch.nn.Module,
    heavy_model: torch.nn.Module,
    pairs: PairedImageFolder,
    low: float,
    high: float,
    second_pass: bool = False,
) -> list[dict[str, object]]:
    """One row per pair: its stem, the rain the light expert removed, the routing weight, and the
    PSNR and mean error (levels) of the light expert, the heavy expert and the routed output; with
    ``second_pass`` also of the routed output derained again, kept by the first routing weight."""
    frames = []
    for index in tqdm(range(len(pairs)), desc=pairs.root.name, unit="image", leave=False):
        rainy, clean, stem = pairs[index]
        rainy, clean = rainy[None], clean[None]
        light, heavy, removed, weight = route(light_model, heavy_model, rainy, low, high)
        row: dict[str, object] = {"stem": stem, "removed": round(removed.item(), 1), "weight": round(weight.item(), 2)}
        routed = blend_frames(light, heavy, weight)
        outputs = {"light": light, "heavy": heavy, "routed": routed}
        if second_pass:
            outputs["routed twice"] = routed
            if weight.item() > 0:  # an unrouted frame keeps its output: no second pass to run
                # The second pass sees the 8-bit image a user would feed back, and routes it afresh.
                light_again, heavy_again, _, weight_again = route(light_model, heavy_model, quantize(routed), low, high)
                outputs["routed twice"] = blend_frames(
                    routed, blend_frames(light_again, heavy_again, weight_again), weight
                )
        for name, output in outputs.items():
            rounded = quantize(output)
            row[f"psnr {name}"] = psnr_y(rounded, clean).item()
            row[f"error {name}"] = mean_error(rounded, clean).item()
        frames.append(row)
    return frames


def summarize(frames: list[dict[str, object]]) -> dict[str, object]:
    """Mean PSNR and |mean error| of each expert and the routed output over ``frames`` (rows of
    [`score_frames`][score_frames]), the frames routed (weight > 0), their mean removed rain and weight."""
    weights = np.array([frame["weight"] for frame in frames])
    names = [name for name in EXPERTS_AND_ROUTED if f"psnr {name}" in frames[0]]
    return {
        **{f"psnr {name}": round(float(np.mean([f[f"psnr {name}"] for f in frames])), 2) for name in names},
        **{f"abs error {name}": round(float(np.mean([abs(f[f"error {name}"]) for f in frames])), 1) for name in names},
        "frames routed": f"{int((weights > 0).sum())}/{len(weights)}",
        "removed": round(float(np.mean([frame["removed"] for frame in frames])), 1),
        "mean weight": round(float(weights.mean()), 2),
    }


SWITCH_THRESHOLDS = tuple(range(10, 55, 5))
"""Removed rain (levels) at which [`switch_sweep`][switch_sweep] tries a hard switch."""


def switch_sweep(frames: list[dict[str, object]], thresholds: tuple[float, ...] = SWITCH_THRESHOLDS) -> list[dict]:
    """Where the experts cross: for each threshold ``t``, the mean PSNR over ``frames`` (rows of
    [`score_frames`][score_frames], any sets) of a hard switch that takes the heavy expert's output
    on frames the light one removed more than ``t`` levels from, and how many frames that is."""
    rows = []
    for threshold in thresholds:
        heavy = [f["removed"] > threshold for f in frames]
        picked = [f["psnr heavy"] if take else f["psnr light"] for f, take in zip(frames, heavy, strict=True)]
        rows.append({"threshold": threshold, "mean psnr": round(float(np.mean(picked)), 3), "frames heavy": sum(heavy)})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="dual_stage_derain", help="architecture of both experts")
    parser.add_argument("--light-weights", type=Path, help="the light expert (default: the bundled weights)")
    parser.add_argument("--heavy-weights", type=Path, required=True, help="the heavy expert's safetensors")
    parser.add_argument(
        "--set", type=parse_named_folder, action="append", default=[], metavar="NAME=FOLDER",
        help="a paired folder (rain/ + norain/) to score; repeatable",
    )  # fmt: skip
    parser.add_argument(
        "--holdout", type=Path, help="a training folder whose last 10 pairs are scored as 'held-out pairs'"
    )
    parser.add_argument("--photos", type=Path, help="a folder of rainy photos without ground truth")
    parser.add_argument(
        "--band", type=float, nargs=2, default=DEFAULT_ROUTING_BAND, metavar=("LOW", "HIGH"),
        help="removed rain (levels of 255) where routing starts and where it is complete",
    )  # fmt: skip
    parser.add_argument(
        "--second-pass", action="store_true",
        help="also score the routed output derained again, kept on the frames the first pass routed",
    )  # fmt: skip
    parser.add_argument("--tag", default="routed_experts", help="results file name")
    args = parser.parse_args()
    try:
        low, high = check_routing_band(args.band)
    except ValueError as error:
        parser.error(f"--band: {error}")
    if not args.set and args.holdout is None and args.photos is None:
        parser.error("give at least one --set, --holdout or --photos")
    header = machine_header(torch.device("cpu"))
    print(header)
    light_model = derainzoo.create_model(args.model, pretrained=args.light_weights is None, weights=args.light_weights)
    heavy_model = derainzoo.create_model(args.model, weights=args.heavy_weights)
    light_model.eval()
    heavy_model.eval()
    sets = [(name, PairedImageFolder(folder)) for name, folder in args.set]
    if args.holdout is not None:
        stems = PairedImageFolder(args.holdout).stems
        sets.insert(0, ("held-out pairs", PairedImageFolder(args.holdout, stems=stems[-10:])))
    rows, frame_rows = [], []
    with torch.inference_mode():
        for name, pairs in sets:
            frames = score_frames(light_model, heavy_model, pairs, low, high, args.second_pass)
            rows.append({"set": name, **summarize(frames)})
            frame_rows += [
                {"set": name, **{k: round(v, 2) if isinstance(v, float) else v for k, v in f.items()}} for f in frames
            ]
        if args.photos is not None:
            for path in folder_images(args.photos).images:
                photo = load_image(path).convert("RGB")
                photo.thumbnail((PHOTO_LONG_SIDE, PHOTO_LONG_SIDE))
                rainy = to_batch(photo)[0]
                removed = removed_rain(rainy, light_model(rainy))
                row = dict.fromkeys(rows[0] if rows else ["set"], "")
                row.update({"set": f"photo {path.stem}", "removed": round(removed.item(), 1)})
                row["mean weight"] = round(routing_weight(removed, low, high).item(), 2)
                rows.append(row)
    notes = [
        f"light expert: {args.light_weights or 'bundled weights'}; heavy expert: {args.heavy_weights}",
        f"band: weight 0 at or below {low} levels removed, 1 at or above {high}",
        "abs error: mean over frames of |mean error| (levels of 255); photos: removed rain at long side "
        f"{PHOTO_LONG_SIDE}",
    ]
    if frame_rows:
        write_results(f"{args.tag}_frames", header, frame_rows, notes[:2])
        write_results(
            f"{args.tag}_thresholds",
            header,
            switch_sweep(frame_rows),
            [f"hard switch at each threshold over the {len(frame_rows)} frames of every set; {notes[0]}"],
        )
    print(write_results(args.tag, header, rows, notes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
