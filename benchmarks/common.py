"""What the benchmark scripts share: the machine header, timing, and writing result tables."""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

import derainzoo

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def parse_size(text: str) -> tuple[int, int]:
    """``(height, width)`` of ``"HxW"``, or of ``"S"`` for a square."""
    height, _, width = text.partition("x")
    return int(height), int(width or height)


def parse_named_folder(text: str) -> tuple[str, Path]:
    """``(name, folder)`` of a ``NAME=FOLDER`` argument (an argparse ``type``)."""
    name, separator, folder = text.partition("=")
    if not separator or not name or not folder:
        raise argparse.ArgumentTypeError(f"expected NAME=FOLDER, got {text!r}")
    return name, Path(folder)


def parse_width_by_height(text: str) -> tuple[int, int]:
    """``(height, width)`` of a photo size written ``"WIDTHxHEIGHT"`` (as cameras state it)."""
    width, height = (int(value) for value in text.lower().split("x"))
    return height, width


def run_in_fresh_process(code: str, *args: object) -> dict[str, object]:
    """Run ``python -c code args...`` and return the JSON object of its last output line
    (for figures that are per process, such as peak memory or the allocator's state)."""
    result = subprocess.run(
        [sys.executable, "-c", code, *(str(arg) for arg in args)], capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def machine_header(device: torch.device) -> str:
    """One line naming the date, device, CPU threads and library versions."""
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return (
        f"date {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC} | device {device.type} ({card}) | "
        f"{torch.get_num_threads()} CPU threads | python {platform.python_version()} | torch {torch.__version__} | "
        f"derainzoo {derainzoo.__version__}"
    )


def add_timing_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every timing benchmark takes: repeats, warm-up calls and the result tag."""
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--tag", default=None, help="name of the result files (default: what, device and date)")


def start(args: argparse.Namespace) -> tuple[torch.device, str]:
    """The device of ``args.device`` and the machine header, printed."""
    device = torch.device(args.device)
    header = machine_header(device)
    print(header)
    return device, header


def time_call(
    run: Callable[[int], object], device: torch.device, repeats: int, warmup: int
) -> tuple[float, float | None]:
    """Median milliseconds of ``run(index)`` over ``repeats`` calls after ``warmup`` calls, and the
    peak CUDA memory in GiB (None on the CPU). CUDA calls are timed with CUDA events."""
    for index in range(warmup):
        run(index)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for index in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run(index)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            begin = time.perf_counter()
            run(index)
            times.append((time.perf_counter() - begin) * 1000)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    return statistics.median(times), peak


def write_results(tag: str, header: str, rows: Sequence[dict[str, object]], notes: Sequence[str] = ()) -> str:
    """Write ``RESULTS_DIR/<tag>.csv`` and ``<tag>.md`` (header, notes, table); return the table."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    with open(RESULTS_DIR / f"{tag}.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(str(value) for value in row.values()) + " |" for row in rows]
    table = "\n".join(lines)
    extra = "".join(f"- {note}\n" for note in notes)
    (RESULTS_DIR / f"{tag}.md").write_text(f"{header}\n\n{table}\n" + (f"\n{extra}" if extra else ""))
    return table
