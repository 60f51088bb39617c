"""tone_estimate.py: the features are the model's pooled feature maps, the ridge fit is least
squares, and the scoring moves brightness and nothing else."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import derainzoo

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from tone_estimate import PooledFeatures, estimate_offsets, fit_ridge, score  # noqa: E402


@pytest.mark.parametrize("stage2_depth", [2, 0])
def test_the_features_pool_the_bottleneck_and_the_last_heads_input(stage2_depth: int) -> None:
    model = derainzoo.create_model("dual_stage_derain_tiny", stage2_depth=stage2_depth).eval()
    hooks = PooledFeatures(model)
    image = torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model(image)
        features = hooks.take()
        assert not hooks.pooled, "take() must leave nothing behind for the next image"
        head_features, intermediates = model.forward_intermediates(image)
    bottleneck, head = intermediates[-1].flatten(2)[0], head_features.flatten(2)[0]
    expected = torch.cat([bottleneck.mean(1), bottleneck.std(1), head.mean(1), head.std(1)]).double()
    # Same values up to the reflect padding, which a 32 x 48 input does not need.
    torch.testing.assert_close(features, expected, rtol=1e-5, atol=1e-6)


def test_an_unregularised_fit_is_least_squares() -> None:
    generator = torch.Generator().manual_seed(2)
    features = torch.randn(40, 5, generator=generator, dtype=torch.float64) * 3 + 1
    targets = torch.randn(40, 3, generator=generator, dtype=torch.float64)
    weights, mean, std = fit_ridge(features, targets, 0.0)
    design = np.hstack([features.numpy(), np.ones((40, 1))])
    oracle = design @ np.linalg.lstsq(design, targets.numpy(), rcond=None)[0]
    np.testing.assert_allclose(estimate_offsets(features, weights, mean, std).numpy(), oracle, atol=1e-9)


def test_a_strong_ridge_estimates_the_mean_offset() -> None:
    generator = torch.Generator().manual_seed(3)
    features = torch.randn(30, 4, generator=generator, dtype=torch.float64)
    targets = torch.randn(30, 3, generator=generator, dtype=torch.float64)
    weights, mean, std = fit_ridge(features, targets, 1e9)
    estimates = estimate_offsets(features, weights, mean, std)
    torch.testing.assert_close(estimates, targets.mean(0).expand_as(estimates), rtol=0, atol=1e-6)


def test_the_right_offset_removes_the_brightness_error_and_none_changes_nothing() -> None:
    generator = torch.Generator().manual_seed(4)
    clean = torch.rand(1, 3, 16, 16, generator=generator) * 0.6 + 0.2
    offset = torch.tensor([0.08, 0.04, 0.06], dtype=torch.float64)
    rows = [dict(stem="001", output=clean + offset.float().view(1, 3, 1, 1), clean=clean)]
    psnr_before, psnr_after, error_before, error_after, moved_most = score(rows, -offset[None])
    assert psnr_before < 30 < psnr_after
    assert error_before == pytest.approx(0.18 / 3 * 255, abs=0.5) and error_after < 0.5
    assert moved_most.startswith("001: +15.")
    unchanged = score(rows, torch.zeros(1, 3, dtype=torch.float64))
    assert unchanged[0] == unchanged[1] and unchanged[2] == unchanged[3]


def test_a_sample_weight_of_two_counts_the_sample_twice() -> None:
    generator = torch.Generator().manual_seed(5)
    features = torch.randn(12, 3, generator=generator, dtype=torch.float64)
    targets = torch.randn(12, 3, generator=generator, dtype=torch.float64)
    sample_weights = torch.ones(12, dtype=torch.float64)
    sample_weights[:4] = 2.0
    weights, mean, std = fit_ridge(features, targets, 0.0, sample_weights)
    repeated_weights, repeated_mean, repeated_std = fit_ridge(
        torch.cat([features, features[:4]]), torch.cat([targets, targets[:4]]), 0.0
    )
    # The standardisation differs (it sees the repeats), the least-squares estimates do not.
    torch.testing.assert_close(
        estimate_offsets(features, weights, mean, std),
        estimate_offsets(features, repeated_weights, repeated_mean, repeated_std),
    )
