"""mask_prior_coverage.py: the overlap counts, and the claim it measures: a streak wider than the
top-hat box falls out of the prior, a wider box brings it back."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from mask_prior_coverage import PixelOverlap, head_mask, prior_mask, true_rain  # noqa: E402

from derainzoo.layers.mask_head import MorphologicalMaskHead


def test_overlap_counts_match_a_hand_count() -> None:
    predicted = torch.tensor([[True, True, False, False]])
    truth = torch.tensor([[True, False, True, False]])
    overlap = PixelOverlap()
    overlap.add(predicted, truth)
    overlap.add(truth, truth)  # a perfect prediction of the same two pixels
    assert (overlap.both, overlap.either, overlap.truth) == (3, 5, 4)
    assert overlap.coverage == 3 / 4
    assert overlap.iou == 3 / 5


def test_empty_masks_give_nan_not_a_division_error() -> None:
    overlap = PixelOverlap()
    overlap.add(torch.zeros(2, 2, dtype=torch.bool), torch.zeros(2, 2, dtype=torch.bool))
    assert math.isnan(overlap.coverage) and math.isnan(overlap.iou)


def test_true_rain_is_brightening_above_the_threshold() -> None:
    clean = torch.full((1, 3, 4, 4), 0.5)
    rainy = clean.clone()
    rainy[..., 0, :] += 0.10  # rain
    rainy[..., 1, :] += 0.02  # below the threshold
    rainy[..., 2, :] -= 0.10  # darker: not rain
    expected = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    expected[..., 0, :] = True
    assert torch.equal(true_rain(rainy, clean, 0.04), expected)


def test_a_streak_width_keeps_the_streak_and_drops_the_veil() -> None:
    clean = torch.full((1, 3, 40, 40), 0.3)
    rainy = clean + 0.1  # a veil over the whole frame
    rainy[..., :, 18:21] += 0.3  # and one 3-pixel streak
    streaks = true_rain(rainy, clean, 0.04, streak_width=15)
    assert true_rain(rainy, clean, 0.04).all()
    assert streaks[..., :, 18:21].all()
    assert streaks.sum() == 40 * 3


def _bar_image(width: int) -> tuple[torch.Tensor, torch.Tensor]:
    clean = torch.full((1, 3, 48, 48), 0.3)
    rainy = clean.clone()
    rainy[..., 4:44, 24 - width // 2 : 24 - width // 2 + width] = 0.8  # a long vertical streak
    return rainy, clean


def test_a_streak_wider_than_the_box_falls_out_of_the_prior() -> None:
    rainy, clean = _bar_image(width=9)
    truth = true_rain(rainy, clean, 0.04)
    narrow, wide = PixelOverlap(), PixelOverlap()
    narrow.add(prior_mask(MorphologicalMaskHead(tophat_size=5), rainy), truth)
    wide.add(prior_mask(MorphologicalMaskHead(tophat_size=15), rainy), truth)
    assert narrow.coverage == 0.0
    assert wide.coverage > 0.9


def test_a_thin_streak_is_seen_by_either_box() -> None:
    rainy, clean = _bar_image(width=3)
    truth = true_rain(rainy, clean, 0.04)
    for size in (5, 15):
        overlap = PixelOverlap()
        overlap.add(prior_mask(MorphologicalMaskHead(tophat_size=size), rainy), truth)
        assert overlap.coverage > 0.9, size


def test_an_untrained_heads_whole_mask_is_its_prior() -> None:
    rainy, _ = _bar_image(width=3)
    rainy = (rainy + 0.05 * torch.rand(rainy.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    head = MorphologicalMaskHead()
    assert torch.equal(head_mask(head, rainy), prior_mask(head, rainy))
    with torch.no_grad():
        head.refine[-1].bias.fill_(-100.0)  # a refinement that vetoes every pixel
    assert not head_mask(head, rainy).any()
