"""The routing rule of routed_experts.py: light frames keep the light expert's output exactly,
heavy frames get the heavy expert's, and the band in between blends them per frame."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from routed_experts import routed, routing_weight, score_set  # noqa: E402

from derainzoo.data import PairedImageFolder  # noqa: E402


def test_the_weight_is_zero_below_the_band_one_above_and_linear_inside() -> None:
    removed = torch.tensor([0.0, 40.0, 45.0, 50.0, 60.0, 90.0])
    torch.testing.assert_close(routing_weight(removed, 40.0, 60.0), torch.tensor([0.0, 0.0, 0.25, 0.5, 1.0, 1.0]))


def test_an_empty_band_is_a_hard_switch() -> None:
    torch.testing.assert_close(
        routing_weight(torch.tensor([39.9, 40.0, 40.1]), 40.0, 40.0), torch.tensor([0.0, 0.0, 1.0])
    )


@pytest.mark.parametrize(("low", "high"), [(-1.0, 10.0), (50.0, 40.0)])
def test_a_band_out_of_order_is_refused(low: float, high: float) -> None:
    with pytest.raises(ValueError, match="0 <= low <= high"):
        routing_weight(torch.zeros(1), low, high)


def test_each_frame_is_blended_by_its_own_weight() -> None:
    light, heavy = torch.zeros(3, 3, 4, 5), torch.ones(3, 3, 4, 5)
    out = routed(light, heavy, torch.tensor([0.0, 0.25, 1.0]))
    torch.testing.assert_close(out[0], light[0])  # a light frame is the light expert's output, exactly
    torch.testing.assert_close(out[1], torch.full((3, 4, 5), 0.25))
    torch.testing.assert_close(out[2], heavy[2])


class _Scale(torch.nn.Module):
    """A stand-in expert: multiplies the image by ``factor``, so it removes more from brighter frames."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def test_score_set_routes_only_the_frames_the_light_expert_finds_heavy(tmp_path: Path) -> None:
    # The light expert (x 0.9) removes 10 levels from frame "dim" (100) and 25 from "bright" (250):
    # with the band at 15 only "bright" goes to the heavy expert (x 0.79, close to the truth's 0.8).
    for side in ("rain", "norain"):
        (tmp_path / side).mkdir()
    for stem, level in (("dim", 100), ("bright", 250)):
        Image.new("RGB", (16, 12), (level,) * 3).save(tmp_path / "rain" / f"{stem}.png")
        Image.new("RGB", (16, 12), (round(level * 0.8),) * 3).save(tmp_path / "norain" / f"{stem}.png")
    pairs = PairedImageFolder(tmp_path)
    light, heavy = _Scale(0.9), _Scale(0.79)
    scores = score_set(light, heavy, pairs, 15.0, 15.0)
    assert scores["frames routed"] == "1/2" and scores["mean weight"] == 0.5
    assert scores["removed"] == pytest.approx((10.0 + 25.0) / 2, abs=0.1)
    # The heavy expert is near the truth on both frames; the routed output on the routed one only:
    # "dim" keeps the light expert's 10 levels of error, "bright" the heavy expert's 2.
    assert scores["psnr light"] < scores["psnr routed"] < scores["psnr heavy"]
    assert scores["abs error routed"] == pytest.approx((10.0 + 2.0) / 2, abs=0.6)
    untouched = score_set(light, heavy, pairs, 40.0, 60.0)
    assert untouched["frames routed"] == "0/2" and untouched["psnr routed"] == untouched["psnr light"]
