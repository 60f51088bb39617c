"""The offset oracle of global_tone.py: it removes a brightness error and nothing else."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from global_tone import offset_corrected, tone_scores  # noqa: E402


def test_a_uniform_offset_is_removed_exactly() -> None:
    clean = torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(0)) * 0.6 + 0.2
    brighter = clean + torch.tensor([0.10, 0.05, 0.08]).view(1, 3, 1, 1)
    torch.testing.assert_close(offset_corrected(brighter, clean), clean)
    scores = tone_scores(brighter, clean)
    assert scores["psnr offset oracle"] == math.inf or scores["psnr offset oracle"] > 60
    assert scores["psnr"] < 30
    # (0.10 + 0.05 + 0.08) / 3 of 255, up to the 8-bit rounding of the output.
    assert scores["mean error"] == pytest.approx(0.23 / 3 * 255, abs=0.5)


def test_an_error_with_the_right_mean_is_left_alone() -> None:
    generator = torch.Generator().manual_seed(1)
    clean = torch.rand(1, 3, 24, 32, generator=generator) * 0.6 + 0.2
    noise = torch.randn(1, 3, 24, 32, generator=generator) * 0.05
    noisy = clean + noise - noise.mean(dim=(-2, -1), keepdim=True)  # zero mean error in each channel
    scores = tone_scores(noisy, clean)
    assert scores["psnr offset oracle"] == pytest.approx(scores["psnr"], abs=0.05)
    assert abs(scores["mean error"]) < 0.2


def test_the_oracle_stays_in_range() -> None:
    clean = torch.full((1, 3, 8, 8), 0.95)
    clean[..., :4, :] = 0.05
    output = clean - 0.2  # the dark half goes below 0
    corrected = offset_corrected(output, clean)
    assert corrected.min() >= 0 and corrected.max() <= 1
