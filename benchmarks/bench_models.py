"""Parameters, FLOPs and latency of every derainzoo variant, beside PReNet6 (written from its
paper, random weights: timing needs none).

Examples:
    python benchmarks/bench_models.py --device cpu --sizes 321x481 --layouts nchw channels_last
    python benchmarks/bench_models.py --device cuda --sizes 256 512 1024 --dtypes fp32 bf16 --compile

Results are printed as a Markdown table and written to ``benchmarks/results/`` (CSV + Markdown),
headed by the machine, library versions and date.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import sys

import torch
from common import add_timing_arguments, parse_size, start, time_call, write_results
from prenet import PReNet6
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import derainzoo

BASELINES = {"prenet6": PReNet6}
"""Peer models timed beside derainzoo's (not registered: they have no weights here)."""


def count_flops(model: torch.nn.Module, size: tuple[int, int]) -> float:
    """FLOPs of one forward pass (2 per multiply-add); SDPA counted through its math kernel,
    which is the only one FlopCounterMode sees on the CPU."""
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(torch.rand(1, 3, *size))
    return counter.get_total_flops()


def time_forward(model, size, device, dtype_name, repeats, warmup) -> tuple[float, float | None]:
    """Median latency in ms on three rotating inputs, and peak CUDA memory (GiB)."""
    inputs = [torch.rand(1, 3, *size, device=device) for _ in range(3)]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype_name == "bf16")
    with torch.inference_mode(), autocast:
        return time_call(lambda index: model(inputs[index % 3]), device, repeats, warmup)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--models", nargs="+", default=[*derainzoo.list_models(), *BASELINES], help="derainzoo models and prenet6"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=[(321, 481)], help="HxW or S (square)")
    parser.add_argument("--dtypes", nargs="+", choices=["fp32", "bf16"], default=["fp32"])
    parser.add_argument(
        "--layouts",
        nargs="+",
        choices=["nchw", "channels_last"],
        default=["channels_last"],
        help="memory layouts of the model to time (derainzoo's default model runs channels-last)",
    )
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd models")
    add_timing_arguments(parser)
    args = parser.parse_args()

    device, header = start(args)
    rows = []
    for name in args.models:
        model = (BASELINES[name]() if name in BASELINES else derainzoo.create_model(name)).eval()
        params = sum(p.numel() for p in model.parameters()) / 1e6
        gflops = count_flops(model, (256, 256)) / 1e9
        variants = []
        for layout in args.layouts:
            memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
            laid_out = copy.deepcopy(model).to(device, memory_format=memory_format)
            variants.append((f"eager {layout}", laid_out))
            if args.compile:
                variants.append((f"compile {layout}", torch.compile(laid_out)))
        for mode, runnable in variants:
            for dtype_name in args.dtypes:
                for size in args.sizes:
                    try:
                        latency, peak = time_forward(runnable, size, device, dtype_name, args.repeats, args.warmup)
                    except torch.OutOfMemoryError:
                        latency, peak = float("nan"), float("nan")
                        torch.cuda.empty_cache()
                    row = {
                        "model": name,
                        "params_M": f"{params:.3f}",
                        "GFLOPs@256": f"{gflops:.2f}",
                        "mode": mode,
                        "dtype": dtype_name,
                        "size": f"{size[0]}x{size[1]}",
                        "latency_ms": f"{latency:.1f}",
                        "peak_GiB": "" if peak is None else f"{peak:.2f}",
                    }
                    rows.append(row)
                    print(" | ".join(row.values()), flush=True)

    tag = args.tag or f"models_{device.type}_{datetime.date.today():%Y%m%d}"
    print(write_results(tag, header, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
