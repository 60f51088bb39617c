"""The ``derainzoo derain`` command as a user runs it, timed from outside, with PReNet6's forward
timed in the same run.

    python benchmarks/bench_cli.py --data ../shared/data

1. **Per image at 481 x 321.** The first ``--images`` Rain100L *test* rainy images go through
   ``derainzoo derain FOLDER -o OUT`` once per model and option set. The per-image time is the
   command's own figure (its loop over the images, start-up and model loading excluded) divided
   by the number of images: by default all 100 (66 landscape, 34 portrait), a folder as users
   derain one, over which the backend's one-time set-up on its first call (about 0.35 s with
   OpenVINO) weighs 0.004 s an image; over 10 images it weighs 0.035 s. Next to it: PReNet6's
   eager fp32 forward at 321 x 481 in this process (median of 5; timing needs no weights).
2. **A 12 MP photo.** A Rain100L test clean image is enlarged to 4000 x 3000 with rain as a camera
   of that resolution records it (``bench_large_photos.large_pair``) and saved as a JPEG
   (quality 95). The command derains it with its default options (and each option set). Reported:
   the whole command's wall seconds (start-up and model loading included), user and system
   seconds, peak resident memory, and Y-channel PSNR/SSIM against the clean image. A 100 % crop
   (rainy | derained) is written beside the results, to be looked at.

Each command runs in a fresh process, whose own resource usage is read, so memory peaks do not
mix. Writes ``benchmarks/results/<tag>.{csv,md}`` and ``<tag>_crop*.jpg``.
"""

from __future__ import annotations

import argparse
import datetime
import re
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from bench_large_photos import large_pair
from common import RESULTS_DIR, machine_header, parse_width_by_height, run_in_fresh_process, time_call, write_results
from PIL import Image
from prenet import PReNet6

from derainzoo.data import PairedImageFolder
from derainzoo.image_io import load_image, to_batch
from derainzoo.inference import DEFAULT_MODEL
from derainzoo.metrics import psnr_y, ssim_y

# Runs one command and reports its own resource usage (RUSAGE_CHILDREN of a process with one child).
CHILD = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
result = subprocess.run(sys.argv[1:], capture_output=True, text=True)
seconds = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"returncode": result.returncode, "wall s": round(seconds, 1), "user s": round(usage.ru_utime, 1),
                  "sys s": round(usage.ru_stime, 1), "peak MiB": round(usage.ru_maxrss / 1024),
                  "stdout": result.stdout[-1000:], "stderr": result.stderr[-1000:]}))
"""

LOOP_SECONDS = re.compile(r"wrote (\d+) image\(s\) .* in ([0-9.]+) s")
CROP_SIZE = 768


def derain_command() -> list[str]:
    """The installed console script beside this interpreter, else ``python -m derainzoo``."""
    script = Path(sys.executable).with_name("derainzoo")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "derainzoo"]


def run_derain(inputs: Path, output: Path, options: list[str]) -> dict[str, object]:
    """Run ``derainzoo derain inputs -o output options`` in a fresh process; its usage figures."""
    report = run_in_fresh_process(CHILD, *derain_command(), "derain", inputs, "-o", output, "--overwrite", *options)
    if report["returncode"] != 0:
        raise RuntimeError(f"derainzoo derain {' '.join(options)} failed:\n{report['stderr']}")
    return report


def per_image_rows(data: Path, images: int, models: list[str], option_sets: list[str], work: Path) -> list[dict]:
    folder = work / "small"
    folder.mkdir()
    for path in sorted((data / "Rain100L_test" / "rain").iterdir())[:images]:
        Image.open(path).save(folder / (path.stem + ".png"))
    rows = []
    for model in models:
        for options in option_sets:
            report = run_derain(folder, work / "small_out", ["--model", model, *shlex.split(options)])
            written, loop_seconds = LOOP_SECONDS.search(report["stdout"]).groups()
            row = {
                "what": f"{model} {options}".strip(),
                "images": int(written),
                "s per image": round(float(loop_seconds) / int(written), 3),
                "command wall s": report["wall s"],
            }
            print(row, flush=True)
            rows.append(row)
    return rows


def prenet_row(repeats: int = 5) -> dict[str, object]:
    model = PReNet6().eval()
    image = torch.rand(1, 3, 321, 481)
    with torch.inference_mode():
        milliseconds, _ = time_call(lambda _: model(image), torch.device("cpu"), repeats, warmup=1)
    return {
        "what": "PReNet6 forward (eager fp32, in process)",
        "images": 1,
        "s per image": round(milliseconds / 1000, 3),
    }


def crop_pair(rainy: Image.Image, derained: Image.Image, tag: str, label: str) -> Path:
    """A ``CROP_SIZE`` square at 100 % from the middle of both images, side by side."""
    side = min(CROP_SIZE, rainy.width, rainy.height)
    left, top = (rainy.width - side) // 2, (rainy.height - side) // 2
    box = (left, top, left + side, top + side)
    sheet = Image.new("RGB", (2 * side, side))
    sheet.paste(rainy.crop(box), (0, 0))
    sheet.paste(derained.crop(box), (side, 0))
    path = RESULTS_DIR / f"{tag}_crop_{re.sub(r'[^a-z0-9]+', '_', label.lower()).strip('_') or 'default'}.jpg"
    sheet.save(path, quality=90)
    return path


def large_photo_rows(data: Path, size: str, option_sets: list[str], work: Path, tag: str) -> list[dict]:
    height, width = parse_width_by_height(size)
    clean_small = PairedImageFolder(data / "Rain100L_test")[0][1]
    rainy, clean = large_pair(clean_small, height, width, "medium", seed=0)
    photo = work / "photo.jpg"
    Image.fromarray((rainy[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(photo, quality=95)
    rows = [
        {"what": f"{size} JPEG, rainy input", "PSNR": round(float(psnr_y(to_batch(load_image(photo))[0], clean)), 2)}
    ]
    for options in option_sets:
        report = run_derain(photo, work / "large_out", shlex.split(options))
        derained = to_batch(load_image(work / "large_out" / "photo.jpg"))[0]
        row = {
            "what": f"derainzoo derain {size} JPEG {options or '(default options)'}",
            "PSNR": round(float(psnr_y(derained, clean)), 2),
            "SSIM": round(float(ssim_y(derained, clean)), 4),
            "command wall s": report["wall s"],
            **{key: report[key] for key in ("user s", "sys s", "peak MiB")},
        }
        crop = crop_pair(Image.open(photo), Image.open(work / "large_out" / "photo.jpg"), tag, options)
        print(row, f"crop: {crop}", flush=True)
        rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument(
        "--images", type=int, default=100, help="Rain100L test images for the per-image time; 0 skips it"
    )
    parser.add_argument("--models", nargs="+", default=[DEFAULT_MODEL, "dual_stage_derain_tiny"])
    parser.add_argument(
        "--option-sets",
        nargs="+",
        default=[""],
        help='derain options to compare, each one quoted string ("" is the defaults)',
    )
    parser.add_argument("--large-size", default="4000x3000", help="WIDTHxHEIGHT of the large photo; 0 to skip")
    parser.add_argument("--tag", default=None)
    args = parser.parse_args()

    header = machine_header(torch.device("cpu"))
    print(header)
    tag = args.tag or f"cli_cpu_{datetime.date.today():%Y%m%d}"
    with tempfile.TemporaryDirectory() as work:
        rows = []
        if args.images:
            rows += per_image_rows(args.data, args.images, args.models, args.option_sets, Path(work))
            rows.append(prenet_row())
        if args.large_size != "0":
            rows += large_photo_rows(args.data, args.large_size, args.option_sets, Path(work), tag)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    rows = [{column: row.get(column, "") for column in columns} for row in rows]
    notes = [
        "s per image: the command's loop over the images (decode, derain, encode) divided by their number",
        "command wall s: the whole command, start-up and model loading included",
    ]
    print(write_results(tag, header, rows, notes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
