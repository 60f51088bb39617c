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


@pytest.mark.parametrize("size", [(5, 9), (3, 3), (16, 7), (6, 6)])
def test_pad_to_multiple_reflect_equals_torch_reflect_where_it_is_defined(size) -> None:
    x = torch.randn(2, 3, *size)
    pad_h, pad_w = -size[0] % 4, -size[1] % 4
    expected = torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
    assert torch.equal(pad_to_multiple(x, 4, mode="reflect"), expected)


def test_pad_to_multiple_reflect_repeats_the_first_pixel_where_the_mirror_runs_out() -> None:
    x = torch.arange(4.0).reshape(1, 1, 2, 2)
    padded = pad_to_multiple(x, 8, mode="reflect")
    # Rows (and columns) 0, 1 are the image, 2 mirrors row 0, then the index stops at row 0.
    assert torch.equal(padded[0, 0, :, 0], torch.tensor([0.0, 2, 0, 0, 0, 0, 0, 0]))
    assert torch.equal(padded[0, 0, 0, :], torch.tensor([0.0, 1, 0, 0, 0, 0, 0, 0]))
    one_pixel = torch.full((1, 3, 1, 1), 0.25)
    assert torch.equal(pad_to_multiple(one_pixel, 4, mode="reflect"), torch.full((1, 3, 4, 4), 0.25))


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


@pytest.mark.parametrize("exporting", [False, True])
@pytest.mark.parametrize("additive", [False, True])
def test_multi_head_attention_equals_explicit_softmax(monkeypatch, exporting: bool, additive: bool) -> None:
    # (2, 5) groups of 7 tokens, a mask per window (5) shared by the 2 samples: the export form
    # broadcasts it by adding zeros, the eager form by expanding.
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: exporting)
    generator = torch.Generator().manual_seed(0)
    query, key, value = (torch.randn(2, 5, 7, 12, generator=generator, dtype=torch.float64) for _ in range(3))
    allowed = torch.rand(5, 1, 7, 7, generator=generator) > 0.3
    allowed |= torch.eye(7, dtype=torch.bool)
    mask = torch.zeros(allowed.shape, dtype=torch.float64).masked_fill(~allowed, float("-inf")) if additive else allowed
    out = multi_head_attention(query, key, value, num_heads=3, attn_mask=mask)
    expected = torch.empty_like(out)
    for head in range(3):
        cols = slice(head * 4, head * 4 + 4)
        logits = query[..., cols] @ key[..., cols].transpose(-2, -1) / math.sqrt(4)
        weights = logits.masked_fill(~allowed[:, 0], float("-inf")).softmax(dim=-1)
        expected[..., cols] = weights @ value[..., cols]
    torch.testing.assert_close(out, expected)
