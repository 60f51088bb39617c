"""Learning-rate schedule: linear warm-up, then cosine decay."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["warmup_cosine_schedule"]


def warmup_cosine_schedule(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_ratio: float = 0.01
) -> LambdaLR:
    """Multiply the base learning rate by a factor that rises linearly from ``1 / warmup_steps`` to
    1 over ``warmup_steps``, then follows a cosine down to ``min_ratio`` at ``total_steps``.

    Args:
        optimizer: the optimizer whose learning rates are scheduled (call ``step()`` once per
            optimisation step).
        warmup_steps: length of the linear warm-up.
        total_steps: step at which the cosine reaches ``min_ratio``; it stays there after.
        min_ratio: final learning rate as a fraction of the base one.
    """
    if total_steps < 1 or warmup_steps < 0:
        raise ValueError(f"need total_steps >= 1 and warmup_steps >= 0, got {total_steps}, {warmup_steps}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)
