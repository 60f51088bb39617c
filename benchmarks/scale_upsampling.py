"""How scale-aware inference brings the removed rain back to full resolution: the kernel and the
threshold of ``derainzoo.scaling.upsample_rain``, compared on training backgrounds.

    python benchmarks/scale_upsampling.py --data ../shared/data

Rain100L *training* clean images (every 25th: the choice is tuned here, so never on test images)
are enlarged 2x and 4x with rain as a camera of that resolution records it
(``bench_large_photos.large_pair``, grain included). Each is derained once by the default model at
``1 / factor`` (the scale at which its rain has the training rain's size), and the removed rain
is brought back to full resolution by each variant. Y-channel PSNR/SSIM against the enlarged
clean image, mean over the images. Writes ``benchmarks/results/<tag>.{csv,md}``.
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

import torch
import torch.nn.functional as F
from bench_large_photos import large_pair
from common import machine_header, write_results

from derainzoo.data import PairedImageFolder
from derainzoo.inference import DEFAULT_MODEL, default_model, derain
from derainzoo.metrics import psnr_y, quantize, ssim_y
from derainzoo.scaling import RAIN_STRUCTURE_THRESHOLD, downscale, upsample_rain

SMALL_SIZE = (321, 481)  # a Rain100L image's size: the enlargement is undone by the downscaling
VARIANTS = {  # name: (kernel, threshold)
    "bilinear, threshold 0.02 (before 2026-12-01)": ("bilinear", 0.02),
    "bicubic, rain layer only (no detail)": ("bicubic", float("inf")),
    "bicubic, threshold 0.02": ("bicubic", 0.02),
    "bicubic, threshold 0.1": ("bicubic", 0.1),
    f"bicubic, threshold {RAIN_STRUCTURE_THRESHOLD} (default)": ("bicubic", RAIN_STRUCTURE_THRESHOLD),
    "bicubic, threshold 0.3": ("bicubic", 0.3),
    "bicubic, threshold 0.5": ("bicubic", 0.5),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--factors", nargs="+", type=int, default=[2, 4])
    parser.add_argument("--every", type=int, default=25, help="use every n-th training image")
    parser.add_argument("--tag", default=None)
    args = parser.parse_args()
    header = machine_header(torch.device("cpu"))
    print(header)
    model = default_model("cpu")
    train_set = PairedImageFolder(args.data / "Rain100L_train")
    indices = range(0, len(train_set), args.every)
    rows = []
    for factor in args.factors:
        height, width = SMALL_SIZE[0] * factor, SMALL_SIZE[1] * factor
        scores: dict[str, list[tuple[float, float]]] = {}
        for index in indices:
            rainy, clean = large_pair(train_set[index][1], height, width, "medium", seed=index)
            small = downscale(rainy, 1 / factor)
            rain_small = small - derain(small, model)
            outputs = {
                "derained small image, resized (bicubic)": F.interpolate(
                    small - rain_small, size=(height, width), mode="bicubic", align_corners=False
                )
            }
            for name, (kernel, threshold) in VARIANTS.items():
                outputs[name] = rainy - upsample_rain(rain_small, small, rainy, threshold=threshold, mode=kernel)
            for name, output in outputs.items():
                output = quantize(output)
                scores.setdefault(name, []).append((float(psnr_y(output, clean)), float(ssim_y(output, clean))))
        for name, values in scores.items():
            row = {
                "enlarged": f"{factor}x ({width}x{height}), derained at 1/{factor}",
                "upsampling": name,
                "PSNR": round(sum(p for p, _ in values) / len(values), 2),
                "SSIM": round(sum(s for _, s in values) / len(values), 4),
            }
            print(row, flush=True)
            rows.append(row)
    tag = args.tag or f"scale_upsampling_{datetime.date.today():%Y%m%d}"
    notes = [
        f"{len(indices)} Rain100L training backgrounds (every {args.every}th), medium rain enlarged with the image, "
        f"model {DEFAULT_MODEL} (bundled weights)"
    ]
    print(write_results(tag, header, rows, notes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
