"""Window helpers shared by the window attentions: padding, partition, reverse, attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import pack, rearrange, unpack
from torch import Tensor, nn

__all__ = [
    "WindowSelfAttentionBase",
    "crop_like",
    "multi_head_attention",
    "pad_to_multiple",
    "window_partition",
    "window_reverse",
]


def pad_to_multiple(x: Tensor, multiple: int, mode: str = "constant") -> Tensor:
    """Pad the bottom and right of ``x`` so height and width are multiples of ``multiple``.

    Crop the result of a computation back with ``y[..., :H, :W]``.

    Args:
        x: ``(B, C, H, W)`` tensor.
        multiple: the size both spatial dimensions must become divisible by.
        mode: ``torch.nn.functional.pad`` mode; ``"constant"`` pads with zeros,
            ``"reflect"`` / ``"replicate"`` suit images. ``"reflect"`` works for any size: where
            a side is too short to mirror the padding, the first pixel repeats.

    Returns:
        ``(B, C, H', W')`` tensor with ``H' = ceil(H / multiple) * multiple`` (same for ``W``);
            ``x`` itself when no padding is needed.
    """
    if multiple < 1:
        raise ValueError(f"multiple must be positive, got {multiple}")
    height, width = x.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h == 0 and pad_w == 0 and not torch.compiler.is_exporting():
        return x
    if mode == "reflect":
        rows = _reflected_index(height, height + pad_h, x.device)
        cols = _reflected_index(width, width + pad_w, x.device)
        return x.index_select(-2, rows).index_select(-1, cols)
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def crop_like(t: Tensor, reference: Tensor, reduction: int = 1) -> Tensor:
    """Undo [`pad_to_multiple`][pad_to_multiple] on a result: crop ``t``,
    computed on the padded ``reference`` at ``1 / reduction`` of its resolution, to cover
    ``reference``.

    Args:
        t: ``(..., H' / reduction, W' / reduction)`` result on the padded input.
        reference: ``(..., H, W)`` the input before padding.
        reduction: how much coarser ``t`` is than the input.

    Returns:
        ``(..., ceil(H / reduction), ceil(W / reduction))`` view of ``t``.
    """
    return t[..., : -(-reference.shape[-2] // reduction), : -(-reference.shape[-1] // reduction)]


def _reflected_index(size: int, padded_size: int, device: torch.device) -> Tensor:
    """Source index of every position of a bottom/right reflect padding.

    Mirrors about the last pixel as ``F.pad(mode="reflect")`` does; where the padding is longer
    than the mirror (sides shorter than the padding, e.g. a 2-pixel image padded by 3) the index
    stops at the first pixel instead of failing. One formula for every size keeps the padding
    traceable with symbolic sizes (ONNX export).
    """
    index = torch.arange(padded_size, device=device)
    return torch.where(index < size, index, 2 * (size - 1) - index).clamp(min=0)


def window_partition(x: Tensor, window_size: int) -> Tensor:
    """Cut a feature map into non-overlapping square windows of tokens.

    Args:
        x: ``(B, C, H, W)`` with ``H`` and ``W`` divisible by ``window_size``.
        window_size: side of a window in pixels.

    Returns:
        ``(B, nW, window_size**2, C)`` tokens, windows in raster order, pixels in raster
            order inside each window.
    """
    height, width = x.shape[-2:]
    if height % window_size or width % window_size:
        raise ValueError(f"feature size {height}x{width} is not divisible by window_size {window_size}; pad it first")
    return rearrange(x, "b c (nh wh) (nw ww) -> b (nh nw) (wh ww) c", wh=window_size, ww=window_size)


def window_reverse(windows: Tensor, window_size: int, height: int, width: int) -> Tensor:
    """Inverse of [`window_partition`][window_partition].

    Args:
        windows: ``(B, nW, window_size**2, C)`` tokens.
        window_size: side of a window in pixels.
        height: ``H`` of the feature map the windows came from.
        width: ``W`` of the feature map the windows came from.

    Returns:
        ``(B, C, H, W)`` feature map.
    """
    return rearrange(
        windows,
        "b (nh nw) (wh ww) c -> b c (nh wh) (nw ww)",
        nh=height // window_size,
        wh=window_size,
        ww=window_size,
    )


def multi_head_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    num_heads: int,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
) -> Tensor:
    """Multi-head scaled dot-product attention inside groups of tokens (windows).

    The channels are split into ``num_heads`` heads and every group attends only to itself,
    through ``torch.nn.functional.scaled_dot_product_attention`` so fused kernels are used
    where the device has them.

    Args:
        query: ``(..., T, C)`` tokens; leading dimensions index the groups.
        key: ``(..., T, C)``.
        value: ``(..., T, C)``.
        num_heads: number of heads; must divide ``C``.
        attn_mask: optional mask broadcastable to ``(..., num_heads, T, T)``: boolean (True
            means "may attend") or additive float.
        dropout_p: attention dropout probability (pass 0 in eval mode).

    Returns:
        ``(..., T, C)`` attended tokens.
    """
    # The groups are flattened into one batch dimension because the ONNX exporter (and some
    # fused kernels) take 4-D inputs only.
    group_shape = query.shape[:-2]
    heads = [rearrange(pack([t], "* t c")[0], "g t (h d) -> g h t d", h=num_heads) for t in (query, key, value)]
    if attn_mask is not None:
        if torch.compiler.is_exporting():
            # Broadcast by adding zeros: OpenVINO runs an exported expand as a reference
            # Broadcast, several times slower than its vectorised Add.
            attn_mask = attn_mask + attn_mask.new_zeros(*group_shape, 1, 1, 1)
        else:  # an expand is a view here, where the addition would write a copy per sample
            mask_heads = attn_mask.shape[-3] if attn_mask.ndim >= 3 else 1
            attn_mask = attn_mask.expand(*group_shape, mask_heads, *attn_mask.shape[-2:])
        attn_mask = pack([attn_mask], "* h t s")[0]
    out = rearrange(
        F.scaled_dot_product_attention(*heads, attn_mask=attn_mask, dropout_p=dropout_p), "g h t d -> g t h d"
    )
    if torch.compiler.is_exporting():
        # The exporter swaps in a decomposition of SDPA whose output is laid out differently from
        # the eager kernel's, so the head merge must not be recorded as a view of this layout
        # (pytorch/pytorch#139508).
        out = out.clone(memory_format=torch.contiguous_format)
    return unpack(rearrange(out, "g t h d -> g t (h d)"), [group_shape], "* t c")[0]


class WindowSelfAttentionBase(nn.Module):
    """What the window attentions share: the query/key/value and output projections, dropout,
    input checks, and multi-head attention inside groups of tokens.

    Subclasses decide which tokens form a window.

    Args:
        dim: channels ``C``.
        num_heads: attention heads; must divide ``dim``.
        qkv_bias: bias in the query/key/value projection.
        attn_drop: attention dropout probability (training only).
        proj_drop: dropout after the output projection (training only).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, attn_drop: float, proj_drop: float) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.dim = dim
        self.num_heads = num_heads
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def attend(self, query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """[`multi_head_attention`][multi_head_attention] with this module's heads and dropout, then the output
        projection. Shapes: ``(..., T, C)`` in and out."""
        dropout_p = self.attn_drop if self.training else 0.0
        out = multi_head_attention(query, key, value, self.num_heads, attn_mask=attn_mask, dropout_p=dropout_p)
        return self.proj_drop(self.proj(out))
