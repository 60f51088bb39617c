"""Scale-aware inference: the rain layer's return to full resolution against its formula and
by-hand window means, what it keeps and what it removes, derain(scale=...) end to end, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from derainzoo.inference import derain
from derainzoo.scaling import (
    box_mean,
    check_scale,
    choose_scale,
    derain_at_scale,
    rain_structure,
    upsample_rain,
)

from .helpers import smooth_image, tiny_model


def naive_box_mean(x: np.ndarray, radius: int) -> np.ndarray:
    """Mean over the part of each window inside the image, pixel by pixel."""
    height, width = x.shape
    out = np.empty_like(x)
    for i in range(height):
        for j in range(width):
            out[i, j] = x[max(0, i - radius) : i + radius + 1, max(0, j - radius) : j + radius + 1].mean()
    return out


def downscale(image: torch.Tensor, scale: float) -> torch.Tensor:
    size = (round(image.shape[-2] * scale), round(image.shape[-1] * scale))
    return F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def test_box_mean_equals_the_naive_window_mean() -> None:
    x = torch.rand(1, 1, 9, 13, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for radius in (0, 1, 3):
        expected = naive_box_mean(x[0, 0].numpy(), radius)
        np.testing.assert_allclose(box_mean(x, radius)[0, 0].numpy(), expected, atol=1e-12)


def test_upsample_rain_follows_its_formula() -> None:
    generator = torch.Generator().manual_seed(1)
    rain_small = 0.1 * torch.rand(1, 3, 10, 12, generator=generator, dtype=torch.float64)
    photo_small = torch.rand(1, 3, 10, 12, generator=generator, dtype=torch.float64)
    photo = torch.rand(1, 3, 30, 36, generator=generator, dtype=torch.float64)
    deviation = np.max([np.abs(c - naive_box_mean(c, 3)) for c in rain_small[0].numpy()], axis=0)
    structure = F.max_pool2d(torch.from_numpy(deviation)[None, None], 3, stride=1, padding=1)
    torch.testing.assert_close(rain_structure(rain_small), structure)

    def up(x: torch.Tensor, mode: str = "bicubic") -> torch.Tensor:
        return F.interpolate(x, size=(30, 36), mode=mode, align_corners=False)

    mask = (up(structure, "bilinear") / 0.03).clamp(0, 1)
    expected = up(rain_small) + mask * (photo - up(photo_small))
    torch.testing.assert_close(upsample_rain(rain_small, photo_small, photo, threshold=0.03), expected)
    # An infinite threshold only upsamples the rain layer, with either kernel.
    for mode in ("bicubic", "bilinear"):
        only_upsampled = upsample_rain(rain_small, photo_small, photo, threshold=float("inf"), mode=mode)
        torch.testing.assert_close(only_upsampled, up(rain_small, mode))


def test_without_rain_or_with_a_smooth_veil_the_photo_keeps_its_detail() -> None:
    photo = smooth_image(64, 80) * 0.8 + 0.1 * torch.rand(1, 3, 64, 80, generator=torch.Generator().manual_seed(2))
    small = downscale(photo, 0.5)
    # Nothing removed at the small scale: nothing removed at full resolution, bit for bit.
    assert torch.equal(upsample_rain(torch.zeros_like(small), small, photo), torch.zeros_like(photo))
    # A uniform veil removed at the small scale is removed at full resolution, detail intact.
    veil = torch.full_like(small, 0.05)
    torch.testing.assert_close(photo - upsample_rain(veil, small, photo), photo - 0.05)


def test_a_streak_goes_and_the_texture_beside_it_stays() -> None:
    """A one-pixel streak over fine texture: a derainer that is perfect at half scale removes the
    streak at full resolution and leaves the full-resolution texture away from it untouched,
    which resizing the small result cannot do."""
    texture = 0.3 + 0.1 * torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    photo = texture.clone()
    photo[..., :, 31] = 0.95

    def perfect_derainer(small: torch.Tensor) -> torch.Tensor:
        return downscale(texture, 0.5)

    derained = derain_at_scale(perfect_derainer, photo, 0.5)
    near_streak = (derained - texture)[..., 26:37].abs()
    assert float(near_streak.max()) < 0.12 and float(near_streak.mean()) < 0.04
    far = slice(0, 20)
    torch.testing.assert_close(derained[..., far], texture[..., far], atol=1e-6, rtol=0)
    resized = F.interpolate(perfect_derainer(None), size=(64, 64), mode="bilinear", align_corners=False)
    assert float((resized - texture)[..., far].abs().mean()) > 0.02  # resizing loses the texture


def test_derain_scale_one_is_the_full_resolution_pass_and_identity_rain_is_kept() -> None:
    model = tiny_model()
    image = smooth_image(48, 64)
    torch.testing.assert_close(derain(image, model, scale=1.0), derain(image, model), rtol=0, atol=0)
    torch.testing.assert_close(derain(image, model, scale=None), derain(image, model), rtol=0, atol=0)
    half = derain(image, model, scale=0.5)
    assert half.shape == image.shape and 0 <= half.min() and half.max() <= 1

    class Identity(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    torch.testing.assert_close(derain(image, Identity(), scale=0.4), image, atol=1e-6, rtol=0)


def test_derain_scale_reaches_the_model_at_the_chosen_size() -> None:
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(tuple(x.shape[-2:]))
            return x

    derain(torch.rand(1, 3, 100, 160), Recorder(), scale=0.25, tile_size=0)
    derain(torch.rand(1, 3, 100, 160), Recorder(), scale="auto", tile_size=0)
    assert seen == [(25, 40), (100, 160)]


def test_choose_scale_and_errors() -> None:
    assert choose_scale(3000, 4000) == pytest.approx(0.32)
    assert choose_scale(600, 800) == 1.0 and choose_scale(600, 800, 0.5) == 0.5 and choose_scale(9, 9, None) == 1.0
    assert choose_scale(2000, 1000, long_side=500) == 0.25
    for bad in (0, 1.5, -0.2, "half", True):
        with pytest.raises(ValueError, match=r"scale must be 'auto' or a number in \(0, 1\]"):
            check_scale(bad)
    with pytest.raises(ValueError, match="scale must be"):
        derain(torch.rand(1, 3, 8, 8), torch.nn.Identity(), scale=2)
    with pytest.raises(ValueError, match="must have one shape"):
        upsample_rain(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 5, 4), torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="mode must be 'bicubic' or 'bilinear'"):
        upsample_rain(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4), torch.rand(1, 3, 8, 8), mode="nearest")
    with pytest.raises(ValueError, match="threshold must be positive"):
        upsample_rain(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4), torch.rand(1, 3, 8, 8), threshold=0)
