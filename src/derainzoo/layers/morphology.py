"""Grey-scale morphology with flat structuring elements, on batched image tensors.

All operations take ``x`` of shape ``(B, C, H, W)`` and a flat structuring element given
either as a 0/1 ``kernel`` tensor of shape ``(kh, kw)`` (as in ``kornia.morphology``) or as a
pre-computed [`StructuringElement`][StructuringElement]. The element's origin is the kernel cell
``(kh // 2, kw // 2)``.

Border mode: pixels outside the image are ignored, i.e. dilation pads with ``-inf`` and
erosion with ``+inf``. The results equal ``scipy.ndimage.grey_dilation`` /
``grey_erosion`` called with ``footprint=kernel, mode="constant"`` and ``cval=-inf`` /
``cval=+inf`` respectively (dilation reflects the element, exactly as scipy does). Ignoring
the outside is what keeps the border from inventing structure: a bright band that touches
the image edge survives an opening, so its top-hat is zero. A pixel whose whole element
falls outside the image would get ``-inf`` / ``+inf``; that cannot happen when the kernel's
origin cell is set, which is true for every element built by [`box_kernel`][box_kernel] and
[`line_kernel`][line_kernel].

The work is vectorised over pixels: one shifted view per element cell, reduced with an
element-wise max/min, so memory stays at a few copies of ``x`` whatever the element size.
Full odd rectangles take a single ``max_pool2d`` instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from derainzoo.layers.validation import check_feature_map

__all__ = [
    "StructuringElement",
    "box_kernel",
    "line_kernel",
    "dilation",
    "erosion",
    "opening",
    "closing",
    "white_tophat",
    "black_tophat",
    "line_elements",
    "max_line_opening",
]


@dataclass(frozen=True)
class StructuringElement:
    """A flat structuring element as the offsets of its cells from its origin.

    Modules build their elements once with [`from_kernel`][StructuringElement.from_kernel] so that ``forward`` never
    inspects tensor values (which keeps it traceable by ``torch.export``).

    Attributes:
        offsets: ``(dy, dx)`` of every set cell relative to the origin ``(kh // 2, kw // 2)``.
        shape: ``(kh, kw)``, the size of the kernel the element came from.
    """

    offsets: tuple[tuple[int, int], ...]
    shape: tuple[int, int]

    @classmethod
    def from_kernel(cls, kernel: Tensor) -> StructuringElement:
        """Build the element from a 0/1 kernel.

        Args:
            kernel: ``(kh, kw)`` tensor; non-zero cells belong to the element.

        Raises:
            ValueError: if ``kernel`` is not 2-D, is empty, has no set cell, or holds values
                other than 0 and 1.
        """
        if not isinstance(kernel, Tensor):
            raise TypeError(f"kernel must be a torch.Tensor of shape (kh, kw), got {type(kernel).__name__}")
        if kernel.ndim != 2 or kernel.numel() == 0:
            raise ValueError(f"kernel must be a non-empty 2-D tensor (kh, kw), got shape {tuple(kernel.shape)}")
        values = kernel.detach().to("cpu", torch.float64)
        if not bool(((values == 0) | (values == 1)).all()):
            raise ValueError("kernel must hold only 0 and 1 (a flat structuring element)")
        kh, kw = kernel.shape
        cells = torch.nonzero(values).tolist()
        if not cells:
            raise ValueError("kernel has no set cell: a structuring element needs at least one")
        offsets = tuple((row - kh // 2, col - kw // 2) for row, col in cells)
        return cls(offsets=offsets, shape=(kh, kw))

    @property
    def is_full_odd_rectangle(self) -> bool:
        """True when every cell of an odd-sized kernel is set (pooling fast path)."""
        kh, kw = self.shape
        return kh % 2 == 1 and kw % 2 == 1 and len(self.offsets) == kh * kw


def box_kernel(height: int, width: int | None = None) -> Tensor:
    """A rectangular 0/1 kernel.

    Args:
        height: number of rows (positive).
        width: number of columns; defaults to ``height`` (a square).

    Returns:
        ``(height, width)`` float tensor of ones.
    """
    width = height if width is None else width
    if height < 1 or width < 1:
        raise ValueError(f"box_kernel needs positive sizes, got {height}x{width}")
    return torch.ones(height, width)


def line_kernel(length: int, angle: float) -> Tensor:
    """A digital line segment through the kernel centre.

    The cells step one pixel at a time along the line's dominant axis, so the line is
    8-connected and its end points lie about ``length`` pixels apart at every angle. The
    line is symmetric about its centre, so dilation and erosion use the same element whether
    or not it is reflected.

    Args:
        length: Euclidean length in pixels; must be odd so the line has a centre cell.
        angle: direction in degrees, counter-clockwise from the horizontal image axis
            (0 is a horizontal line, 90 a vertical one); image rows grow downwards.

    Returns:
        ``(length, length)`` float 0/1 tensor.

    Examples:
        >>> line_kernel(3, 90).int().tolist()
        [[0, 1, 0], [0, 1, 0], [0, 1, 0]]
    """
    if length < 1 or length % 2 == 0:
        raise ValueError(f"line_kernel length must be a positive odd integer, got {length}")
    radius = length // 2
    theta = math.radians(angle)
    dx, dy = math.cos(theta), -math.sin(theta)
    major = max(abs(dx), abs(dy))
    steps = _round_half_away(radius * major)
    kernel = torch.zeros(length, length)
    for step in range(-steps, steps + 1):
        # Walk the dominant axis one pixel at a time; rounding half away from zero makes the
        # cell of +step the mirror of the cell of -step.
        col = _round_half_away(step * dx / major)
        row = _round_half_away(step * dy / major)
        kernel[radius + row, radius + col] = 1.0
    return kernel


def _round_half_away(value: float) -> int:
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def _as_element(kernel: Tensor | StructuringElement) -> StructuringElement:
    return kernel if isinstance(kernel, StructuringElement) else StructuringElement.from_kernel(kernel)


def _shifted_reduce(x: Tensor, element: StructuringElement, sign: int, take_max: bool) -> Tensor:
    """Reduce ``x(p + sign * b)`` over the element offsets ``b`` with max or min."""
    kh, kw = element.shape
    pad_h, pad_w = kh // 2, kw // 2
    fill = -math.inf if take_max else math.inf
    padded = F.pad(x, (pad_w, pad_w, pad_h, pad_h), value=fill)
    height, width = x.shape[-2:]
    reduce = torch.maximum if take_max else torch.minimum
    views = (
        padded[..., pad_h + sign * dy : pad_h + sign * dy + height, pad_w + sign * dx : pad_w + sign * dx + width]
        for dy, dx in element.offsets
    )
    result = next(views)
    for view in views:
        result = reduce(result, view)
    return result


def dilation(x: Tensor, kernel: Tensor | StructuringElement) -> Tensor:
    """Grey-scale dilation ``D(x)(p) = max_{b in K} x(p - b)``.

    Args:
        x: ``(B, C, H, W)`` floating-point tensor.
        kernel: ``(kh, kw)`` 0/1 tensor or a [`StructuringElement`][StructuringElement].

    Returns:
        ``(B, C, H, W)`` tensor, equal to ``scipy.ndimage.grey_dilation(x, footprint=kernel,
            mode="constant", cval=-inf)`` on each ``(H, W)`` plane.
    """
    check_feature_map(x)
    element = _as_element(kernel)
    if element.is_full_odd_rectangle:
        kh, kw = element.shape
        return F.max_pool2d(x, (kh, kw), stride=1, padding=(kh // 2, kw // 2))
    return _shifted_reduce(x, element, sign=-1, take_max=True)


def erosion(x: Tensor, kernel: Tensor | StructuringElement) -> Tensor:
    """Grey-scale erosion ``E(x)(p) = min_{b in K} x(p + b)``.

    Args:
        x: ``(B, C, H, W)`` floating-point tensor.
        kernel: ``(kh, kw)`` 0/1 tensor or a [`StructuringElement`][StructuringElement].

    Returns:
        ``(B, C, H, W)`` tensor, equal to ``scipy.ndimage.grey_erosion(x, footprint=kernel,
            mode="constant", cval=inf)`` on each ``(H, W)`` plane.
    """
    check_feature_map(x)
    element = _as_element(kernel)
    if element.is_full_odd_rectangle:
        kh, kw = element.shape
        return -F.max_pool2d(-x, (kh, kw), stride=1, padding=(kh // 2, kw // 2))
    return _shifted_reduce(x, element, sign=1, take_max=False)


def opening(x: Tensor, kernel: Tensor | StructuringElement) -> Tensor:
    """Grey-scale opening, ``dilation(erosion(x))``: removes bright parts smaller than the element.

    Args:
        x: ``(B, C, H, W)`` floating-point tensor.
        kernel: ``(kh, kw)`` 0/1 tensor or a [`StructuringElement`][StructuringElement].

    Returns:
        ``(B, C, H, W)`` tensor, never above ``x``.
    """
    element = _as_element(kernel)
    return dilation(erosion(x, element), element)


def closing(x: Tensor, kernel: Tensor | StructuringElement) -> Tensor:
    """Grey-scale closing, ``erosion(dilation(x))``: fills dark parts smaller than the element.

    Args:
        x: ``(B, C, H, W)`` floating-point tensor.
        kernel: ``(kh, kw)`` 0/1 tensor or a [`StructuringElement`][StructuringElement].

    Returns:
        ``(B, C, H, W)`` tensor, never below ``x``.
    """
    element = _as_element(kernel)
    return erosion(dilation(x, element), element)


def white_tophat(x: Tensor, kernel: Tensor | StructuringElement) -> Tensor:
    """White top-hat ``x - opening(x)``: the bright details narrower than the element.

    Args:
        x: ``(B, C, H, W)`` floating-point tensor.
        kernel: ``(kh, kw)`` 0/1 tensor or a [`StructuringElement`][StructuringElement].

    Returns:
        ``(B, C, H, W)`` non-negative tensor; zero on a constant image.
    """
    return x - opening(x, kernel)


def black_tophat(x: Tensor, kernel: Tensor | StructuringElement) -> Tensor:
    """Black top-hat ``closing(x) - x``: the dark details narrower than the element.

    Args:
        x: ``(B, C, H, W)`` floating-point tensor.
        kernel: ``(kh, kw)`` 0/1 tensor or a [`StructuringElement`][StructuringElement].

    Returns:
        ``(B, C, H, W)`` non-negative tensor; zero on a constant image.
    """
    return closing(x, kernel) - x


def line_elements(length: int, num_angles: int) -> tuple[StructuringElement, ...]:
    """Line elements of one length at ``num_angles`` orientations evenly spread over 180 degrees."""
    if num_angles < 1:
        raise ValueError(f"num_angles must be at least 1, got {num_angles}")
    return tuple(
        StructuringElement.from_kernel(line_kernel(length, 180.0 * index / num_angles)) for index in range(num_angles)
    )


def max_line_opening(x: Tensor, elements: tuple[StructuringElement, ...]) -> Tensor:
    """Largest opening of ``x`` over line elements: keeps structures elongated in any direction.

    Args:
        x: ``(B, C, H, W)`` floating-point tensor.
        elements: line elements, e.g. from [`line_elements`][line_elements].

    Returns:
        ``(B, C, H, W)`` tensor, never above ``x``.
    """
    return torch.stack([opening(x, element) for element in elements]).amax(dim=0)
