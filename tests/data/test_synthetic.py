"""synthesize_rain, the one-layer case of the renderer: where streaks are, how many, in which direction."""

from __future__ import annotations

import pytest
import torch

from derainzoo.data import synthesize_rain
from derainzoo.layers import MorphologicalMaskHead


def test_rain_is_screen_blended_and_kept_in_range() -> None:
    clean = torch.rand((2, 3, 64, 64), generator=torch.Generator().manual_seed(9))
    rainy, rain = synthesize_rain(clean, generator=torch.Generator().manual_seed(0))
    assert rainy.shape == clean.shape and rain.shape == (2, 1, 64, 64)
    torch.testing.assert_close(rainy, clean + rain * (1 - clean))
    assert 0 <= rainy.min() and rainy.max() <= 1 and rain.max() > 0.3


def test_density_controls_the_amount_and_zero_means_no_rain() -> None:
    clean = torch.full((1, 3, 96, 96), 0.3)
    light = synthesize_rain(clean, density=0.001, generator=torch.Generator().manual_seed(1))[1]
    heavy = synthesize_rain(clean, density=0.01, generator=torch.Generator().manual_seed(1))[1]
    assert (heavy > 0).float().mean() > 3 * (light > 0).float().mean()
    assert torch.count_nonzero(synthesize_rain(clean, density=0.0)[1]) == 0


@pytest.mark.parametrize("angle", [0.0, 90.0, 170.0])
def test_streaks_follow_the_angle(angle: float) -> None:
    rain = synthesize_rain(
        torch.zeros(1, 3, 64, 64), density=0.002, length=21, angle=angle, generator=torch.Generator().manual_seed(2)
    )[1][0, 0]
    # Rain varies little along the streak direction and a lot across it.
    along_rows = (rain[:, 1:] - rain[:, :-1]).abs().sum()
    along_cols = (rain[1:, :] - rain[:-1, :]).abs().sum()
    assert (along_rows < along_cols) == (angle in (0.0, 170.0))


def test_width_thickens_streaks() -> None:
    thin = synthesize_rain(
        torch.zeros(1, 3, 48, 48), density=0.002, width=1, generator=torch.Generator().manual_seed(3)
    )[1]
    thick = synthesize_rain(
        torch.zeros(1, 3, 48, 48), density=0.002, width=3, generator=torch.Generator().manual_seed(3)
    )[1]
    assert (thick > 0).sum() > 2 * (thin > 0).sum()


def test_mask_head_finds_synthetic_rain() -> None:
    clean = torch.full((1, 3, 64, 64), 0.3)
    rainy, rain = synthesize_rain(clean, width=2, generator=torch.Generator().manual_seed(4))
    predicted = MorphologicalMaskHead()(rainy) > 0.5
    # Clear streaks are found; the faint anti-aliased fringe may go either way; rain-free pixels are not marked.
    streaks, rain_free = rain > 0.1, rain < 0.02
    assert (predicted & streaks).sum() / streaks.sum() > 0.9
    assert (predicted & rain_free).sum() / predicted.sum() < 0.1


def test_single_image_and_bad_arguments() -> None:
    rainy, rain = synthesize_rain(torch.rand(3, 20, 20), generator=torch.Generator().manual_seed(5))
    assert rainy.shape == (3, 20, 20) and rain.shape == (1, 20, 20)
    with pytest.raises(ValueError, match="density"):
        synthesize_rain(torch.rand(3, 8, 8), density=2.0)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        synthesize_rain(torch.rand(1, 1, 8, 8))
