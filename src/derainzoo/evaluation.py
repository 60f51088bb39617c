"""Scoring a deraining model on a paired folder with the papers' Y-channel PSNR/SSIM."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from derainzoo.data.paired import PairedImageFolder
from derainzoo.inference import eval_mode
from derainzoo.metrics import psnr_y, quantize, ssim_y
from derainzoo.tiling import check_tile_settings, plan_tiles, run_tiled

__all__ = ["EvaluationResult", "evaluate"]


@dataclass
class EvaluationResult:
    """Scores of one evaluation.

    Attributes:
        psnr: mean Y-channel PSNR in dB.
        ssim: mean Y-channel SSIM.
        per_image: ``(stem, psnr, ssim)`` of every image.
        rounding: whether outputs were rounded (True) or truncated to 8 bits.
    """

    psnr: float
    ssim: float
    per_image: list[tuple[str, float, float]] = field(default_factory=list)
    rounding: bool = True

    def write_csv(self, path: str | os.PathLike[str]) -> None:
        """Write one row per image (``image,psnr,ssim``) and a final ``mean`` row."""
        with open(path, "w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(["image", "psnr", "ssim"])
            writer.writerows((stem, f"{p:.4f}", f"{s:.6f}") for stem, p, s in self.per_image)
            writer.writerow(["mean", f"{self.psnr:.4f}", f"{self.ssim:.6f}"])


def evaluate(
    model: nn.Module | None,
    data: str | os.PathLike[str] | PairedImageFolder,
    *,
    device: str | torch.device = "cpu",
    tile_size: int | None = None,
    tile_overlap: int | None = None,
    memory_budget: int | None = None,
    rounding: bool = True,
    progress: bool = True,
) -> EvaluationResult:
    """Derain every rainy image of a paired folder and score it against its clean image.

    Args:
        model: maps ``(1, 3, H, W)`` in ``[0, 1]`` to the derained image; ``None`` scores the
            rainy inputs themselves (the "input" baseline of the papers).
        data: a folder with ``rain/`` and ``norain/`` or a [`PairedImageFolder`][PairedImageFolder] (whole
            images: no crop or augmentation).
        device: where the model runs.
        tile_size: derain in tiles of this size (see [`tiled_forward`][derainzoo.tiling.tiled_forward]);
            0 derains whole images; ``None`` decides per image from ``memory_budget``, as
            [`derain`][derainzoo.inference.derain] does.
        tile_overlap: overlap of neighbouring tiles; default
            [`default_tile_overlap`][derainzoo.tiling.default_tile_overlap].
        memory_budget: bytes a whole-image pass may take before tiling (with ``tile_size=None``);
            ``None`` (default) never tiles on its own, so scores are those of whole images.
        rounding: round outputs to 8 bits (True) or truncate them as PReNet/BRN do (False).
        progress: show a progress bar.

    Returns:
        [`EvaluationResult`][EvaluationResult] with the mean and per-image scores.
    """
    dataset = data if isinstance(data, PairedImageFolder) else PairedImageFolder(data)
    dataset.check_whole_images("evaluate()")
    check_tile_settings(tile_size, tile_overlap)
    device = torch.device(device)
    scores = []
    with eval_mode(model), torch.inference_mode():
        for index in tqdm(range(len(dataset)), desc="evaluate", unit="image", disable=not progress):
            rainy, clean, stem = dataset[index]
            rainy, clean = rainy[None].to(device), clean[None].to(device)
            if model is None:
                output = rainy
            else:
                plan = plan_tiles(model, *rainy.shape[-2:], tile_size, tile_overlap, memory_budget)
                output = run_tiled(model, rainy, plan)
            output = quantize(output.float(), rounding=rounding)
            scores.append((stem, psnr_y(output, clean).item(), ssim_y(output, clean).item()))
    return EvaluationResult(
        psnr=sum(s[1] for s in scores) / len(scores),
        ssim=sum(s[2] for s in scores) / len(scores),
        per_image=scores,
        rounding=rounding,
    )
