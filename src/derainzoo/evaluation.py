"""Scoring a deraining model on a paired folder with the papers' Y-channel PSNR/SSIM."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from derainzoo.data.paired import PairedImageFolder
from derainzoo.data.rain_renderer import RAIN_STYLES
from derainzoo.inference import eval_mode
from derainzoo.metrics import mean_error, psnr_y, quantize, ssim_y
from derainzoo.scaling import check_scale, choose_scale, derain_at_scale
from derainzoo.tiling import check_tile_settings, plan_tiles, run_tiled

__all__ = ["EvaluationResult", "ImageScore", "evaluate", "iter_scores", "scores_by_style"]


class ImageScore(NamedTuple):
    """Scores of one image.

    Attributes:
        stem: the image's file name without its suffix.
        psnr: Y-channel PSNR in dB.
        ssim: Y-channel SSIM.
        mean_error: mean of (output - clean) over pixels and RGB channels, in levels of 255:
            negative when the output is darker than the ground truth. A mean PSNR over a set
            hides one image turned uniformly darker or brighter; this names it.
    """

    stem: str
    psnr: float
    ssim: float
    mean_error: float


@dataclass
class EvaluationResult:
    """Scores of one evaluation.

    Attributes:
        psnr: mean Y-channel PSNR in dB.
        ssim: mean Y-channel SSIM.
        per_image: the [`ImageScore`][ImageScore] of every image.
        rounding: whether outputs were rounded (True) or truncated to 8 bits.
    """

    psnr: float
    ssim: float
    per_image: list[ImageScore] = field(default_factory=list)
    rounding: bool = True

    @property
    def mean_error(self) -> float:
        """Mean over the images of [`ImageScore.mean_error`][ImageScore]: the output's signed
        brightness error in levels of 255 (negative: darker than the ground truth).

        Raises:
            ValueError: the result holds no per-image scores.
        """
        if not self.per_image:
            raise ValueError("this EvaluationResult holds no per-image scores, so it has no mean_error")
        return sum(row.mean_error for row in self.per_image) / len(self.per_image)

    @classmethod
    def from_scores(cls, per_image: list[ImageScore], rounding: bool = True) -> EvaluationResult:
        """The means of per-image scores, for instance those [`iter_scores`][iter_scores] gave
        before it was stopped."""
        if not per_image:
            raise ValueError("no image was scored")
        return cls(
            psnr=sum(row.psnr for row in per_image) / len(per_image),
            ssim=sum(row.ssim for row in per_image) / len(per_image),
            per_image=list(per_image),
            rounding=rounding,
        )

    def write_csv(self, path: str | os.PathLike[str]) -> None:
        """Write one row per image (``image,psnr,ssim,mean_error``) and a final ``mean`` row."""
        with open(path, "w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(["image", *ImageScore._fields[1:]])
            writer.writerows(
                (row.stem, f"{row.psnr:.4f}", f"{row.ssim:.6f}", f"{row.mean_error:.3f}") for row in self.per_image
            )
            writer.writerow(["mean", f"{self.psnr:.4f}", f"{self.ssim:.6f}", f"{self.mean_error:.3f}"])


def scores_by_style(result: EvaluationResult, rain_params: Mapping[str, Mapping]) -> dict[str, EvaluationResult]:
    """The scores of a rendered set grouped by renderer style: which rain the model leaves behind.

    Args:
        result: the evaluation of a folder that
            [`write_rendered_pairs`][derainzoo.data.write_rendered_pairs] wrote.
        rain_params: that folder's record ([`RAIN_PARAMS_FILE`][derainzoo.data.RAIN_PARAMS_FILE],
            parsed): each stem's rain, with its ``styles``.

    Returns:
        For each style of [`RAIN_STYLES`][derainzoo.data.RAIN_STYLES] that some scored image has,
        in that order, the means over those images (an image with several styles counts in each),
        then ``"none"`` for the images rendered without any style, if there are.

    Raises:
        ValueError: a scored image has no entry in ``rain_params``, or an entry without its
            ``styles`` list (a record of another folder, or of an older release).
    """
    styles_of = {}
    for row in result.per_image:
        params = rain_params.get(row.stem)
        if not isinstance(params, Mapping) or not isinstance(params.get("styles"), list):
            raise ValueError(f"the rain record has no styles for image {row.stem!r}: is it the record of this folder?")
        styles_of[row.stem] = set(params["styles"])
    groups = {style: [row for row in result.per_image if style in styles_of[row.stem]] for style in RAIN_STYLES}
    groups["none"] = [row for row in result.per_image if not styles_of[row.stem]]
    return {style: EvaluationResult.from_scores(rows, result.rounding) for style, rows in groups.items() if rows}


def evaluate(
    model: nn.Module | None,
    data: str | os.PathLike[str] | PairedImageFolder,
    *,
    device: str | torch.device = "cpu",
    tile_size: int | None = None,
    tile_overlap: int | None = None,
    memory_budget: int | None = None,
    scale: float | str | None = 1.0,
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
        scale: ``1`` (default) derains each image at its own size, as the papers score; a number
            in ``(0, 1)`` or ``"auto"`` scores what [`derain`][derainzoo.inference.derain] with that
            ``scale`` returns (the image derained downscaled and the removed rain brought back to
            full resolution: [`derain_at_scale`][derainzoo.scaling.derain_at_scale]).
        rounding: round outputs to 8 bits (True) or truncate them as PReNet/BRN do (False).
        progress: show a progress bar.

    Returns:
        [`EvaluationResult`][EvaluationResult] with the mean and per-image scores.
    """
    scores = iter_scores(
        model,
        data,
        device=device,
        tile_size=tile_size,
        tile_overlap=tile_overlap,
        memory_budget=memory_budget,
        scale=scale,
        rounding=rounding,
        progress=progress,
    )
    return EvaluationResult.from_scores(list(scores), rounding=rounding)


def iter_scores(
    model: nn.Module | None,
    data: str | os.PathLike[str] | PairedImageFolder,
    *,
    device: str | torch.device = "cpu",
    tile_size: int | None = None,
    tile_overlap: int | None = None,
    memory_budget: int | None = None,
    scale: float | str | None = 1.0,
    rounding: bool = True,
    progress: bool = True,
) -> Iterator[ImageScore]:
    """[`evaluate`][evaluate] one image at a time: yields an [`ImageScore`][ImageScore] as each image is
    scored, so a caller can stop early and keep what was scored (the command line does on Ctrl-C).
    The arguments are those of ``evaluate``; they are checked before the first image.
    """
    dataset = data if isinstance(data, PairedImageFolder) else PairedImageFolder(data)
    dataset.check_whole_images("evaluate()")
    check_tile_settings(tile_size, tile_overlap)
    check_scale(scale)
    return _scores(
        model, dataset, torch.device(device), tile_size, tile_overlap, memory_budget, scale, rounding, progress
    )


def _scores(
    model: nn.Module | None,
    dataset: PairedImageFolder,
    device: torch.device,
    tile_size: int | None,
    tile_overlap: int | None,
    memory_budget: int | None,
    scale: float | str | None,
    rounding: bool,
    progress: bool,
) -> Iterator[ImageScore]:
    def derain_tiled(x: Tensor) -> Tensor:
        # Tiles are planned at the size the model sees, which is the downscaled one at a scale under 1.
        return run_tiled(model, x, plan_tiles(model, *x.shape[-2:], tile_size, tile_overlap, memory_budget))

    with eval_mode(model), torch.inference_mode():
        for index in tqdm(range(len(dataset)), desc="evaluate", unit="image", disable=not progress):
            rainy, clean, stem = dataset[index]
            rainy, clean = rainy[None].to(device), clean[None].to(device)
            if model is None:
                output = rainy
            else:
                output = derain_at_scale(derain_tiled, rainy, choose_scale(*rainy.shape[-2:], scale))
            output = quantize(output.float(), rounding=rounding)
            yield ImageScore(
                stem, psnr_y(output, clean).item(), ssim_y(output, clean).item(), mean_error(output, clean).item()
            )
