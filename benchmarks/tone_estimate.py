"""Can a model's own features tell each output's overall brightness error? A linear estimate of
it, fitted on rain over training backgrounds and scored on held-out sets: what a global tone head
on the network's pooled features could buy, measured before one is built.

    python benchmarks/tone_estimate.py --data ../shared/data/Rain100L_train \\
        --val-set heavy_haze_curtain=runs/val_heavy_haze_curtain --val-set heavy_wide=runs/val_heavy_wide

[`global_tone.py`](global_tone.py) shows what a *perfect* per-channel offset would buy (the
oracle reads the ground truth). This asks how much of it is predictable: the model derains
every image of the fit sets (the first ``--fit-count`` backgrounds of ``--data``: its own rainy
images, and rain rendered over their clean images: heavy, heavy with every style at 0.5, heavy
with haze, heavy with haze and curtains, medium with every style at 0.5), each output's
per-channel offset ``mean(clean - output)`` is the target, and the features are the mean and
standard deviation over pixels of every channel of the bottleneck (the last ``feature_info``
stage) and of the last head's input (``forward_features``): what a head on pooled features
sees. A weighted ridge regression per ``--ridge`` strength and ``--own-weight`` (the weight of
each of the data's own rainy images against 1 for a rendered one; 5 gives the own rain half the
fit, as ``examples/train.py --real-fraction 0.5`` trains; features standardised, intercept free)
maps features to offsets; each held-out set is scored with the estimated offset added to every output
(then clamped and rounded, as ``derainzoo eval`` scores; the last ``--holdout`` pairs of ``--data``
are always one of them, ``own val``): Y PSNR and the mean absolute mean error (levels of
255) before -> after, and the image whose brightness the estimate moves most. Outputs come from
``derain(..., precision="bf16")`` on whole images (fast on CPUs with bf16 units; within 0.02 dB
of fp32 here). Writes ``benchmarks/results/<tag>.{csv,md}``.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import torch
from common import machine_header, parse_named_folder, write_results
from torch import Tensor, nn
from tqdm import tqdm

import derainzoo
from derainzoo.data import PairedImageFolder, write_rendered_pairs
from derainzoo.inference import derain
from derainzoo.metrics import mean_error, psnr_y, quantize

FIT_RAIN = {
    "heavy": ("heavy", 0.0),
    "heavy_styles": ("heavy", 0.5),
    "heavy_haze": ("heavy", {"haze": 1.0}),
    "heavy_haze_curtain": ("heavy", {"curtain": 1.0, "haze": 1.0}),
    "medium_styles": (0.5, 0.5),
}
"""The rendered fit sets: name -> (strength, style_probability) of ``write_rendered_pairs``."""


class PooledFeatures:
    """Mean and std over pixels of every channel of the bottleneck and of the last head's input,
    recorded by hooks during a forward pass: ``(2 * (C_bottleneck + C_head),)`` per image."""

    def __init__(self, model: nn.Module) -> None:
        self.pooled: dict[str, Tensor] = {}
        bottleneck = model.get_submodule(model.feature_info[-1]["module"])
        bottleneck.register_forward_hook(lambda module, inputs, output: self._record("bottleneck", output))
        head = model.stage2_head if model.stage2_head is not None else model.stage1_head
        head.register_forward_pre_hook(lambda module, inputs: self._record("head", inputs[0]))

    def _record(self, name: str, features: Tensor) -> None:
        flat = features.float().flatten(2)
        self.pooled[name] = torch.cat([flat.mean(2), flat.std(2)], dim=1)[0]

    def take(self) -> Tensor:
        features = torch.cat([self.pooled.pop("bottleneck"), self.pooled.pop("head")])
        return features.double()


def derain_folder(model: nn.Module, hooks: PooledFeatures, folder: Path, stems: list[str] | None) -> list[dict]:
    """Derain every pair of ``folder``: features, output and clean image of each."""
    pairs = PairedImageFolder(folder, stems=stems)
    rows = []
    for index in tqdm(range(len(pairs)), desc=folder.name, unit="image"):
        rainy, clean, stem = pairs[index]
        output = derain(rainy[None], model, tile_size=0, scale=None, precision="bf16").float()
        rows.append(dict(stem=stem, features=hooks.take(), output=output, clean=clean[None]))
    return rows


def _design(features: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """Standardised features with a column of ones for the intercept: ``(N, F + 1)``."""
    return torch.cat([(features - mean) / std, torch.ones(len(features), 1, dtype=features.dtype)], 1)


def fit_ridge(
    features: Tensor, targets: Tensor, strength: float, sample_weights: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Weighted ridge regression on standardised features with a free intercept.

    Args:
        features: ``(N, F)``.
        targets: ``(N, 3)``.
        strength: the ridge penalty on every weight but the intercept.
        sample_weights: ``(N,)`` weight of each sample in the squared error; default all 1.

    Returns:
        ``(weights, mean, std)`` for [`estimate_offsets`][estimate_offsets].
    """
    mean, std = features.mean(0), features.std(0) + 1e-6
    design = _design(features, mean, std)
    weighted = design if sample_weights is None else design * sample_weights[:, None]
    penalty = strength * torch.eye(design.shape[1], dtype=design.dtype)
    penalty[-1, -1] = 0
    return torch.linalg.solve(weighted.T @ design + penalty, weighted.T @ targets), mean, std


def estimate_offsets(features: Tensor, weights: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """``(N, 3)`` offsets for ``(N, F)`` features."""
    return _design(features, mean, std) @ weights


def score(rows: list[dict], offsets: Tensor) -> tuple[float, float, float, float, str]:
    """Mean PSNR before/after, mean |mean error| before/after, and the image moved most."""
    before, after, error_before, error_after = [], [], [], []
    for row, offset in zip(rows, offsets):
        output, clean = row["output"], row["clean"]
        moved = output + offset.float().view(1, 3, 1, 1)
        for image, psnrs, errors in ((output, before, error_before), (moved, after, error_after)):
            rounded = quantize(image.clamp(0, 1))
            psnrs.append(psnr_y(rounded, clean).item())
            errors.append(mean_error(rounded, clean).item())
    most = int(np.argmax(np.abs(np.subtract(error_after, error_before))))
    moved_most = f"{rows[most]['stem']}: {error_before[most]:+.1f} -> {error_after[most]:+.1f}"
    return np.mean(before), np.mean(after), np.mean(np.abs(error_before)), np.mean(np.abs(error_after)), moved_most


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="paired training folder (the fit backgrounds)")
    parser.add_argument("--fit-count", type=int, default=120, help="fit on the first N pairs of --data")
    parser.add_argument("--holdout", type=int, default=10, help="the last N pairs of --data: the own val set")
    parser.add_argument(
        "--val-set",
        type=parse_named_folder,
        action="append",
        default=[],
        metavar="NAME=FOLDER",
        help="more held-out sets",
    )
    parser.add_argument("--ridge", type=float, nargs="+", default=[30.0, 300.0, 3000.0], help="ridge strengths")
    parser.add_argument(
        "--own-weight", type=float, nargs="+", default=[1.0, 5.0], help="fit weights of the data's own rainy images"
    )
    parser.add_argument("--work", type=Path, default=Path("runs/tone_estimate"), help="where fit sets are rendered")
    parser.add_argument("--model", default="dual_stage_derain")
    parser.add_argument("--weights", type=Path, help="a safetensors file (default: the bundled weights)")
    parser.add_argument("--tag", default="tone_estimate")
    args = parser.parse_args()
    header = machine_header(torch.device("cpu"))
    print(header)
    model = derainzoo.create_model(args.model, pretrained=args.weights is None, weights=args.weights).eval()
    hooks = PooledFeatures(model)
    all_stems = PairedImageFolder(args.data).stems
    stems = all_stems[: args.fit_count]
    if args.fit_count > len(all_stems) - args.holdout:
        parser.error(f"--fit-count {args.fit_count} reaches into the last {args.holdout} pairs (the own val set)")
    fit_folders = {"own rain": args.data}
    clean_pairs = PairedImageFolder(args.data, stems=stems)
    for index, (name, (strength, styles)) in enumerate(FIT_RAIN.items()):
        folder = args.work / f"fit_{name}"
        write_rendered_pairs(clean_pairs, folder, strength, seed=1000 * (index + 1), style_probability=styles)
        fit_folders[name] = folder
    # Only features and offsets are kept of the fit outputs, not the images.
    fit_rows = [
        dict(
            features=row["features"],
            target=(row["clean"] - row["output"].clamp(0, 1)).mean((0, 2, 3)).double(),
            own=folder == args.data,
        )
        for folder in fit_folders.values()
        for row in derain_folder(model, hooks, folder, stems)
    ]
    features, targets = (
        torch.stack([row["features"] for row in fit_rows]),
        torch.stack([row["target"] for row in fit_rows]),
    )
    val_rows = {"own val": derain_folder(model, hooks, args.data, all_stems[len(all_stems) - args.holdout :])}
    for name, folder in args.val_set:
        val_rows[name] = derain_folder(model, hooks, folder, None)
    results = []
    own = torch.tensor([row["own"] for row in fit_rows])
    for own_weight, strength in itertools.product(args.own_weight, args.ridge):
        weights, mean, std = fit_ridge(features, targets, strength, torch.where(own, own_weight, 1.0).double())
        fit_error = (estimate_offsets(features, weights, mean, std) - targets).abs().mean().item() * 255
        for name, rows in val_rows.items():
            offsets = estimate_offsets(torch.stack([row["features"] for row in rows]), weights, mean, std)
            psnr_before, psnr_after, error_before, error_after, moved_most = score(rows, offsets)
            results.append(
                {
                    "own weight": own_weight,
                    "ridge": strength,
                    "fit offset error": f"{fit_error:.1f} of {targets.abs().mean().item() * 255:.1f}",
                    "set": name,
                    "psnr": f"{psnr_before:.2f} -> {psnr_after:.2f}",
                    "mean abs error": f"{error_before:.1f} -> {error_after:.1f}",
                    "moved most": moved_most,
                }
            )
    weights_name = args.weights or "bundled weights"
    notes = [
        f"{args.model} ({weights_name}); fit on {len(fit_rows)} outputs: the first {len(stems)} pairs of {args.data} "
        f"({', '.join(fit_folders)}; rendered with seeds 1000, 2000, ...); own val: its last {args.holdout} pairs",
        "fit offset error: mean |estimate - target| on the fit outputs, of the mean |target| (levels of 255)",
    ]
    print(write_results(args.tag, header, results, notes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
