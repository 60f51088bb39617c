"""MorphologicalMaskHead: the untrained prior finds streaks, the learnable parts learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from derainzoo.layers.color import rgb_to_luma
from derainzoo.layers.mask_head import LearnedMaskHead, MorphologicalMaskHead


def streak_on_flat_background(size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """A flat grey-green image with one thin bright streak at 75 degrees, and its 0/1 footprint."""
    image = torch.empty(1, 3, size, size)
    image[:, 0], image[:, 1], image[:, 2] = 0.35, 0.45, 0.30
    streak = torch.zeros(size, size, dtype=torch.bool)
    top, bottom = size // 6, size - size // 6
    for row in range(top, bottom):
        col = size // 3 + round((bottom - row) / np.tan(np.radians(75.0)))
        streak[row, col : col + 2] = True
    image[:, :, streak] += 0.3
    return image, streak


def test_untrained_head_marks_a_streak_and_not_the_background() -> None:
    image, streak = streak_on_flat_background()
    mask = MorphologicalMaskHead()(image)[0, 0]
    # A 2-pixel digital streak has stair-step corners no digital line fits into; the rest is found.
    assert (mask[streak] > 0.5).float().mean() > 0.9
    assert all(mask[row][streak[row]].max() > 0.9 for row in range(64) if streak[row].any())
    far_from_streak = torch.ones_like(streak)
    far_from_streak[5:59, 14:38] = False
    assert mask[far_from_streak].max() < 0.05


def test_untrained_head_returns_the_morphological_prior() -> None:
    image = torch.rand(2, 3, 24, 31, generator=torch.Generator().manual_seed(0))
    head = MorphologicalMaskHead()
    torch.testing.assert_close(head(image), torch.sigmoid(head.prior_logits(image)))


def test_flat_image_and_wide_bright_object_are_not_rain() -> None:
    image = torch.full((1, 3, 48, 48), 0.4)
    image[..., 10:40, 10:40] = 0.9  # a bright block, wider than the top-hat element
    assert MorphologicalMaskHead()(image).max() < 0.05


def test_isolated_bright_dots_are_not_rain() -> None:
    image = torch.full((1, 3, 48, 48), 0.4)
    image[..., 8:40:8, 8:40:8] = 1.0  # dots shorter than the line elements
    assert MorphologicalMaskHead()(image).max() < 0.05


@pytest.mark.parametrize("size", [(1, 1), (7, 5), (33, 17), (64, 81)])
def test_any_size_gives_a_mask_in_unit_range(size: tuple[int, int]) -> None:
    image = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(1))
    mask = MorphologicalMaskHead()(image)
    assert mask.shape == (2, 1, *size)
    assert torch.all((mask >= 0) & (mask <= 1))


def test_batch_items_are_independent() -> None:
    images = torch.rand(3, 3, 20, 20, generator=torch.Generator().manual_seed(2))
    head = MorphologicalMaskHead()
    torch.nn.init.normal_(head.refine[-1].weight, std=0.1)
    batched = head(images)
    for index in range(3):
        torch.testing.assert_close(batched[index : index + 1], head(images[index : index + 1]))


def test_gradients_reach_every_parameter() -> None:
    image, _ = streak_on_flat_background(32)
    image = image + 0.05 * torch.rand(image.shape, generator=torch.Generator().manual_seed(3))
    head = MorphologicalMaskHead()
    # The zero-initialised last layer blocks gradients to the layers before it; one step of
    # training opens it, which is what this test emulates.
    torch.nn.init.normal_(head.refine[-1].weight, std=0.1)
    head(image).mean().backward()
    for name, parameter in head.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_bfloat16_close_to_float32() -> None:
    image, _ = streak_on_flat_background()
    head = MorphologicalMaskHead()
    reference = head(image)
    result = head.to(torch.bfloat16)(image.bfloat16())
    assert result.dtype == torch.bfloat16
    # Far from the threshold the mask is saturated, so the two agree up to bf16 resolution.
    assert (result.float() - reference).abs().mean() < 0.02


@pytest.mark.parametrize(
    ("image", "error", "message"),
    [
        (torch.rand(3, 16, 16), ValueError, r"\(B, 3, H, W\)"),
        (torch.rand(1, 4, 16, 16), ValueError, r"\(B, 3, H, W\)"),
        (torch.ones(1, 3, 16, 16, dtype=torch.uint8), TypeError, "floating-point"),
    ],
)
def test_bad_input_is_refused(image: torch.Tensor, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        MorphologicalMaskHead()(image)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="num_angles"):
        MorphologicalMaskHead(num_angles=0)
    with pytest.raises(ValueError, match="temperature"):
        MorphologicalMaskHead(temperature=0.0)
    with pytest.raises(ValueError, match="odd"):
        MorphologicalMaskHead(line_length=8)


def test_prior_covers_real_rain_streaks(rain100l_train) -> None:
    """On real Rain100L training pairs the prior finds the strong rain, and what it marks is
    rain far more often than a random pixel is."""
    head = MorphologicalMaskHead()
    for stem in ("001", "050", "120"):
        rainy, clean = (
            torch.from_numpy(np.array(Image.open(rain100l_train / kind / f"{stem}.webp").convert("RGB")))
            .permute(2, 0, 1)[None]
            .float()
            / 255
            for kind in ("rain", "norain")
        )
        rain_layer = rgb_to_luma(rainy - clean)
        with torch.no_grad():
            predicted = head(rainy) > 0.5
        strong_rain, some_rain = rain_layer > 0.1, rain_layer > 0.04
        recall = (strong_rain & predicted).sum() / strong_rain.sum()
        precision = (some_rain & predicted).sum() / predicted.sum()
        assert recall > 0.85, stem
        assert precision > 2 * some_rain.float().mean(), stem


def test_learned_mask_head_starts_at_one_half_and_learns_from_its_input() -> None:
    head = LearnedMaskHead(channels=8)
    image = torch.rand(2, 3, 24, 30)
    assert torch.equal(head(image), torch.full((2, 1, 24, 30), 0.5))
    target = (image.mean(dim=1, keepdim=True) > 0.5).float()
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.binary_cross_entropy(head(image), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    with pytest.raises(ValueError, match="image"):
        head(torch.rand(1, 4, 8, 8))
