"""The offset oracles of global_tone.py remove a brightness error and nothing else; its dark level
is the dark-channel floor a minimum filter gives."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import minimum_filter

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from global_tone import dark_level, local_offset_corrected, mean_row, offset_corrected, tone_scores  # noqa: E402


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


def test_a_cell_as_large_as_the_image_is_the_global_oracle() -> None:
    generator = torch.Generator().manual_seed(2)
    clean = torch.rand(1, 3, 24, 32, generator=generator) * 0.6 + 0.2
    output = (clean + torch.randn(1, 3, 24, 32, generator=generator) * 0.05 + 0.07).clamp(0, 1)
    torch.testing.assert_close(local_offset_corrected(output, clean, cell=32), offset_corrected(output, clean))


def test_the_local_oracle_takes_off_a_smooth_veil_and_leaves_a_streak() -> None:
    clean = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(3)) * 0.5 + 0.2
    # A veil rising from 0 at the left edge to 0.2 at the right, and one bright streak.
    veil = torch.linspace(0.0, 0.2, 128).view(1, 1, 1, 128).expand(1, 3, 128, 128)
    streak = torch.zeros_like(clean)
    streak[..., 60:62, :] = 0.25
    veiled = clean + veil
    global_left = (offset_corrected(veiled, clean) - clean).abs().mean()
    local_left = (local_offset_corrected(veiled, clean, cell=16) - clean).abs().mean()
    assert local_left < 0.15 * global_left
    streaked = local_offset_corrected(clean + streak, clean, cell=16)
    # The streak's two rows keep most of their error: a 16-pixel cell spreads it thin.
    assert (streaked - clean)[..., 60:62, :].mean() > 0.8 * 0.25


def test_the_scores_name_both_oracles() -> None:
    clean = torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(4)) * 0.6 + 0.2
    scores = tone_scores(clean + 0.05 * torch.linspace(0, 1, 40).view(1, 1, 1, 40), clean, cell=8)
    assert scores["psnr local offset oracle"] > scores["psnr offset oracle"] > scores["psnr"]


def test_a_cell_below_one_pixel_is_refused() -> None:
    with pytest.raises(ValueError, match="cell must be a positive"):
        local_offset_corrected(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8), cell=0)


def test_the_dark_level_matches_a_minimum_filter_and_a_percentile() -> None:
    image = torch.rand(1, 3, 37, 52, generator=torch.Generator().manual_seed(5))
    darkest = image[0].numpy().min(axis=0)
    # "nearest" repeats the border pixels, which are in every border window already: the same
    # minimum as cutting the window at the border.
    for window, percentile in ((15, 1.0), (7, 5.0), (1, 50.0)):
        expected = 255 * np.percentile(minimum_filter(darkest, size=window, mode="nearest"), percentile)
        assert dark_level(image, window, percentile) == pytest.approx(expected, rel=1e-5, abs=1e-4)


def test_a_veil_raises_the_dark_level_by_its_own_height() -> None:
    scene = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(6)) * 0.7
    scene[..., 10:20, 30:40] = 0.0  # a shadow: the floor of a clear scene
    assert dark_level(scene) == 0.0
    # A veil of transmission t over atmospheric light A lifts black to (1 - t) A.
    veiled = 0.8 * scene + 0.2 * 0.9
    assert dark_level(veiled) == pytest.approx(255 * 0.18, abs=1e-3)


def test_an_even_dark_channel_window_is_refused() -> None:
    with pytest.raises(ValueError, match="odd positive"):
        dark_level(torch.zeros(1, 3, 8, 8), window=4)


def test_the_mean_row_averages_every_score_and_the_size_of_the_error() -> None:
    frames = [
        {
            "set": "a",
            "image": "1",
            "psnr": 20.0,
            "psnr offset oracle": 22.0,
            "psnr local offset oracle": 23.0,
            "mean error": -6.0,
            "dark clean": 0.0,
            "dark rainy": 40.0,
            "dark output": 2.0,
            "styles": "haze",
        },
        {
            "set": "a",
            "image": "2",
            "psnr": 30.0,
            "psnr offset oracle": 31.0,
            "psnr local offset oracle": 32.0,
            "mean error": 2.0,
            "dark clean": 10.0,
            "dark rainy": 60.0,
            "dark output": 4.0,
            "styles": "none",
        },
    ]
    summary = mean_row(frames)
    assert list(summary) == list(frames[0])
    assert summary["set"] == "a" and summary["image"] == "mean"
    assert summary["psnr"] == 25.0 and summary["psnr local offset oracle"] == 27.5
    assert summary["mean error"] == 4.0  # |-6| and |2|, not their signed mean
    assert summary["dark rainy"] == 50.0 and summary["styles"] == ""
