"""What every derainzoo model's ``forward_stages`` returns, for training losses."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

__all__ = ["DerainOutput"]


class DerainOutput(NamedTuple):
    """Everything a derainzoo model's ``forward_stages`` computes, each cropped to the input size.

    Attributes:
        image: ``(B, 3, H, W)`` final derained image (``B2`` of the dual-stage model).
        stage1: ``(B, 3, H, W)`` stage-1 (rain-streak suppression) image ``B1``; ``None`` for a
            model of one stage, whose ``image`` is its only output.
        mask: ``(B, 1, H, W)`` rain mask in ``[0, 1]`` (1 is rain); ``None`` for a model that
            computes no mask.
    """

    image: Tensor
    stage1: Tensor | None
    mask: Tensor | None
