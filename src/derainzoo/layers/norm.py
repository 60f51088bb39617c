"""Normalisation layers for channels-first feature maps."""

from __future__ import annotations

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

__all__ = ["LayerNorm2d"]


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of each pixel of a ``(B, C, H, W)`` feature map.

    Every pixel's ``C`` values are normalised to zero mean and unit variance, then scaled and
    shifted per channel, as ``nn.LayerNorm(C)`` would do on ``(B, H, W, C)``.

    Args:
        num_channels: number of channels ``C``.
        eps: added to the variance for numerical stability.
        affine: learn a per-channel scale and shift.

    Shape:
        - Input: ``(B, C, H, W)``.
        - Output: ``(B, C, H, W)``.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6, affine: bool = True) -> None:
        super().__init__(num_channels, eps=eps, elementwise_affine=affine)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` in and out."""
        channels_last = rearrange(x, "b c h w -> b h w c")
        normalised = F.layer_norm(channels_last, self.normalized_shape, self.weight, self.bias, self.eps)
        return rearrange(normalised, "b h w c -> b c h w")
