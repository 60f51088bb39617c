"""CPU backends side by side: eager fp32, eager bf16 autocast, ONNX Runtime, OpenVINO (fp32, bf16
and its own choice; when installed) and int8 dynamic quantisation, each timed and checked for
PSNR parity on Rain100L test.

    python benchmarks/bench_backends.py --data ../shared/data --models dual_stage_derain dual_stage_derain_tiny \
        --sizes 321x481 1024 --parity-images 100

For every model (bundled weights) and backend: median forward latency at each size (batch 1,
after warm-up) and Y-channel PSNR on the first ``--parity-images`` Rain100L test pairs, whole
images, with its difference from the first backend (eager fp32 by default). A backend is
faithful when that difference is within 0.05 dB. ``--parity-images 0`` times only;
``--backends`` picks rows. Writes ``benchmarks/results/<tag>.{csv,md}``.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from common import add_timing_arguments, parse_size, start, time_call, write_results

import derainzoo
from derainzoo.backends import load_backend
from derainzoo.data import PairedImageFolder
from derainzoo.inference import prepare_for_inference
from derainzoo.metrics import psnr_y

Forward = Callable[[torch.Tensor], torch.Tensor]

# (row name, backend, precision): every way derainzoo runs a model, then int8 for comparison.
VARIANTS = (
    ("eager fp32", "torch", "fp32"),
    ("eager bf16 autocast", "torch", "bf16"),
    ("onnxruntime", "onnxruntime", "fp32"),
    ("openvino fp32", "openvino", "fp32"),
    ("openvino bf16", "openvino", "bf16"),
    ("openvino auto", "openvino", "auto"),
)


def eager(model: torch.nn.Module, bf16: bool) -> Forward:
    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return model(x.contiguous(memory_format=torch.channels_last)).float()

    return forward


def int8_dynamic(model: torch.nn.Module) -> Forward:
    quantized = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return eager(quantized, bf16=False)


def backends(model: torch.nn.Module, cache: Path, chosen: set[str]) -> Iterator[tuple[str, Forward]]:
    """Every chosen backend that is installed here, built one at a time (the graph ones from one
    export, through ``derainzoo.backends.load_backend``)."""
    for name, backend, precision in VARIANTS:
        if name not in chosen:
            continue
        if backend == "torch":
            yield name, eager(model, bf16=precision == "bf16")
            continue
        try:
            runtime = load_backend(model, backend, cache_dir=cache, precision=precision)
        except ImportError as error:
            print(f"skipping {name}: {error}", file=sys.stderr)
            continue
        yield name, lambda x, runtime=runtime: runtime(x)
    if "int8 dynamic (Linear)" in chosen:
        yield "int8 dynamic (Linear)", int8_dynamic(model)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--models", nargs="+", default=["dual_stage_derain", "dual_stage_derain_tiny"])
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=[(321, 481), (1024, 1024)])
    parser.add_argument("--parity-images", type=int, default=100, help="0 times only")
    names = [name for name, _, _ in VARIANTS] + ["int8 dynamic (Linear)"]
    parser.add_argument("--backends", nargs="+", choices=names, default=names, metavar="NAME", help=", ".join(names))
    parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    add_timing_arguments(parser)
    args = parser.parse_args()
    device, header = start(args)
    test_set = PairedImageFolder(args.data / "Rain100L_test")
    pairs = [test_set[index] for index in range(min(args.parity_images, len(test_set)))]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models:
            model = prepare_for_inference(derainzoo.create_model(name, pretrained=True), device)
            reference_psnr = None
            for backend, forward in backends(model, Path(folder), set(args.backends)):
                row: dict[str, object] = {"model": name, "backend": backend}
                if pairs:
                    scores = [float(psnr_y(forward(rainy[None]).clamp(0, 1), clean[None])) for rainy, clean, _ in pairs]
                    psnr = float(np.mean(scores))
                    reference_psnr = psnr if reference_psnr is None else reference_psnr
                    row["Rain100L PSNR"] = round(psnr, 3)
                    row[f"vs {args.backends[0]} dB"] = round(psnr - reference_psnr, 3)
                for size in args.sizes:
                    image = torch.rand(1, 3, *size)
                    latency, _ = time_call(
                        lambda _, image=image, forward=forward: forward(image), device, args.repeats, args.warmup
                    )
                    row[f"ms {size[0]}x{size[1]}"] = round(latency, 1)
                print(row, flush=True)
                rows.append(row)
    tag = args.tag or f"backends_cpu_{datetime.date.today():%Y%m%d}"
    notes = [f"PSNR parity on the first {len(pairs)} Rain100L test pairs, whole images, Y channel"]
    print(write_results(tag, header, rows, notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
