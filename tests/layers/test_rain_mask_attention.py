"""RainMaskAttention: a naive oracle, and the contract that rain never reaches the weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from derainzoo.layers.rain_mask_attention import RainMaskAttention, masked_channel_attention, resize_mask
from derainzoo.layers.reference import reference_masked_channel_attention


def make_attention(dim: int = 16, num_heads: int = 2, bias: bool = True, seed: int = 0) -> RainMaskAttention:
    torch.manual_seed(seed)
    attention = RainMaskAttention(dim, num_heads, bias=bias).double()
    with torch.no_grad():
        attention.temperature.uniform_(0.5, 2.0)
    return attention.eval()


def module_reference(attention: RainMaskAttention, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The module's convolutions written out around the naive reference op."""
    channels = x.shape[1]
    background = None if mask is None else 1 - mask
    query_key = F.conv2d(x if mask is None else x * background, attention.query_key.weight, attention.query_key.bias)
    query_key = F.conv2d(
        query_key,
        attention.query_key_depthwise.weight,
        attention.query_key_depthwise.bias,
        padding=1,
        groups=2 * channels,
    )
    value = F.conv2d(x, attention.value.weight, attention.value.bias)
    value = F.conv2d(
        value, attention.value_depthwise.weight, attention.value_depthwise.bias, padding=1, groups=channels
    )
    out = reference_masked_channel_attention(
        query_key[:, :channels], query_key[:, channels:], value, attention.temperature, attention.num_heads, background
    )
    return F.conv2d(out, attention.project_out.weight, attention.project_out.bias)


@pytest.mark.parametrize("with_background", [False, True])
def test_functional_op_equals_naive_reference(with_background: bool) -> None:
    generator = torch.Generator().manual_seed(3)
    query, key, value = torch.randn(3, 2, 12, 7, 9, dtype=torch.float64, generator=generator)
    temperature = torch.rand(3, 1, 1, dtype=torch.float64, generator=generator) + 0.5
    background = 1 - soft_mask(2, 7, 9) if with_background else None
    torch.testing.assert_close(
        masked_channel_attention(query, key, value, temperature, 3, background),
        reference_masked_channel_attention(query, key, value, temperature, 3, background),
    )


def soft_mask(batch: int, height: int, width: int, seed: int = 1) -> torch.Tensor:
    mask = torch.rand(batch, 1, height, width, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    mask[..., : height // 3, :] = 1.0  # a fully masked band
    mask[..., -2:, :] = 0.0
    return mask


@pytest.mark.parametrize("with_mask", [False, True])
def test_equals_naive_reference(with_mask: bool) -> None:
    attention = make_attention()
    x = torch.randn(2, 16, 9, 13, dtype=torch.float64)
    mask = soft_mask(2, 9, 13) if with_mask else None
    torch.testing.assert_close(attention(x, mask), module_reference(attention, x, mask))


def test_features_under_the_mask_do_not_reach_the_output_elsewhere() -> None:
    attention = make_attention()
    x = torch.randn(1, 16, 24, 24, dtype=torch.float64)
    mask = torch.zeros(1, 1, 24, 24, dtype=torch.float64)
    mask[..., 6:14, 8:18] = 1.0
    changed = x.clone()
    changed[..., 6:14, 8:18] = 10 * torch.randn(1, 16, 8, 10, dtype=torch.float64)
    # Only the value branch's 3x3 depth-wise convolution sees past the region, by one pixel.
    beyond_reach = torch.ones(24, 24, dtype=torch.bool)
    beyond_reach[5:15, 7:19] = False

    out, out_changed = attention(x, mask), attention(changed, mask)
    torch.testing.assert_close(out[..., beyond_reach], out_changed[..., beyond_reach], rtol=0, atol=1e-12)

    # Without the mask the same change does reach every pixel through the global weights.
    unmasked, unmasked_changed = attention(x, None), attention(changed, None)
    assert (unmasked[..., beyond_reach] - unmasked_changed[..., beyond_reach]).abs().min() > 0


def test_all_zero_mask_equals_unmasked_attention() -> None:
    attention = make_attention()
    x = torch.randn(2, 16, 11, 10, dtype=torch.float64)
    torch.testing.assert_close(attention(x, torch.zeros(2, 1, 11, 10, dtype=torch.float64)), attention(x, None))


def test_all_ones_mask_gives_finite_uniform_attention() -> None:
    attention = make_attention(bias=False)
    x = torch.randn(2, 16, 8, 8, dtype=torch.float64, requires_grad=True)
    out = attention(x, torch.ones(2, 1, 8, 8, dtype=torch.float64))
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    # Uniform weights: every channel of a head receives the mean value of that head.
    value = attention.value_depthwise(attention.value(x)).detach()
    head_mean = value.reshape(2, 2, 8, 8, 8).mean(dim=2, keepdim=True).expand(-1, -1, 8, -1, -1).reshape(2, 16, 8, 8)
    torch.testing.assert_close(out.detach(), attention.project_out(head_mean).detach())


def test_mask_at_another_resolution_is_resized() -> None:
    attention = make_attention()
    x = torch.randn(1, 16, 10, 12, dtype=torch.float64)
    mask = soft_mask(1, 10, 12)
    mask_at_double_size = mask.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    torch.testing.assert_close(attention(x, mask_at_double_size), attention(x, mask))
    assert torch.isfinite(attention(x, mask[..., ::2, ::2])).all()


def test_resize_mask_averages_when_shrinking_and_stays_in_range_when_growing() -> None:
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :2] = 1.0
    mask[..., 2:, 2:] = 0.5
    torch.testing.assert_close(resize_mask(mask, (2, 2)), torch.tensor([[[[1.0, 0.0], [0.0, 0.5]]]]))
    grown = resize_mask(mask, (7, 9))
    assert grown.shape == (1, 1, 7, 9)
    assert torch.all((grown >= 0) & (grown <= 1))
    assert resize_mask(mask, (4, 4)) is mask


def test_batch_items_are_independent_and_a_single_mask_broadcasts() -> None:
    attention = make_attention()
    x = torch.randn(3, 16, 7, 9, dtype=torch.float64)
    mask = soft_mask(1, 7, 9)
    batched = attention(x, mask)
    for index in range(3):
        torch.testing.assert_close(batched[index : index + 1], attention(x[index : index + 1], mask))


def test_gradients_reach_every_parameter_and_the_input() -> None:
    attention = make_attention()
    x = torch.randn(2, 16, 8, 8, dtype=torch.float64, requires_grad=True)
    attention(x, soft_mask(2, 8, 8)).square().mean().backward()
    for name, parameter in attention.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("size", [(1, 1), (5, 3), (17, 31)])
def test_odd_sizes(size: tuple[int, int]) -> None:
    attention = RainMaskAttention(8, 2)
    out = attention(torch.randn(2, 8, *size), torch.rand(2, 1, 4, 4))
    assert out.shape == (2, 8, *size)
    assert torch.isfinite(out).all()


def test_bfloat16_close_to_float32() -> None:
    torch.manual_seed(2)
    attention = RainMaskAttention(16, 2)
    x, mask = torch.randn(1, 16, 12, 12), torch.rand(1, 1, 12, 12)
    reference = attention(x, mask)
    result = attention.to(torch.bfloat16)(x.bfloat16(), mask.bfloat16())
    assert result.dtype == torch.bfloat16
    torch.testing.assert_close(result.float(), reference, rtol=0.05, atol=0.05)


def test_bad_input_is_refused() -> None:
    attention = RainMaskAttention(8, 2)
    with pytest.raises(ValueError, match=r"\(B, 8, H, W\)"):
        attention(torch.randn(1, 4, 8, 8))
    with pytest.raises(ValueError, match="mask must have shape"):
        attention(torch.randn(2, 8, 8, 8), torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="mask must have shape"):
        attention(torch.randn(2, 8, 8, 8), torch.rand(3, 1, 8, 8))
    with pytest.raises(ValueError, match="divisible"):
        RainMaskAttention(10, 4)
