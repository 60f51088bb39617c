"""NAFBlock against a by-hand computation with functional ops; SimpleGate; identity at initialisation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from derainzoo.layers.naf_block import NAFBlock, simple_gate


def test_simple_gate_multiplies_the_two_halves() -> None:
    x = torch.randn(2, 6, 3, 4)
    torch.testing.assert_close(simple_gate(x), x[:, :3] * x[:, 3:])


def test_untrained_block_is_the_identity() -> None:
    x = torch.randn(2, 8, 5, 7)
    assert torch.equal(NAFBlock(8)(x), x)


def _layer_norm_2d(x: torch.Tensor, norm: torch.nn.Module) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)
    variance = x.var(dim=1, keepdim=True, unbiased=False)
    normalised = (x - mean) / torch.sqrt(variance + norm.eps)
    return normalised * norm.weight[None, :, None, None] + norm.bias[None, :, None, None]


def test_block_equals_the_formula_computed_by_hand() -> None:
    torch.manual_seed(0)
    block = NAFBlock(8).eval()
    with torch.no_grad():
        for parameter in block.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.3)
    x = torch.randn(2, 8, 6, 5)

    def conv(layer: torch.nn.Conv2d, t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, layer.weight, layer.bias, padding=layer.padding, groups=layer.groups)

    y = conv(block.depthwise, conv(block.expand, _layer_norm_2d(x, block.norm1)))
    y = y[:, :8] * y[:, 8:]
    attention = conv(block.channel_attention[1], y.mean(dim=(2, 3), keepdim=True))
    mixed = x + block.beta * conv(block.project, y * attention)
    z = conv(block.ffn_expand, _layer_norm_2d(mixed, block.norm2))
    expected = mixed + block.gamma * conv(block.ffn_project, z[:, :8] * z[:, 8:])
    with torch.no_grad():
        torch.testing.assert_close(block(x), expected, rtol=1e-4, atol=1e-5)


def test_odd_gate_width_is_refused() -> None:
    with pytest.raises(ValueError, match="even"):
        NAFBlock(3, expansion=1)
