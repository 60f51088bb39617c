"""PSNR and SSIM on the Y channel, as the deraining papers compute them.

The protocol of Restormer's and DRSformer's evaluation scripts (and BasicSR's
``calculate_psnr`` / ``calculate_ssim`` with ``test_y_channel=True``):

* both images are 8-bit (the output of a model is quantised first; derainzoo rounds, see
  [`quantize`][quantize]), then converted to the ITU-R BT.601 luma of YCbCr,
  ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` for ``R, G, B`` in ``[0, 1]`` (so ``Y`` is in
  ``[16, 235]``), in float64;
* ``PSNR = 10 log10(255^2 / MSE)``;
* SSIM with an 11x11 Gaussian window (sigma 1.5), ``C1 = (0.01 * 255)^2``,
  ``C2 = (0.03 * 255)^2``, averaged over the positions where the window fits inside the image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "detail_change",
    "mean_absolute_error",
    "mean_error",
    "psnr_y",
    "quantize",
    "rgb_to_studio_swing_y",
    "ssim_y",
]

_Y_WEIGHTS = (65.481, 128.553, 24.966)


def quantize(image: Tensor, rounding: bool = True) -> Tensor:
    """Map ``[0, 1]`` floats to the 8-bit grid, kept as floats in ``[0, 1]``.

    Args:
        image: any-shape tensor, nominally in ``[0, 1]``; clamped first.
        rounding: round to the nearest level (derainzoo's choice); ``False`` truncates as
            ``uint8(255 * x)`` does, which is how PReNet and BRN save their outputs (about
            0.17 dB lower on Rain100L).

    Returns:
        Tensor of ``k / 255`` values.
    """
    scaled = image.clamp(0.0, 1.0) * 255.0
    return (scaled.round() if rounding else scaled.floor()) / 255.0


def rgb_to_studio_swing_y(image: Tensor) -> Tensor:
    """The Y of studio-swing BT.601 YCbCr, ``16 + (65.481 R + 128.553 G + 24.966 B)`` for RGB in
    ``[0, 1]``: what MATLAB's ``rgb2ycbcr`` and the deraining papers' evaluation scripts compute
    (unlike [`rgb_to_luma`][derainzoo.layers.color.rgb_to_luma], the full-range luma the layers use).

    Args:
        image: ``(B, 3, H, W)`` RGB in ``[0, 1]``.

    Returns:
        ``(B, 1, H, W)`` float64 ``Y`` in ``[16, 235]``.
    """
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"image must have shape (B, 3, H, W), got {tuple(image.shape)}")
    weights = torch.tensor(_Y_WEIGHTS, dtype=torch.float64, device=image.device)
    return (16.0 + torch.einsum("bchw,c->bhw", image.to(torch.float64), weights)).unsqueeze(1)


def _check_pair(prediction: Tensor, target: Tensor) -> None:
    if prediction.shape != target.shape:
        raise ValueError(f"prediction and target shapes differ: {tuple(prediction.shape)} vs {tuple(target.shape)}")


def psnr_y(prediction: Tensor, target: Tensor) -> Tensor:
    """Y-channel PSNR in dB per image.

    Args:
        prediction: ``(B, 3, H, W)`` RGB in ``[0, 1]``, already on the 8-bit grid (see
            [`quantize`][quantize]).
        target: ``(B, 3, H, W)`` RGB in ``[0, 1]``.

    Returns:
        ``(B,)`` float64 PSNR; ``inf`` for identical images.
    """
    _check_pair(prediction, target)
    mse = (rgb_to_studio_swing_y(prediction) - rgb_to_studio_swing_y(target)).square().mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(255.0**2 / mse)


def mean_error(prediction: Tensor, target: Tensor) -> Tensor:
    """Signed mean error per image, in levels of 255: negative when the prediction is darker.

    PSNR hides a global brightness offset among the rain left behind; this number shows it
    (``derainzoo eval``'s ``mean_error``).

    Args:
        prediction: ``(B, 3, H, W)`` RGB in ``[0, 1]``, already on the 8-bit grid (see
            [`quantize`][quantize]).
        target: ``(B, 3, H, W)`` RGB in ``[0, 1]``.

    Returns:
        ``(B,)`` mean of ``prediction - target`` over pixels and RGB channels, times 255.
    """
    _check_pair(prediction, target)
    return (prediction - target).mean(dim=(1, 2, 3)) * 255


def mean_absolute_error(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean absolute difference per image, in levels of 255: with the rainy input as ``target``,
    how much a derainer changed a photo that has no ground truth (see also
    [`detail_change`][detail_change]).

    Args:
        prediction: ``(B, 3, H, W)`` RGB in ``[0, 1]``.
        target: ``(B, 3, H, W)`` RGB in ``[0, 1]``.

    Returns:
        ``(B,)`` mean of ``|prediction - target|`` over pixels and RGB channels, times 255.
    """
    _check_pair(prediction, target)
    return (prediction - target).abs().mean(dim=(1, 2, 3)) * 255


def detail_change(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean absolute change per image once each channel's mean shift is taken off, in levels of 255.

    On a photo without ground truth, ``mean |output - input|`` mixes two things: what a derainer
    removes locally (streaks, spray, texture) and a shift of the whole photo's brightness (a veil
    taken off, or a photo made darker). On real rain the shift is most of it (the bundled
    ``rain_mix`` weights change the 8 real photos by 6-38 levels, of which their brightness shift is
    over 95 %). This is the local part alone: ``mean |d - mean(d)|`` with ``d = prediction - target``
    and the mean taken per image and channel over the pixels, so a uniform brightening or
    darkening scores 0.

    Args:
        prediction: ``(B, 3, H, W)`` RGB in ``[0, 1]``: e.g. a derained photo.
        target: ``(B, 3, H, W)`` RGB in ``[0, 1]``: e.g. the rainy input.

    Returns:
        ``(B,)`` the mean over pixels and channels of ``|d - mean(d)|``, times 255.
    """
    _check_pair(prediction, target)
    difference = prediction - target
    detail = difference - difference.mean(dim=(2, 3), keepdim=True)
    return detail.abs().mean(dim=(1, 2, 3)) * 255


def _gaussian_profile(size: int, sigma: float, device: torch.device) -> Tensor:
    coords = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    profile = torch.exp(-coords.square() / (2 * sigma**2))
    return profile / profile.sum()


def ssim_y(prediction: Tensor, target: Tensor, window_size: int = 11, sigma: float = 1.5) -> Tensor:
    """Y-channel SSIM per image (Wang et al. 2004, Gaussian window, valid positions only).

    Args:
        prediction: ``(B, 3, H, W)`` RGB in ``[0, 1]``, already on the 8-bit grid.
        target: ``(B, 3, H, W)`` RGB in ``[0, 1]``.
        window_size: side of the Gaussian window; the images must be at least this large.
        sigma: standard deviation of the Gaussian window.

    Returns:
        ``(B,)`` float64 SSIM.
    """
    _check_pair(prediction, target)
    if min(prediction.shape[-2:]) < window_size:
        raise ValueError(
            f"SSIM needs images of at least {window_size}x{window_size}, got {tuple(prediction.shape[-2:])}"
        )
    x, y = rgb_to_studio_swing_y(prediction), rgb_to_studio_swing_y(target)
    profile = _gaussian_profile(window_size, sigma, x.device)

    def blur(t: Tensor) -> Tensor:
        # The Gaussian window is separable: two 1-D passes equal the 2-D window, 5x cheaper.
        return F.conv2d(F.conv2d(t, profile.view(1, 1, -1, 1)), profile.view(1, 1, 1, -1))

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x.square()
    var_y = blur(y * y) - mu_y.square()
    cov = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2))
    return ssim_map.mean(dim=(1, 2, 3))
