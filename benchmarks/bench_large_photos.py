"""Large photos: full-resolution tiling against scale-aware inference, on rain rendered as a
large camera sees it, side by side in one run.

    python benchmarks/bench_large_photos.py --data ../shared/data --sizes 2000x1500 4000x3000 --images 3

Clean backgrounds are Rain100L *test* clean images (evaluation only, never trained on), enlarged
to each size (bicubic) with a fine grain added (Gaussian, sigma 0.02, fixed seed) so that the
background has full-resolution detail for a resampling method to lose. Rain is drawn by the
renderer at the enlarged size with every streak as many times longer, wider and more defocused as
the image was enlarged (and as many times fewer drops per pixel squared): the rain a camera of that
resolution records, not thin streaks scattered over a large image. Each image is derained by the
same model with ``derain(..., scale=1)`` (tiled under the default memory budget) and with each
requested scale (``auto`` by default), and scored by Y-channel PSNR/SSIM against the enlarged
clean image (with grain). Writes ``benchmarks/results/<tag>.{csv,md}``.
"""

from __future__ import annotations

import argparse
import datetime
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from common import machine_header, parse_width_by_height, write_results

import derainzoo
from derainzoo.data import PairedImageFolder, RainParams, render_rain, sample_rain_params
from derainzoo.inference import DEFAULT_MODEL, derain, prepare_for_inference
from derainzoo.metrics import psnr_y, ssim_y
from derainzoo.scaling import choose_scale

GRAIN = 0.02
SOURCE_SIZE = 481  # long side of a Rain100L image


def enlarged_rain(params: RainParams, factor: float) -> RainParams:
    """The same rain seen by a camera of ``factor`` times the resolution."""
    return replace(params, layers=tuple(layer.resized(factor) for layer in params.layers))


def large_pair(
    clean: torch.Tensor, height: int, width: int, strength: str, seed: int, grain: float = GRAIN
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rainy, clean)`` at ``height x width`` from a small clean image."""
    generator = torch.Generator().manual_seed(seed)
    large = F.interpolate(clean[None], size=(height, width), mode="bicubic", align_corners=False)
    large = (large + grain * torch.randn(large.shape, generator=generator)).clamp(0, 1)
    params = enlarged_rain(
        sample_rain_params(strength, generator, camera_effects=False), max(height, width) / SOURCE_SIZE
    )
    return render_rain(large, params, generator).rainy, large


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--sizes", nargs="+", default=["2000x1500", "4000x3000"], help="WIDTHxHEIGHT")
    parser.add_argument("--images", type=int, default=3, help="Rain100L test images per size")
    parser.add_argument("--strength", default="medium", help="rain preset")
    parser.add_argument("--scales", nargs="+", default=["auto"], help="scales to compare with full resolution")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--grain", type=float, default=GRAIN, help="sigma of the grain added to the backgrounds")
    parser.add_argument("--skip-full", action="store_true", help="only the scales, not the full-resolution pass")
    parser.add_argument("--tag", default=None)
    args = parser.parse_args()

    device = torch.device("cpu")
    header = machine_header(device)
    print(header)
    model = prepare_for_inference(derainzoo.create_model(args.model, pretrained=True), device)
    test_set = PairedImageFolder(args.data / "Rain100L_test")
    rows = []
    for size in args.sizes:
        height, width = parse_width_by_height(size)
        for index in range(args.images):
            rainy, clean = large_pair(test_set[index][1], height, width, args.strength, seed=index, grain=args.grain)
            row: dict[str, object] = {
                "size": size,
                "image": test_set.stems[index],
                "input PSNR": round(float(psnr_y(rainy, clean)), 2),
            }
            for scale in args.scales if args.skip_full else ["1", *args.scales]:
                value = scale if scale == "auto" else float(scale)
                start = time.perf_counter()
                output = derain(rainy, model, scale=value)
                seconds = time.perf_counter() - start
                if scale == "auto":
                    row["auto scale"] = round(choose_scale(height, width, value), 3)
                row[f"scale {scale} PSNR"] = round(float(psnr_y(output, clean)), 2)
                row[f"scale {scale} SSIM"] = round(float(ssim_y(output, clean)), 4)
                row[f"scale {scale} s"] = round(seconds, 1)
                print(row, flush=True)
            rows.append(row)
    tag = args.tag or f"large_photos_cpu_{datetime.date.today():%Y%m%d}"
    notes = [
        f"model {args.model} (pretrained), rain preset {args.strength} enlarged to the image size, grain sigma {args.grain}",
        "scale 1 is full resolution, tiled under the default 2 GiB budget; other scales derain downscaled "
        "and bring the removed rain back to full resolution (derainzoo.scaling)",
    ]
    print(write_results(tag, header, rows, notes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
