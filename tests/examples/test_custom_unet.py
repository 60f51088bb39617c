"""examples/custom_unet.py: the drop-in example builds, runs any size, and learns."""

from __future__ import annotations

import torch

from ..helpers import load_script


def load_example():
    return load_script("examples/custom_unet.py")


def test_custom_unet_runs_any_size_and_learns() -> None:
    example = load_example()
    model = example.TinyRestorationUNet()
    assert model(torch.rand(1, 3, 33, 47)).shape == (1, 3, 33, 47)
    losses = example.train(steps=60, size=32, batch=2)
    assert sum(losses[-10:]) / 10 < 0.7 * sum(losses[:10]) / 10
