"""Losses: Charbonnier, frequency, mask target and the combined dual-stage loss."""

from __future__ import annotations

import pytest
import torch

from derainzoo.data import RainParams, StreakLayer, render_rain, synthesize_rain
from derainzoo.losses import DualStageLoss, charbonnier_loss, frequency_loss, psnr_loss, rain_mask_target
from derainzoo.metrics import psnr_y, quantize

from .helpers import smooth_image, tiny_model


def test_charbonnier_formula_and_limits() -> None:
    prediction, target = torch.tensor([0.0, 1.0, 3.0]), torch.zeros(3)
    expected = torch.sqrt(torch.tensor([0.0, 1.0, 9.0]) + 1e-6).mean()
    torch.testing.assert_close(charbonnier_loss(prediction, target), expected)
    assert charbonnier_loss(target, target).item() == pytest.approx(1e-3)


def test_frequency_loss_is_zero_for_equal_images_and_sees_fine_detail() -> None:
    image = smooth_image(32, 32)
    assert frequency_loss(image, image).item() == 0.0
    stripes = image.clone()
    stripes[..., ::2] += 0.05
    assert frequency_loss(stripes, image) > 0


def test_mask_target_marks_streaks_not_noise() -> None:
    clean = smooth_image(64, 64)
    rainy, rain = synthesize_rain(clean, density=0.003, length=15, width=2, generator=torch.Generator().manual_seed(0))
    target = rain_mask_target(rainy, clean)
    assert target.shape == (1, 1, 64, 64) and set(target.unique().tolist()) <= {0.0, 1.0}
    streaks = rain > 0.1
    assert (target.bool() & streaks).sum() / streaks.sum() > 0.8
    noisy = (clean + 0.05 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    assert rain_mask_target(noisy, clean).mean() < 0.01


def test_dual_stage_loss_parts_and_gradients() -> None:
    model = tiny_model().train()
    clean = smooth_image(32, 32)
    rainy, _ = synthesize_rain(clean, generator=torch.Generator().manual_seed(2))
    loss, parts = DualStageLoss()(model.forward_stages(rainy), rainy, clean)
    assert set(parts) == {"final", "stage1", "frequency", "mask"}
    expected = parts["final"] + 0.5 * parts["stage1"] + 0.05 * parts["frequency"] + 0.05 * parts["mask"]
    torch.testing.assert_close(loss.detach(), expected)
    loss.backward()
    assert model.mask_head.threshold.grad is not None and model.stage1_head.weight.grad.abs().sum() > 0
    assert set(DualStageLoss(mask_weight=0.0)(model.forward_stages(rainy), rainy, clean)[1]) == {
        "final",
        "stage1",
        "frequency",
    }


def test_mask_target_ignores_the_veil_and_finds_streaks_that_darken_a_bright_sky() -> None:
    layer = StreakLayer(angle=5.0, length=21.0, width=2.0, density=0.004, opacity=0.9)
    veiled = render_rain(
        smooth_image(64, 64), RainParams(layers=(StreakLayer(density=0.0),), transmission=0.5), None
    ).rainy
    assert rain_mask_target(veiled, smooth_image(64, 64)).sum() == 0
    sky = torch.full((1, 3, 64, 64), 0.95)
    rendered = render_rain(sky, RainParams(layers=(layer,), streak_light=0.6), torch.Generator().manual_seed(3))
    assert (rendered.rainy <= sky + 1e-6).all()  # the streaks only darken here
    streaks = rendered.streaks > 0.3
    assert (rain_mask_target(rendered.rainy, sky).bool() & streaks).sum() / streaks.sum() > 0.8


def test_psnr_loss_is_minus_the_benchmark_psnr_and_trains() -> None:
    target = smooth_image(32, 32).repeat(2, 1, 1, 1)
    prediction = quantize(target + 0.02 * torch.randn(target.shape, generator=torch.Generator().manual_seed(4)))
    expected = -psnr_y(prediction, target).mean()
    torch.testing.assert_close(psnr_loss(prediction, target).double(), expected)
    assert psnr_loss(target, target).item() == -100.0  # a perfect image counts as 100 dB, not infinity
    guess = prediction.clone().requires_grad_(True)
    psnr_loss(guess, target).backward()
    stepped = guess.detach() - 1e-4 * guess.grad.sign()  # a small step against the gradient raises the PSNR
    assert psnr_y(stepped, target).mean() > psnr_y(prediction, target).mean()


def test_dual_stage_loss_with_the_psnr_pixel_loss() -> None:
    model = tiny_model().train()
    clean = smooth_image(32, 32)
    rainy, _ = synthesize_rain(clean, generator=torch.Generator().manual_seed(2))
    outputs = model.forward_stages(rainy)
    loss, parts = DualStageLoss(0.1, 0.0, 0.0, pixel_loss="psnr")(outputs, rainy, clean)
    torch.testing.assert_close(parts["final"], psnr_loss(outputs.image.detach(), clean))
    assert set(parts) == {"final", "stage1"}  # the terms of weight 0 are not even computed
    torch.testing.assert_close(loss.detach(), parts["final"] + 0.1 * parts["stage1"])
    with pytest.raises(ValueError, match="unknown pixel_loss 'l2'"):
        DualStageLoss(pixel_loss="l2")
