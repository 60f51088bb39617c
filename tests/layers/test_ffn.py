"""GatedDConvFeedForward: the gate, locality and gradients."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from derainzoo.layers.ffn import GatedDConvFeedForward


def test_equals_explicit_gated_formula() -> None:
    torch.manual_seed(0)
    ffn = GatedDConvFeedForward(8, mlp_ratio=2.0, bias=True).double()
    x = torch.randn(2, 8, 6, 5, dtype=torch.float64)
    hidden = F.conv2d(x, ffn.project_in.weight, ffn.project_in.bias)
    hidden = F.conv2d(hidden, ffn.depthwise.weight, ffn.depthwise.bias, padding=1, groups=32)
    expected = F.conv2d(F.gelu(hidden[:, :16]) * hidden[:, 16:], ffn.project_out.weight, ffn.project_out.bias)
    torch.testing.assert_close(ffn(x), expected)


def test_each_output_pixel_sees_only_its_3x3_neighbourhood() -> None:
    ffn = GatedDConvFeedForward(4)
    x = torch.randn(1, 4, 9, 9, requires_grad=True)
    ffn(x)[..., 4, 4].sum().backward()
    reach = x.grad.abs().sum(dim=(0, 1)) > 0
    expected = torch.zeros(9, 9, dtype=torch.bool)
    expected[3:6, 3:6] = True
    assert torch.equal(reach, expected)


def test_gradients_reach_every_parameter() -> None:
    ffn = GatedDConvFeedForward(8, bias=True)
    ffn(torch.randn(2, 8, 5, 5)).square().mean().backward()
    for name, parameter in ffn.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
