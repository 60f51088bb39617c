"""Resolution changes by pixel (un)shuffle, lossless rearrangements around a convolution."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["Downsample", "Upsample"]


class Downsample(nn.Module):
    """Halve the resolution: 3x3 convolution to ``out_dim / 4`` channels, then pixel-unshuffle.

    Args:
        in_dim: input channels.
        out_dim: output channels; must be divisible by 4.

    Shape:
        - Input: ``(B, in_dim, H, W)`` with even ``H`` and ``W``.
        - Output: ``(B, out_dim, H / 2, W / 2)``.
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        if out_dim % 4:
            raise ValueError(f"out_dim must be divisible by 4, got {out_dim}")
        self.body = nn.Sequential(nn.Conv2d(in_dim, out_dim // 4, 3, padding=1, bias=False), nn.PixelUnshuffle(2))

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_dim, H, W)`` to ``(B, out_dim, H / 2, W / 2)``."""
        return self.body(x)


class Upsample(nn.Module):
    """Double the resolution: 3x3 convolution to ``4 * out_dim`` channels, then pixel-shuffle.

    Args:
        in_dim: input channels.
        out_dim: output channels.

    Shape:
        - Input: ``(B, in_dim, H, W)``.
        - Output: ``(B, out_dim, 2 H, 2 W)``.
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_dim, out_dim * 4, 3, padding=1, bias=False), nn.PixelShuffle(2))

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_dim, H, W)`` to ``(B, out_dim, 2 H, 2 W)``."""
        return self.body(x)
