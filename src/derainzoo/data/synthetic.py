"""Synthetic rain: oriented streaks of chosen density, length, angle and width."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from derainzoo.layers.morphology import box_kernel, dilation, line_kernel

__all__ = ["synthesize_rain"]


def synthesize_rain(
    clean: Tensor,
    density: float = 0.004,
    length: int = 15,
    angle: float = 80.0,
    width: int = 1,
    intensity: float = 0.6,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Add straight rain streaks to clean images.

    Streak seeds are scattered at random with brightness drawn uniformly from ``[0.5, 1]``,
    then smeared along a line of ``length`` pixels at ``angle`` (a motion blur), thickened to
    ``width`` pixels, and added to the image: ``rainy = clamp(clean + rain, 0, 1)``.

    Args:
        clean: ``(B, 3, H, W)`` or ``(3, H, W)`` float RGB in ``[0, 1]``.
        density: fraction of pixels that seed a streak.
        length: streak length in pixels (odd).
        angle: streak direction in degrees, counter-clockwise from horizontal (90 is vertical).
        width: streak width in pixels.
        intensity: peak brightness a streak adds.
        generator: random generator for reproducible rain.

    Returns:
        ``(rainy, rain)``: the rainy images and the ``(B, 1, H, W)`` (or ``(1, H, W)``) rain
        layer that was added (before clamping), both float in ``[0, 1]``.

    Example:
        >>> rainy, rain = synthesize_rain(torch.full((1, 3, 64, 64), 0.3), generator=torch.Generator().manual_seed(0))
    """
    if not 0 <= density <= 1:
        raise ValueError(f"density must be in [0, 1], got {density}")
    if width < 1:
        raise ValueError(f"width must be at least 1, got {width}")
    batched = clean if clean.ndim == 4 else clean[None]
    if batched.ndim != 4 or batched.shape[1] != 3:
        raise ValueError(f"clean must have shape (B, 3, H, W) or (3, H, W), got {tuple(clean.shape)}")
    batch, _, height, width_px = batched.shape
    options = dict(device=batched.device, dtype=batched.dtype)
    seeds = (torch.rand(batch, 1, height, width_px, generator=generator) < density).to(**options)
    seeds = seeds * (0.5 + 0.5 * torch.rand(batch, 1, height, width_px, generator=generator).to(**options))
    streak = line_kernel(length, angle)
    if width > 1:
        pad = width
        streak = dilation(F.pad(streak, (pad, pad, pad, pad))[None, None], box_kernel(width))[0, 0]
    streak = streak.to(**options)
    rain = F.conv2d(seeds, streak[None, None], padding=(streak.shape[0] // 2, streak.shape[1] // 2))
    rain = (rain * intensity).clamp(0.0, 1.0)
    rainy = (batched + rain).clamp(0.0, 1.0)
    if clean.ndim == 3:
        return rainy[0], rain[0]
    return rainy, rain
