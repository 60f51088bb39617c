"""NAFBlock against a by-hand computation with functional ops; SimpleGate; identity at
initialisation; the mask keeps rain pixels out of the channel attention."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from derainzoo.layers.naf_block import NAFBlock, background_mean, simple_gate


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


def randomised_block(dim: int) -> NAFBlock:
    torch.manual_seed(0)
    block = NAFBlock(dim).eval()
    with torch.no_grad():
        for parameter in block.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.3)
    return block


def test_background_mean_is_the_weighted_average() -> None:
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    background = torch.rand(2, 1, 5, 6, dtype=torch.float64)
    for sample in range(2):
        for channel in range(3):
            expected = (x[sample, channel] * background[sample, 0]).sum() / background[sample, 0].sum()
            torch.testing.assert_close(background_mean(x, background)[sample, channel, 0, 0], expected)
    torch.testing.assert_close(background_mean(x, torch.ones(2, 1, 5, 6, dtype=torch.float64)), x.mean((2, 3), True))
    # Rain everywhere: no background to weigh, the plain mean rather than a division by zero.
    torch.testing.assert_close(background_mean(x, torch.zeros(2, 1, 5, 6, dtype=torch.float64)), x.mean((2, 3), True))


def test_a_mask_of_zeros_is_no_mask() -> None:
    block = randomised_block(8)
    x = torch.randn(2, 8, 6, 7)
    with torch.no_grad():
        torch.testing.assert_close(block(x, torch.zeros(2, 1, 6, 7)), block(x), rtol=1e-5, atol=1e-6)


def test_masked_pixels_do_not_reach_the_rest_of_the_image() -> None:
    """Everything but the channel attention is local (per pixel, or a 3x3 depth-wise
    convolution); so with the rain and its 1-pixel rim masked, changing the rain changes no
    output outside that rim: the attention weights saw none of it."""
    block = randomised_block(8)
    x = torch.randn(1, 8, 12, 12)
    changed = x.clone()
    changed[..., 4:7, 3:8] += 3 * torch.randn(1, 8, 3, 5)
    mask = torch.zeros(1, 1, 12, 12)
    mask[..., 3:8, 2:9] = 1
    outside = mask[0, 0] == 0
    with torch.no_grad():
        torch.testing.assert_close(block(changed, mask)[..., outside], block(x, mask)[..., outside])
        # Without the mask the change reaches every pixel through the attention weights.
        assert not torch.allclose(block(changed)[..., outside], block(x)[..., outside], atol=1e-4)


def test_a_coarser_mask_is_resized_to_the_features() -> None:
    block = randomised_block(8)
    x = torch.randn(1, 8, 8, 8)
    fine = torch.zeros(1, 1, 16, 16)
    fine[..., :8, :] = 1
    with torch.no_grad():
        torch.testing.assert_close(block(x, fine), block(x, F.adaptive_avg_pool2d(fine, 8)))
