"""CPU backends side by side: eager fp32, eager bf16 autocast, ONNX Runtime, OpenVINO (when
installed) and int8 dynamic quantisation, each timed and checked for PSNR parity on Rain100L test.

    python benchmarks/bench_backends.py --data ../shared/data --models dual_stage_derain dual_stage_derain_tiny \
        --sizes 321x481 1024 --parity-images 100

For every model (bundled weights) and backend: median forward latency at each size (batch 1,
after warm-up) and Y-channel PSNR on the first ``--parity-images`` Rain100L test pairs, whole
images, with its difference from eager fp32. A backend is faithful when that difference is within
0.05 dB. Writes ``benchmarks/results/<tag>.{csv,md}``.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import importlib.util
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from common import add_timing_arguments, parse_size, start, time_call, write_results

import derainzoo
from derainzoo.data import PairedImageFolder
from derainzoo.export import ONNX_INPUT_NAME, ONNX_OUTPUT_NAME, export_onnx
from derainzoo.inference import prepare_for_inference
from derainzoo.metrics import psnr_y

Forward = Callable[[torch.Tensor], torch.Tensor]


def eager(model: torch.nn.Module, bf16: bool) -> Forward:
    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return model(x.contiguous(memory_format=torch.channels_last)).float()

    return forward


def onnxruntime_backend(onnx_path: Path) -> Forward:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run([ONNX_OUTPUT_NAME], {ONNX_INPUT_NAME: x.numpy()})[0])


def openvino_backend(onnx_path: Path) -> Forward:
    import openvino

    compiled = openvino.Core().compile_model(str(onnx_path), "CPU")
    return lambda x: torch.from_numpy(np.asarray(compiled(x.numpy())[0]))


def int8_dynamic(model: torch.nn.Module) -> Forward:
    quantized = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return eager(quantized, bf16=False)


def backends(model: torch.nn.Module, onnx_path: Path) -> Iterator[tuple[str, Forward]]:
    """Every backend available here, built one at a time (the ONNX ones from one export)."""
    yield "eager fp32", eager(model, bf16=False)
    yield "eager bf16 autocast", eager(model, bf16=True)
    yield "int8 dynamic (Linear)", int8_dynamic(model)
    if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnxscript"):
        export_onnx(copy.deepcopy(model).to(memory_format=torch.contiguous_format), onnx_path)
        yield "onnxruntime", onnxruntime_backend(onnx_path)
        if importlib.util.find_spec("openvino"):
            yield "openvino", openvino_backend(onnx_path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--models", nargs="+", default=["dual_stage_derain", "dual_stage_derain_tiny"])
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=[(321, 481), (1024, 1024)])
    parser.add_argument("--parity-images", type=int, default=100)
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
            for backend, forward in backends(model, Path(folder) / f"{name}.onnx"):
                scores = [float(psnr_y(forward(rainy[None]).clamp(0, 1), clean[None])) for rainy, clean, _ in pairs]
                psnr = float(np.mean(scores))
                reference_psnr = psnr if reference_psnr is None else reference_psnr
                row: dict[str, object] = {
                    "model": name,
                    "backend": backend,
                    "Rain100L PSNR": round(psnr, 3),
                    "vs eager fp32 dB": round(psnr - reference_psnr, 3),
                }
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
