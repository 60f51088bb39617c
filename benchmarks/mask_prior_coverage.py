"""How much of the true rain the mask head's morphological prior sees, by the size of its top-hat box.

    python benchmarks/mask_prior_coverage.py --set rain100l_train=../shared/data/Rain100L_train \\
        --set thick=runs/val_heavy_wide --tophat 5 9 15

The prior of [`MorphologicalMaskHead`][derainzoo.layers.mask_head.MorphologicalMaskHead], untrained
(its initial threshold, no refinement), marks a pixel as rain where its logits are positive. The
white top-hat at its start keeps only bright structures narrower than the box, so streaks wider
than the box fall out of it. Per paired folder (``--set NAME=FOLDER``, ``rain/`` + ``norain/``) and
box size (``--tophat``), over all pixels of all pairs:

- **rain pixels**: the mean share of each image's pixels that are true rain (luma of rainy - clean
  above ``--rain-threshold``; with ``--streak-width W`` only the rain layer's structures
  narrower than ``W`` pixels, its white top-hat, so that a veil or glow over the frame is not
  counted as streaks);
- **coverage**: the share of the true rain that the prior marks;
- **IoU**: intersection over union of the two, which also counts what the prior marks that is
  not rain (texture, bright edges).

``--weights`` adds a column for a trained model's mask head (its whole mask, refinement
included, above one half), with ``--model`` and ``--mask-head`` (a JSON object of head settings,
as ``create_model(..., mask_head=...)`` takes them) building the model the weights belong to: does
training teach the head what the prior misses?

No randomness; writes ``benchmarks/results/<tag>.{csv,md}``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from common import machine_header, parse_named_folder, write_results
from torch import Tensor
from tqdm import tqdm

import derainzoo
from derainzoo.data import PairedImageFolder
from derainzoo.layers.color import rgb_to_luma
from derainzoo.layers.mask_head import MorphologicalMaskHead
from derainzoo.layers.morphology import box_kernel, white_tophat


@dataclass
class PixelOverlap:
    """Pixel counts of a predicted and a true mask, summed over images."""

    both: int = 0
    either: int = 0
    truth: int = 0

    def add(self, predicted: Tensor, truth: Tensor) -> None:
        """Count one pair of boolean masks of the same shape."""
        self.both += int((predicted & truth).sum())
        self.either += int((predicted | truth).sum())
        self.truth += int(truth.sum())

    @property
    def coverage(self) -> float:
        """Share of the true pixels that are predicted (NaN if there are none)."""
        return self.both / self.truth if self.truth else float("nan")

    @property
    def iou(self) -> float:
        """Intersection over union (NaN if both masks are empty)."""
        return self.both / self.either if self.either else float("nan")


def true_rain(rainy: Tensor, clean: Tensor, threshold: float, streak_width: int | None = None) -> Tensor:
    """Where the rain brightens the luma by more than ``threshold``: ``(B, 1, H, W)`` boolean.

    Args:
        rainy: ``(B, 3, H, W)`` rainy images in ``[0, 1]``.
        clean: their clean images, same shape.
        threshold: brightening in image units (0..1).
        streak_width: if given, only the rain layer's structures narrower than this many pixels
            count (its white top-hat with that box), so a veil or glow over the whole frame does not.
    """
    rain_layer = rgb_to_luma(rainy) - rgb_to_luma(clean)
    if streak_width is not None:
        rain_layer = white_tophat(rain_layer, box_kernel(streak_width))
    return rain_layer > threshold


def prior_mask(head: MorphologicalMaskHead, rainy: Tensor) -> Tensor:
    """Where the head's morphological prior is above one half: ``(B, 1, H, W)`` boolean."""
    return head.prior_logits(rainy) > 0


def head_mask(head: MorphologicalMaskHead, rainy: Tensor) -> Tensor:
    """Where the head's whole mask (prior and refinement) is above one half: ``(B, 1, H, W)`` boolean."""
    return head(rainy) > 0.5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--set", dest="sets", type=parse_named_folder, action="append", required=True, metavar="NAME=FOLDER"
    )
    parser.add_argument("--tophat", type=int, nargs="+", default=[5, 7, 9, 11, 15], help="top-hat box sides (px)")
    parser.add_argument("--line-length", type=int, default=9, help="line elements of the head (px)")
    parser.add_argument("--rain-threshold", type=float, default=0.04, help="true rain: luma brightened by more")
    parser.add_argument(
        "--streak-width", type=int, help="count only rain narrower than this (px), not a veil over the frame"
    )
    parser.add_argument("--weights", type=Path, help="also score the trained mask head of these weights")
    parser.add_argument("--model", default="dual_stage_derain", help="with --weights: the model they belong to")
    parser.add_argument(
        "--mask-head", type=json.loads, default={}, metavar="JSON", help="with --weights: head settings"
    )
    parser.add_argument("--tag", default="mask_prior_coverage")
    args = parser.parse_args()
    if any(size < 1 for size in args.tophat):
        parser.error(f"--tophat sizes must be positive, got {args.tophat}")
    if args.streak_width is not None and args.streak_width < 1:
        parser.error(f"--streak-width must be positive, got {args.streak_width}")
    header = machine_header(torch.device("cpu"))
    print(header)
    markers: dict[str, Callable[[Tensor], Tensor]] = {
        f"{size} px": partial(prior_mask, MorphologicalMaskHead(tophat_size=size, line_length=args.line_length))
        for size in args.tophat
    }
    if args.weights is not None:
        model = derainzoo.create_model(args.model, weights=args.weights, mask_head=args.mask_head).eval()
        if not isinstance(model.mask_head, MorphologicalMaskHead):
            parser.error(f"{args.model} has no morphological mask head to score")
        markers[f"trained {args.weights.stem}"] = partial(head_mask, model.mask_head)
    rows = []
    with torch.no_grad():
        for name, folder in args.sets:
            pairs = PairedImageFolder(folder)
            overlaps = {label: PixelOverlap() for label in markers}
            truth_share = []
            for index in tqdm(range(len(pairs)), desc=name, unit="image"):
                rainy, clean, _ = pairs[index]
                truth = true_rain(rainy[None], clean[None], args.rain_threshold, args.streak_width)
                truth_share.append(truth.float().mean().item())
                for label, mark in markers.items():
                    overlaps[label].add(mark(rainy[None]), truth)
            row: dict[str, object] = {
                "set": name,
                "pairs": len(pairs),
                "rain pixels": f"{sum(truth_share) / len(truth_share):.2f}",
            }
            for label, overlap in overlaps.items():
                row[f"{label}: coverage / IoU"] = f"{overlap.coverage:.2f} / {overlap.iou:.2f}"
            rows.append(row)
    notes = [
        f"prior of an untrained MorphologicalMaskHead (line length {args.line_length}, the head's other defaults) "
        f"against the luma brightened by more than {args.rain_threshold}"
        + (f" in the rain layer's structures narrower than {args.streak_width} px" if args.streak_width else "")
    ]
    print(write_results(args.tag, header, rows, notes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
