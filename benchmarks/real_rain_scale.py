"""How much rain a model takes out of real rainy photos, with the photo upscaled before deraining.

    python benchmarks/real_rain_scale.py --data ../shared/data/real_rain --photos 000 006 --scales 1 1.5 2

Real photos have no ground truth, so this measures what a model *removes*: the mean
``|input - output|`` on the 0-255 scale. At scale ``s`` the photo is upscaled ``s`` times (bicubic),
derained, and the removed layer ``upscaled - derained`` is averaged back to the photo's size
(area) and subtracted. If a model removes much more at ``s > 1``, the photo's streaks are thinner
and shorter than the ones it learned: a renderer and training-data question, not a tuning knob.
More removed is not always better (a blurring model removes detail too): look at the outputs
(``--save DIR``) before reading the numbers. Writes ``benchmarks/results/<tag>.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from common import RESULTS_DIR, machine_header
from PIL import Image

import derainzoo
from derainzoo.image_io import load_image
from derainzoo.inference import derain


def derain_upscaled(model: torch.nn.Module, photo: torch.Tensor, scale: float) -> torch.Tensor:
    """``(1, 3, H, W)`` derained ``photo`` when deraining runs on the photo upscaled ``scale`` times."""
    if scale == 1:
        return derain(photo, model)
    large = F.interpolate(photo, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)
    removed = F.interpolate(large - derain(large, model), size=photo.shape[-2:], mode="area")
    return (photo - removed).clamp(0, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder of rainy photos (e.g. real_rain/)")
    parser.add_argument("--photos", nargs="+", required=True, help="file stems, e.g. 000 006")
    parser.add_argument("--scales", nargs="+", type=float, default=[1.0, 1.5, 2.0])
    parser.add_argument("--model", default="dual_stage_derain", help="model name, optionally .tag")
    parser.add_argument("--weights", type=Path, help="safetensors to load instead of the pretrained ones")
    parser.add_argument("--save", type=Path, help="write input | output at each scale side by side here")
    parser.add_argument("--tag", default="real_rain_scale")
    args = parser.parse_args()
    if any(scale < 1 for scale in args.scales):
        parser.error("--scales must be >= 1 (downscaling the photo loses the streaks it measures)")

    header = machine_header(torch.device("cpu"))
    print(header)
    if args.weights is not None:
        model = derainzoo.create_model(args.model, weights=args.weights)
    else:
        model = derainzoo.create_model(args.model, pretrained=True)

    rows = []
    for stem in args.photos:
        matches = sorted(args.data.glob(f"{stem}.*"))
        if not matches:
            parser.error(f"no photo {stem}.* in {args.data}")
        image = np.asarray(load_image(matches[0]).convert("RGB"), dtype=np.float32) / 255
        photo = torch.from_numpy(image).permute(2, 0, 1)[None]
        outputs = [derain_upscaled(model, photo, scale) for scale in args.scales]
        removed = [float((photo - output).abs().mean()) * 255 for output in outputs]
        rows.append((stem, removed))
        print(stem, " ".join(f"x{scale:g}: {value:.2f}" for scale, value in zip(args.scales, removed)), flush=True)
        if args.save is not None:
            args.save.mkdir(parents=True, exist_ok=True)
            strip = torch.cat([photo, *outputs], dim=3)[0].permute(1, 2, 0).numpy()
            Image.fromarray((strip * 255).round().astype(np.uint8)).save(args.save / f"{stem}.png")

    RESULTS_DIR.mkdir(exist_ok=True)
    columns = " | ".join(f"x{scale:g}" for scale in args.scales)
    lines = [
        f"<!-- {header} -->",
        f"Mean |input - output| (0-255) of `{args.model}`"
        + (f" ({args.weights.name})" if args.weights else "")
        + ", the photo upscaled before deraining",
        "",
        f"| photo | {columns} |",
        "|---" * (len(args.scales) + 1) + "|",
        *(f"| {stem} | " + " | ".join(f"{value:.2f}" for value in removed) + " |" for stem, removed in rows),
    ]
    (RESULTS_DIR / f"{args.tag}.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
