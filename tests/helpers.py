"""Small builders shared by the tests."""

from __future__ import annotations

import torch

import derainzoo

TINY = "dual_stage_derain_tiny"


def tiny_model(seed: int = 0) -> torch.nn.Module:
    """The tiny variant with random weights, in eval mode, reproducibly initialised."""
    torch.manual_seed(seed)
    return derainzoo.create_model(TINY).eval()


def smooth_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """``(1, 3, H, W)`` smooth colour gradients with gentle waves, in [0.1, 0.9]."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.linspace(0, 1, height)[:, None]
    cols = torch.linspace(0, 1, width)[None, :]
    phases = torch.rand(3, generator=generator) * 6.28
    channels = [0.5 + 0.3 * torch.sin(3 * rows + 2 * cols + phase) + 0.1 * (rows - cols) for phase in phases]
    return torch.stack(channels)[None].clamp(0.1, 0.9)
