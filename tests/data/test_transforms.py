"""Paired crops and dihedral augmentations keep the two images aligned."""

from __future__ import annotations

import torch

from derainzoo.data.transforms import paired_augment, paired_random_crop


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
