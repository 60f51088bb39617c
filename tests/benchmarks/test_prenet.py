"""PReNet6 as its paper describes it: parameter count, shapes, stages sharing weights."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from prenet import PReNet6  # noqa: E402


def test_parameter_count_matches_the_paper() -> None:
    assert sum(p.numel() for p in PReNet6().parameters()) == 168_963


def test_shapes_and_stages() -> None:
    torch.manual_seed(0)
    model = PReNet6().eval()
    x = torch.rand(2, 3, 17, 23)
    with torch.no_grad():
        six = model(x)
        model.stages = 1
        one = model(x)
    assert six.shape == x.shape and torch.isfinite(six).all()
    assert not torch.allclose(six, one)  # the later stages refine the first estimate
    # Stages share weights: more stages add no parameters.
    assert sum(p.numel() for p in PReNet6(stages=3).parameters()) == 168_963
