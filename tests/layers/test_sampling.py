"""Downsample / Upsample shapes and errors."""

from __future__ import annotations

import pytest
import torch

from derainzoo.layers.sampling import Downsample, Upsample


def test_shapes() -> None:
    x = torch.randn(2, 6, 10, 14)
    assert Downsample(6, 12)(x).shape == (2, 12, 5, 7)
    assert Upsample(6, 3)(x).shape == (2, 3, 20, 28)


def test_downsample_keeps_every_pixel() -> None:
    # Pixel-unshuffle is a rearrangement: each output value comes from one input position.
    down = Downsample(1, 4)
    with torch.no_grad():
        down.body[0].weight.zero_()
        down.body[0].weight[0, 0, 1, 1] = 1.0
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert sorted(down(x).flatten().tolist()) == x.flatten().tolist()


def test_downsample_needs_channels_divisible_by_four() -> None:
    with pytest.raises(ValueError, match="divisible by 4"):
        Downsample(4, 6)
