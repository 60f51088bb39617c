"""Feed-forward layers for channels-first feature maps."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from derainzoo.layers.conv_chunks import conv_chunks

__all__ = ["GatedDConvFeedForward"]


class GatedDConvFeedForward(nn.Module):
    """Gated feed-forward network with a depth-wise convolution (Restormer's GDFN).

    ``out = W_out(GELU(DW(W_a x)) * DW(W_b x))``: a 1x1 expansion into two branches, a 3x3
    depth-wise convolution that gives each pixel its neighbourhood (the position information
    the attention blocks lack), a GELU gate, and a 1x1 projection back.

    Args:
        dim: input and output channels ``C``.
        mlp_ratio: hidden channels as a multiple of ``dim`` (timm's name).
        bias: use biases in the convolutions.

    Shape:
        - Input: ``(B, C, H, W)``.
        - Output: ``(B, C, H, W)``.
    """

    def __init__(self, dim: int, mlp_ratio: float = 2.66, bias: bool = False) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=bias)
        self.depthwise = nn.Conv2d(hidden * 2, hidden * 2, kernel_size=3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` in and out."""
        gate, content = conv_chunks(x, (self.project_in, self.depthwise), 2)
        return self.project_out(F.gelu(gate) * content)
