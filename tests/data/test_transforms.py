"""Paired crops, dihedral augmentations and tone changes keep the two images aligned."""

from __future__ import annotations

import pytest
import torch

from derainzoo.data.transforms import paired_augment, paired_random_crop, paired_tone_change


def test_crop_takes_the_same_window_from_both() -> None:
    first = torch.arange(2 * 10 * 12).reshape(2, 10, 12)
    second = first + 1000
    a, b = paired_random_crop(first, second, 5, torch.Generator().manual_seed(0))
    assert a.shape == (2, 5, 5) and torch.equal(b, a + 1000)
    top, left = divmod(a[0, 0, 0].item(), 12)
    assert torch.equal(a, first[:, top : top + 5, left : left + 5])


def test_augmentations_cover_all_eight_symmetries_and_stay_paired() -> None:
    first = torch.arange(9).reshape(1, 3, 3)
    seen = set()
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        a, b = paired_augment(first, first * 10, generator)
        assert torch.equal(b, a * 10)
        assert sorted(a.flatten().tolist()) == list(range(9))
        seen.add(tuple(a.flatten().tolist()))
    assert len(seen) == 8


def test_tone_change_is_one_affine_map_of_both_images_around_the_clean_mean() -> None:
    generator = torch.Generator().manual_seed(0)
    clean = torch.rand(3, 16, 16, generator=generator) * 0.6 + 0.2
    rainy = (clean + 0.15 * (torch.rand(3, 16, 16, generator=generator) > 0.9)).clamp(0, 1)
    for seed in range(20):
        changed_rainy, changed_clean = paired_tone_change(rainy, clean, torch.Generator().manual_seed(seed))
        contrast, shift = torch.rand(2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).tolist()
        contrast, shift = 0.5 + 0.5 * contrast, -0.1 + 0.2 * shift
        mean = float(clean.mean())
        for before, after in ((rainy, changed_rainy), (clean, changed_clean)):
            torch.testing.assert_close(after, (mean + contrast * (before - mean) + shift).clamp(0, 1))
        assert float(changed_clean.std()) <= float(clean.std()) + 1e-6
    with pytest.raises(ValueError, match="contrast must be a range"):
        paired_tone_change(rainy, clean, generator, contrast=(0.0, 1.0))
    with pytest.raises(ValueError, match="shift must be a range"):
        paired_tone_change(rainy, clean, generator, shift=(0.2, 0.1))
