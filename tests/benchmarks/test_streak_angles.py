"""streak_angles.py turns and resizes every streak layer, and only the directions and sizes change."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import pytest
import torch

from derainzoo.data.rain_renderer import RainParams, StreakLayer, render_rain, sample_rain_params

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from streak_angles import parse_family, positive_factor, turned  # noqa: E402


def test_parse_family() -> None:
    assert parse_family("30") == (30.0,)
    assert parse_family("-30,5") == (-30.0, 5.0)
    for bad in ("", "a", "10,,20", "95", "-91,0"):
        with pytest.raises(argparse.ArgumentTypeError, match="angles in \\[-90, 90\\]"):
            parse_family(bad)


def test_turned_sets_directions_cyclically_and_nothing_else() -> None:
    params = sample_rain_params("heavy", torch.Generator().manual_seed(3), camera_effects=False)
    assert len(params.layers) >= 3
    result = turned(params, (-20.0, 15.0))
    assert [layer.angle for layer in result.layers] == [(-20.0, 15.0)[i % 2] for i in range(len(params.layers))]
    for before, after in zip(params.layers, result.layers, strict=True):
        assert dataclasses.replace(after, angle=before.angle) == before
    assert dataclasses.replace(result, layers=params.layers) == params


def test_turned_to_a_size_resizes_every_layer_and_nothing_else() -> None:
    params = sample_rain_params("heavy", torch.Generator().manual_seed(3), camera_effects=False)
    result = turned(params, (-20.0, 15.0), size=2.5)
    plain = turned(params, (-20.0, 15.0))
    assert result.layers == tuple(layer.resized(2.5) for layer in plain.layers)
    assert [layer.width for layer in result.layers] == pytest.approx([2.5 * layer.width for layer in plain.layers])
    assert dataclasses.replace(result, layers=params.layers) == params
    assert positive_factor("2") == 2.0
    for bad in ("0", "-1", "x", "nan"):
        with pytest.raises(argparse.ArgumentTypeError, match="a size is a factor above 0"):
            positive_factor(bad)


def test_light_rain_gets_one_layer_per_angle() -> None:
    params = sample_rain_params("light", torch.Generator().manual_seed(0), camera_effects=False)
    assert len(params.layers) == 1
    result = turned(params, (-35.0, -5.0, 25.0))
    assert [layer.angle for layer in result.layers] == [-35.0, -5.0, 25.0]
    assert all(
        dataclasses.replace(layer, angle=0.0) == dataclasses.replace(params.layers[0], angle=0.0)
        for layer in result.layers
    )


@pytest.mark.parametrize(("angle", "along"), [(0.0, "rows"), (90.0, "columns")])
def test_rendered_streaks_run_along_the_angle(angle: float, along: str) -> None:
    # Long thin streaks: the opacity barely changes along a streak and jumps across it.
    layer = StreakLayer(angle=0.0, length=60.0, width=1.0, density=0.004, opacity=1.0)
    params = turned(RainParams(layers=[layer]), (angle,))
    streaks = render_rain(torch.full((1, 3, 96, 96), 0.3), params, torch.Generator().manual_seed(0)).streaks[0, 0]
    change_down = (streaks[1:] - streaks[:-1]).abs().mean()
    change_across = (streaks[:, 1:] - streaks[:, :-1]).abs().mean()
    if along == "rows":  # vertical streaks: little change going down a column
        assert change_down < 0.3 * change_across
    else:
        assert change_across < 0.3 * change_down
