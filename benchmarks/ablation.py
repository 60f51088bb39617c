"""What each block of the dual-stage network buys at equal CPU budget: the ablation table.

    python benchmarks/ablation.py --data ../shared/data --time-limit 170      # train what is missing, then report
    python benchmarks/ablation.py --data ../shared/data --report-only         # tables and plot from the results

Every configuration is a ``derainzoo.create_model(model, **overrides)`` (its row lists the
overrides) trained from scratch by ``examples/train.py`` with one recipe: Rain100L train pairs
mixed with rain rendered over their clean images (``--rain-mix``), batch 4 of 128^2 crops,
AdamW + cosine, bf16 autocast, channels-last. The budget is wall-clock time on this machine:
each configuration's whole training step (data and rain rendering included) is timed alone,
side by side in one calibration, and a run gets ``budget / step time`` steps. Steps rather than a
timer make a run reproducible and keep its budget exact even when something else shares the
cores; validation is outside the budget.

Each finished run is scored (final EMA weights, outputs rounded to 8 bits, Y channel) on
Rain100L test and on the heavy rain rendered over the 10 held-out training backgrounds, and
appended to ``results/ablation_runs.csv`` with its validation curve in
``results/ablation_curves.csv``. The script runs one training at a time, skips what is done,
and resumes an interrupted run exactly (``examples/train.py`` checkpoints under ``--runs``), so
it can be stopped and restarted across sessions. ``results/ablation_summary.{md,csv}`` (mean and
spread over seeds, each configuration beside the full model) and ``results/ablation_curves.png``
(copied to ``docs/assets`` for the documentation site) are rewritten after every run.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from bench_models import count_flops
from bench_training import training_step
from common import RESULTS_DIR, machine_header, time_call, write_results
from timm.optim import create_optimizer_v2
from timm.utils import ModelEmaV3
from torch.utils.data import DataLoader

import derainzoo
from derainzoo.data import MixedRainDataset, PairedImageFolder
from derainzoo.evaluation import evaluate
from derainzoo.losses import DualStageLoss

REPO = Path(__file__).resolve().parent.parent
TRAIN_SCRIPT = REPO / "examples" / "train.py"
RUNS_CSV = RESULTS_DIR / "ablation_runs.csv"
CURVES_CSV = RESULTS_DIR / "ablation_curves.csv"
CALIBRATION_CSV = RESULTS_DIR / "ablation_calibration.csv"
SUMMARY_TAG = "ablation_summary"
DOCS_FIGURE = REPO / "docs" / "assets" / "ablation_curves.png"  # the copy the documentation site shows
TEST_SIZE = (321, 481)  # Rain100L's landscape images


@dataclasses.dataclass(frozen=True)
class Configuration:
    """One row of the table: a model name, its constructor overrides and what it tests."""

    key: str
    model: str
    overrides: dict
    question: str

    @property
    def overrides_json(self) -> str:
        return json.dumps(self.overrides, sort_keys=True)

    def build(self) -> torch.nn.Module:
        return derainzoo.create_model(self.model, **self.overrides)


# In the order they are trained: the paper's design, then one mechanism taken out at a time.
CONFIGURATIONS = [
    Configuration(
        "full", "dual_stage_derain_tiny", {}, "the paper's design: morphological mask, RainMaskAttention, clustered"
    ),
    Configuration(
        "no_mask_attention",
        "dual_stage_derain_tiny",
        {"stage1_attention": "channel"},
        "(b) stage 1's channel attention without the mask (what any constant mask gives); no mask head",
    ),
    Configuration(
        "window_stage2",
        "dual_stage_derain_tiny",
        {"stage2_attention": "window"},
        "(d) shifted-window attention in place of ClusteredNonLocalWindowAttention in stage 2",
    ),
    Configuration(
        "single_stage",
        "dual_stage_derain_tiny",
        {"stage2_depth": 0, "depths": [2, 2, 2]},
        "(e) stage 1 alone, deeper, at about the same parameters and FLOPs",
    ),
    Configuration("nafnet_lite", "nafnet_lite", {}, "drop-in baseline: a NAFNet of the tiny model's size, as it is"),
    Configuration(
        "nafnet_lite_derainzoo",
        "nafnet_lite",
        {"derainzoo_blocks": True},
        "the same NAFNet with derainzoo's blocks swapped in (mask head, RainMaskAttention, clustered bottleneck)",
    ),
    Configuration(
        "learned_mask",
        "dual_stage_derain_tiny",
        {"mask_source": "learned"},
        "(c) a mask learned by convolutions alone in place of the morphological prior",
    ),
    Configuration(
        "window_stage1",
        "dual_stage_derain_tiny",
        {"stage1_attention": "window"},
        "(b) shifted-window attention in stage 1, no mask",
    ),
    Configuration(
        "naf_mask_stage1",
        "dual_stage_derain_tiny",
        {"stage1_attention": "naf_mask"},
        "(f) stage 1 of NAF blocks whose channel attention pools the background of the morphological mask; "
        "stage 2 clustered",
    ),
    Configuration(
        "naf_stage1",
        "dual_stage_derain_tiny",
        {"stage1_attention": "naf"},
        "(f) the same NAF blocks without the mask: what the mask buys in NAFNet's block",
    ),
]
CONFIGURATIONS_BY_KEY = {configuration.key: configuration for configuration in CONFIGURATIONS}

# The recipe every run shares (examples/train.py arguments); --steps, --seed, --val-every and
# --out are per run.
RECIPE = [
    "--rain-mix",
    "--real-fraction",
    "0.5",
    "--bf16",
    "--channels-last",
    "--batch-size",
    "4",
    "--crop",
    "128",
    "--lr",
    "5e-4",
    "--warmup-steps",
    "300",
    "--val-count",
    "10",
    "--ckpt-every",
    "250",
]
BATCH_SIZE, CROP, REAL_FRACTION, GRAD_CLIP = 4, 128, 0.5, 0.5


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def append_csv(path: Path, rows: list[dict[str, object]]) -> None:
    new = not path.is_file()
    with open(path, "a", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        if new:
            writer.writeheader()
        writer.writerows(rows)


def training_data(data: Path, seed: int = 0) -> MixedRainDataset:
    """The training set of ``examples/train.py`` with the recipe's options."""
    stems = PairedImageFolder(data).stems[:-10]
    pairs = PairedImageFolder(data, crop_size=CROP, augment=True, cache=True, seed=seed, stems=stems)
    return MixedRainDataset(pairs, real_fraction=REAL_FRACTION, seed=seed)


def calibrate(configurations: list[Configuration], data: Path, repeats: int) -> list[dict[str, object]]:
    """Time each configuration's training step (data + model) and its inference, side by side."""
    loader = DataLoader(training_data(data), batch_size=BATCH_SIZE, shuffle=True, drop_last=True)
    batches = list(itertools.islice(iter(loader), repeats + 1))
    begin = time.perf_counter()
    for _ in itertools.islice(iter(loader), repeats):
        pass
    data_seconds = (time.perf_counter() - begin) / repeats
    device = torch.device("cpu")
    criterion = DualStageLoss()
    header = machine_header(device)
    rows = []
    for configuration in configurations:
        torch.manual_seed(0)
        model = configuration.build().train().to(memory_format=torch.channels_last)
        optimizer = create_optimizer_v2(model, "adamw", lr=1e-4, weight_decay=1e-4)
        ema = ModelEmaV3(model, decay=0.999)

        def step(index: int, model=model, optimizer=optimizer, ema=ema) -> None:
            rainy, clean, _ = batches[index % len(batches)]
            rainy = rainy.contiguous(memory_format=torch.channels_last)
            training_step(model, optimizer, criterion, rainy, clean, "bf16", device, index, GRAD_CLIP, ema)

        step_ms, _ = time_call(step, device, repeats, warmup=3)
        model.eval()
        image = torch.rand(1, 3, *TEST_SIZE).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            inference_ms, _ = time_call(lambda _, model=model, image=image: model(image), device, 3, warmup=1)
        row = {
            "key": configuration.key,
            "params": sum(p.numel() for p in model.parameters()),
            "gflops_481x321": round(count_flops(model, TEST_SIZE) / 1e9, 2),
            "cpu_ms_481x321": round(inference_ms),
            "model_step_s": round(step_ms / 1000, 4),
            "data_s": round(data_seconds, 4),
            "step_s": round(step_ms / 1000 + data_seconds, 4),
            "machine": header,
        }
        print(" | ".join(str(value) for value in row.values()), flush=True)
        rows.append(row)
    return rows


def rescale_timing(row: dict[str, object], factor: float) -> dict[str, object]:
    """``row`` with its times multiplied by ``factor``, and the machine note saying so."""
    scaled = dict(row)
    for key in ("model_step_s", "data_s", "step_s"):
        scaled[key] = round(float(row[key]) * factor, 4)
    scaled["cpu_ms_481x321"] = round(float(row["cpu_ms_481x321"]) * factor)
    scaled["machine"] = f"{row['machine']} | times x{factor:.3f} to the first calibration's speed"
    return scaled


def run_folder(runs: Path, key: str, seed: int) -> Path:
    return runs / f"{key}_seed{seed}"


def train(configuration: Configuration, seed: int, steps: int, data: Path, out: Path, minutes: float) -> bool:
    """Run (or resume) ``examples/train.py``; True when it reached its last step."""
    command = [
        sys.executable,
        str(TRAIN_SCRIPT),
        "--data",
        str(data),
        "--model",
        configuration.model,
        "--model-kwargs",
        configuration.overrides_json,
        *RECIPE,
        "--steps",
        str(steps),
        "--val-every",
        str(max(100, steps // 8 // 100 * 100)),
        "--seed",
        str(seed),
        "--time-limit",
        f"{minutes:.1f}",
        "--out",
        str(out),
    ]
    print("$ " + " ".join(command), flush=True)
    subprocess.run(command, check=True)
    return (out / "final_ema.safetensors").is_file()


def score(configuration: Configuration, out: Path, data_root: Path) -> dict[str, float]:
    model = derainzoo.create_model(
        configuration.model, weights=out / "final_ema.safetensors", **configuration.overrides
    ).eval()
    scores = {}
    for name, folder in (("rain100l", data_root / "Rain100L_test"), ("heavy_val", out / "val_heavy")):
        result = evaluate(model, folder, progress=False)
        scores[f"{name}_psnr"], scores[f"{name}_ssim"] = round(result.psnr, 3), round(result.ssim, 4)
    return scores


def curve_rows(configuration: Configuration, seed: int, out: Path, step_s: float) -> list[dict[str, object]]:
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line.strip()]
    return [
        {
            "key": configuration.key,
            "seed": seed,
            "step": record["step"],
            "budget_hours": round(record["step"] * step_s / 3600, 4),
            "val_psnr": round(record["val_psnr"], 3),
            "val_heavy_psnr": round(record["val_heavy_psnr"], 3),
        }
        for record in records
    ]


def spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.2f} ± {(max(values) - min(values)) / 2:.2f}" if len(values) > 1 else f"{mean:.2f}"


def report() -> None:
    """Summary table (mean ± half the range over seeds) and the validation curves."""
    runs = read_csv(RUNS_CSV)
    if not runs:
        print("no finished runs yet")
        return
    full = [row for row in runs if row["key"] == "full"]
    reference = {m: statistics.fmean(float(r[m]) for r in full) for m in ("rain100l_psnr", "heavy_val_psnr")}
    rows = []
    for configuration in CONFIGURATIONS:
        done = [row for row in runs if row["key"] == configuration.key]
        if not done:
            continue
        psnr = {m: [float(r[m]) for r in done] for m in ("rain100l_psnr", "heavy_val_psnr")}
        rows.append(
            {
                "configuration": configuration.key,
                "model": configuration.model,
                "overrides": configuration.overrides_json,
                "seeds": len(done),
                "params": done[0]["params"],
                "GFLOPs (481x321)": done[0]["gflops_481x321"],
                "CPU ms (481x321)": done[0]["cpu_ms_481x321"],
                "step s": done[0]["step_s"],
                "steps": done[0]["steps"],
                "budget h": done[0]["budget_hours"],
                "Rain100L test PSNR": spread(psnr["rain100l_psnr"]),
                "vs full": f"{statistics.fmean(psnr['rain100l_psnr']) - reference['rain100l_psnr']:+.2f}"
                if full
                else "",
                "Rain100L SSIM": f"{statistics.fmean(float(r['rain100l_ssim']) for r in done):.4f}",
                "heavy val PSNR": spread(psnr["heavy_val_psnr"]),
                "heavy vs full": f"{statistics.fmean(psnr['heavy_val_psnr']) - reference['heavy_val_psnr']:+.2f}"
                if full
                else "",
                "question": configuration.question,
            }
        )
    machines = sorted({row["machine"] for row in runs})
    notes = [
        "PSNR/SSIM: Y channel, outputs rounded to 8 bits, final EMA weights; mean ± half the range over seeds",
        "budget: steps = budget / step time, the step (data, rain rendering, forward, backward, AdamW, EMA) timed "
        "alone in results/ablation_calibration.csv; validation outside the budget",
        "recipe: examples/train.py " + " ".join(RECIPE) + " (from scratch; --steps per the budget, seeds listed)",
        "heavy val: heavy rain rendered over the 10 held-out Rain100L train backgrounds (train.py --rain-mix)",
    ]
    print(write_results(SUMMARY_TAG, "\n".join(machines), rows, notes))
    plot_curves()


def plot_curves() -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no plot", file=sys.stderr)
        return
    curves = read_csv(CURVES_CSV)
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for axis, metric, title in zip(
        axes, ("val_psnr", "val_heavy_psnr"), ("Rain100L validation (10 held-out train pairs)", "heavy rendered val")
    ):
        for configuration in CONFIGURATIONS:
            for seed, points in itertools.groupby(
                (row for row in curves if row["key"] == configuration.key), key=lambda row: row["seed"]
            ):
                points = list(points)
                axis.plot(
                    [float(p["budget_hours"]) for p in points],
                    [float(p[metric]) for p in points],
                    marker="o",
                    markersize=3,
                    linestyle="-" if seed == "0" else "--",
                    color=f"C{CONFIGURATIONS.index(configuration)}",
                    label=configuration.key if seed == "0" else None,
                )
        axis.set_title(title)
        axis.set_xlabel("hours of training budget (2-core CPU, calibrated step time)")
        axis.set_ylabel("PSNR (dB, Y)")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle("Ablation at equal CPU budget (solid: seed 0, dashed: seed 1)")
    figure.tight_layout()
    for path in (RESULTS_DIR / "ablation_curves.png", DOCS_FIGURE):
        figure.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="holds Rain100L_train/test")
    parser.add_argument("--configurations", nargs="+", default=[c.key for c in CONFIGURATIONS])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--budget-minutes", type=float, default=45.0, help="training budget of every run")
    parser.add_argument("--time-limit", type=float, default=None, help="minutes for this invocation; resumable")
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "ablation", help="training checkpoints and logs")
    parser.add_argument("--calibration-repeats", type=int, default=20)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    unknown = sorted(set(args.configurations) - set(CONFIGURATIONS_BY_KEY))
    if unknown:
        raise SystemExit(f"unknown configurations {unknown}; known: {', '.join(CONFIGURATIONS_BY_KEY)}")
    if args.report_only:
        report()
        return 0
    deadline = None if args.time_limit is None else time.monotonic() + 60 * args.time_limit
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)

    calibrated = {row["key"]: row for row in read_csv(CALIBRATION_CSV)}
    missing = [CONFIGURATIONS_BY_KEY[key] for key in args.configurations if key not in calibrated]
    if missing:
        # The full model is timed again beside the new ones: the machine's speed drifts (10-15 %
        # between sessions on a shared host), so the new rows are rescaled by first/now of the
        # full model, and every budget stays in the first calibration's CPU-seconds.
        retime_full = bool(calibrated) and "full" not in [c.key for c in missing]
        if retime_full:
            missing.insert(0, CONFIGURATIONS_BY_KEY["full"])
        rows = calibrate(missing, args.data / "Rain100L_train", args.calibration_repeats)
        if retime_full:
            first, now = float(calibrated["full"]["step_s"]), float(rows.pop(0)["step_s"])
            print(
                f"full model re-timed: {now} s/step (first calibration: {first}); new rows scaled by {first / now:.3f}"
            )
            rows = [rescale_timing(row, first / now) for row in rows]
        for row in rows:
            append_csv(CALIBRATION_CSV, [row])
            calibrated[row["key"]] = {key: str(value) for key, value in row.items()}

    finished = {(row["key"], int(row["seed"])) for row in read_csv(RUNS_CSV)}
    for seed, key in itertools.product(args.seeds, args.configurations):
        if (key, seed) in finished:
            continue
        minutes_left = None if deadline is None else (deadline - time.monotonic()) / 60
        if minutes_left is not None and minutes_left < 2:
            print("time limit reached; rerun to continue")
            break
        configuration, timing = CONFIGURATIONS_BY_KEY[key], calibrated[key]
        step_s = float(timing["step_s"])
        steps = round(60 * args.budget_minutes / step_s)
        out = run_folder(args.runs, key, seed)
        if not train(configuration, seed, steps, args.data / "Rain100L_train", out, minutes_left or 1e6):
            print(f"{key} seed {seed} stopped before step {steps}; rerun to resume it exactly")
            break
        scores = score(configuration, out, args.data)
        log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line.strip()]
        row = {
            "key": key,
            "model": configuration.model,
            "overrides": configuration.overrides_json,
            "seed": seed,
            "params": timing["params"],
            "gflops_481x321": timing["gflops_481x321"],
            "cpu_ms_481x321": timing["cpu_ms_481x321"],
            "step_s": step_s,
            "steps": steps,
            "budget_hours": round(steps * step_s / 3600, 3),
            "wall_hours": round(log[-1]["hours"], 3),
            **scores,
            "machine": timing["machine"],
        }
        append_csv(RUNS_CSV, [row])
        append_csv(CURVES_CSV, curve_rows(configuration, seed, out, step_s))
        print(json.dumps(row), flush=True)
        report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
