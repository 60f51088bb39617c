"""Window helpers: padding, partition/reverse round trip, grouped multi-head attention."""

from __future__ import annotations

import math

import pytest
import torch

from derainzoo.layers.window import multi_head_attention, pad_to_multiple, window_partition, window_reverse


@pytest.mark.parametrize(("size", "expected"), [((8, 8), (8, 8)), ((9, 5), (12, 8)), ((1, 1), (4, 4))])
def test_pad_to_multiple_pads_bottom_right(size, expected) -> None:
    x = torch.randn(2, 3, *size)
    padded = pad_to_multiple(x, 4)
    assert padded.shape[-2:] == expected
    assert torch.equal(padded[..., : size[0], : size[1]], x)
    assert torch.count_nonzero(padded[..., size[0] :, :]) == 0


def test_pad_to_multiple_reflect_falls_back_to_replicate_for_tiny_inputs() -> None:
    x = torch.randn(1, 3, 2, 2)
    padded = pad_to_multiple(x, 8, mode="reflect")
    assert padded.shape[-2:] == (8, 8)
    assert torch.equal(padded[..., 7, 7], x[..., 1, 1])


def test_pad_to_multiple_returns_input_when_aligned() -> None:
    x = torch.randn(1, 1, 8, 16)
    assert pad_to_multiple(x, 8) is x


def test_partition_reverse_round_trip_and_layout() -> None:
    x = torch.arange(2 * 3 * 8 * 12, dtype=torch.float32).reshape(2, 3, 8, 12)
    windows = window_partition(x, 4)
    assert windows.shape == (2, 6, 16, 3)
    # Window 1 is the second window of the first row of windows; token 5 is its row 1, col 1.
    assert torch.equal(windows[0, 1, 5], x[0, :, 1, 5])
    assert torch.equal(window_reverse(windows, 4, 8, 12), x)


def test_partition_needs_divisible_sizes() -> None:
    with pytest.raises(ValueError, match="pad it first"):
        window_partition(torch.randn(1, 3, 10, 8), 4)


def test_multi_head_attention_equals_explicit_softmax() -> None:
    generator = torch.Generator().manual_seed(0)
    query, key, value = (torch.randn(5, 7, 12, generator=generator, dtype=torch.float64) for _ in range(3))
    mask = torch.rand(5, 1, 7, 7, generator=generator) > 0.3
    mask |= torch.eye(7, dtype=torch.bool)
    out = multi_head_attention(query, key, value, num_heads=3, attn_mask=mask)
    expected = torch.empty_like(out)
    for head in range(3):
        cols = slice(head * 4, head * 4 + 4)
        logits = query[..., cols] @ key[..., cols].transpose(-2, -1) / math.sqrt(4)
        weights = logits.masked_fill(~mask[:, 0], float("-inf")).softmax(dim=-1)
        expected[..., cols] = weights @ value[..., cols]
    torch.testing.assert_close(out, expected)
