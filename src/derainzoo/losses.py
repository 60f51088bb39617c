"""Training losses: a pixel loss (Charbonnier or PSNR) on both stages, a frequency term and a rain-mask term."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from derainzoo.layers.color import rgb_to_luma
from derainzoo.layers.morphology import box_kernel, line_elements, max_line_opening, white_tophat
from derainzoo.metrics import psnr_y
from derainzoo.models import DerainOutput

__all__ = ["PIXEL_LOSSES", "DualStageLoss", "charbonnier_loss", "frequency_loss", "psnr_loss", "rain_mask_target"]


def charbonnier_loss(prediction: Tensor, target: Tensor, eps: float = 1e-3) -> Tensor:
    """Mean of ``sqrt((prediction - target)^2 + eps^2)``: a smooth L1, robust to outliers.

    Args:
        prediction: any shape.
        target: same shape as ``prediction``.
        eps: smoothing constant; near zero the loss is quadratic, beyond it linear.

    Returns:
        Scalar tensor.
    """
    return torch.sqrt((prediction - target).square() + eps**2).mean()


def psnr_loss(prediction: Tensor, target: Tensor, max_psnr: float = 100.0) -> Tensor:
    """Minus the Y-channel PSNR in dB (the benchmark metric, without quantisation), batch mean.

    The Charbonnier loss is nearly L1, which fits the median error; PSNR is a mean-squared
    error, so a short fine-tune on this loss aims at the metric itself (as HINet and NAFNet
    finish). The logarithm also weighs every image alike, however hard: an image at 30 dB
    counts as much as one at 40 dB, where an MSE would be dominated by the hard ones.

    Args:
        prediction: ``(B, 3, H, W)`` RGB, nominally in ``[0, 1]`` (not clamped, so every pixel
            keeps a gradient).
        target: ``(B, 3, H, W)`` RGB in ``[0, 1]``.
        max_psnr: PSNR a perfect image counts as, instead of infinity.

    Returns:
        Scalar float32 tensor; lower is better.
    """
    return -psnr_y(prediction, target).clamp(max=max_psnr).mean().float()


PIXEL_LOSSES = {"charbonnier": charbonnier_loss, "psnr": psnr_loss}
"""Pixel losses [`DualStageLoss`][DualStageLoss] can put on both stages, by name."""


def frequency_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """L1 distance of the 2-D Fourier spectra (real and imaginary parts), per pixel.

    Rain streaks and fine texture live in the high frequencies, which a pixel loss weighs
    little; this term weighs every frequency alike.

    Args:
        prediction: ``(B, C, H, W)``.
        target: ``(B, C, H, W)``.

    Returns:
        Scalar tensor.
    """
    difference = torch.fft.rfft2(prediction.float() - target.float(), norm="ortho")
    return torch.view_as_real(difference).abs().mean()


def rain_mask_target(
    rainy: Tensor,
    clean: Tensor,
    line_length: int = 9,
    num_angles: int = 12,
    threshold: float = 0.04,
    background_size: int = 9,
) -> Tensor:
    """Where the rain streaks are, from a training pair: the morphologically cleaned rain layer.

    Streaks brighten dark areas and may darken a bright sky, so both signs of the luma of
    ``rainy - clean`` are looked at, each on its own (noise, which flips sign from pixel to
    pixel, then forms no lines). A veil changes the image smoothly and streaks change it in thin
    lines, so the white top-hat with a ``background_size`` square drops the veil and keeps the
    streaks; opening by line elements (as the mask head does) keeps only elongated structures,
    and a threshold makes the mask.

    Args:
        rainy: ``(B, 3, H, W)`` in ``[0, 1]``.
        clean: ``(B, 3, H, W)`` in ``[0, 1]``.
        line_length: length of the line elements.
        num_angles: orientations of the line elements.
        threshold: rain-layer brightness above which a pixel is rain.
        background_size: side of the square whose opening is the smooth (veil) part of the
            layer; streaks narrower than it are kept.

    Returns:
        ``(B, 1, H, W)`` float 0/1 mask.
    """
    difference = rgb_to_luma((rainy - clean).float())
    both_signs = torch.cat([difference.clamp_min(0.0), (-difference).clamp_min(0.0)])
    lines = max_line_opening(
        white_tophat(both_signs, box_kernel(background_size)), line_elements(line_length, num_angles)
    )
    brighter, darker = lines.chunk(2)
    return (torch.maximum(brighter, darker) > threshold).float()


class DualStageLoss(nn.Module):
    """``L = pix(B2, y) + w1 pix(B1, y) + wf freq(B2, y) + wm BCE(m, m*)``.

    Both stages are supervised so stage 1 really suppresses rain (and its features feed stage 2);
    the mask term teaches the mask head where the true rain is (``m*`` from
    [`rain_mask_target`][rain_mask_target]). A model of one stage, or one
    without a mask (its ``stage1`` or ``mask`` is ``None``), skips that term, so every variant of
    the ablation trains on the same loss otherwise.

    Args:
        stage1_weight: weight ``w1`` of the stage-1 pixel term.
        frequency_weight: weight ``wf`` of the frequency term on the final image; 0 disables it.
        mask_weight: weight ``wm`` of the mask term; 0 disables it.
        pixel_loss: ``pix``, a name in [`PIXEL_LOSSES`][PIXEL_LOSSES]:
            ``"charbonnier"`` (training from scratch) or ``"psnr"`` (a last fine-tune aimed at the
            metric; its gradients are far larger than the frequency and mask terms', so set
            those to 0 with it).

    Raises:
        ValueError: for an unknown ``pixel_loss``.
    """

    def __init__(
        self,
        stage1_weight: float = 0.5,
        frequency_weight: float = 0.05,
        mask_weight: float = 0.05,
        pixel_loss: str = "charbonnier",
    ) -> None:
        super().__init__()
        if pixel_loss not in PIXEL_LOSSES:
            raise ValueError(f"unknown pixel_loss {pixel_loss!r}; choose one of {sorted(PIXEL_LOSSES)}")
        self.stage1_weight = stage1_weight
        self.frequency_weight = frequency_weight
        self.mask_weight = mask_weight
        self.pixel_loss = PIXEL_LOSSES[pixel_loss]

    def forward(self, outputs: DerainOutput, rainy: Tensor, clean: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss and its parts.

        Args:
            outputs: what a model's ``forward_stages`` (as
                [`DualStageDerain.forward_stages`][derainzoo.models.dual_stage_derain.DualStageDerain.forward_stages])
                returned for ``rainy``.
            rainy: ``(B, 3, H, W)`` inputs.
            clean: ``(B, 3, H, W)`` ground truth.

        Returns:
            ``(loss, parts)``: the scalar to minimise and each term's detached value, for logging
                (kept as tensors so logging does not force a device synchronisation every step).
        """
        parts = {"final": self.pixel_loss(outputs.image.float(), clean)}
        total = parts["final"]
        if outputs.stage1 is not None:
            parts["stage1"] = self.pixel_loss(outputs.stage1.float(), clean)
            total = total + self.stage1_weight * parts["stage1"]
        if self.frequency_weight:
            parts["frequency"] = frequency_loss(outputs.image, clean)
            total = total + self.frequency_weight * parts["frequency"]
        if self.mask_weight and outputs.mask is not None:
            with torch.autocast(device_type=rainy.device.type, enabled=False):
                target = rain_mask_target(rainy, clean)
                parts["mask"] = F.binary_cross_entropy(outputs.mask.float().clamp(1e-6, 1 - 1e-6), target)
            total = total + self.mask_weight * parts["mask"]
        return total, {name: value.detach() for name, value in parts.items()}
