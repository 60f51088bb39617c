"""conv_chunks: a 1x1 expansion and its depth-wise convolution, split into branches along the
channels, that exports without a channel Split."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["conv_chunks"]


def conv_chunks(x: Tensor, convs: Sequence[nn.Conv2d], chunks: int) -> tuple[Tensor, ...]:
    """``convs[-1](...convs[0](x)).chunk(chunks, dim=1)``: a convolution (a 1x1 expansion, say),
    then depth-wise convolutions, and the result cut into ``chunks`` branches of equal width (a
    gate and its content; a query and a key).

    In PyTorch the convolutions run once over all channels and the branches are views. While
    exporting (``torch.compiler.is_exporting()``) every branch is computed on its own, from the
    slices of the weights that produce it: the same numbers, since the depth-wise convolutions
    never mix channels. A graph runtime then runs one convolution per branch instead of a Split
    after the last one, which OpenVINO copies with a reference kernel (6% of the default model's
    time at 481 x 321 on the project's CPU).

    Args:
        x: ``(B, C_in, H, W)``.
        convs: a convolution (not grouped), then any number of depth-wise ones (``groups`` equal to their
            channels), every one with zero padding.
        chunks: branches; must divide the channels of ``convs[0]``'s output.

    Returns:
        ``chunks`` tensors ``(B, C_out / chunks, H', W')``.

    Raises:
        ValueError: ``convs`` is empty, the first convolution is grouped, a later one is not depth-wise, a padding mode is
            not zeros, or ``chunks`` does not divide the channels.

    Examples:
        >>> expand = nn.Conv2d(4, 8, 1)
        >>> depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        >>> gate, content = conv_chunks(torch.randn(1, 4, 6, 6), (expand, depthwise), 2)
        >>> gate.shape
        torch.Size([1, 4, 6, 6])
    """
    _check_chain(convs, chunks)
    if not torch.compiler.is_exporting():
        for conv in convs:
            x = conv(x)
        return x.chunk(chunks, dim=1)
    width = convs[0].out_channels // chunks
    branches = []
    for index in range(chunks):
        part = slice(index * width, (index + 1) * width)
        branch = x
        for position, conv in enumerate(convs):
            bias = None if conv.bias is None else conv.bias[part]
            groups = 1 if position == 0 else width
            branch = F.conv2d(branch, conv.weight[part], bias, conv.stride, conv.padding, conv.dilation, groups)
        branches.append(branch)
    return tuple(branches)


def _check_chain(convs: Sequence[nn.Conv2d], chunks: int) -> None:
    if not convs:
        raise ValueError("conv_chunks needs at least one convolution")
    channels = convs[0].out_channels
    if channels % chunks:
        raise ValueError(f"chunks ({chunks}) must divide the {channels} channels of the first convolution")
    if convs[0].groups != 1:
        raise ValueError(f"the first convolution must not be grouped, got groups={convs[0].groups}")
    for conv in convs:
        if conv.padding_mode != "zeros":
            raise ValueError(f"conv_chunks takes zero-padded convolutions, got padding_mode={conv.padding_mode!r}")
    for conv in convs[1:]:
        if not (conv.groups == conv.in_channels == conv.out_channels == channels):
            raise ValueError(
                "every convolution after the first must be depth-wise over its channels "
                f"({channels} in, {channels} out, {channels} groups), got {conv}"
            )
