"""Routing whole frames between a light-rain and a heavy-rain derainer.

One network trained on light and heavy rain together trades one against the other: every phase of
``dual_stage_derain.rain_mix`` that took more heavy rain off lost light rain, real photos or the
tone of bright flat scenes (its model card, phases 18-39). [`RoutedDerain`][RoutedDerain] keeps the
two lessons in two networks of one architecture and chooses between them per frame:

1. the *light* expert derains the frame;
2. the rain it removed, ``removed = mean |rainy - light(rainy)|`` over the frame in levels of 255
   ([`removed_rain`][removed_rain]), sets the heavy expert's share ``w`` by
   [`routing_weight`][routing_weight]: 0 at or below the band's low end, 1 at or above its high
   end, linear between;
3. frames with ``w > 0`` are derained by the *heavy* expert too, and the output is
   ``(1 - w) * light + w * heavy`` ([`blend_frames`][blend_frames]).

A frame the light expert finds lightly rained is therefore exactly its output, and costs one pass;
a heavily rained one costs two. The decision reads the whole frame, so
[`derain`][derainzoo.inference.derain] and [`evaluate`][derainzoo.evaluation.evaluate] make it
once per frame however the passes are tiled or self-ensembled (see
[`RoutedDerain.route_frames`][RoutedDerain.route_frames]): tiles never route differently.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from derainzoo import _helpers
from derainzoo.metrics import mean_absolute_error

__all__ = [
    "DEFAULT_ROUTING_BAND",
    "ExpertRunner",
    "RoutedDerain",
    "blend_frames",
    "check_routing_band",
    "removed_rain",
    "routing_weight",
]

DEFAULT_ROUTING_BAND = (15.0, 35.0)
"""Removed rain (levels of 255) where routing to the heavy expert starts and where it is complete,
calibrated for the bundled pair (``dual_stage_derain.rain_mix`` and its heavy-rain expert) on 60
validation frames (Rain100L stems 191-200, and rain rendered over them at strengths 0.1-0.7): a
hard switch scores best handing over at 15-20 levels, and no Rain100L validation frame, whose
light rain the heavy expert loses up to 14 dB on, is routed (the most removed there is 11.9). See
``benchmarks/results/routed_experts_strength_sweep_step1600_thresholds.md`` and the ``rain_mix``
card. Other experts cross elsewhere: calibrate their band with ``benchmarks/routed_experts.py``."""


def check_routing_band(band: tuple[float, float]) -> tuple[float, float]:
    """``band`` as two floats, checked.

    Raises:
        ValueError: it is not two numbers with ``0 <= low <= high``.
    """
    try:
        low, high = (float(value) for value in band)
    except (TypeError, ValueError):
        raise ValueError(f"the routing band must be two numbers (low, high), got {band!r}") from None
    if not 0 <= low <= high:
        raise ValueError(f"the routing band must satisfy 0 <= low <= high, got low={low}, high={high}")
    return low, high


def routing_weight(removed: Tensor, low: float, high: float) -> Tensor:
    """The heavy expert's share of each frame.

    Args:
        removed: ``(B,)`` mean rain the light expert removed from each frame, levels of 255.
        low: at or below it the weight is 0.
        high: at or above it the weight is 1; in between it rises linearly. ``low == high`` is a
            hard switch (weight 1 above ``low``).

    Returns:
        ``(B,)`` weights in ``[0, 1]``, in ``removed``'s dtype.

    Raises:
        ValueError: the band does not satisfy ``0 <= low <= high``.

    Examples:
        >>> routing_weight(torch.tensor([30.0, 50.0, 70.0]), 40.0, 60.0)
        tensor([0.0000, 0.5000, 1.0000])
    """
    low, high = check_routing_band((low, high))
    if low == high:
        return (removed > low).to(removed.dtype)
    return ((removed - low) / (high - low)).clamp(0, 1)


def removed_rain(rainy: Tensor, light_output: Tensor) -> Tensor:
    """The rain the light expert removed from each frame, what the routing reads.

    Args:
        rainy: ``(B, 3, H, W)`` the input frames in ``[0, 1]``.
        light_output: ``(B, 3, H, W)`` the light expert's output for them (clamped to ``[0, 1]``
            here, as the output a user gets).

    Returns:
        ``(B,)`` float32 mean ``|rainy - output|`` in levels of 255.
    """
    return mean_absolute_error(light_output.float().clamp(0, 1), rainy.float())


def blend_frames(light: Tensor, heavy: Tensor, weight: Tensor, out: Tensor | None = None) -> Tensor:
    """``(1 - w) * light + w * heavy``, one ``w`` per frame.

    Args:
        light: ``(B, C, H, W)`` the light expert's output.
        heavy: ``(B, C, H, W)`` the heavy expert's output.
        weight: ``(B,)`` from [`routing_weight`][routing_weight].
        out: where to write the blend (``light`` itself blends in place); default a new tensor.

    Returns:
        ``(B, C, H, W)`` in ``light``'s dtype.
    """
    return torch.lerp(light, heavy.to(light.dtype), weight.view(-1, 1, 1, 1).to(light.dtype), out=out)


ExpertRunner = Callable[[nn.Module, Tensor], Tensor]
"""How [`RoutedDerain.route_frames`][RoutedDerain.route_frames] runs one expert on a batch of
frames: ``run(expert, frames) -> derained``, whole, tiled or self-ensembled."""


class RoutedDerain(nn.Module):
    """Two derainers and a rule by frame: the light expert everywhere, the heavy one where the
    light one removed much rain (see the module's docstring for the rule).

    The experts are any modules mapping ``(B, 3, H, W)`` in ``[0, 1]`` to the derained
    ``(B, 3, H, W)``; registered as ``dual_stage_derain_routed`` with two ``dual_stage_derain``
    networks. Its weights file holds both, under ``light.`` and ``heavy.``.

    Args:
        light: the light-rain expert; its output is the result on every frame it removes at
            most ``band[0]`` levels of rain from.
        heavy: the heavy-rain expert, run only on frames with a positive weight.
        band: ``(low, high)`` removed rain in levels of 255, see
            [`routing_weight`][routing_weight]; default [`DEFAULT_ROUTING_BAND`][DEFAULT_ROUTING_BAND].
    """

    pretrained_filter_fn = None  # no earlier key layout to map
    # timm's Hub config records both: image to image (no classifier), and no single feature map.
    num_classes = 0
    num_features = 0

    def __init__(self, light: nn.Module, heavy: nn.Module, band: tuple[float, float] = DEFAULT_ROUTING_BAND) -> None:
        super().__init__()
        self.light = light
        self.heavy = heavy
        self.band = check_routing_band(band)

    @property
    def experts(self) -> tuple[nn.Module, nn.Module]:
        """``(light, heavy)``."""
        return self.light, self.heavy

    def with_experts(self, light: nn.Module, heavy: nn.Module) -> RoutedDerain:
        """A router with this one's band over other experts, e.g. the same experts compiled for a
        graph runtime ([`load_backend`][derainzoo.backends.load_backend])."""
        return RoutedDerain(light, heavy, self.band)

    def frame_weights(self, rainy: Tensor, light_output: Tensor) -> Tensor:
        """The heavy expert's share of each frame.

        Args:
            rainy: ``(B, 3, H, W)`` the input frames in ``[0, 1]``.
            light_output: ``(B, 3, H, W)`` the light expert's output for them.

        Returns:
            ``(B,)`` float32 weights in ``[0, 1]``.
        """
        return routing_weight(removed_rain(rainy, light_output), *self.band)

    def route_frames(self, x: Tensor, run_expert: ExpertRunner) -> Tensor:
        """Derain ``x`` with the experts, each pass run by ``run_expert``.

        The light pass covers the whole batch; the routing weights are read from its whole
        frames; the heavy pass covers only the frames with a positive weight. Whoever tiles or
        self-ensembles the passes does it inside ``run_expert``, so the decision stays per frame.

        Args:
            x: ``(B, 3, H, W)`` rainy frames in ``[0, 1]``.
            run_expert: runs one expert on a batch of frames, see [`ExpertRunner`][ExpertRunner].

        Returns:
            ``(B, 3, H, W)`` derained frames, in the light pass's dtype.
        """
        light = run_expert(self.light, x)
        weight = self.frame_weights(x, light)
        routed = weight > 0
        if not routed.any():
            return light
        if light.untyped_storage().data_ptr() == x.untyped_storage().data_ptr():
            light = light.clone()  # the caller's input: never blended into
        if routed.all():
            # Every frame routed (a routed photo always is): no copy of a frame, the blend
            # written into the light pass's buffer.
            return blend_frames(light, run_expert(self.heavy, x), weight, out=light)
        light[routed] = blend_frames(light[routed], run_expert(self.heavy, x[routed]), weight[routed])
        return light

    def forward(self, x: Tensor) -> Tensor:
        """Derain ``x`` (whole frames, one pass per expert).

        Args:
            x: ``(B, 3, H, W)`` float RGB in ``[0, 1]``, any ``H`` and ``W``.

        Returns:
            ``(B, 3, H, W)`` derained image.
        """
        return self.route_frames(x, lambda expert, frames: expert(frames))

    def load_pretrained(self, checkpoint_path: str | Path) -> None:
        """Read both experts from one file (keys ``light.*`` and ``heavy.*``) with derainzoo's
        checked loader (timm's ``custom_load`` hook)."""
        _helpers.load_weights(self, checkpoint_path)

    def extra_repr(self) -> str:
        return f"band={self.band}"
