"""Colour conversions used by the building blocks."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["rgb_to_luma"]

# ITU-R BT.601 luma weights, the ones deraining papers use for their Y channel.
_BT601_WEIGHTS = (0.299, 0.587, 0.114)


def rgb_to_luma(image: Tensor) -> Tensor:
    """ITU-R BT.601 luma ``Y' = 0.299 R + 0.587 G + 0.114 B``.

    Args:
        image: ``(B, 3, H, W)`` RGB tensor, any value range.

    Returns:
        ``(B, 1, H, W)`` luma in the same range as ``image``.
    """
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"image must have shape (B, 3, H, W), got {tuple(image.shape)}")
    weights = torch.tensor(_BT601_WEIGHTS, dtype=image.dtype, device=image.device)
    return torch.einsum("bchw,c->bhw", image, weights).unsqueeze(1)
