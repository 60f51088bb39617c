"""Peak memory (RSS) of derain() on large photos: whole image, fixed tiles, and the automatic
choice under the default memory budget, on the CPU.

    python benchmarks/bench_tiling_memory.py --megapixels 1 4 12 --tile 256

Each measurement runs in a fresh process (peak RSS is per process), on a random image of the
given size, with the bundled default model. Writes ``benchmarks/results/tiling_memory_cpu_<date>``.
"""

from __future__ import annotations

import argparse
import datetime
import math
import sys

import torch
from common import machine_header, run_in_fresh_process, write_results

CHILD = """
import json, resource, sys, time
import torch
from derainzoo.inference import default_model, derain
from derainzoo.tiling import choose_tile_size
height, width = int(sys.argv[1]), int(sys.argv[2])
tile = None if sys.argv[3] == "auto" else int(sys.argv[3])  # None: derain() chooses; 0: whole image
model = default_model("cpu")
image = torch.rand(1, 3, height, width)
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
derain(image, model, tile_size=tile)
print(json.dumps({"seconds": time.perf_counter() - start, "auto_tile": choose_tile_size(model, height, width),
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "before_mib": baseline / 1024}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megapixels", nargs="+", type=float, default=[1, 4, 12])
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--whole-max-megapixels", type=float, default=4, help="skip whole-image runs above this")
    parser.add_argument("--tag", default=None)
    args = parser.parse_args()

    header = machine_header(torch.device("cpu"))
    print(header)
    rows = []
    for megapixels in args.megapixels:
        # A 4:3 photo of the requested size.
        width = int(math.sqrt(megapixels * 1e6 * 4 / 3))
        height = int(megapixels * 1e6 / width)
        for tile in (0, args.tile, "auto"):
            if tile == 0 and megapixels > args.whole_max_megapixels:
                continue
            figures = run_in_fresh_process(CHILD, height, width, tile)
            if tile == "auto":
                chosen = figures["auto_tile"]
                mode = f"automatic ({'whole image' if chosen == 0 else f'tiles of {chosen}'})"
            else:
                mode = f"tiles of {tile}" if tile else "whole image"
            row = {
                "image": f"{width}x{height} ({megapixels:g} MP)",
                "mode": mode,
                "peak_RSS_MiB": f"{figures['peak_mib']:.0f}",
                "seconds": f"{figures['seconds']:.1f}",
            }
            rows.append(row)
            print(" | ".join(row.values()), flush=True)
    tag = args.tag or f"tiling_memory_cpu_{datetime.date.today():%Y%m%d}"
    print(write_results(tag, f"{header}\n\nbundled default model, fp32, tile overlap 32", rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
