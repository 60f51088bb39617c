"""The eight flips and rotations by multiples of 90 degrees of an image (the dihedral group of
the square), used for augmentation and for the self-ensemble."""

from __future__ import annotations

from torch import Tensor

__all__ = ["dihedral_transform", "inverse_dihedral_transform"]


def dihedral_transform(x: Tensor, index: int) -> Tensor:
    """Element ``index`` (0..7) of the dihedral group of the square, applied to the last two
    dimensions: the flips and rotations by multiples of 90 degrees.

    Bit 2 transposes first (so indices 4..7 swap height and width), bit 0 then flips
    horizontally and bit 1 vertically. Indices ``0 .. n-1`` form a subgroup for ``n`` in 1, 2, 4
    and 8.

    Args:
        x: ``(..., H, W)``.
        index: which of the eight transforms.

    Returns:
        ``(..., H, W)``, or ``(..., W, H)`` for ``index >= 4``.
    """
    _check_index(index)
    if index & 4:
        x = x.transpose(-2, -1)
    if index & 1:
        x = x.flip(-1)
    if index & 2:
        x = x.flip(-2)
    return x


def inverse_dihedral_transform(x: Tensor, index: int) -> Tensor:
    """Undo [`dihedral_transform`][dihedral_transform] with the same ``index``."""
    _check_index(index)
    if index & 2:
        x = x.flip(-2)
    if index & 1:
        x = x.flip(-1)
    if index & 4:
        x = x.transpose(-2, -1)
    return x


def _check_index(index: int) -> None:
    if not 0 <= index < 8:
        raise ValueError(f"a dihedral transform index is in 0..7, got {index!r}")
