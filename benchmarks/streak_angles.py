"""Which streak directions and sizes a model takes out: the same rain, turned to each direction
and enlarged to each size in turn.

    python benchmarks/streak_angles.py --data ../shared/data/Rain100L_train --style opaque
    python benchmarks/streak_angles.py --data Rain100L_train --weights ckpt.safetensors --family 0 --family=-30,5
    python benchmarks/streak_angles.py --data Rain100L_train --strength medium --style opaque \
        --family=-20,15 --size 1 --size 2 --size 3

Rain is drawn once per background (``sample_rain_params(--strength, seed + k, styles at
probability 1)``, no camera effects) and rendered once per direction set of ``--family``: every
streak layer is turned to one of the set's angles (degrees from the vertical, positive leaning the
top of a streak to the right), layer ``i`` to angle ``i mod n``, with copies of the first layer
where the rain has fewer layers than the set has angles (as the ``crossing`` style does). Only the
directions change between rows: the drops, their brightness and the veil are the same, so a row
that scores lower shows directions the model has not learned, not harder rain. The rain renderer
draws the wind in ``+-MAX_WIND_ANGLE`` degrees and the ``crossing`` families in
``+-CROSSING_SPREAD`` (the note under the table gives both). With ``--size``, each direction set is
also rendered with every layer enlarged by each factor (``StreakLayer.resized``: as many times as
long, wide and defocused, with fewer drops so that the same share of the frame is covered; the
``wide`` style draws it in ``WIDE_FACTOR``).

Per row: the Y-channel PSNR of the rainy input and of the output as ``derainzoo eval`` computes it
(8-bit rounding, whole image) and the mean error (output - clean, levels of 255, negative =
darker), averaged over the backgrounds. Writes ``benchmarks/results/<tag>.{csv,md}``.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from common import machine_header, write_results
from tqdm import tqdm

import derainzoo
from derainzoo.data import PairedImageFolder
from derainzoo.data.rain_renderer import (
    CROSSING_SPREAD,
    MAX_WIND_ANGLE,
    RAIN_PRESETS,
    RAIN_STYLES,
    RainParams,
    render_rain,
    sample_rain_params,
)
from derainzoo.inference import derain
from derainzoo.metrics import mean_error, psnr_y, quantize

DEFAULT_FAMILIES = ("0", "15", "30", "45", "60", "-20,15", "-35,-5,25")


def parse_family(text: str) -> tuple[float, ...]:
    """``"-30,5"`` -> ``(-30.0, 5.0)``: the directions of one row, in degrees from the vertical."""
    try:
        angles = tuple(float(part) for part in text.split(","))
    except ValueError:
        angles = ()
    if not angles or any(not -90.0 <= angle <= 90.0 for angle in angles):
        raise argparse.ArgumentTypeError(
            f"a direction set is angles in [-90, 90] joined by commas, e.g. -30,5; got {text!r}"
        )
    return angles


def positive_factor(text: str) -> float:
    """A size factor of ``--size``: a number above 0."""
    try:
        factor = float(text)
    except ValueError:
        factor = 0.0
    if not factor > 0:
        raise argparse.ArgumentTypeError(f"a size is a factor above 0, e.g. 2; got {text!r}")
    return factor


def turned(params: RainParams, angles: tuple[float, ...], size: float = 1.0) -> RainParams:
    """``params`` with streak layer ``i`` turned to ``angles[i % len(angles)]``, the first layer copied
    until there is one layer per angle, and every layer ``size`` times as large."""
    layers = list(params.layers)
    while len(layers) < len(angles):
        layers.append(layers[0])
    return replace(
        params,
        layers=tuple(replace(layer, angle=angles[i % len(angles)]).resized(size) for i, layer in enumerate(layers)),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a paired folder; only its clean images are used")
    parser.add_argument(
        "--stems",
        nargs="+",
        default=[f"{index:03d}" for index in range(191, 201)],
        help="backgrounds (default: 191-200, the pairs train.py holds out of Rain100L train)",
    )
    parser.add_argument("--strength", default="heavy", choices=sorted(RAIN_PRESETS), help="rain preset")
    parser.add_argument(
        "--style", action="append", default=[], choices=RAIN_STYLES, help="a style added to every image, repeatable"
    )
    parser.add_argument(
        "--family",
        action="append",
        dest="families",
        type=parse_family,
        help="a direction set, one row, repeatable: an angle, or angles joined by commas for crossing families; "
        f"write a negative one as --family=-30,5 (default: {' '.join(DEFAULT_FAMILIES)})",
    )
    parser.add_argument(
        "--size",
        action="append",
        dest="sizes",
        type=positive_factor,
        help="a size factor, repeatable: every direction set is also rendered with its layers this many times as "
        "large (default: 1, the rain as drawn)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the first background's rain")
    parser.add_argument("--model", default="dual_stage_derain")
    parser.add_argument("--weights", type=Path, help="a safetensors file (default: the bundled weights)")
    parser.add_argument("--tag", default="streak_angles", help="results file name")
    args = parser.parse_args()
    families = args.families or [parse_family(text) for text in DEFAULT_FAMILIES]
    header = machine_header(torch.device("cpu"))
    print(header)
    model = derainzoo.create_model(args.model, pretrained=args.weights is None, weights=args.weights).eval()
    pairs = PairedImageFolder(args.data, stems=args.stems)
    pairs.check_whole_images("streak_angles.py")
    cleans = [pairs[index][1][None] for index in range(len(pairs))]  # read once, rained on once per row
    styles = dict.fromkeys(args.style, 1.0)
    drawn = [
        sample_rain_params(
            args.strength,
            torch.Generator().manual_seed(args.seed + index),
            camera_effects=False,
            style_probability=styles,
        )
        for index in range(len(cleans))
    ]
    rows = []
    sizes = args.sizes or [1.0]
    for angles, size in tqdm([(a, f) for a in families for f in sizes], desc="direction sets x sizes", unit="row"):
        scores = {"input psnr": [], "psnr": [], "mean error": []}
        for index, clean in enumerate(cleans):
            # The drops are drawn from the same generator for every row: only the directions and sizes change.
            rendered = render_rain(
                clean, turned(drawn[index], angles, size), torch.Generator().manual_seed(args.seed + index)
            )
            rainy = quantize(rendered.rainy)
            with torch.inference_mode():
                output = quantize(derain(rainy, model, tile_size=0, scale=None).float())
            scores["input psnr"].append(psnr_y(rainy, clean).item())
            scores["psnr"].append(psnr_y(output, clean).item())
            scores["mean error"].append(mean_error(output, clean).item())
        rows.append(
            {
                "directions": " / ".join(f"{angle:+g}" for angle in angles),
                "size": size,
                **{name: round(float(np.mean(values)), 2) for name, values in scores.items()},
            }
        )
    weights = args.weights or "bundled weights"
    notes = [
        f"{args.model} ({weights}); {args.strength} rain with styles {', '.join(args.style) or 'none'} over "
        f"{len(pairs)} backgrounds of {args.data} (seed {args.seed})",
        f"the renderer draws the wind in +-{MAX_WIND_ANGLE:g} degrees and crossing families in +-{CROSSING_SPREAD:g}",
    ]
    print(write_results(args.tag, header, rows, notes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
