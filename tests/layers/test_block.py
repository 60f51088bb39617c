"""TransformerBlock: residual composition and context pass-through."""

from __future__ import annotations

import torch
from torch import nn

from derainzoo.layers.block import TransformerBlock
from derainzoo.layers.rain_mask_attention import RainMaskAttention


class Recorder(nn.Module):
    """A token mixer that returns a constant and remembers its arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []

    def forward(self, x: torch.Tensor, *context: torch.Tensor) -> torch.Tensor:
        self.calls.append((x, *context))
        return torch.ones_like(x)


def test_residual_composition_and_context_reach_the_mixer() -> None:
    mixer = Recorder()
    block = TransformerBlock(4, mixer)
    x, mask = torch.randn(1, 4, 5, 6), torch.rand(1, 1, 5, 6)
    out = block(x, mask)
    ((normed, passed_mask),) = mixer.calls
    torch.testing.assert_close(normed, block.norm1(x))
    assert passed_mask is mask
    after_mixer = x + 1
    torch.testing.assert_close(out, after_mixer + block.ffn(block.norm2(after_mixer)))


def test_rain_mask_block_trains_end_to_end() -> None:
    block = TransformerBlock(8, RainMaskAttention(8, 2))
    x = torch.randn(2, 8, 9, 9, requires_grad=True)
    block(x, torch.rand(2, 1, 9, 9)).square().mean().backward()
    for name, parameter in block.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
