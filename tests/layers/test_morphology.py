"""Grey-scale morphology against scipy.ndimage, plus its border and element contracts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from derainzoo.layers.morphology import (
    StructuringElement,
    black_tophat,
    box_kernel,
    closing,
    dilation,
    erosion,
    line_kernel,
    opening,
    white_tophat,
)


def scipy_dilation(plane: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return ndimage.grey_dilation(plane, footprint=kernel, mode="constant", cval=-np.inf)


def scipy_erosion(plane: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return ndimage.grey_erosion(plane, footprint=kernel, mode="constant", cval=np.inf)


SCIPY_ORACLES = {
    dilation: scipy_dilation,
    erosion: scipy_erosion,
    opening: lambda p, k: scipy_dilation(scipy_erosion(p, k), k),
    closing: lambda p, k: scipy_erosion(scipy_dilation(p, k), k),
    white_tophat: lambda p, k: p - scipy_dilation(scipy_erosion(p, k), k),
    black_tophat: lambda p, k: scipy_erosion(scipy_dilation(p, k), k) - p,
}


def random_kernel(generator: torch.Generator) -> torch.Tensor:
    """A random 0/1 kernel of random (odd or even) size that contains its origin cell."""
    kh, kw = torch.randint(1, 7, (2,), generator=generator).tolist()
    kernel = (torch.rand(kh, kw, generator=generator) > 0.5).float()
    kernel[kh // 2, kw // 2] = 1.0
    return kernel


def apply_scipy(op, x: torch.Tensor, kernel: torch.Tensor) -> np.ndarray:
    footprint = kernel.numpy().astype(bool)
    planes = x.numpy()
    return np.stack([[SCIPY_ORACLES[op](plane, footprint) for plane in sample] for sample in planes])


@pytest.mark.parametrize("op", list(SCIPY_ORACLES), ids=lambda op: op.__name__)
def test_equals_scipy_on_random_arrays_and_elements(op) -> None:
    generator = torch.Generator().manual_seed(0)
    for _ in range(25):
        kernel = random_kernel(generator)
        x = torch.rand(2, 2, 13, 10, generator=generator, dtype=torch.float64)
        np.testing.assert_array_equal(op(x, kernel).numpy(), apply_scipy(op, x, kernel))


@pytest.mark.parametrize("op", [dilation, erosion], ids=lambda op: op.__name__)
def test_equals_scipy_for_elements_without_their_origin(op) -> None:
    # Asymmetric, off-centre elements are where reflection and the border convention show.
    kernel = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    x = torch.rand(1, 1, 8, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    np.testing.assert_array_equal(op(x, kernel).numpy(), apply_scipy(op, x, kernel))


@pytest.mark.parametrize("size", [(3, 3), (5, 3), (1, 7), (2, 2), (4, 3)])
def test_box_elements_equal_scipy(size: tuple[int, int]) -> None:
    # Odd boxes take the pooling path, even ones the shifted path: both must match scipy.
    kernel = box_kernel(*size)
    x = torch.rand(1, 3, 11, 12, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for op in SCIPY_ORACLES:
        np.testing.assert_allclose(op(x, kernel).numpy(), apply_scipy(op, x, kernel), rtol=0, atol=1e-12)


def test_dilation_reflects_an_asymmetric_element() -> None:
    kernel = torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0]])  # origin and its right
    x = torch.zeros(1, 1, 1, 5)
    x[..., 2] = 1.0
    # max over x(p - b) for b in {0, +1}: the bright pixel spreads to the right.
    assert dilation(x, kernel).flatten().tolist() == [0.0, 0.0, 1.0, 1.0, 0.0]
    # min over x(p + b): a dark pixel spreads to the left.
    assert erosion(1.0 - x, kernel).flatten().tolist() == [1.0, 0.0, 0.0, 1.0, 1.0]


def test_bright_band_touching_the_border_has_zero_tophat() -> None:
    # A band as wide as the element, flush with the top edge: outside pixels are ignored, so
    # the opening keeps it and the top-hat invents nothing. Zero padding would erode it away.
    x = torch.full((1, 1, 20, 20), 0.2, dtype=torch.float64)
    x[..., :5, :] = 0.9
    x[..., :, -5:] = 0.7
    kernel = box_kernel(5)
    tophat = white_tophat(x, kernel)
    assert torch.count_nonzero(tophat) == 0
    np.testing.assert_array_equal(tophat.numpy(), apply_scipy(white_tophat, x, kernel))


@pytest.mark.parametrize("op", [white_tophat, black_tophat], ids=lambda op: op.__name__)
def test_tophat_of_constant_image_is_zero(op) -> None:
    x = torch.full((2, 3, 9, 14), 0.37)
    for kernel in (box_kernel(5), line_kernel(7, 30.0), box_kernel(2, 4)):
        assert torch.count_nonzero(op(x, kernel)) == 0


def test_opening_is_anti_extensive_and_closing_extensive() -> None:
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    kernel = line_kernel(5, 60.0)
    assert torch.all(opening(x, kernel) <= x)
    assert torch.all(closing(x, kernel) >= x)


def test_tophat_finds_thin_streak_and_not_wide_blob() -> None:
    x = torch.zeros(1, 1, 32, 32)
    x[..., 4:28, 6] = 1.0  # thin vertical streak
    x[..., 10:22, 14:28] = 1.0  # wide bright block
    tophat = white_tophat(x, box_kernel(5))
    assert torch.all(tophat[..., 4:28, 6] == 1.0)
    assert torch.count_nonzero(tophat[..., 10:22, 14:28]) == 0


@pytest.mark.parametrize("angle", [0.0, 15.0, 45.0, 80.0, 90.0, 135.0, 170.0])
@pytest.mark.parametrize("length", [3, 7, 11])
def test_line_kernel_is_a_connected_symmetric_line(length: int, angle: float) -> None:
    kernel = line_kernel(length, angle)
    assert kernel.shape == (length, length)
    assert kernel[length // 2, length // 2] == 1.0
    assert torch.equal(kernel, kernel.flip(0, 1))  # point-symmetric about the centre
    rows, cols = torch.nonzero(kernel, as_tuple=True)
    extent = max(rows.max() - rows.min(), cols.max() - cols.min()).item()
    direction = np.array([np.cos(np.radians(angle)), np.sin(np.radians(angle))])
    assert extent == int(round((length // 2) * np.abs(direction).max())) * 2
    _, num_components = ndimage.label(kernel.numpy(), structure=np.ones((3, 3)))
    assert num_components == 1  # 8-connected


def test_line_kernel_orientation() -> None:
    assert torch.equal(line_kernel(5, 0.0)[2], torch.ones(5))
    assert torch.equal(line_kernel(5, 90.0)[:, 2], torch.ones(5))
    # 45 degrees counter-clockwise runs from bottom-left to top-right (rows grow downwards);
    # a Euclidean length of 7 spans 2 * round(3 / sqrt(2)) = 4 pixels along each axis.
    expected = torch.zeros(7, 7)
    for step in range(-2, 3):
        expected[3 - step, 3 + step] = 1.0
    assert torch.equal(line_kernel(7, 45.0), expected)


def test_line_opening_keeps_aligned_streak_and_removes_perpendicular_one() -> None:
    x = torch.zeros(1, 1, 40, 40)
    x[..., 5:35, 10] = 1.0  # vertical
    x[..., 20, 15:35] = 1.0  # horizontal
    opened = opening(x, line_kernel(9, 90.0))
    assert torch.all(opened[..., 5:35, 10] == 1.0)
    assert torch.all(opened[..., 20, 16:35] == 0.0)


def test_gradients_flow_to_the_input() -> None:
    x = torch.rand(1, 2, 10, 10, requires_grad=True)
    for op in SCIPY_ORACLES:
        x.grad = None
        op(x, line_kernel(5, 30.0)).sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()


def test_bfloat16_matches_float32() -> None:
    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(4))
    for op in SCIPY_ORACLES:
        expected = op(x.bfloat16().float(), line_kernel(5, 45.0))
        result = op(x.bfloat16(), line_kernel(5, 45.0))
        assert result.dtype == torch.bfloat16
        torch.testing.assert_close(result.float(), expected, rtol=0, atol=1e-2)


def test_structuring_element_caches_offsets() -> None:
    element = StructuringElement.from_kernel(torch.tensor([[1, 0], [0, 1]]))
    assert element.offsets == ((-1, -1), (0, 0))
    assert element.shape == (2, 2)
    x = torch.rand(1, 1, 6, 6)
    assert torch.equal(dilation(x, element), dilation(x, torch.tensor([[1, 0], [0, 1]])))


@pytest.mark.parametrize(
    ("kernel", "message"),
    [
        (torch.ones(3), "2-D"),
        (torch.zeros(3, 3), "no set cell"),
        (torch.full((3, 3), 0.5), "only 0 and 1"),
        (torch.ones(0, 3), "non-empty"),
    ],
)
def test_bad_kernels_are_refused(kernel: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dilation(torch.rand(1, 1, 5, 5), kernel)


def test_bad_images_are_refused() -> None:
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        erosion(torch.rand(5, 5), box_kernel(3))
    with pytest.raises(TypeError, match="floating-point"):
        erosion(torch.ones(1, 1, 5, 5, dtype=torch.uint8), box_kernel(3))
    with pytest.raises(TypeError, match="torch.Tensor"):
        erosion(np.ones((1, 1, 5, 5)), box_kernel(3))


@pytest.mark.parametrize(("length", "angle"), [(4, 0.0), (0, 0.0)])
def test_line_kernel_needs_odd_positive_length(length: int, angle: float) -> None:
    with pytest.raises(ValueError, match="odd"):
        line_kernel(length, angle)
