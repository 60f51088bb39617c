"""Time in the kernel while deraining a large image: glibc's default malloc against
derainzoo.allocator.keep_freed_memory(), each in a fresh process, side by side.

    python benchmarks/bench_allocator.py --sizes 1280x960 4000x3000

Each process derains a random image of the size with ``derain()`` (default model, bundled weights,
automatic tiling under the default 2 GiB budget) after one small warm-up call, and reports wall,
user and system seconds, minor page faults and the peak resident memory. Writes
``benchmarks/results/<tag>.{csv,md}``.
"""

from __future__ import annotations

import argparse
import datetime

import torch
from common import machine_header, parse_width_by_height, run_in_fresh_process, write_results

CHILD = """
import json, resource, sys, time
import torch
from derainzoo.allocator import keep_freed_memory
applied = keep_freed_memory() if sys.argv[3] == "keep_freed_memory" else False
from derainzoo.inference import default_model, derain
model = default_model("cpu")
derain(torch.rand(1, 3, 64, 64), model)
image = torch.rand(1, 3, int(sys.argv[1]), int(sys.argv[2]))
before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
derain(image, model)
after, seconds = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - start
print(json.dumps({"applied": applied, "wall s": round(seconds, 1), "user s": round(after.ru_utime - before.ru_utime, 1),
                  "sys s": round(after.ru_stime - before.ru_stime, 1), "page faults": after.ru_minflt - before.ru_minflt,
                  "peak MiB": round(after.ru_maxrss / 1024)}))
"""

MODES = ("glibc default", "keep_freed_memory")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["1280x960"], help="WIDTHxHEIGHT")
    parser.add_argument("--tag", default=None)
    args = parser.parse_args()
    header = machine_header(torch.device("cpu"))
    print(header)
    rows = []
    for size in args.sizes:
        height, width = parse_width_by_height(size)
        for mode in MODES:
            row = {"size": size, "allocator": mode, **run_in_fresh_process(CHILD, height, width, mode)}
            print(row, flush=True)
            rows.append(row)
    tag = args.tag or f"allocator_cpu_{datetime.date.today():%Y%m%d}"
    print(write_results(tag, header, rows, ["derain() with automatic tiling under the default 2 GiB budget"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
