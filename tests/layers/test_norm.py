"""LayerNorm2d equals nn.LayerNorm applied channels-last."""

from __future__ import annotations

import torch

from derainzoo.layers.norm import LayerNorm2d


def test_equals_layer_norm_over_channels() -> None:
    norm = LayerNorm2d(6)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    reference = torch.nn.LayerNorm(6, eps=norm.eps)
    reference.load_state_dict(norm.state_dict())
    x = torch.randn(2, 6, 5, 7)
    torch.testing.assert_close(norm(x), reference(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))


def test_each_pixel_is_normalised() -> None:
    out = LayerNorm2d(8, affine=False)(3 + 5 * torch.randn(1, 8, 4, 4))
    torch.testing.assert_close(out.mean(dim=1), torch.zeros(1, 4, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(dim=1, unbiased=False), torch.ones(1, 4, 4), atol=1e-4, rtol=0)


def test_channels_last_input_gives_the_same_result() -> None:
    x = torch.randn(2, 6, 5, 7)
    norm = LayerNorm2d(6)
    torch.testing.assert_close(norm(x.contiguous(memory_format=torch.channels_last)), norm(x))
