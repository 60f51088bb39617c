"""synthesize_rain: one layer of straight streaks, the simplest case of [`render_rain`][render_rain]."""

from __future__ import annotations

import torch
from torch import Tensor

from derainzoo.data.rain_renderer import RainParams, StreakLayer, render_rain

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
    """Add one layer of straight rain streaks to clean images (no veil, no camera effects).

    A shortcut for [`render_rain`][render_rain] with a single [`StreakLayer`][StreakLayer] and white drops,
    i.e. the screen blend ``rainy = clean + rain * (1 - clean)``; use the renderer for
    several layers, a veil or camera effects.

    Args:
        clean: ``(B, 3, H, W)`` or ``(3, H, W)`` float RGB in ``[0, 1]``.
        density: fraction of pixels that start a streak.
        length: streak length in pixels.
        angle: streak direction in degrees, counter-clockwise from horizontal (90 is vertical).
        width: streak width in pixels.
        intensity: peak opacity of a streak.
        generator: random generator for reproducible rain.

    Returns:
        ``(rainy, rain)``: the rainy images and the ``(B, 1, H, W)`` (or ``(1, H, W)``) streak
            opacity, both float in ``[0, 1]``.

    Examples:
        >>> rainy, rain = synthesize_rain(torch.full((1, 3, 64, 64), 0.3), generator=torch.Generator().manual_seed(0))
    """
    batched = clean if clean.ndim == 4 else clean[None]
    if batched.ndim != 4 or batched.shape[1] != 3:
        raise ValueError(f"clean must have shape (B, 3, H, W) or (3, H, W), got {tuple(clean.shape)}")
    direction = 90.0 - angle
    if direction > 90.0:  # the same line, drawn from its other end
        direction -= 180.0
    layer = StreakLayer(angle=direction, length=length, width=width, density=density, opacity=intensity)
    rendered = render_rain(batched, RainParams(layers=(layer,), streak_light=1.0), generator)
    if clean.ndim == 3:
        return rendered.rainy[0], rendered.streaks[0]
    return rendered.rainy, rendered.streaks
