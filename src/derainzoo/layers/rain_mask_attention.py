"""RainMaskAttention: channel (transposed) attention whose weights see background pixels only."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from derainzoo.layers.conv_chunks import conv_chunks
from derainzoo.layers.norm import l2_normalize
from derainzoo.layers.validation import check_feature_map

__all__ = ["RainMaskAttention", "masked_channel_attention", "resize_mask"]


def resize_mask(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize a soft mask to a feature resolution.

    Shrinking averages (``area``), so a feature pixel is masked by the fraction of its
    footprint that is rain; growing interpolates bilinearly.

    Args:
        mask: ``(B, 1, h, w)`` mask in ``[0, 1]``.
        size: target ``(H, W)``.

    Returns:
        ``(B, 1, H, W)`` mask in ``[0, 1]``; ``mask`` itself when the size already matches.
    """
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    if mask.shape[-2] >= size[0] and mask.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(mask, size)
    return F.interpolate(mask, size=size, mode="bilinear", align_corners=False).clamp(0.0, 1.0)


def masked_channel_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    temperature: Tensor,
    num_heads: int,
    background: Tensor | None = None,
) -> Tensor:
    """Multi-head transposed (channel) attention whose weights see background pixels only.

    Per head, with ``c = C / num_heads`` channels: the queries and keys are multiplied by the
    background weight ``w`` (masked pixels count for nothing), L2-normalised over the pixels,
    and the ``(c, c)`` map ``softmax(temperature * q_hat @ k_hat^T)`` mixes the value channels.
    Cost ``O(H W c C)``: linear in the pixels, every pixel contributing to one global map.

    Args:
        query: ``(B, C, H, W)`` queries.
        key: ``(B, C, H, W)`` keys.
        value: ``(B, C, H, W)`` values.
        temperature: ``(num_heads, 1, 1)`` (or ``(num_heads,)``) scale of each head's logits.
        num_heads: attention heads; must divide ``C``.
        background: ``(B, 1, H, W)`` (or ``(1, 1, H, W)``) weight in ``[0, 1]`` of every pixel in
            the weights, ``1 - mask``; ``None`` weighs every pixel fully.

    Returns:
        ``(B, C, H, W)``: every pixel's values re-mixed across channels.

    Examples:
        >>> q, k, v = torch.randn(3, 2, 8, 5, 6).unbind(0)
        >>> masked_channel_attention(q, k, v, torch.ones(2, 1, 1), num_heads=2).shape
        torch.Size([2, 8, 5, 6])
    """
    height, width = query.shape[-2:]
    if background is not None:
        query, key = query * background, key * background
    query, key, value = (rearrange(t, "b (head c) h w -> b head c (h w)", head=num_heads) for t in (query, key, value))
    query = l2_normalize(query, dim=-1)
    key = l2_normalize(key, dim=-1)
    weights = (query @ key.transpose(-2, -1) * temperature.view(num_heads, 1, 1)).softmax(dim=-1)
    return rearrange(weights @ value, "b head c (h w) -> b (head c) h w", h=height, w=width)


class RainMaskAttention(nn.Module):
    """Multi-head transposed attention whose weights are built from background pixels only.

    As in Restormer's MDTA, queries, keys and values come from a 1x1 convolution followed by a
    3x3 depth-wise convolution, and each head attends across channels: its ``(C/h, C/h)``
    attention map is ``softmax(temperature * q_hat @ k_hat^T)`` where ``q_hat`` and ``k_hat`` are
    the query and key maps L2-normalised over pixels. The cost is linear in the number of pixels
    and every pixel contributes to a global map.

    The rain mask ``m`` enters through the background weight ``w = 1 - m``:

    * the query/key branch reads ``w * x``, so features of fully masked pixels cannot reach a
      query or key, not even through the depth-wise convolution of a neighbouring pixel;
    * the queries and keys are multiplied by ``w`` again after the depth-wise convolution, so
      masked pixels do not count in the similarity sums nor in the normalisation.

    The value branch reads the unmasked ``x``: every pixel, rain included, is re-expressed by
    the channel mixing learned from the background. With ``m = 0`` everywhere the block is
    exactly the unmasked attention; with ``m = 1`` everywhere queries and keys vanish, the
    attention is uniform and the output stays finite.

    The attention itself is the functional op
    [`masked_channel_attention`][masked_channel_attention];
    this module adds the projections around it.

    Args:
        dim: channels ``C`` of the features.
        num_heads: attention heads; must divide ``dim``.
        bias: use biases in the convolutions.

    Shape:
        - x: ``(B, C, H, W)`` features.
        - mask: ``(B, 1, h, w)`` rain mask in ``[0, 1]`` (1 is rain), any resolution: it is
          resized to ``(H, W)`` with [`resize_mask`][resize_mask]. ``None`` means no rain.
        - Output: ``(B, C, H, W)``.

    Examples:
        >>> attention = RainMaskAttention(dim=32, num_heads=2)
        >>> attention(torch.randn(1, 32, 24, 24), torch.zeros(1, 1, 48, 48)).shape
        torch.Size([1, 32, 24, 24])
    """

    def __init__(self, dim: int, num_heads: int = 1, bias: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.dim = dim
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.query_key = nn.Conv2d(dim, dim * 2, kernel_size=1, bias=bias)
        self.query_key_depthwise = nn.Conv2d(dim * 2, dim * 2, kernel_size=3, padding=1, groups=dim * 2, bias=bias)
        self.value = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)
        self.value_depthwise = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Attend across channels with weights taken from the background.

        Args:
            x: ``(B, C, H, W)`` features.
            mask: ``(B, 1, h, w)`` rain mask in ``[0, 1]``, or ``None`` for no masking.

        Returns:
            ``(B, C, H, W)`` features.
        """
        self._check_inputs(x, mask)
        height, width = x.shape[-2:]
        background = None if mask is None else 1.0 - resize_mask(mask.to(x.dtype), (height, width))
        # Rain features must not reach a query or key even through a neighbour's depth-wise
        # convolution, so the query/key branch reads the masked features.
        query_key_input = x if background is None else x * background
        query, key = conv_chunks(query_key_input, (self.query_key, self.query_key_depthwise), 2)
        value = self.value_depthwise(self.value(x))
        out = masked_channel_attention(query, key, value, self.temperature, self.num_heads, background)
        return self.project_out(out)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}"

    def _check_inputs(self, x: Tensor, mask: Tensor | None) -> None:
        check_feature_map(x, self.dim)
        if mask is None:
            return
        if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[0] not in (1, x.shape[0]):
            raise ValueError(f"mask must have shape (B, 1, h, w) with B = {x.shape[0]} (or 1), got {tuple(mask.shape)}")
