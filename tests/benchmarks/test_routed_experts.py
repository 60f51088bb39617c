"""routed_experts.py scores each expert and the routed output per set (the rule itself is
tested with the model, tests/models/test_routed_derain.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from routed_experts import score_frames, summarize, switch_sweep  # noqa: E402

from derainzoo.data import PairedImageFolder  # noqa: E402


class _Scale(torch.nn.Module):
    """A stand-in expert: multiplies the image by ``factor``, so it removes more from brighter frames."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def _dim_and_bright_pairs(folder: Path) -> PairedImageFolder:
    """Two flat frames, "dim" (100) and "bright" (250), whose truth is 0.8 times the rainy frame."""
    for side in ("rain", "norain"):
        (folder / side).mkdir()
    for stem, level in (("dim", 100), ("bright", 250)):
        Image.new("RGB", (16, 12), (level,) * 3).save(folder / "rain" / f"{stem}.png")
        Image.new("RGB", (16, 12), (round(level * 0.8),) * 3).save(folder / "norain" / f"{stem}.png")
    return PairedImageFolder(folder)


def test_only_the_frames_the_light_expert_finds_heavy_are_routed(tmp_path: Path) -> None:
    # The light expert (x 0.9) removes 10 levels from frame "dim" (100) and 25 from "bright" (250):
    # with the band at 15 only "bright" goes to the heavy expert (x 0.79, close to the truth's 0.8).
    pairs = _dim_and_bright_pairs(tmp_path)
    light, heavy = _Scale(0.9), _Scale(0.79)
    frames = score_frames(light, heavy, pairs, 15.0, 15.0)
    assert [(f["stem"], f["removed"], f["weight"]) for f in frames] == [("bright", 25.0, 1.0), ("dim", 10.0, 0.0)]
    scores = summarize(frames)
    assert scores["frames routed"] == "1/2" and scores["mean weight"] == 0.5
    assert scores["removed"] == pytest.approx((10.0 + 25.0) / 2, abs=0.1)
    # The heavy expert is near the truth on both frames; the routed output on the routed one only:
    # "dim" keeps the light expert's 10 levels of error, "bright" the heavy expert's 2.
    assert scores["psnr light"] < scores["psnr routed"] < scores["psnr heavy"]
    assert scores["abs error routed"] == pytest.approx((10.0 + 2.0) / 2, abs=0.6)
    untouched = summarize(score_frames(light, heavy, pairs, 40.0, 60.0))
    assert untouched["frames routed"] == "0/2" and untouched["psnr routed"] == untouched["psnr light"]


def test_the_second_pass_derains_again_only_the_frames_the_first_pass_routed(tmp_path: Path) -> None:
    # "bright" (250) is routed: once 250 x 0.79 = 197.5, stored as 198; fed back, the light expert
    # removes 19.8 levels, above the band, so the heavy expert runs again: 198 x 0.79 = 156.4 against
    # the truth's 200. "dim" is not routed and keeps the light expert's output, not a second one.
    pairs = _dim_and_bright_pairs(tmp_path)
    frames = score_frames(_Scale(0.9), _Scale(0.79), pairs, 15.0, 15.0, second_pass=True)
    bright, dim = frames
    assert bright["error routed twice"] == pytest.approx(156.0 - 200.0, abs=0.6)
    assert dim["psnr routed twice"] == dim["psnr routed"] and dim["error routed twice"] == dim["error routed"]
    scores = summarize(frames)
    assert scores["abs error routed twice"] == pytest.approx((44.0 + 10.0) / 2, abs=0.6)
    assert "psnr routed twice" not in summarize(score_frames(_Scale(0.9), _Scale(0.79), pairs, 15.0, 15.0))


def test_the_switch_sweep_takes_the_heavy_expert_above_each_threshold() -> None:
    frames = [
        {"removed": 5.0, "psnr light": 36.0, "psnr heavy": 30.0},
        {"removed": 25.0, "psnr light": 24.0, "psnr heavy": 25.0},
        {"removed": 45.0, "psnr light": 20.0, "psnr heavy": 22.0},
    ]
    rows = switch_sweep(frames, thresholds=(0, 20, 30, 50))
    assert [row["frames heavy"] for row in rows] == [3, 2, 1, 0]
    assert [row["mean psnr"] for row in rows] == [
        round((30 + 25 + 22) / 3, 3),
        round((36 + 25 + 22) / 3, 3),
        round((36 + 24 + 22) / 3, 3),
        round((36 + 24 + 20) / 3, 3),
    ]
