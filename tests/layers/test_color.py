"""BT.601 luma."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.color import rgb2ycbcr

from derainzoo.layers.color import rgb_to_luma


def test_matches_skimage_ycbcr_luma() -> None:
    image = torch.rand(1, 3, 6, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    # skimage's Y is 16 + 219 * luma (studio range) for RGB in [0, 1].
    expected = (rgb2ycbcr(image[0].permute(1, 2, 0).numpy())[..., 0] - 16) / 219
    np.testing.assert_allclose(rgb_to_luma(image)[0, 0].numpy(), expected, atol=1e-6)


def test_grey_stays_grey() -> None:
    torch.testing.assert_close(rgb_to_luma(torch.full((2, 3, 4, 4), 0.3)), torch.full((2, 1, 4, 4), 0.3))


def test_wrong_channels_refused() -> None:
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        rgb_to_luma(torch.rand(1, 4, 2, 2))
