"""TransformerBlock: pre-norm residual token mixer + gated feed-forward, channels first."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.utils.checkpoint
from timm.layers import DropPath
from torch import Tensor, nn

from derainzoo.layers.ffn import GatedDConvFeedForward
from derainzoo.layers.norm import LayerNorm2d

__all__ = ["TransformerBlock", "run_blocks"]


class TransformerBlock(nn.Module):
    """``x + drop_path(mixer(LN(x), *context))`` followed by ``x + drop_path(FFN(LN(x)))``.

    Any attention of `derainzoo.layers` can be the token mixer; extra positional
    arguments of [`forward`][TransformerBlock.forward] (the rain mask for [`RainMaskAttention`][derainzoo.layers.rain_mask_attention.RainMaskAttention]) are handed to it.

    Args:
        dim: channels ``C``.
        token_mixer: module mapping ``(B, C, H, W)`` (plus context) to ``(B, C, H, W)``.
        mlp_ratio: hidden width of the [`GatedDConvFeedForward`][GatedDConvFeedForward] as a multiple of ``dim``.
        bias: biases in the feed-forward convolutions.
        drop_path: probability of dropping each residual branch for a whole sample while
            training (stochastic depth, timm's `DropPath`); 0 disables it.

    Shape:
        - Input: ``(B, C, H, W)``.
        - Output: ``(B, C, H, W)``.

    Examples:
        >>> import torch
        >>> from derainzoo.layers import RainMaskAttention
        >>> block = TransformerBlock(32, RainMaskAttention(32, num_heads=2))
        >>> block(torch.randn(1, 32, 16, 16), torch.zeros(1, 1, 16, 16)).shape
        torch.Size([1, 32, 16, 16])
    """

    def __init__(
        self,
        dim: int,
        token_mixer: nn.Module,
        mlp_ratio: float = 2.66,
        bias: bool = False,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = LayerNorm2d(dim)
        self.token_mixer = token_mixer
        self.norm2 = LayerNorm2d(dim)
        self.ffn = GatedDConvFeedForward(dim, mlp_ratio=mlp_ratio, bias=bias)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor, *context: Tensor) -> Tensor:
        """``(B, C, H, W)`` in and out; ``context`` goes to the token mixer."""
        x = x + self.drop_path(self.token_mixer(self.norm1(x), *context))
        return x + self.drop_path(self.ffn(self.norm2(x)))


def run_blocks(
    blocks: Iterable[nn.Module], features: Tensor, *context: Tensor | None, checkpointing: bool = False
) -> Tensor:
    """Apply ``blocks`` in turn, each with ``context``, recomputing their activations in the
    backward pass instead of storing them when ``checkpointing`` is on and gradients are needed
    (gradient checkpointing: activation memory of one block instead of all).

    The recomputation restores the random state, so stochastic depth drops the same branches
    twice and the gradients are those of the plain pass.

    Args:
        blocks: modules mapping ``(B, C, H, W)`` (plus ``context``) to ``(B, C, H, W)``.
        features: ``(B, C, H, W)`` input of the first block.
        *context: extra inputs handed to every block (the rain mask for
            [`RainMaskAttention`][derainzoo.layers.rain_mask_attention.RainMaskAttention] blocks);
            ``None`` entries are left out, so a model without a mask can hand its ``None`` on.
        checkpointing: recompute instead of store.

    Returns:
        ``(B, C, H, W)`` output of the last block.
    """
    context = tuple(item for item in context if item is not None)
    for block in blocks:
        if checkpointing and torch.is_grad_enabled():
            features = torch.utils.checkpoint.checkpoint(block, features, *context, use_reentrant=False)
        else:
            features = block(features, *context)
    return features
