"""ShiftedWindowAttention: Swin-style local attention in square windows, optionally shifted."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from derainzoo.layers.validation import check_feature_map
from derainzoo.layers.window import (
    WindowSelfAttentionBase,
    pad_to_multiple,
    window_partition,
    window_reverse,
)

__all__ = ["ShiftedWindowAttention", "alternating_shift"]


def alternating_shift(index: int, window_size: int) -> int:
    """Swin's rule for a sequence of window-attention blocks: block ``index`` is unshifted when
    even and shifted by half a window when odd, so consecutive blocks connect neighbouring windows.

    Examples:
        >>> [alternating_shift(index, 8) for index in range(4)]
        [0, 4, 0, 4]
    """
    return window_size // 2 if index % 2 else 0


class ShiftedWindowAttention(WindowSelfAttentionBase):
    """Multi-head self-attention inside square windows, with a learned relative position bias.

    With ``shift_size > 0`` the feature map is rolled by ``-shift_size`` pixels before the
    partition and rolled back after, so that alternating blocks connect neighbouring windows
    (Swin Transformer). Pixels brought together only by the roll's wrap-around, and the padding
    added when ``H`` or ``W`` is not a multiple of ``window_size``, are masked out of each
    other's attention.

    Args:
        dim: channels ``C``.
        num_heads: attention heads; must divide ``dim``.
        window_size: side of the square windows in pixels.
        shift_size: roll in pixels, ``0 <= shift_size < window_size``.
        qkv_bias: bias in the query/key/value projection.
        attn_drop: attention dropout probability (training only).
        proj_drop: dropout after the output projection (training only).

    Shape:
        - Input: ``(B, C, H, W)``, any ``H`` and ``W``.
        - Output: ``(B, C, H, W)``.

    Examples:
        >>> attention = ShiftedWindowAttention(dim=32, num_heads=4, window_size=8, shift_size=4)
        >>> attention(torch.randn(1, 32, 20, 30)).shape
        torch.Size([1, 32, 20, 30])
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        window_size: int = 8,
        shift_size: int = 0,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__(dim, num_heads, qkv_bias, attn_drop, proj_drop)
        if not 0 <= shift_size < window_size:
            raise ValueError(f"shift_size must satisfy 0 <= shift_size < window_size, got {shift_size}, {window_size}")
        self.window_size = window_size
        self.shift_size = shift_size
        span = 2 * window_size - 1
        self.relative_position_bias_table = nn.Parameter(torch.zeros(span * span, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", _relative_position_index(window_size), persistent=False)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, num_heads={self.num_heads}, window_size={self.window_size}, shift_size={self.shift_size}"
        )

    def forward(self, x: Tensor) -> Tensor:
        """Attend within (shifted) windows.

        Args:
            x: ``(B, C, H, W)`` features.

        Returns:
            ``(B, C, H, W)`` features.
        """
        check_feature_map(x, self.dim)
        height, width = x.shape[-2:]
        padded = pad_to_multiple(x, self.window_size)
        padded_height, padded_width = padded.shape[-2:]
        shifted = torch.roll(padded, shifts=(-self.shift_size, -self.shift_size), dims=(2, 3))

        tokens = window_partition(shifted, self.window_size)
        query, key, value = self.qkv(tokens).chunk(3, dim=-1)
        bias = rearrange(self.relative_position_bias_table[self.relative_position_index], "t s head -> head t s").to(
            query.dtype
        )
        region_mask = self._region_mask(height, width, padded_height, padded_width, x.device)
        attn_mask = bias if region_mask is None else bias.masked_fill(region_mask, float("-inf"))
        out = self.attend(query, key, value, attn_mask=attn_mask)

        merged = window_reverse(out, self.window_size, padded_height, padded_width)
        unshifted = torch.roll(merged, shifts=(self.shift_size, self.shift_size), dims=(2, 3))
        return unshifted[..., :height, :width]

    def _region_mask(
        self, height: int, width: int, padded_height: int, padded_width: int, device: torch.device
    ) -> Tensor | None:
        """``(nW, 1, T, T)`` True where two tokens of a window must not attend to each other.

        Every pixel gets a region label: which side of the wrap-around it lies on in each axis,
        or a label of its own for padding. Tokens attend only within their region.
        """
        # Under torch.export the sizes are symbolic and one graph serves every size, so the mask
        # is always built there (for sizes that need none it masks nothing).
        needs_mask = self.shift_size > 0 or (height, width) != (padded_height, padded_width)
        if not (needs_mask or torch.compiler.is_exporting()):
            return None
        rows = torch.arange(padded_height, device=device)
        cols = torch.arange(padded_width, device=device)
        wrapped = (rows < self.shift_size).long()[:, None] * 2 + (cols < self.shift_size).long()[None, :]
        is_padding = (rows >= height)[:, None] | (cols >= width)[None, :]
        labels = torch.where(is_padding, torch.full_like(wrapped, 4), wrapped)
        labels = torch.roll(labels, shifts=(-self.shift_size, -self.shift_size), dims=(0, 1))
        window_labels = window_partition(labels[None, None], self.window_size)[0, :, :, 0]
        return (window_labels[:, :, None] != window_labels[:, None, :]).unsqueeze(1)


def _relative_position_index(window_size: int) -> Tensor:
    """``(T, T)`` index into the bias table of the offset between every pair of window tokens."""
    coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")).flatten(1)
    offsets = coords[:, :, None] - coords[:, None, :] + window_size - 1
    return offsets[0] * (2 * window_size - 1) + offsets[1]
