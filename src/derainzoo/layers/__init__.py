"""Building blocks of derainzoo, each usable on its own in any restoration network."""

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

__all__ = [
    "StructuringElement",
    "black_tophat",
    "box_kernel",
    "closing",
    "dilation",
    "erosion",
    "line_kernel",
    "opening",
    "white_tophat",
]
