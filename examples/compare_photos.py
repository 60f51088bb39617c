"""Compare weights on real rainy photos at full size, as a user would see them, before exporting.

    python examples/compare_photos.py ../shared/data/real_rain --model dual_stage_derain \\
        --weights src/derainzoo/weights/dual_stage_derain.rain_mix.safetensors candidate.safetensors \\
        --out runs/compare_candidate

Each photo is derained by each weights file with the defaults of ``derain()`` (full size; a photo
whose long side exceeds 1,280 px is derained at that size and its removed rain brought back), and
compared against the first weights file, the baseline. Printed per photo, as a markdown table:

* ``change``: the mean change |output - input| (0-255) of every weights file: how much rain (and
  veil) it removes. A candidate that removes less on a photo is refused there when its change falls
  more than ``--photo-tolerance`` below the baseline's, the guard of ``pick_weights.py`` at full size;
* ``detail``: the same change with each channel's mean shift taken off
  (``derainzoo.metrics.detail_change``): the rain taken out without the brightness shift, which is
  most of the change on real rain. ``--photo-measure detail_change`` guards on it instead;
* ``shift R/G/B``: the candidate's mean signed difference from the baseline's output per channel
  (0-255). Alike in R, G and B is a brightness change; the spread between them (``cast``) is a colour
  shift, refused above ``--max-cast`` levels;
* ``offset``: the median over pixels of that difference (mean of R, G, B): the part of the change
  that covers the whole photo. Streaks cover a minority of the pixels, so removing more of them
  leaves the median near 0; a uniform darkening or brightening moves it, and is refused beyond
  ``--max-offset`` levels (phase 13 of the ``rain_mix`` card darkened photos by 2-6 levels, and a
  bright test scene by 14.5 against its ground truth, which had passed as removed veil). Where a
  photo's veil is removed on purpose, look at the sheet and say why in the card;
* ``hot spot``: the ``--window``-px square where the two outputs differ most (mean |difference|),
  where the eye should look for streaks left behind or blotches.

``OUT/<photo>.png`` shows each photo as rainy | baseline | candidate(s), scaled to ``--panel-width``,
above 100 % crops of the hot spot: the numbers point, the pictures decide. Exit status 0 whatever the
verdicts (refusing is an answer), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from tqdm import tqdm

import derainzoo
from derainzoo.image_io import folder_images, load_image, to_batch
from derainzoo.inference import derain
from derainzoo.metrics import detail_change, mean_absolute_error

LABEL_HEIGHT = 18


@dataclass(frozen=True)
class Comparison:
    """One candidate's output on one photo, measured against the input and the baseline's output.

    Attributes:
        change: mean |output - input| over pixels and channels, 0-255.
        detail_change: the same once each channel's mean shift is taken off, 0-255.
        shift: mean (output - baseline output) per channel R, G, B, 0-255.
        offset: median over pixels of (output - baseline output) averaged over R, G, B, 0-255.
        hot_spot: ``(top, left)`` of the ``window``-px square where |output - baseline output| is
            largest on average.
        hot_spot_difference: that largest mean |output - baseline output|, 0-255.
    """

    change: float
    detail_change: float
    shift: tuple[float, float, float]
    offset: float
    hot_spot: tuple[int, int]
    hot_spot_difference: float

    @property
    def cast(self) -> float:
        """Spread of the per-channel shifts: a colour shift, where a brightness change has none."""
        return max(self.shift) - min(self.shift)


def compare(rainy: torch.Tensor, output: torch.Tensor, baseline: torch.Tensor, window: int) -> Comparison:
    """Measure ``output`` against the ``rainy`` input and the ``baseline`` output, all ``(1, 3, H, W)`` in [0, 1]."""
    difference = (output - baseline) * 255
    # A window larger than the photo shrinks to it, so that small photos still get a hot spot.
    size = min(window, *difference.shape[-2:])
    stride = max(1, size // 2)
    local = F.avg_pool2d(difference.abs().mean(dim=1, keepdim=True), size, stride=stride)
    index = int(local.flatten().argmax())
    row, column = divmod(index, local.shape[-1])
    return Comparison(
        change=float(mean_absolute_error(output, rainy)[0]),
        detail_change=float(detail_change(output, rainy)[0]),
        shift=tuple(float(value) for value in difference.mean(dim=(0, 2, 3))),
        offset=float(difference.mean(dim=1).median()),
        hot_spot=(row * stride, column * stride),
        hot_spot_difference=float(local.flatten()[index]),
    )


def refusals(
    candidate: Comparison,
    baseline: Comparison,
    photo_tolerance: float,
    max_cast: float,
    max_offset: float,
    photo_measure: str = "change",
) -> list[str]:
    """Why a candidate's output on one photo is refused against the baseline's; empty when it
    passes. ``photo_measure`` names the field of [`Comparison`][] the change guard reads."""
    reasons = []
    if getattr(candidate, photo_measure) < (1 - photo_tolerance) * getattr(baseline, photo_measure):
        reasons.append(f"{photo_measure.replace('_', ' ')} fell > {photo_tolerance:.0%}")
    if candidate.cast > max_cast:
        reasons.append(f"colour cast {candidate.cast:.1f} > {max_cast:g}")
    if abs(candidate.offset) > max_offset:
        reasons.append(f"offset {candidate.offset:+.1f} beyond {max_offset:g}")
    return reasons


def fit_label(draw: ImageDraw.ImageDraw, label: str, width: int) -> str:
    """``label``, or its two ends joined by "..." where it is wider than ``width`` pixels: a
    weights path is told apart by its folder (the start) and what the crop shows by its end."""
    if draw.textlength(label) <= width:
        return label
    for kept in range(len(label) - 1, 0, -1):
        head, tail = label[: (kept + 1) // 2], label[len(label) - kept // 2 :]
        shortened = f"{head}...{tail}"
        if draw.textlength(shortened) <= width:
            return shortened
    return "..."


def labelled_strip(images: list[Image.Image], labels: list[str]) -> Image.Image:
    """Images of equal size side by side, each under its label (shortened to fit its image, so
    that the labels of narrow crops do not run into each other)."""
    width, height = images[0].size
    strip = Image.new("RGB", (width * len(images), height + LABEL_HEIGHT), "white")
    draw = ImageDraw.Draw(strip)
    for index, (image, label) in enumerate(zip(images, labels)):
        strip.paste(image, (index * width, LABEL_HEIGHT))
        draw.text((index * width + 4, 3), fit_label(draw, label, width - 8), fill="black")
    return strip


def contact_sheet(
    whole: list[Image.Image], labels: list[str], hot_spot: tuple[int, int], window: int, panel_width: int
) -> Image.Image:
    """Images of one size scaled to ``panel_width`` above their 100 % crops at the hot spot."""
    panel_height = round(whole[0].height * panel_width / whole[0].width)
    top, left = hot_spot
    size = min(window, *whole[0].size)
    crops = [image.crop((left, top, left + size, top + size)) for image in whole]
    crop_width = max(size, panel_width // 2)
    rows = [
        labelled_strip([image.resize((panel_width, panel_height), Image.LANCZOS) for image in whole], labels),
        labelled_strip(
            [crop.resize((crop_width, crop_width), Image.NEAREST) for crop in crops],
            [f"{label}, hot spot ({left}, {top})" for label in labels],
        ),
    ]
    sheet = Image.new("RGB", (max(row.width for row in rows), sum(row.height for row in rows)), "white")
    sheet.paste(rows[0], (0, 0))
    sheet.paste(rows[1], (0, rows[0].height))
    return sheet


def photo_paths(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise SystemExit(f"{folder}: no such folder of photos")
    paths = folder_images(folder).images
    if not paths:
        raise SystemExit(f"{folder}: holds no image files")
    return paths


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photos", type=Path, help="folder of rainy photos (e.g. real_rain/)")
    parser.add_argument("--model", required=True, help="architecture of every weights file")
    parser.add_argument(
        "--weights", type=Path, nargs="+", required=True, help="safetensors files; the first is the baseline"
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for the contact sheets")
    parser.add_argument("--photo-tolerance", type=float, default=0.1, help="largest fall of a photo's change")
    parser.add_argument(
        "--photo-measure",
        choices=("change", "detail_change"),
        default="change",
        help="the change the guard reads: mean |output - input|, or the same with the brightness shift taken off",
    )
    parser.add_argument("--max-cast", type=float, default=2.0, help="largest colour cast, levels of 255")
    parser.add_argument(
        "--max-offset", type=float, default=3.0, help="largest median shift from the baseline's output, levels of 255"
    )
    parser.add_argument("--window", type=int, default=128, help="side of the hot-spot square, px")
    parser.add_argument("--panel-width", type=int, default=480, help="width of each whole photo in the sheet, px")
    args = parser.parse_args(argv)
    if len(args.weights) < 2:
        parser.error("--weights takes the baseline and at least one candidate")
    if args.window < 1 or args.panel_width < 1:
        parser.error("--window and --panel-width must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    paths = photo_paths(args.photos)
    models = [derainzoo.create_model(args.model, weights=weights).eval() for weights in args.weights]
    names = [weights.stem for weights in args.weights]
    if len(set(names)) < len(names):
        names = [str(weights) for weights in args.weights]
    args.out.mkdir(parents=True, exist_ok=True)

    header = ["photo", *(f"change {name}" for name in names), *(f"detail {name}" for name in names)]
    for name in names[1:]:
        header += [f"shift R/G/B {name}", f"offset {name}", f"hot spot {name}", f"verdict {name}"]
    rows, refused = [], set()
    for path in tqdm(paths, desc="photos", unit="photo"):
        rainy, to_image = to_batch(load_image(path).convert("RGB"))
        with torch.inference_mode():
            outputs = [derain(rainy, model) for model in models]
        comparisons = [compare(rainy, output, outputs[0], args.window) for output in outputs]
        cells = [
            path.stem,
            *(f"{comparison.change:.2f}" for comparison in comparisons),
            *(f"{comparison.detail_change:.2f}" for comparison in comparisons),
        ]
        for name, comparison in zip(names[1:], comparisons[1:]):
            reasons = refusals(
                comparison, comparisons[0], args.photo_tolerance, args.max_cast, args.max_offset, args.photo_measure
            )
            if reasons:
                refused.add(name)
            top, left = comparison.hot_spot
            cells += [
                "/".join(f"{value:+.1f}" for value in comparison.shift),
                f"{comparison.offset:+.1f}",
                f"{comparison.hot_spot_difference:.1f} at ({left}, {top})",
                "; ".join(reasons) or "passes",
            ]
        rows.append(cells)
        hot_spot = max(comparisons[1:], key=lambda comparison: comparison.hot_spot_difference).hot_spot
        images = [to_image(image) for image in (rainy, *outputs)]
        contact_sheet(images, ["rainy", *names], hot_spot, args.window, args.panel_width).save(
            args.out / f"{path.stem}.png"
        )

    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for cells in rows:
        print("| " + " | ".join(cells) + " |")
    for name in names[1:]:
        print(f"{name}: {'refused on at least one photo' if name in refused else 'passes on every photo'}")
    print(f"contact sheets: {args.out}/<photo>.png (rainy | {' | '.join(names)}, then 100 % crops at the hot spot)")


if __name__ == "__main__":
    main()
