"""NAFBlock: NAFNet's activation-free block, the building block of the drop-in baseline, whose
channel attention can be kept to the background by a rain mask."""

from __future__ import annotations

import torch
from timm.layers import DropPath
from torch import Tensor, nn

from derainzoo.layers.norm import LayerNorm2d
from derainzoo.layers.rain_mask_attention import resize_mask

__all__ = ["NAFBlock", "background_mean", "simple_gate"]

_MIN_BACKGROUND_WEIGHT = 1e-4
"""Floor of every pixel's weight in [`background_mean`][background_mean]: an image that is rain
everywhere falls back to the plain mean instead of dividing by zero."""


def simple_gate(x: Tensor) -> Tensor:
    """NAFNet's SimpleGate: the first half of the channels times the second half.

    Args:
        x: ``(B, 2C, H, W)``.

    Returns:
        ``(B, C, H, W)``.
    """
    first, second = x.chunk(2, dim=1)
    return first * second


def background_mean(x: Tensor, background: Tensor) -> Tensor:
    """Mean of every channel over the background pixels: ``sum(x * w) / sum(w)`` per sample and
    channel, with ``w = max(background, 1e-4)``.

    Args:
        x: ``(B, C, H, W)``.
        background: ``(B, 1, H, W)`` weight of every pixel in ``[0, 1]`` (``1 - mask``).

    Returns:
        ``(B, C, 1, 1)``; the plain mean when ``background`` is uniform.
    """
    weight = background.clamp_min(_MIN_BACKGROUND_WEIGHT)
    return (x * weight).sum(dim=(2, 3), keepdim=True) / weight.sum(dim=(2, 3), keepdim=True)


class NAFBlock(nn.Module):
    """The block of NAFNet (Chen et al., "Simple Baselines for Image Restoration", ECCV 2022),
    which has no nonlinear activation at all: gates and a simplified channel attention do that
    work.

    * Mixing: ``x + beta * W3(SCA(SG(DW(W1(LN(x))))))``: a 1x1 expansion to ``2C`` channels, a
      3x3 depth-wise convolution, the [`simple_gate`][simple_gate]
      back to ``C``, simplified channel attention ``SCA(y) = y * W_s(avgpool(y))``, and a 1x1
      projection.
    * Feed-forward: ``x + gamma * W5(SG(W4(LN(x))))``.

    ``beta`` and ``gamma`` are per-channel scales that start at zero, so an untrained block is
    the identity.

    Given a rain mask, the simplified channel attention pools over the background only
    ([`background_mean`][background_mean] with ``1 - mask``): rain-affected pixels are kept out
    of the attention weights, as in [`RainMaskAttention`][derainzoo.layers.rain_mask_attention.RainMaskAttention],
    at the cost of one weighted mean.

    Args:
        dim: channels ``C``.
        expansion: width of the mixing branch before the gate, as a multiple of ``dim``.
        ffn_expansion: width of the feed-forward branch before the gate, as a multiple of ``dim``.
        drop_path: probability of dropping each residual branch for a whole sample while
            training (stochastic depth); 0 disables it.

    Shape:
        - Input: ``(B, C, H, W)``.
        - Output: ``(B, C, H, W)``.

    Examples:
        >>> block = NAFBlock(16)
        >>> x = torch.randn(1, 16, 8, 8)
        >>> torch.equal(block(x), x)  # beta = gamma = 0 at initialisation
        True
    """

    def __init__(self, dim: int, expansion: int = 2, ffn_expansion: int = 2, drop_path: float = 0.0) -> None:
        super().__init__()
        hidden, ffn_hidden = dim * expansion, dim * ffn_expansion
        if hidden % 2 or ffn_hidden % 2:
            raise ValueError(f"the gates halve the channels: dim * expansion must be even, got {dim} x {expansion}")
        self.norm1 = LayerNorm2d(dim)
        self.expand = nn.Conv2d(dim, hidden, 1)
        self.depthwise = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.channel_attention = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(hidden // 2, hidden // 2, 1))
        self.project = nn.Conv2d(hidden // 2, dim, 1)
        self.norm2 = LayerNorm2d(dim)
        self.ffn_expand = nn.Conv2d(dim, ffn_hidden, 1)
        self.ffn_project = nn.Conv2d(ffn_hidden // 2, dim, 1)
        self.beta = nn.Parameter(torch.zeros(1, dim, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, dim, 1, 1))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Mix and feed forward.

        Args:
            x: ``(B, C, H, W)`` features.
            mask: ``(B, 1, h, w)`` rain mask in ``[0, 1]`` (resized to ``H x W``), or ``None``:
                the channel attention pools over every pixel.

        Returns:
            ``(B, C, H, W)`` features.
        """
        mixed = simple_gate(self.depthwise(self.expand(self.norm1(x))))
        pool, squeeze = self.channel_attention  # one Sequential, as NAFNet's weight names have it
        if mask is None:
            pooled = pool(mixed)
        else:
            pooled = background_mean(mixed, 1.0 - resize_mask(mask.to(mixed.dtype), tuple(mixed.shape[-2:])))
        mixed = self.project(mixed * squeeze(pooled))
        x = x + self.drop_path(self.beta * mixed)
        fed = self.ffn_project(simple_gate(self.ffn_expand(self.norm2(x))))
        return x + self.drop_path(self.gamma * fed)
