"""Normalisations that export to lean graphs: LayerNorm2d over the channels of a feature map
without transposes, and l2_normalize without a broadcast copy of the norms."""

from __future__ import annotations

import torch
from timm.layers import LayerNorm2d as TimmLayerNorm2d
from torch import Tensor

__all__ = ["LayerNorm2d", "l2_normalize"]


class LayerNorm2d(TimmLayerNorm2d):
    """LayerNorm over the channels of every pixel: ``(x - mean_c) / sqrt(var_c + eps) * weight +
    bias``, with the mean and the biased variance taken over the ``C`` channels of each pixel.

    In PyTorch this is timm's ``LayerNorm2d`` (a permute to channels-last, ``F.layer_norm`` and a
    permute back: views, and the fastest form on channels-last tensors). While exporting
    (``torch.compiler.is_exporting()``) the same normalisation is written as reductions over the
    channel axis instead. ONNX's ``LayerNormalization`` normalises trailing axes only, so timm's
    form becomes ``Transpose -> LayerNormalization -> Transpose``, and a graph runtime executes
    those transposes, and the layout reorders they force on the convolutions around them, as
    passes of their own over the feature map. With the reduction form (and
    [`conv_chunks`][derainzoo.layers.conv_chunks]) OpenVINO ran the default model at 481 x 321 in
    1.17 s instead of 1.52 s (2-core AMD EPYC; the guide "Speed on a laptop CPU").

    The parameters and their names are timm's, so weights of either class load into the other.

    Args:
        num_channels: channels ``C``.
        eps: added to the variance.
        affine: learn ``weight`` and ``bias`` (``C`` each).
        bias: with ``affine``, learn ``bias`` too (``False``: ``weight`` only).

    Shape:
        - Input: ``(B, C, H, W)``.
        - Output: ``(B, C, H, W)``.

    Examples:
        >>> norm = LayerNorm2d(8)
        >>> x = torch.randn(2, 8, 5, 7)
        >>> torch.allclose(norm(x).mean(dim=1), torch.zeros(2, 5, 7), atol=1e-6)
        True
    """

    def __init__(self, num_channels: int, eps: float = 1e-6, affine: bool = True, bias: bool = True) -> None:
        # Spelled out (not inherited) so the signature, its types and the docs are this class's own.
        super().__init__(num_channels, eps=eps, affine=affine, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` in and out."""
        if not torch.compiler.is_exporting():
            return super().forward(x)
        centred = x - x.mean(dim=1, keepdim=True)
        normalised = centred * torch.rsqrt(centred.pow(2).mean(dim=1, keepdim=True) + self.eps)
        if self.weight is not None:
            normalised = normalised * self.weight.view(-1, 1, 1)
        if self.bias is not None:
            normalised = normalised + self.bias.view(-1, 1, 1)
        return normalised


def l2_normalize(x: Tensor, dim: int = -1, eps: float = 1e-12) -> Tensor:
    """``x / max(||x||_2, eps)`` along ``dim``: ``torch.nn.functional.normalize`` to the bit.

    ``F.normalize`` expands the norms to the shape of ``x`` before dividing, which an exported
    graph keeps as an ``Expand``: OpenVINO runs it as a reference ``Broadcast`` that writes a
    full-size copy (under 1 % of the default model's time at 481 x 321, in the channel attention
    and the k-means). Dividing by the ``keepdim`` norms broadcasts inside the division instead.

    Args:
        x: tensor of any shape.
        dim: the axis whose vectors are scaled to unit length.
        eps: lower bound of the norm, so that zero vectors stay zero.

    Returns:
        tensor shaped like ``x``.

    Examples:
        >>> x = torch.randn(4, 5, 6)
        >>> torch.equal(l2_normalize(x), torch.nn.functional.normalize(x, dim=-1))
        True
    """
    return x / torch.linalg.vector_norm(x, dim=dim, keepdim=True).clamp_min(eps)
