"""Scale-aware inference: derain a large photo at the scale where its rain looks like the training
rain, and bring only the removed rain layer back to full resolution.

Rain streaks are as many pixels wide as the photo is large: a 12-megapixel original shows streaks
several times wider and longer than the 0.1-0.5 megapixel images the models were trained on,
and wider than their attention windows and morphological elements. Deraining such a photo at its
own resolution both misses wide streaks and costs the most time. So:

1. the photo ``I`` is downscaled by ``s`` (antialiased bilinear) to ``I_s``;
2. the model derains ``I_s``; the removed rain layer is ``R_s = I_s - model(I_s)``;
3. the rain layer is brought back to full resolution as the bicubic upsampling of ``R_s``
   plus, where the removed rain has strong structure (bright, sharp streaks rather than a veil
   or faint rain), the photo's own full-resolution detail ``I - up(I_s)``, which there belongs
   to the streaks: ``R = up(R_s) + m * (I - up(I_s))``, with
   ``m = clamp(up(S) / threshold, 0, 1)`` and ``S`` the local structure of ``R_s`` (its
   deviation from its own ``7 x 7`` mean, largest over the channels and a ``3 x 3``
   neighbourhood);
4. the result is ``I - R = up(model(I_s)) + (1 - m) * (I - up(I_s))``.

Where there is no rain, or only a smooth veil, haze or faint streaks, the background keeps
nearly every full-resolution detail (``m`` near 0: the result is ``I - up(R_s)``). Where bright
streaks are, the result is the derained small image upsampled: the fine detail under such a
streak cannot be told from the streak's own edges at the small scale, so it is given up with
the streak rather than leaving the edges behind.

The threshold and the bicubic kernel were chosen on rendered rain over enlarged Rain100L
*training* backgrounds (2x and 4x, scales 0.5 and 0.25): bicubic instead of bilinear, and
a threshold of 0.2 instead of 0.02, gained 0.9-1.1 dB PSNR and 0.045-0.058 SSIM there (the guide
"Large photos" has the table).

Limits: streaks thinner than about ``1 / s`` pixels are averaged away by the downscaling and stay
in place when nothing of them is visible at the small scale; under dense bright rain ``m`` is 1
almost everywhere and the result is close to the small result upsampled, softer than the photo. [`AUTO_SCALE_LONG_SIDE`][AUTO_SCALE_LONG_SIDE] sets how small ``"auto"`` goes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "AUTO_SCALE_LONG_SIDE",
    "RAIN_STRUCTURE_THRESHOLD",
    "SCALE_CHOICES",
    "box_mean",
    "check_scale",
    "choose_scale",
    "derain_at_scale",
    "downscale",
    "rain_structure",
    "upsample_rain",
]

AUTO_SCALE_LONG_SIDE = 1280
"""The long side, in pixels, that ``scale="auto"`` brings a larger photo down to: about the
size of the photos whose rain looks like the training rain (see the guide "Large photos")."""

SCALE_CHOICES = "'auto' or a number in (0, 1] (1: full resolution)"
"""What a ``scale`` may be, as error messages state it."""

RAIN_STRUCTURE_THRESHOLD = 0.2
"""Local structure of the removed rain (image units, about 51 of 255 levels) at which the photo's
full-resolution detail is counted entirely as rain; below it, in proportion."""


def check_scale(scale: float | str | None) -> None:
    """Check a ``scale`` argument before any work.

    Args:
        scale: ``None`` or ``1`` (full resolution), ``"auto"`` (see [`choose_scale`][choose_scale]) or a
            number in ``(0, 1]``.

    Raises:
        ValueError: anything else; the message says what is accepted.
    """
    if scale is None or scale == "auto":
        return
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 1:
        raise ValueError(f"scale must be {SCALE_CHOICES}, got {scale!r}")


def choose_scale(
    height: int, width: int, scale: float | str | None = "auto", long_side: int = AUTO_SCALE_LONG_SIDE
) -> float:
    """The scale a ``height x width`` image is derained at.

    Args:
        height: the image's height in pixels.
        width: the image's width in pixels.
        scale: a number is returned as it is; ``None`` means 1; ``"auto"`` brings the long side
            down to ``long_side`` when it is larger (never up).
        long_side: the long side ``"auto"`` aims at.

    Returns:
        A scale in ``(0, 1]``.

    Examples:
        >>> choose_scale(3000, 4000), choose_scale(321, 481), choose_scale(3000, 4000, 0.5)
        (0.32, 1.0, 0.5)
    """
    check_scale(scale)
    if scale is None:
        return 1.0
    if scale == "auto":
        return min(1.0, long_side / max(height, width))
    return float(scale)


def box_mean(x: Tensor, radius: int) -> Tensor:
    """Mean of ``x`` over the ``(2 radius + 1)^2`` window around every pixel, over the pixels
    of the window that lie inside the image (so borders are not darkened).

    Args:
        x: ``(B, C, H, W)``.
        radius: window radius in pixels; 0 returns ``x``.

    Returns:
        ``(B, C, H, W)``.
    """
    if radius == 0:
        return x
    return F.avg_pool2d(x, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)


def rain_structure(rain: Tensor) -> Tensor:
    """Where a rain layer has structure (streaks) rather than a smooth veil.

    Args:
        rain: ``(B, C, h, w)`` a removed rain layer.

    Returns:
        ``(B, 1, h, w)``: ``|rain - box_mean(rain, 3)|``, largest over the channels, then over
        each ``3 x 3`` neighbourhood (so a streak's flanks count too).
    """
    deviation = (rain - box_mean(rain, 3)).abs().amax(dim=1, keepdim=True)
    return F.max_pool2d(deviation, 3, stride=1, padding=1)


def upsample_rain(
    rain_small: Tensor,
    photo_small: Tensor,
    photo: Tensor,
    threshold: float = RAIN_STRUCTURE_THRESHOLD,
    mode: str = "bicubic",
) -> Tensor:
    """Bring a rain layer removed at a small scale back to the photo's resolution.

    ``up(rain_small) + m * (photo - up(photo_small))`` with ``m = clamp(up(S) / threshold, 0,
    1)``, ``S = rain_structure(rain_small)`` and ``up`` bicubic (see the module's description;
    the mask itself is upsampled bilinearly).

    Args:
        rain_small: ``(B, C, h, w)`` the rain removed from ``photo_small``.
        photo_small: ``(B, C, h, w)`` the downscaled photo.
        photo: ``(B, C, H, W)`` the photo.
        threshold: rain structure at which the photo's fine detail counts entirely as rain;
            ``float("inf")`` never counts it (the rain layer is only upsampled).
        mode: ``up``'s kernel, ``"bicubic"`` or ``"bilinear"``.

    Returns:
        ``(B, C, H, W)`` the rain layer at full resolution.

    Cost:
        Two box means and a max pool at the small scale, three upsamplings (two bicubic) and a few
        element-wise operations at full resolution: ``O(C H W)``.
    """
    if rain_small.shape != photo_small.shape or photo.shape[:2] != photo_small.shape[:2]:
        raise ValueError(
            "rain_small and photo_small must have one shape (B, C, h, w) and photo (B, C, H, W) the same B and C, "
            f"got {tuple(rain_small.shape)}, {tuple(photo_small.shape)} and {tuple(photo.shape)}"
        )
    if threshold <= 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    if mode not in ("bicubic", "bilinear"):
        raise ValueError(f"mode must be 'bicubic' or 'bilinear', got {mode!r}")
    size = tuple(photo.shape[-2:])

    def up(x: Tensor, kernel: str = mode) -> Tensor:
        return F.interpolate(x, size=size, mode=kernel, align_corners=False)

    # The mask only weighs detail: bilinear keeps it within [0, 1] without a clamp's flat tops.
    structure = up(rain_structure(rain_small), "bilinear").div_(threshold).clamp_(0.0, 1.0)
    # In place where possible: each full-resolution float copy of a 12 MP photo is 144 MB.
    detail = up(photo_small).neg_().add_(photo).mul_(structure)
    del structure
    return up(rain_small).add_(detail)


def downscale(image: Tensor, scale: float) -> Tensor:
    """``image`` downscaled by ``scale`` as scale-aware inference sees it: antialiased bilinear,
    each side rounded (at least 1 pixel), clamped to ``[0, 1]``.

    Args:
        image: ``(B, C, H, W)`` float in ``[0, 1]``.
        scale: in ``(0, 1]``.

    Returns:
        ``(B, C, round(H * scale), round(W * scale))``.
    """
    height, width = image.shape[-2:]
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def derain_at_scale(derain_small: Callable[[Tensor], Tensor], image: Tensor, scale: float) -> Tensor:
    """Derain ``image`` at ``scale`` and bring the removed rain back to full resolution.

    Args:
        derain_small: runs the model on ``(B, 3, h, w)`` (tiled or not) and returns the derained
            ``(B, 3, h, w)``.
        image: ``(B, 3, H, W)`` float in ``[0, 1]``.
        scale: in ``(0, 1]``; 1 derains at full resolution.

    Returns:
        ``(B, 3, H, W)``: ``image - upsample_rain(rain layer)``, not clamped.
    """
    check_scale(scale)
    if scale == 1:
        return derain_small(image)
    small = downscale(image, scale)
    rain = small - derain_small(small).to(small.dtype)
    return upsample_rain(rain, small, image).to(image.dtype).neg_().add_(image)
