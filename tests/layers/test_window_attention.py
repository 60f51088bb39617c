"""ShiftedWindowAttention against a per-pixel reference that applies Swin's rules literally."""

from __future__ import annotations

import math

import pytest
import torch

from derainzoo.layers.window_attention import ShiftedWindowAttention


def make_attention(window_size: int = 4, shift_size: int = 0) -> ShiftedWindowAttention:
    torch.manual_seed(0)
    attention = ShiftedWindowAttention(12, 3, window_size=window_size, shift_size=shift_size).double().eval()
    with torch.no_grad():
        attention.relative_position_bias_table.normal_()
    return attention


def reference_attention(attention: ShiftedWindowAttention, x: torch.Tensor) -> torch.Tensor:
    """Every pixel attends to the pixels that share its window after the roll, except those
    brought there by the wrap-around of the roll (and never to padding)."""
    batch, channels, height, width = x.shape
    ws, shift, heads = attention.window_size, attention.shift_size, attention.num_heads
    padded_h, padded_w = math.ceil(height / ws) * ws, math.ceil(width / ws) * ws
    head_dim = channels // heads

    def rolled(row: int, col: int) -> tuple[int, int]:
        return (row - shift) % padded_h, (col - shift) % padded_w

    def side(row: int, col: int) -> tuple[bool, bool]:
        return row < shift, col < shift

    pixels = [(r, c) for r in range(height) for c in range(width)]
    out = torch.zeros_like(x)
    for b in range(batch):
        tokens = x[b].permute(1, 2, 0)
        query, key, value = (tokens @ attention.qkv.weight.T + attention.qkv.bias).split(channels, dim=-1)
        for row, col in pixels:
            rr, rc = rolled(row, col)
            partners = [
                (r, c)
                for r, c in pixels
                if (rolled(r, c)[0] // ws, rolled(r, c)[1] // ws) == (rr // ws, rc // ws)
                and side(r, c) == side(row, col)
            ]
            for head in range(heads):
                cols = slice(head * head_dim, (head + 1) * head_dim)
                logits = []
                for r, c in partners:
                    pr, pc = rolled(r, c)
                    dy, dx = rr % ws - pr % ws, rc % ws - pc % ws
                    bias = attention.relative_position_bias_table[(dy + ws - 1) * (2 * ws - 1) + dx + ws - 1, head]
                    logits.append(query[row, col, cols] @ key[r, c, cols] / math.sqrt(head_dim) + bias)
                weights = torch.softmax(torch.stack(logits), dim=0)
                out[b, cols, row, col] = sum(w * value[r, c, cols] for w, (r, c) in zip(weights, partners))
    return torch.einsum("bchw,oc->bohw", out, attention.proj.weight) + attention.proj.bias[:, None, None]


@pytest.mark.parametrize("exporting", [False, True])
@pytest.mark.parametrize(("size", "shift"), [((8, 8), 0), ((8, 8), 2), ((6, 7), 0), ((7, 10), 3)])
def test_equals_per_pixel_reference(monkeypatch, size: tuple[int, int], shift: int, exporting: bool) -> None:
    # The export form builds the mask for every size and broadcasts it over the batch by an addition.
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: exporting)
    attention = make_attention(shift_size=shift)
    x = torch.randn(2, 12, *size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(attention(x), reference_attention(attention, x))


def test_unshifted_attention_stays_inside_its_window() -> None:
    attention = make_attention().float()
    x = torch.randn(1, 12, 8, 8, requires_grad=True)
    attention(x)[..., 1, 1].sum().backward()
    inside = torch.zeros(8, 8, dtype=torch.bool)
    inside[:4, :4] = True
    assert x.grad[..., inside].abs().sum() > 0
    assert torch.count_nonzero(x.grad[..., ~inside]) == 0


def test_gradients_reach_every_parameter() -> None:
    attention = make_attention(shift_size=2).float().train()
    attention(torch.randn(2, 12, 9, 11)).square().mean().backward()
    for name, parameter in attention.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize("size", [(1, 1), (3, 17), (16, 16)])
def test_any_size_is_finite(size: tuple[int, int]) -> None:
    out = ShiftedWindowAttention(12, 3, window_size=8, shift_size=4)(torch.randn(2, 12, *size))
    assert out.shape == (2, 12, *size)
    assert torch.isfinite(out).all()


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="shift_size"):
        ShiftedWindowAttention(12, 3, window_size=4, shift_size=4)
    with pytest.raises(ValueError, match=r"\(B, 12, H, W\)"):
        ShiftedWindowAttention(12, 3)(torch.randn(1, 6, 8, 8))


def test_repr_shows_the_configuration() -> None:
    text = repr(ShiftedWindowAttention(32, num_heads=4, window_size=8, shift_size=4))
    assert "dim=32, num_heads=4, window_size=8, shift_size=4" in text
