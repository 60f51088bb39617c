"""Random crops and dihedral augmentations applied identically to an image pair."""

from __future__ import annotations

import torch
from torch import Tensor

from derainzoo.dihedral import dihedral_transform

__all__ = ["paired_augment", "paired_random_crop"]


def paired_random_crop(
    first: Tensor, second: Tensor, size: int, generator: torch.Generator, name: str = "image"
) -> tuple[Tensor, Tensor]:
    """The same random ``size x size`` crop of two ``(C, H, W)`` tensors.

    Raises:
        ValueError: the images are smaller than ``size``; the message names ``name``.
    """
    height, width = first.shape[-2:]
    if height < size or width < size:
        raise ValueError(f"{name} is {height}x{width}, smaller than the crop size {size}")
    top = int(torch.randint(0, height - size + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - size + 1, (1,), generator=generator))
    window = (..., slice(top, top + size), slice(left, left + size))
    return first[window], second[window]


def paired_augment(first: Tensor, second: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """One of the 8 flips/rotations by multiples of 90 degrees, the same for both tensors.

    Rain streaks keep their character under these (a rotated streak is still a streak), so the
    augmentation multiplies the training set without inventing a new kind of rain.
    """
    choice = int(torch.randint(0, 8, (1,), generator=generator))
    return dihedral_transform(first, choice), dihedral_transform(second, choice)
