"""Y-channel PSNR/SSIM against skimage and against the published Rain100L input baseline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from derainzoo.evaluation import evaluate
from derainzoo.metrics import (
    detail_change,
    mean_absolute_error,
    mean_error,
    psnr_y,
    quantize,
    rgb_to_studio_swing_y,
    ssim_y,
)


def random_pair(seed: int = 0, size: tuple[int, int] = (37, 52)) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    target = quantize(torch.rand(2, 3, *size, generator=generator, dtype=torch.float64))
    noisy = quantize(target + 0.05 * torch.randn(target.shape, generator=generator, dtype=torch.float64))
    return noisy, target


def test_y_channel_matches_skimage() -> None:
    image, _ = random_pair()
    expected = rgb2ycbcr(image[0].permute(1, 2, 0).numpy())[..., 0]
    np.testing.assert_allclose(rgb_to_studio_swing_y(image)[0, 0].numpy(), expected, rtol=0, atol=1e-9)


def test_psnr_matches_skimage_on_the_y_channel() -> None:
    prediction, target = random_pair(1)
    for index in range(2):
        y_pred, y_true = (
            rgb_to_studio_swing_y(prediction)[index, 0].numpy(),
            rgb_to_studio_swing_y(target)[index, 0].numpy(),
        )
        expected = peak_signal_noise_ratio(y_true, y_pred, data_range=255)
        assert psnr_y(prediction, target)[index].item() == pytest.approx(expected, abs=1e-9)


def test_ssim_matches_skimage_gaussian_ssim() -> None:
    prediction, target = random_pair(2)
    for index in range(2):
        y_pred, y_true = (
            rgb_to_studio_swing_y(prediction)[index, 0].numpy(),
            rgb_to_studio_swing_y(target)[index, 0].numpy(),
        )
        expected = structural_similarity(
            y_true, y_pred, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
        )
        assert ssim_y(prediction, target)[index].item() == pytest.approx(expected, abs=1e-9)


def test_identical_images() -> None:
    _, target = random_pair(3)
    assert torch.isinf(psnr_y(target, target)).all()
    torch.testing.assert_close(ssim_y(target, target), torch.ones(2, dtype=torch.float64))


def test_quantize_rounds_or_truncates() -> None:
    values = torch.tensor([0.0, 0.4 / 255, 0.6 / 255, 1.2, -0.1])
    assert (quantize(values) * 255).tolist() == [0.0, 0.0, 1.0, 255.0, 0.0]
    assert (quantize(values, rounding=False) * 255).round().tolist() == [0.0, 0.0, 0.0, 255.0, 0.0]


def test_mean_error_is_the_signed_numpy_mean_per_image_in_levels() -> None:
    generator = torch.Generator().manual_seed(0)
    prediction = quantize(torch.rand(2, 3, 16, 12, generator=generator))
    target = quantize(torch.rand(2, 3, 16, 12, generator=generator))
    expected = [(p.numpy().astype(np.float64) - t.numpy()).mean() * 255 for p, t in zip(prediction, target)]
    assert mean_error(prediction, target).tolist() == pytest.approx(expected, abs=1e-4)
    darker = (target - 10 / 255).clamp(0, 1)
    assert mean_error(darker, target)[0].item() < 0


def test_mean_absolute_error_and_detail_change_match_numpy_per_image() -> None:
    generator = torch.Generator().manual_seed(1)
    prediction = torch.rand(2, 3, 16, 12, generator=generator, dtype=torch.float64)
    target = torch.rand(2, 3, 16, 12, generator=generator, dtype=torch.float64)
    differences = [p.numpy() - t.numpy() for p, t in zip(prediction, target)]
    expected_mae = [np.abs(d).mean() * 255 for d in differences]
    expected_detail = [np.abs(d - d.mean(axis=(1, 2), keepdims=True)).mean() * 255 for d in differences]
    assert mean_absolute_error(prediction, target).tolist() == pytest.approx(expected_mae, rel=1e-9)
    assert detail_change(prediction, target).tolist() == pytest.approx(expected_detail, rel=1e-9)


def test_detail_change_ignores_brightness_and_colour_shifts() -> None:
    """A shift of each channel as a whole (a veil taken off, a cast) changes a photo by its size
    and its detail not at all; a streak taken out does change the detail."""
    photo = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 0.5 + 0.25
    shifted = photo + torch.tensor([-0.1, -0.05, 0.02], dtype=torch.float64).view(1, 3, 1, 1)
    assert mean_absolute_error(shifted, photo).item() == pytest.approx(255 * (0.1 + 0.05 + 0.02) / 3)
    assert detail_change(shifted, photo).item() == pytest.approx(0.0, abs=1e-9)
    streak = photo.clone()
    streak[..., 5] += 0.2
    assert detail_change(photo, streak).item() == pytest.approx(detail_change(shifted, streak).item())
    assert detail_change(photo, streak).item() > 1.0


def test_mismatched_shapes_and_tiny_images_are_refused() -> None:
    for metric in (mean_error, mean_absolute_error, detail_change):
        with pytest.raises(ValueError, match="shapes differ"):
            metric(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))
    with pytest.raises(ValueError, match="shapes differ"):
        psnr_y(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim_y(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))


def test_rainy_inputs_give_the_published_rain100l_baseline(rain100l_test) -> None:
    """Oracle: the rainy test inputs scored against their clean images give 26.90 dB / 0.8384,
    the input baseline deraining papers publish for Rain100L."""
    result = evaluate(None, rain100l_test, progress=False)
    assert len(result.per_image) == 100
    assert result.psnr == pytest.approx(26.90, abs=0.005)
    assert result.ssim == pytest.approx(0.8384, abs=0.00005)
