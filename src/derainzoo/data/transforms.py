"""Random crops, dihedral augmentations and tone changes applied identically to an image pair."""

from __future__ import annotations

import torch
from torch import Tensor

from derainzoo.dihedral import dihedral_transform

__all__ = ["paired_augment", "paired_random_crop", "paired_tone_change"]


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


def paired_tone_change(
    rainy: Tensor,
    clean: Tensor,
    generator: torch.Generator,
    contrast: tuple[float, float] = (0.5, 1.0),
    shift: tuple[float, float] = (-0.1, 0.1),
) -> tuple[Tensor, Tensor]:
    """The same random loss of contrast and brightness shift of a rainy image and its clean one.

    Both become ``m + c * (x - m) + b``, clipped to ``[0, 1]``, with ``m`` the mean of the clean
    image, ``c ~ U(contrast)`` and ``b ~ U(shift)``. The pair then shows a flatter, brighter or
    darker *scene* under fainter rain, with that scene as the target: a counter-example to the
    rendered veil and haze, where a loss of contrast and a brightening are rain to take off.
    Without it a model learns to darken and stretch every flat scene.

    Args:
        rainy: ``(C, H, W)`` rainy image in ``[0, 1]``.
        clean: ``(C, H, W)`` its clean image in ``[0, 1]``.
        generator: draws ``c`` then ``b``.
        contrast: ``(low, high)`` range of ``c``, within ``(0, 1]``.
        shift: ``(low, high)`` range of ``b`` on the 0-1 scale.

    Returns:
        ``(rainy, clean)`` changed alike.
    """
    low_contrast, high_contrast = contrast
    if not 0.0 < low_contrast <= high_contrast <= 1.0:
        raise ValueError(f"contrast must be a range (low, high) with 0 < low <= high <= 1, got {contrast}")
    if not -1.0 <= shift[0] <= shift[1] <= 1.0:
        raise ValueError(f"shift must be a range (low, high) with -1 <= low <= high <= 1, got {shift}")
    draws = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
    scale = low_contrast + (high_contrast - low_contrast) * draws[0]
    offset = shift[0] + (shift[1] - shift[0]) * draws[1]
    mean = float(clean.mean())
    return tuple((mean + scale * (image - mean) + offset).clamp(0.0, 1.0) for image in (rainy, clean))
