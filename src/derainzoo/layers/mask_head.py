"""Rain-mask heads: a morphological prior refined by convolutions, and a learned-only ablation of it."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from derainzoo.layers.color import rgb_to_luma
from derainzoo.layers.morphology import (
    StructuringElement,
    box_kernel,
    dilation,
    line_elements,
    max_line_opening,
    white_tophat,
)
from derainzoo.layers.validation import check_feature_map

__all__ = ["LearnedMaskHead", "MorphologicalMaskHead"]


class MorphologicalMaskHead(nn.Module):
    """Predicts where rain streaks are, starting from what morphology alone can see.

    Rain streaks are thin, bright and elongated. On the luminance ``g`` of the image the head
    computes

    1. the white top-hat ``T = g - open(g, box)``, which keeps bright structures narrower than
       the box and drops flat regions and wide bright objects;
    2. ``L = max_theta open(T, line_theta)``, the largest opening of ``T`` by line elements at
       ``num_angles`` orientations, which keeps elongated structures and drops dots and texture;
    3. the prior logits ``(L - threshold) / temperature`` (a soft threshold with learnable
       threshold and temperature), optionally dilated by a ``halo_size`` box to cover each
       streak's halo. Dilation commutes with the increasing sigmoid, so dilating logits is the
       same as dilating the soft mask;
    4. a small convolutional refinement of ``[image, sigmoid(prior logits)]`` whose output is
       added to the logits. Its last convolution starts at zero, so an untrained head returns
       exactly the morphological prior.

    The defaults were chosen on Rain100L *training* pairs (every tenth image) by the overlap of
    the untrained prior with the true rain layer ``|rainy - clean|``: a 5-pixel top-hat, 9-pixel
    lines at 12 angles, threshold 0.04 and no halo dilation gave the best intersection over
    union (0.32 against rain above 0.04); a 3-pixel halo lowered it to 0.24.

    Args:
        tophat_size: side of the square element of the top-hat; wider than the widest streak.
        line_length: length of the line elements; streaks shorter than this are dropped.
        num_angles: number of line orientations, evenly spread over 180 degrees.
        threshold: initial top-hat response (image units, 0..1) at which the mask crosses 0.5.
        temperature: initial softness of the threshold; smaller is sharper.
        halo_size: side of the square element that dilates the mask over streak halos; 1
            (the default) disables the dilation.
        refine_channels: width of the refinement convolutions.

    Shape:
        - Input: ``(B, 3, H, W)`` RGB image in ``[0, 1]``, any ``H`` and ``W``.
        - Output: ``(B, 1, H, W)`` mask in ``[0, 1]``; 1 marks rain.

    Examples:
        >>> head = MorphologicalMaskHead()
        >>> head(torch.rand(2, 3, 40, 50)).shape
        torch.Size([2, 1, 40, 50])
    """

    def __init__(
        self,
        tophat_size: int = 5,
        line_length: int = 9,
        num_angles: int = 12,
        threshold: float = 0.04,
        temperature: float = 0.01,
        halo_size: int = 1,
        refine_channels: int = 16,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.tophat_element = StructuringElement.from_kernel(box_kernel(tophat_size))
        self.line_elements = line_elements(line_length, num_angles)
        self.halo_element = StructuringElement.from_kernel(box_kernel(halo_size))
        self.threshold = nn.Parameter(torch.tensor(float(threshold)))
        # Stored as a logarithm so the temperature stays positive under any update.
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))
        self.refine = _zero_ended_convolutions(4, refine_channels)

    def elongated_tophat(self, image: Tensor) -> Tensor:
        """Morphological streak response ``L`` of steps 1-2.

        Args:
            image: ``(B, 3, H, W)`` RGB in ``[0, 1]``.

        Returns:
            ``(B, 1, H, W)`` non-negative response, in image units.
        """
        check_feature_map(image, 3, "image")
        return max_line_opening(white_tophat(rgb_to_luma(image), self.tophat_element), self.line_elements)

    def prior_logits(self, image: Tensor) -> Tensor:
        """Logits of the morphological prior (steps 1-3), before refinement.

        Args:
            image: ``(B, 3, H, W)`` RGB in ``[0, 1]``.

        Returns:
            ``(B, 1, H, W)`` logits; ``sigmoid`` of them is the prior mask.
        """
        response = self.elongated_tophat(image)
        logits = (response - self.threshold) / self.log_temperature.exp()
        return dilation(logits, self.halo_element)

    def forward(self, image: Tensor) -> Tensor:
        """Rain mask of ``image``.

        Args:
            image: ``(B, 3, H, W)`` RGB in ``[0, 1]``.

        Returns:
            ``(B, 1, H, W)`` mask in ``[0, 1]``.
        """
        logits = self.prior_logits(image)
        correction = self.refine(torch.cat([image, torch.sigmoid(logits)], dim=1))
        return torch.sigmoid(logits + correction)


class LearnedMaskHead(nn.Module):
    """A rain mask learned by convolutions alone, without the morphological prior: the
    ablation of [`MorphologicalMaskHead`][MorphologicalMaskHead]
    (``DualStageDerain(mask_source="learned")``).

    The same three convolutions as the morphological head's refinement read the image and give
    the mask logits. The last one starts at zero, so an untrained head returns 0.5 everywhere;
    a constant mask scales every query and key of
    [`RainMaskAttention`][derainzoo.layers.rain_mask_attention.RainMaskAttention] alike, which the
    L2 normalisation cancels, so the untrained head masks nothing and the mask is whatever
    training (the mask loss and the attention's gradient) makes of it.

    Args:
        channels: width of the convolutions.

    Shape:
        - Input: ``(B, 3, H, W)`` RGB image in ``[0, 1]``, any ``H`` and ``W``.
        - Output: ``(B, 1, H, W)`` mask in ``[0, 1]``; 1 marks rain.

    Examples:
        >>> head = LearnedMaskHead()
        >>> head(torch.rand(2, 3, 40, 50)).unique().tolist()
        [0.5]
    """

    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        self.layers = _zero_ended_convolutions(3, channels)

    def forward(self, image: Tensor) -> Tensor:
        """Rain mask of ``image``: ``(B, 3, H, W)`` in, ``(B, 1, H, W)`` in ``[0, 1]`` out."""
        check_feature_map(image, 3, "image")
        return torch.sigmoid(self.layers(image))


def _zero_ended_convolutions(in_channels: int, channels: int) -> nn.Sequential:
    """Three 3x3 convolutions with GELUs between, ``in_channels -> channels -> channels -> 1``;
    the last one starts at zero so the stack adds nothing before training."""
    layers = nn.Sequential(
        nn.Conv2d(in_channels, channels, 3, padding=1),
        nn.GELU(),
        nn.Conv2d(channels, channels, 3, padding=1),
        nn.GELU(),
        nn.Conv2d(channels, 1, 3, padding=1),
    )
    nn.init.zeros_(layers[-1].weight)
    nn.init.zeros_(layers[-1].bias)
    return layers
