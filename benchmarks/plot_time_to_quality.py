"""Time-to-quality curves: validation PSNR against hours of training, from ``examples/train.py`` logs.

    python benchmarks/plot_time_to_quality.py runs/rain_mix_p1/log.jsonl --label "dual_stage_derain, rain mix" \
        --tag time_to_quality_rain_mix

Every ``log.jsonl`` line holds the step, the hours of training so far (all phases of a resumed
run together) and the validation scores. Several logs can be drawn together (``--label`` once per
log); logs of later phases that started from an earlier phase's weights can be chained with
``--offset-hours`` so their curve continues the first. Writes ``benchmarks/results/<tag>.md``
(a table) and ``<tag>.png`` (needs matplotlib: the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common import RESULTS_DIR


def read_log(path: Path, offset_hours: float) -> list[dict[str, float]]:
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for record in records:
        if "hours" not in record:
            raise SystemExit(f"{path}: records without 'hours' (written before train.py logged time); cannot plot")
        record["hours"] += offset_hours
    return records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logs", nargs="+", type=Path, help="log.jsonl files of examples/train.py")
    parser.add_argument("--label", action="append", help="one per log (default: the log's folder name)")
    parser.add_argument("--offset-hours", type=float, action="append", help="one per log: hours trained before it")
    parser.add_argument(
        "--reference", type=float, action="append", default=[], help="horizontal line, e.g. a peer's PSNR"
    )
    parser.add_argument("--reference-label", action="append", default=[])
    parser.add_argument("--machine", default="", help="the machine the runs trained on, for the caption")
    parser.add_argument("--tag", default="time_to_quality")
    args = parser.parse_args()

    labels = args.label or [log.parent.name for log in args.logs]
    offsets = args.offset_hours or [0.0] * len(args.logs)
    if len(labels) != len(args.logs) or len(offsets) != len(args.logs):
        raise SystemExit("give --label and --offset-hours once per log, or not at all")
    curves = {label: read_log(log, offset) for log, label, offset in zip(args.logs, labels, offsets)}
    metrics = sorted({key for records in curves.values() for key in records[0] if key.endswith("_psnr")})

    lines = [f"Validation PSNR (dB) against hours of training. {args.machine}".strip(), ""]
    lines += ["| run | step | hours | " + " | ".join(metrics) + " |", "|---|---|---|" + "---|" * len(metrics)]
    for label, records in curves.items():
        for record in records:
            scores = " | ".join(f"{record[m]:.2f}" if m in record else "" for m in metrics)
            lines.append(f"| {label} | {record['step']} | {record['hours']:.2f} | {scores} |")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{args.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): table only", file=sys.stderr)
        return 0
    figure, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4), squeeze=False)
    for axis, metric in zip(axes[0], metrics):
        for label, records in curves.items():
            points = [(r["hours"], r[metric]) for r in records if metric in r]
            axis.plot(*zip(*points), marker="o", label=label)
        for value, name in zip(args.reference, args.reference_label + [""] * len(args.reference)):
            axis.axhline(value, linestyle="--", color="grey")
            axis.annotate(name, (0, value), textcoords="offset points", xytext=(4, 3), fontsize=8, color="grey")
        axis.set_xlabel("hours of training" + (f" ({args.machine})" if args.machine else ""))
        axis.set_ylabel(f"{metric.removesuffix('_psnr')} PSNR (dB, Y)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(RESULTS_DIR / f"{args.tag}.png", dpi=110)
    print(f"wrote {RESULTS_DIR / (args.tag + '.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
