"""Warm-up + cosine learning-rate schedule."""

from __future__ import annotations

import pytest
import torch

from derainzoo.training import warmup_cosine_schedule


def learning_rates(warmup: int, total: int, steps: int) -> list[float]:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    scheduler = warmup_cosine_schedule(optimizer, warmup, total, min_ratio=0.1)
    rates = []
    for _ in range(steps):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return rates


def test_linear_warmup_then_cosine_to_the_floor() -> None:
    rates = learning_rates(warmup=4, total=14, steps=20)
    assert rates[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert rates[4] == pytest.approx(1.0)
    assert rates[9] == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through the cosine
    assert all(a >= b for a, b in zip(rates[4:], rates[5:]))
    assert rates[14:] == pytest.approx([0.1] * 6)


def test_bad_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="total_steps"):
        learning_rates(warmup=0, total=0, steps=1)
