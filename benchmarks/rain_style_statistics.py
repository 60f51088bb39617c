"""How much rain each renderer style adds: mean |rainy - clean| on the 0-255 scale, the medium
preset plus one style, on Rain100L *training* backgrounds (no camera effects).

    python benchmarks/rain_style_statistics.py --data ../shared/data

Image ``k`` gets ``sample_rain_params("medium", Generator().manual_seed(k), styles=[style])``
rendered with the generator seeded ``1000 + k``, as the preset table of the renderer's test does.
Writes ``benchmarks/results/<tag>.{csv,md}``.
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

import numpy as np
import torch
from common import machine_header, write_results

from derainzoo.data import RAIN_STYLES, PairedImageFolder, render_rain, sample_rain_params


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--images", type=int, default=30, help="Rain100L training backgrounds 001..N")
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--tag", default=None)
    args = parser.parse_args()
    header = machine_header(torch.device("cpu"))
    print(header)
    pairs = PairedImageFolder(
        args.data / "Rain100L_train", stems=[f"{index:03d}" for index in range(1, args.images + 1)]
    )
    cleans = [pairs[index][1] for index in range(len(pairs))]
    variants = [("none", {}), *((style, {"styles": [style]}) for style in RAIN_STYLES)]
    variants.append(("every style at p = 0.5", {"style_probability": 0.5}))
    rows = []
    for name, options in variants:
        changes = []
        for index, clean in enumerate(cleans):
            params = sample_rain_params(
                args.preset, torch.Generator().manual_seed(index), camera_effects=False, **options
            )
            rainy = render_rain(clean[None], params, torch.Generator().manual_seed(1000 + index)).rainy[0]
            changes.append(float((rainy - clean).abs().mean() * 255))
        row = {
            "style": name,
            "mean abs(rainy - clean)": round(float(np.mean(changes)), 1),
            "min": round(min(changes), 1),
            "max": round(max(changes), 1),
        }
        print(row, flush=True)
        rows.append(row)
    tag = args.tag or f"rain_styles_{datetime.date.today():%Y%m%d}"
    print(
        write_results(
            tag, header, rows, [f"preset {args.preset} plus the style, {len(cleans)} Rain100L training backgrounds"]
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
