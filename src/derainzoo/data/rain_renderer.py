"""Rain renderer: streak layers at several depths, light-like compositing, a veil, camera effects.

The image model is the heavy-rain model of JORDER (Yang et al., CVPR 2017) with streaks that are
composited as light rather than added and clipped::

    R = background, then for every streak layer k:  R = (1 - a_k) * R + a_k * L
    R = (1 - a_s) * R + a_s * L                  # splashes or ground spray (optional)
    O = t * R + (1 - t) * A
    O = m + c * (O - m) + b                      # haze: contrast loss and brightening (optional)
    O = (1 - d) * O + d * lens(O)                # drops on the lens (optional)
    rainy = camera(O)          # slight blur, sensor noise, JPEG

``a_k`` is the layer's streak opacity map, ``L`` the radiance of the drops (they refract the
bright sky, so they are near white), ``t`` the transmission of the rain accumulation (veil) and
``A`` the atmospheric light. With ``L = 1`` the streak compositing is the *screen* blend
``R + a (1 - R)``: a streak brightens dark areas a lot and bright areas little, and never
clips to white; with ``L < 1`` a streak over a bright sky turns it slightly darker, as real
streaks do.

A streak layer is drawn in a canvas whose vertical axis is the streak direction and whose cells
are ``width`` pixels wide: random drops (brightness ``U(0.4, 1)``) are smeared along the canvas
columns by a tapered box filter of the streak length (the motion blur of a falling drop), and
the canvas is resampled into the image, rotated by the wind angle, with bilinear interpolation
(averaging several samples per pixel for streaks thinner than a pixel).
Near layers are then defocused with a Gaussian. Everything is batched: every image of a batch
has its own parameters and one convolution serves the whole batch.

Use [`sample_rain_params`][sample_rain_params] to draw parameters for a rain *strength* in ``[0, 1]`` or a
named preset (``"light"``, ``"medium"``, ``"heavy"``), and [`render_rain`][render_rain] to render them.
Its ``styles`` and ``style_probability`` widen the physical presets for domain randomisation
(see [`RAIN_STYLES`][RAIN_STYLES]): streak families crossing at clearly different angles, opaque
saturated streaks, long soft low-contrast curtains, a global haze, rain coloured by the scene
light, splashes, drops on the lens, the motion-blurred noise of the Photoshop recipe that
synthetic heavy-rain sets are drawn with, steep wind-driven rain, thick streaks, and the dense
fine spray of a downpour hitting the ground.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, NamedTuple, get_args

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

__all__ = [
    "FIRST_RELEASE_STYLES",
    "RAIN_PRESETS",
    "RAIN_STYLES",
    "RainStyle",
    "preset_range",
    "RainParams",
    "RainPreset",
    "RenderedRain",
    "StreakLayer",
    "gaussian_blur",
    "render_rain",
    "render_rain_per_image",
    "sample_rain_params",
    "style_min_strengths",
    "style_probabilities",
]

RainPreset = Literal["light", "medium", "heavy"]

RAIN_PRESETS: dict[str, tuple[float, float]] = {
    "light": (0.0, 0.05),
    "medium": (0.45, 0.55),
    "heavy": (0.85, 1.0),
}
"""Rain strength interval of each preset. ``light`` matches Rain100L (mean ``|rainy - clean|``
about 5-6/255, one direction, no veil); ``heavy`` matches the Rain100H family (about 40-60/255,
several directions plus a veil); ``medium`` lies between."""

RainStyle = Literal[
    "crossing",
    "opaque",
    "curtain",
    "haze",
    "scene_light",
    "splashes",
    "lens_drops",
    "noise_streaks",
    "steep",
    "wide",
    "spray",
]

RAIN_STYLES: tuple[str, ...] = get_args(RainStyle)
"""The styles [`sample_rain_params`][sample_rain_params] can add to the physical rain of a strength, each
aimed at rain that the physical presets miss:

* ``crossing``: two or three streak families whose directions are 20-40 degrees apart;
* ``opaque``: nearly opaque, near-white streaks (opacity 0.85-1, drops of brightness 0.8-1),
  half of the time added and clipped (``streak_blend="add"``) as synthetic heavy sets draw them;
* ``curtain``: one or two layers of long (150-400 px), wide (4-12 px), soft, low-contrast
  (opacity 0.08-0.25) near-vertical streaks over the whole frame;
* ``haze``: a global contrast loss (``contrast`` 0.55-0.9) and brightening (``brightening``
  0.05-0.2, 13-50 levels), independent of the veil;
* ``scene_light``: drops that take the colour of the scene's light (``streak_tint`` 0.5-1);
* ``splashes``: bright splashes of drops hitting the ground, in the lower half of the image;
* ``lens_drops``: 2-12 drops on the lens, each a blurred, upside-down view of what lies behind it;
* ``noise_streaks``: one to three families (20-40 degrees apart) of streaks drawn as synthetic
  heavy-rain sets draw them: a dense noise layer, motion-blurred (averaged along 20-80 px), then
  stretched by a levels adjustment (see ``StreakLayer.levels``), so overlapping streaks add up to
  a continuous range of brightness instead of saturating;
* ``steep``: the whole rain (every streak layer, crossing families and curtains included) turned
  so that the wind blows at 40-75 degrees from the vertical instead of the physical presets'
  ``+-MAX_WIND_ANGLE``, on the side the wind was drawn: wind-driven rain, which the
  ``streak_angles.py`` benchmark showed a model trained without it leaves in place;
* ``wide``: the whole rain drawn ``f = U(1.5, 4)`` times as large (every streak layer ``f`` times
  as long, wide and defocused, ``1 / f^2`` times as many drops per pixel, so the same share of
  the frame is covered; see ``StreakLayer.resized``): the thick streaks, several pixels wide,
  of synthetic heavy sets drawn over small images, which a model trained without it leaves
  partly in place, their added brightness with them;
* ``spray``: the dense, fine texture of drops hitting the ground in a downpour: 1-6% of the
  pixels below a horizon at 30-70% of the height (rising to twice as many at the bottom edge)
  hold a bright speck about a pixel wide (``splash_size`` 0.6-1.5), the grainy bright road of
  real downpour photos, which the sparse, larger ``splashes`` do not draw (it takes their fields
  over when both are drawn).
"""

FIRST_RELEASE_STYLES: tuple[str, ...] = RAIN_STYLES[:7]
"""The styles of the first release. They draw their random number whatever their probability;
a later style draws its number only when its probability is above 0, so a sampler that leaves
the later styles out keeps the draws of the first release (the fixed ``val_styles`` sets of
training runs rely on it)."""

MIN_STREAK_WIDTH = 0.25
"""Thinnest streak, in pixels, a [`StreakLayer`][StreakLayer] may have (rendered at up to 4x4 samples per pixel)."""

MAX_STREAK_LENGTH = 1e4
MAX_STREAK_WIDTH = 64.0
MAX_DEFOCUS = 32.0

MAX_LEVEL = 100.0
"""Largest ``StreakLayer.levels`` value, in units of the layer's expected averaged drop light."""

MAX_WIND_ANGLE = 35.0
"""Largest streak angle from the vertical, in degrees, that [`sample_rain_params`][sample_rain_params] draws."""


@dataclass(frozen=True)
class StreakLayer:
    """One layer of rain streaks at one depth.

    Attributes:
        angle: direction in degrees from the vertical; positive values lean the top of a streak
            to the right (wind).
        length: streak length in pixels.
        width: streak width in pixels, at least 0.25 (distant streaks are thin, near ones wide).
            Streaks thinner than a pixel are rendered supersampled: they cover part of a pixel,
            so they look like the faint one-pixel lines of a photo downscaled from a larger one.
        density: drops per pixel: the fraction of pixels where a streak starts, in ``[0, 1]``.
        opacity: peak opacity of a streak in ``[0, 1]`` (distant streaks are dim).
        defocus: standard deviation in pixels of the Gaussian blur of near, out-of-focus
            streaks; 0 keeps them sharp.
        min_brightness: the drops' brightness is drawn in ``U(min_brightness, 1)``; near 1,
            every streak reaches its full opacity (the ``opaque`` style).
        levels: ``None`` smears every drop into a streak of the drop's brightness, and where
            streaks overlap they saturate at 1. A pair ``(black, white)`` draws the streaks of the
            Photoshop recipe instead (the ``noise_streaks`` style): the drops are *averaged*
            along the streak (a motion blur of a noise layer), so overlapping streaks add up to
            a continuous brightness, and that average, in units of its expected value
            (drops per cell x mean brightness), is stretched from ``[black, white]`` to
            ``[0, 1]`` (a levels adjustment), before the opacity scales it.
    """

    angle: float = 0.0
    length: float = 20.0
    width: float = 1.0
    density: float = 0.004
    opacity: float = 0.6
    defocus: float = 0.0
    min_brightness: float = 0.4
    levels: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        _check_range("angle", self.angle, -90.0, 90.0)
        _check_range("length", self.length, 1.0, MAX_STREAK_LENGTH)
        _check_range("width", self.width, MIN_STREAK_WIDTH, MAX_STREAK_WIDTH)
        _check_range("density", self.density, 0.0, 1.0)
        _check_range("opacity", self.opacity, 0.0, 1.0)
        _check_range("defocus", self.defocus, 0.0, MAX_DEFOCUS)
        _check_range("min_brightness", self.min_brightness, 0.0, 1.0)
        if self.levels is not None:
            if not (isinstance(self.levels, tuple) and len(self.levels) == 2):
                raise ValueError(f"levels must be None or a pair (black, white), got {self.levels!r}")
            _check_range("levels[0] (black)", self.levels[0], 0.0, MAX_LEVEL)
            _check_range("levels[1] (white)", self.levels[1], self.levels[0] + 1e-3, MAX_LEVEL)

    def resized(self, factor: float) -> StreakLayer:
        """The same layer in an image ``factor`` times as large (a photo downscaled for
        ``factor < 1``, a camera of higher resolution for ``factor > 1``): every streak
        ``factor`` times as long, wide and defocused, and ``1 / factor^2`` times as many drops
        per pixel, each kept within its valid range."""
        return replace(
            self,
            length=min(MAX_STREAK_LENGTH, max(1.0, self.length * factor)),
            width=min(MAX_STREAK_WIDTH, max(MIN_STREAK_WIDTH, self.width * factor)),
            # The same drops over an image factor^2 times the area.
            density=min(1.0, self.density / factor**2),
            defocus=min(MAX_DEFOCUS, self.defocus * factor),
        )


@dataclass(frozen=True)
class RainParams:
    """Everything that describes the rain of one image.

    Attributes:
        layers: the streak layers, composited in order (far to near).
        streak_light: radiance ``L`` of the drops in ``[0, 1]``; 1 makes the compositing a
            screen blend.
        transmission: mean transmission ``t`` of the veil in ``(0, 1]``; 1 means no veil.
        transmission_variation: amplitude of a smooth random variation of ``t`` across the
            image (``t`` varies within ``transmission +- transmission_variation``).
        atmospheric_light: grey level ``A`` of the veil in ``[0, 1]``.
        camera_blur: standard deviation in pixels of a Gaussian blur of the rainy image.
        noise_std: standard deviation of additive Gaussian sensor noise (on the 0-1 scale).
        jpeg_quality: JPEG quality (1-100) the rainy image is compressed at, or ``None``.
        streak_blend: ``"light"`` composites streaks as light (``R = (1 - a) R + a L``);
            ``"add"`` adds them and clips (``R = min(1, R + a L)``), as synthetic heavy-rain
            sets do, so bright streaks saturate to white.
        streak_tint: in ``[0, 1]``: how much the drops take the colour of the scene's light
            (the chromaticity of the heavily low-passed background, brightest channel 1)
            instead of white: ``L = streak_light * ((1 - tint) + tint * chroma)``.
        splash_density: splashes per pixel below the splash horizon (none above it, rising
            linearly to twice the value at the bottom edge).
        splash_size: horizontal radius in pixels of a splash (half as tall as wide).
        splash_horizon: in ``[0, 0.95]``: the height, as a fraction of the image's from the
            top, below which splashes fall (0.5: the lower half).
        lens_drops: number of drops on the lens.
        lens_drop_radius: mean radius in pixels of a lens drop (each is ``U(0.6, 1.4)`` times it).
        contrast: in ``(0, 1]``: the haze scales the image's deviation from its mean by it.
        brightening: in ``[0, 0.5]``: the haze adds it to every pixel (on the 0-1 scale).
        styles: the styles of [`RAIN_STYLES`][RAIN_STYLES] that [`sample_rain_params`][sample_rain_params]
            added, for the record (rendering reads only the fields above).
    """

    layers: tuple[StreakLayer, ...] = field(default_factory=lambda: (StreakLayer(),))
    streak_light: float = 0.9
    transmission: float = 1.0
    transmission_variation: float = 0.0
    atmospheric_light: float = 0.85
    camera_blur: float = 0.0
    noise_std: float = 0.0
    jpeg_quality: int | None = None
    streak_blend: Literal["light", "add"] = "light"
    streak_tint: float = 0.0
    splash_density: float = 0.0
    splash_size: float = 2.0
    splash_horizon: float = 0.5
    lens_drops: int = 0
    lens_drop_radius: float = 15.0
    contrast: float = 1.0
    brightening: float = 0.0
    styles: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not all(isinstance(layer, StreakLayer) for layer in self.layers):
            raise TypeError("layers must be a tuple of StreakLayer")
        _check_range("streak_light", self.streak_light, 0.0, 1.0)
        _check_range("transmission", self.transmission, 1e-3, 1.0)
        _check_range("transmission_variation", self.transmission_variation, 0.0, 1.0)
        _check_range("atmospheric_light", self.atmospheric_light, 0.0, 1.0)
        _check_range("camera_blur", self.camera_blur, 0.0, 32.0)
        _check_range("noise_std", self.noise_std, 0.0, 1.0)
        if self.jpeg_quality is not None and not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in [1, 100] or None, got {self.jpeg_quality}")
        if self.streak_blend not in ("light", "add"):
            raise ValueError(f"streak_blend must be 'light' or 'add', got {self.streak_blend!r}")
        _check_range("streak_tint", self.streak_tint, 0.0, 1.0)
        _check_range("splash_density", self.splash_density, 0.0, 0.1)
        _check_range("splash_size", self.splash_size, 0.5, 32.0)
        _check_range("splash_horizon", self.splash_horizon, 0.0, 0.95)
        if not isinstance(self.lens_drops, int) or not 0 <= self.lens_drops <= 1000:
            raise ValueError(f"lens_drops must be an integer in [0, 1000], got {self.lens_drops!r}")
        _check_range("lens_drop_radius", self.lens_drop_radius, 1.0, 1000.0)
        _check_range("contrast", self.contrast, 1e-3, 1.0)
        _check_range("brightening", self.brightening, 0.0, 0.5)
        if not set(self.styles) <= set(RAIN_STYLES):
            raise ValueError(f"styles must name styles of {', '.join(RAIN_STYLES)}; got {self.styles!r}")


class RenderedRain(NamedTuple):
    """What [`render_rain`][render_rain] returns.

    Attributes:
        rainy: ``(B, 3, H, W)`` rainy images in ``[0, 1]``.
        streaks: ``(B, 1, H, W)`` combined opacity of all streak layers, splashes and lens
            drops in ``[0, 1]`` (``1 - prod_k (1 - a_k)``): where the rain is, for mask
            supervision.
        transmission: ``(B, 1, H, W)`` transmission ``t`` of the veil (1 where there is none).
    """

    rainy: Tensor
    streaks: Tensor
    transmission: Tensor


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high):
        raise ValueError(f"{name} must be a finite number in [{low}, {high}], got {value!r}")


def preset_range(name: str) -> tuple[float, float]:
    """The strength interval of a preset of [`RAIN_PRESETS`][RAIN_PRESETS].

    Raises:
        ValueError: an unknown name; the message lists the presets.
    """
    if name not in RAIN_PRESETS:
        raise ValueError(f"unknown rain preset {name!r}; presets: {', '.join(RAIN_PRESETS)}")
    return RAIN_PRESETS[name]


def sample_rain_params(
    strength: float | RainPreset = "medium",
    generator: torch.Generator | None = None,
    camera_effects: bool = True,
    short_exposure: float = 0.0,
    drizzle: float = 0.0,
    downscaled: float = 0.0,
    styles: Sequence[RainStyle] = (),
    style_probability: float | Mapping[str, float] = 0.0,
    style_min_strength: Mapping[str, float] | None = None,
) -> RainParams:
    """Draw random rain of a given strength.

    ``strength`` runs from 0 (Rain100L-like: one layer of thin, dim, single-direction streaks,
    no veil) to 1 (heavy: three or four layers from thin, dim and dense far away to wide,
    bright, sparse and out-of-focus near the camera, slightly different directions, and a
    veil). The wind angle is drawn in ``+-35`` degrees for every strength.

    Args:
        strength: a number in ``[0, 1]``, or a preset name of [`RAIN_PRESETS`][RAIN_PRESETS] (the strength
            is then drawn uniformly in the preset's interval).
        generator: random generator, for reproducible parameters.
        camera_effects: also draw a slight blur (30% of images), sensor noise (40%) and JPEG
            compression at quality 60-95 (50%), independently of the strength.
        short_exposure: probability, in ``[0, 1]``, that rain of strength 0.2 or more was shot
            at a fast shutter: every streak is then ``U(0.15, 0.6)`` times as long (at least 2
            pixels), so drops look like the short dashes of many real downpour photos.
        drizzle: probability, in ``[0, 1]``, that rain of strength 0.3 or more gets one more,
            farthest layer: thin, dim (opacity 0.12-0.3) and very dense (0.02-0.06 drops per
            pixel) streaks, the fine haze of streaks in front of distant backgrounds.
        downscaled: probability, in ``[0, 1]``, that the rain looks as in a photo downscaled
            from a larger original (as photos on the web are): every streak is ``f = U(0.35, 0.7)``
            times as long, wide and defocused, and there are ``1 / f^2`` times as many drops per
            pixel, so most streaks are faint lines thinner than a pixel.
        styles: styles of [`RAIN_STYLES`][RAIN_STYLES] to add to the rain, whatever the strength.
        style_probability: probability, in ``[0, 1]``, that each of the other styles is added
            too: the random-style sampler of domain randomisation. A mapping gives each style
            its own probability (styles it leaves out get 0; see
            [`style_probabilities`][style_probabilities]).
        style_min_strength: ``{style: strength}``: a style of ``style_probability`` is added
            only to rain of at least that strength, e.g. ``{"haze": 0.4}`` ties the haze to
            dense rain, as the rain accumulation of real downpours is (its draw is made all the
            same, so the other styles' draws do not change).

    The options draw their random numbers after all others and only when they are non-zero
    (or non-empty), so with none (the default) the parameters are exactly those of earlier
    releases (the presets' statistics and the fixed validation sets stay the same), and with
    them on, the other layers are the same rain with shorter streaks, more layers or a style
    on top. Styles are applied in the order of [`RAIN_STYLES`][RAIN_STYLES].

    Returns:
        The [`RainParams`][RainParams] of one image.

    Examples:
        >>> params = sample_rain_params("heavy", torch.Generator().manual_seed(0))
        >>> len(params.layers) >= 3 and params.transmission < 1
        True
    """
    if isinstance(strength, str):
        low, high = preset_range(strength)
        strength = low + (high - low) * _uniform(generator)
    _check_range("strength", strength, 0.0, 1.0)
    _check_range("short_exposure", short_exposure, 0.0, 1.0)
    _check_range("drizzle", drizzle, 0.0, 1.0)
    _check_range("downscaled", downscaled, 0.0, 1.0)
    probabilities = style_probabilities(style_probability)
    min_strength = style_min_strengths(style_min_strength)
    if isinstance(styles, str) or not set(styles) <= set(RAIN_STYLES):
        raise ValueError(f"styles must be a sequence of names from {', '.join(RAIN_STYLES)}; got {styles!r}")
    s = float(strength)

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * _uniform(generator)

    num_layers = 1 if s < 0.2 else 1 + int(uniform(1.0 + 2.0 * s, 2.0 + 2.0 * s))
    # Depth 0 is far from the camera and 1 is near; heavier rain spans more depths.
    depths = sorted(uniform(0.1, 0.4) if num_layers == 1 else uniform(0.0, 1.0) for _ in range(num_layers))
    wind = uniform(-MAX_WIND_ANGLE, MAX_WIND_ANGLE) * (1.0 if s > 0.0 else 0.8)

    def layer_angle(spread: float) -> float:
        """The wind angle give or take up to ``spread`` degrees: layers lean slightly differently."""
        return _clamped_angle(wind + uniform(-1.0, 1.0) * spread, MAX_WIND_ANGLE)

    layers = []
    for depth in depths:
        width = 1.0 + depth * (0.4 + 2.0 * s) * uniform(0.7, 1.3)
        layers.append(
            StreakLayer(
                angle=layer_angle(2.0 + 6.0 * s),
                length=(14.0 + 30.0 * depth + 30.0 * s) * uniform(0.7, 1.3),
                width=width,
                # Far layers are dense; near ones sparse (fewer drops fill the view up close).
                density=(0.006 + 0.004 * s) * (1.2 - 0.9 * depth) * uniform(0.6, 1.4) / width**2,
                opacity=min(1.0, (0.6 + 0.5 * depth) * uniform(0.8, 1.2)),
                defocus=max(0.0, depth - 0.6) * 4.0 * s * uniform(0.5, 1.5),
            )
        )
    veil = max(0.0, (s - 0.3) / 0.7)
    params: dict[str, object] = dict(
        streak_light=uniform(0.8, 1.0),
        transmission=1.0 - veil * uniform(0.15, 0.4),
        transmission_variation=veil * uniform(0.0, 0.15),
        atmospheric_light=uniform(0.7, 0.95),
    )
    if camera_effects:
        blur, noise, jpeg = (_uniform(generator) for _ in range(3))
        params.update(
            camera_blur=uniform(0.3, 0.9) if blur < 0.3 else 0.0,
            noise_std=uniform(0.003, 0.02) if noise < 0.4 else 0.0,
            jpeg_quality=int(uniform(60.0, 95.99)) if jpeg < 0.5 else None,
        )
    # A streak is the path a drop falls while the shutter is open, so its length scales with
    # the exposure time.
    exposure = 1.0
    if short_exposure > 0 and s >= 0.2 and _uniform(generator) < short_exposure:
        exposure = uniform(0.15, 0.6)
        layers = [replace(layer, length=max(2.0, layer.length * exposure)) for layer in layers]
    if drizzle > 0 and s >= 0.3 and _uniform(generator) < drizzle:
        drizzle_layer = StreakLayer(
            angle=layer_angle(2.0),
            length=max(2.0, uniform(8.0, 25.0) * exposure),
            width=1.0,
            density=uniform(0.02, 0.06),
            opacity=uniform(0.12, 0.3),
        )
        layers = [drizzle_layer, *layers]
    if downscaled > 0 and _uniform(generator) < downscaled:
        factor = uniform(0.35, 0.7)
        layers = [layer.resized(factor) for layer in layers]
    chosen = set(styles)
    # One draw per style whatever its probability, so that changing one style's probability
    # leaves the others' draws as they were (later styles: see FIRST_RELEASE_STYLES).
    if any(probability > 0 for probability in probabilities.values()):
        chosen |= {
            style
            for style in RAIN_STYLES
            if (style in FIRST_RELEASE_STYLES or probabilities[style] > 0)
            and _uniform(generator) < probabilities[style]
            and s >= min_strength[style]
        }
    for style in RAIN_STYLES:
        if style in chosen:
            layers = _add_style(style, layers, params, uniform, wind)
    params["layers"] = tuple(layers)
    params["styles"] = tuple(style for style in RAIN_STYLES if style in chosen)
    return RainParams(**params)


def style_probabilities(style_probability: float | Mapping[str, float]) -> dict[str, float]:
    """The probability of each style of [`RAIN_STYLES`][RAIN_STYLES], checked.

    Args:
        style_probability: one probability in ``[0, 1]`` for every style, or a mapping from
            style names to probabilities (styles it leaves out get 0), e.g. every style at 0.25
            but ``haze`` at 0: ``{**dict.fromkeys(RAIN_STYLES, 0.25), "haze": 0.0}``.

    Returns:
        ``{style: probability}`` over every style of [`RAIN_STYLES`][RAIN_STYLES], in its order.

    Raises:
        ValueError: a probability outside ``[0, 1]`` or an unknown style name.

    Examples:
        >>> style_probabilities({"haze": 0.5})["haze"], style_probabilities(0.2)["opaque"]
        (0.5, 0.2)
    """
    if not isinstance(style_probability, Mapping):
        _check_range("style_probability", style_probability, 0.0, 1.0)
        return dict.fromkeys(RAIN_STYLES, float(style_probability))
    return _per_style("style_probability", style_probability)


def style_min_strengths(style_min_strength: Mapping[str, float] | None) -> dict[str, float]:
    """The least rain strength of each style of [`RAIN_STYLES`][RAIN_STYLES], checked.

    Args:
        style_min_strength: a mapping from style names to strengths in ``[0, 1]`` (styles it
            leaves out get 0: any strength), or ``None`` for none.

    Returns:
        ``{style: strength}`` over every style of [`RAIN_STYLES`][RAIN_STYLES], in its order.

    Raises:
        ValueError: a strength outside ``[0, 1]`` or an unknown style name.

    Examples:
        >>> style_min_strengths({"haze": 0.4})["haze"], style_min_strengths(None)["haze"]
        (0.4, 0.0)
    """
    return _per_style("style_min_strength", style_min_strength or {})


def _per_style(name: str, values: Mapping[str, float]) -> dict[str, float]:
    """``values`` over every style of [`RAIN_STYLES`][RAIN_STYLES] (0 for the styles it leaves
    out), each checked to lie in ``[0, 1]``; ``name`` is the argument the errors name."""
    unknown = sorted(set(values) - set(RAIN_STYLES))
    if unknown:
        raise ValueError(f"{name} names unknown styles {unknown}; styles: {', '.join(RAIN_STYLES)}")
    for style, value in values.items():
        _check_range(f"{name}[{style!r}]", value, 0.0, 1.0)
    return {style: float(values.get(style, 0.0)) for style in RAIN_STYLES}


CROSSING_SPREAD = 60.0
"""Largest angle from the vertical, in degrees, of a family of the ``crossing`` style."""

STEEP_WIND = (40.0, 75.0)
"""Interval of the wind angle from the vertical, in degrees, of the ``steep`` style."""

MAX_STEEP_ANGLE = 85.0
"""Largest angle from the vertical, in degrees, of a layer the ``steep`` style turns."""

WIDE_FACTOR = (1.5, 4.0)
"""Interval of the factor by which the ``wide`` style enlarges the whole rain."""

SPRAY_DENSITY = (0.01, 0.06)
"""Interval of the ``spray`` style's specks per pixel just below its horizon (twice as many at the
bottom edge)."""

SPRAY_SIZE = (0.6, 1.5)
"""Interval of the ``spray`` style's ``splash_size``: specks about a pixel wide."""

SPRAY_HORIZON = (0.3, 0.7)
"""Interval of the ``spray`` style's ``splash_horizon``: where the ground begins, from the top."""


def _add_style(
    style: str,
    layers: list[StreakLayer],
    params: dict[str, object],
    uniform: Callable[[float, float], float],
    wind: float,
) -> list[StreakLayer]:
    """Add one style of [`RAIN_STYLES`][RAIN_STYLES]: the layers it returns, ``params`` updated in place."""
    if style == "crossing":
        families = 2 if uniform(0.0, 1.0) < 0.6 else 3
        angles = _family_angles(families, uniform, wind)
        # Light rain has one layer: the other families are copies of it, as sparse or sparser.
        while len(layers) < families:
            layers = [*layers, replace(layers[0], density=layers[0].density * uniform(0.5, 1.0))]
        return [
            replace(layer, angle=_jittered(angles[index % families], uniform)) for index, layer in enumerate(layers)
        ]
    if style == "opaque":
        params["streak_light"] = uniform(0.95, 1.0)
        params["streak_blend"] = "add" if uniform(0.0, 1.0) < 0.5 else "light"
        return [replace(layer, opacity=uniform(0.85, 1.0), min_brightness=uniform(0.8, 0.95)) for layer in layers]
    if style == "curtain":
        curtains = []
        for _ in range(1 if uniform(0.0, 1.0) < 0.7 else 2):
            length, width = uniform(150.0, 400.0), uniform(4.0, 12.0)
            curtains.append(
                StreakLayer(
                    angle=0.3 * wind + uniform(-5.0, 5.0),
                    length=length,
                    width=width,
                    # 0.5-1.5 streak areas per pixel: the curtain covers the frame.
                    density=uniform(0.5, 1.5) / (length * width),
                    opacity=uniform(0.08, 0.25),
                    defocus=uniform(1.5, 4.0),
                )
            )
        return [*layers, *curtains]
    if style == "haze":
        params["contrast"] = uniform(0.55, 0.9)
        params["brightening"] = uniform(0.05, 0.2)
    elif style == "scene_light":
        params["streak_tint"] = uniform(0.5, 1.0)
    elif style == "splashes":
        params["splash_density"] = uniform(0.001, 0.005)
        params["splash_size"] = uniform(1.5, 4.0)
    elif style == "spray":
        params["splash_density"] = uniform(*SPRAY_DENSITY)
        params["splash_size"] = uniform(*SPRAY_SIZE)
        params["splash_horizon"] = uniform(*SPRAY_HORIZON)
    elif style == "lens_drops":
        params["lens_drops"] = int(uniform(2.0, 12.99))
        params["lens_drop_radius"] = uniform(6.0, 30.0)
    elif style == "noise_streaks":
        draw = uniform(0.0, 1.0)
        families = 1 if draw < 0.5 else 2 if draw < 0.8 else 3
        noise_layers = []
        for angle in _family_angles(families, uniform, wind):
            width = uniform(1.0, 3.0)
            black = uniform(0.8, 1.6)
            noise_layers.append(
                StreakLayer(
                    angle=_jittered(angle, uniform),
                    length=uniform(20.0, 80.0),
                    width=width,
                    # 5-30% of the canvas cells hold a drop: a dense noise layer.
                    density=uniform(0.05, 0.3) / width**2,
                    opacity=uniform(0.6, 1.0),
                    defocus=uniform(0.0, 1.0),
                    min_brightness=0.0,
                    levels=(black, black + uniform(1.0, 3.0)),
                )
            )
        return [*layers, *noise_layers]
    if style == "steep":
        # Turn everything by one angle so that crossing families keep their spacing and layers
        # their spread; the side stays the wind's.
        turn = math.copysign(uniform(*STEEP_WIND), wind) - wind
        return [replace(layer, angle=_clamped_angle(layer.angle + turn, MAX_STEEP_ANGLE)) for layer in layers]
    if style == "wide":
        factor = uniform(*WIDE_FACTOR)
        return [layer.resized(factor) for layer in layers]
    return layers


def _family_angles(families: int, uniform: Callable[[float, float], float], wind: float) -> list[float]:
    """Directions of ``families`` streak families 20-40 degrees apart, centred on the wind where
    the spread allows."""
    spacing = uniform(20.0, 40.0)
    centre = _clamped_angle(wind, CROSSING_SPREAD - spacing)
    return [centre + (family - (families - 1) / 2) * spacing for family in range(families)]


def _jittered(angle: float, uniform: Callable[[float, float], float]) -> float:
    """``angle`` give or take 2 degrees, within the families' spread."""
    return _clamped_angle(angle + uniform(-2.0, 2.0), CROSSING_SPREAD)


def _clamped_angle(angle: float, limit: float) -> float:
    """``angle`` brought into ``[-limit, limit]`` degrees."""
    return max(-limit, min(limit, angle))


def _draw_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def _uniform(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator, device=_draw_device(generator)))


def _uniform_field(
    shape: tuple[int, ...], generator: torch.Generator | None, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """``U(0, 1)`` of ``shape`` drawn on the generator's device (the same numbers on every
    device for a CPU generator), on ``device``."""
    return torch.rand(shape, generator=generator, dtype=dtype, device=_draw_device(generator)).to(device)


def render_rain(
    clean: Tensor, params: RainParams | Sequence[RainParams], generator: torch.Generator | None = None
) -> RenderedRain:
    """Render rain over clean images.

    Args:
        clean: ``(B, 3, H, W)`` float RGB in ``[0, 1]``.
        params: one [`RainParams`][RainParams] for the whole batch, or one per image.
        generator: random generator of the drop positions and brightness, the veil's variation
            and the noise. The random numbers are drawn on the generator's device (the CPU for
            ``None``) and the work runs on ``clean``'s device: a generator on the GPU that holds
            ``clean`` keeps the whole rendering there, while a CPU generator draws the same rain
            on every device.

    Returns:
        [`RenderedRain`][RenderedRain] with the rainy images, the streak opacity and the transmission.

    Cost:
        Per streak layer, one convolution over a canvas of about
        ``(sqrt(H^2 + W^2) + length)^2 / width^2`` cells and one bilinear resampling of the
        image (with ``ceil(1 / width)^2`` samples per pixel for streaks thinner than a pixel); JPEG compression goes through Pillow, image by image, on the CPU.

    Examples:
        >>> generator = torch.Generator().manual_seed(0)
        >>> clean = torch.full((2, 3, 64, 64), 0.3)
        >>> params = [sample_rain_params("light", generator), sample_rain_params("heavy", generator)]
        >>> render_rain(clean, params, generator).rainy.shape
        torch.Size([2, 3, 64, 64])
    """
    if not isinstance(clean, Tensor) or clean.ndim != 4 or clean.shape[1] != 3:
        shape = tuple(clean.shape) if isinstance(clean, Tensor) else type(clean).__name__
        raise ValueError(f"clean must be a (B, 3, H, W) tensor, got {shape}")
    if not clean.is_floating_point():
        raise TypeError(f"clean must be a float tensor in [0, 1], got {clean.dtype}")
    batch, _, height, width = clean.shape
    if batch == 0 or height == 0 or width == 0:
        raise ValueError(f"clean must not be empty, got shape {tuple(clean.shape)}")
    if isinstance(params, RainParams):
        params = [params] * batch
    params = list(params)
    if len(params) != batch or not all(isinstance(p, RainParams) for p in params):
        raise ValueError(f"params must be one RainParams or a sequence of {batch} (one per image), got {len(params)}")

    work_dtype = torch.float32 if clean.dtype in (torch.float16, torch.bfloat16) else clean.dtype

    def per_image(values: Sequence[float]) -> Tensor:
        return torch.tensor(values, dtype=work_dtype).to(clean.device)

    image = clean.to(work_dtype)
    no_rain = StreakLayer(density=0.0, opacity=0.0)
    coverage = torch.zeros(batch, 1, height, width, dtype=work_dtype, device=clean.device)
    drop_light = _drop_light(image, params, per_image)
    additive = torch.tensor([p.streak_blend == "add" for p in params], device=clean.device).view(batch, 1, 1, 1)

    def composite(image: Tensor, coverage: Tensor, opacity: Tensor) -> tuple[Tensor, Tensor]:
        lit = image * (1 - opacity) + opacity * drop_light
        if bool(additive.any()):
            lit = torch.where(additive, (image + opacity * drop_light).clamp(max=1.0), lit)
        return lit, 1 - (1 - coverage) * (1 - opacity)

    for depth in range(max(len(p.layers) for p in params)):
        layers = [p.layers[depth] if depth < len(p.layers) else no_rain for p in params]
        opacity = _streak_opacity(layers, height, width, generator, work_dtype, clean.device)
        image, coverage = composite(image, coverage, opacity)
    if any(p.splash_density > 0 for p in params):
        image, coverage = composite(
            image, coverage, _splash_opacity(params, height, width, generator, work_dtype, clean.device)
        )

    transmission = _transmission_map(params, height, width, generator, clean.device).to(work_dtype)
    atmospheric_light = per_image([p.atmospheric_light for p in params]).view(batch, 1, 1, 1)
    image = transmission * image + (1 - transmission) * atmospheric_light

    if any(p.contrast < 1 or p.brightening > 0 for p in params):
        contrast = per_image([p.contrast for p in params]).view(batch, 1, 1, 1)
        brightening = per_image([p.brightening for p in params]).view(batch, 1, 1, 1)
        mean = image.mean(dim=(1, 2, 3), keepdim=True)
        image = mean + contrast * (image - mean) + brightening
    if any(p.lens_drops > 0 for p in params):
        image, coverage = _add_lens_drops(image, coverage, params, generator)

    image = gaussian_blur(image, per_image([p.camera_blur for p in params]))
    noise_std = per_image([p.noise_std for p in params]).view(batch, 1, 1, 1)
    if bool((noise_std > 0).any()):
        noise = torch.randn(image.shape, generator=generator, dtype=work_dtype, device=_draw_device(generator))
        noise = noise.to(clean.device)
        image = image + noise_std * noise
    image = image.clamp(0.0, 1.0)
    image = _jpeg_compress(image, [p.jpeg_quality for p in params])
    return RenderedRain(image.to(clean.dtype), coverage.to(clean.dtype), transmission.to(clean.dtype))


def render_rain_per_image(clean: Tensor, params: Sequence[RainParams], generators: Sequence[torch.Generator]) -> Tensor:
    """Render every image with its own parameters and its own generator (see [`render_rain`][render_rain]).

    Each image keeps its own streak geometry (one batched call draws every layer at the finest
    width of the batch), and its rain depends on its generator alone, not on its batch.

    Args:
        clean: ``(B, 3, H, W)`` float RGB in ``[0, 1]``.
        params: ``B`` parameters, one per image.
        generators: ``B`` generators, one per image (on the CPU, or on ``clean``'s device).

    Returns:
        ``(B, 3, H, W)`` the rainy images, on ``clean``'s device.
    """
    if not len(params) == len(generators) == clean.shape[0]:
        raise ValueError(
            f"params and generators must be one per image: {clean.shape[0]} images, "
            f"{len(params)} params, {len(generators)} generators"
        )
    return torch.cat(
        [render_rain(image[None], p, generator).rainy for image, p, generator in zip(clean, params, generators)]
    )


def _streak_opacity(
    layers: Sequence[StreakLayer],
    height: int,
    width: int,
    generator: torch.Generator | None,
    dtype: torch.dtype,
    device: torch.device,
) -> Tensor:
    """``(B, 1, H, W)`` opacity of one streak layer per image (see the module docstring)."""
    batch = len(layers)
    widths = torch.tensor([layer.width for layer in layers], dtype=torch.float64)
    lengths_in_cells = torch.tensor([layer.length / layer.width for layer in layers], dtype=torch.float64)
    # The canvas must cover the rotated image plus one streak length, so that streaks starting
    # outside the image still reach into it.
    max_length = max(layer.length for layer in layers)
    canvas = math.ceil((math.hypot(height, width) + max_length) / float(widths.min())) + 2
    kernel_size = 2 * math.ceil(float(lengths_in_cells.max()) / 2) + 1

    drop_probability = torch.tensor([min(1.0, layer.density * layer.width**2) for layer in layers], dtype=dtype)
    uniform = _uniform_field((batch, 1, canvas, canvas), generator, dtype, device)
    drops = uniform < drop_probability.to(device).view(batch, 1, 1, 1)
    # From Python floats, so that the default 0.4 + 0.6 * U keeps the draws of earlier releases bit for bit.
    darkest = torch.tensor([layer.min_brightness for layer in layers], dtype=dtype, device=device)
    brightness_range = torch.tensor([1.0 - layer.min_brightness for layer in layers], dtype=dtype, device=device)
    brightness = darkest.view(batch, 1, 1, 1) + brightness_range.view(batch, 1, 1, 1) * _uniform_field(
        (batch, 1, canvas, canvas), generator, dtype, device
    )
    seeds = drops * brightness

    # One column filter per image (a tapered box as long as its streak), applied to the whole
    # batch by a grouped convolution with the batch as channels.
    position = torch.arange(kernel_size, dtype=torch.float64) - kernel_size // 2
    half_length = lengths_in_cells.view(batch, 1) / 2
    inside = (half_length + 0.5 - position.abs()).clamp(0.0, 1.0)
    taper = (1.0 - (position.abs() / (half_length + 0.5)).clamp(max=1.0) ** 4).clamp_min(0.0)
    column_weights = inside * taper
    column_filter = column_weights.to(dtype=dtype, device=device).view(batch, 1, kernel_size, 1)
    smeared = F.conv2d(seeds.view(1, batch, canvas, canvas), column_filter, padding=(kernel_size // 2, 0), groups=batch)
    smeared = smeared.view(batch, 1, canvas, canvas)

    # Output pixel offsets (x right, y down) from the image centre, rotated into the canvas frame
    # and divided by the streak width (a canvas cell is `width` pixels), then normalised to the
    # canvas. A canvas column is the image line `cos * x + sin * y = const`, which runs from
    # bottom left to top right for a positive angle.
    angles = torch.tensor([math.radians(layer.angle) for layer in layers], dtype=torch.float64)
    cos, sin = torch.cos(angles), torch.sin(angles)
    scale = 1.0 / (widths * canvas / 2)
    theta = torch.stack(
        [
            torch.stack([cos * width / 2, sin * height / 2, torch.zeros(batch, dtype=torch.float64)], dim=1),
            torch.stack([-sin * width / 2, cos * height / 2, torch.zeros(batch, dtype=torch.float64)], dim=1),
        ],
        dim=1,
    ) * scale.view(batch, 1, 1)
    # A streak thinner than a pixel covers part of it: sample the canvas `supersample` times
    # per pixel along each axis (the normalised grid is the same) and average, or bilinear
    # sampling would skip canvas cells and break thin streaks into dots.
    supersample = math.ceil(1.0 / min(1.0, float(widths.min())) - 1e-9)
    grid = F.affine_grid(
        theta.to(dtype=dtype, device=device),
        [batch, 1, height * supersample, width * supersample],
        align_corners=False,
    )
    streaks = F.grid_sample(smeared, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if any(layer.levels is not None for layer in layers):
        streaks = _apply_levels(streaks, layers, column_weights.sum(dim=1), drop_probability)
    streaks = streaks.clamp(0.0, 1.0)
    if supersample > 1:
        streaks = F.avg_pool2d(streaks, supersample)
    streaks = gaussian_blur(streaks, torch.tensor([layer.defocus for layer in layers], dtype=dtype))
    opacity = torch.tensor([layer.opacity for layer in layers], dtype=dtype, device=device)
    return streaks.clamp(0.0, 1.0) * opacity.view(batch, 1, 1, 1)


def _apply_levels(
    smeared: Tensor, layers: Sequence[StreakLayer], filter_sums: Tensor, drop_probability: Tensor
) -> Tensor:
    """``(B, 1, H, W)`` streaks of the layers with ``levels`` averaged and stretched (see
    [`StreakLayer`][StreakLayer]); the other layers' streaks as they were."""
    gain, offset = [], []
    for layer, filter_sum, probability in zip(layers, filter_sums.tolist(), drop_probability.tolist()):
        if layer.levels is None:
            gain.append(1.0)
            offset.append(0.0)
            continue
        black, white = layer.levels
        # The smear sums the drops under the filter; its expected value is the filter's sum
        # times the drops per cell times their mean brightness.
        expected = max(filter_sum * probability * (1.0 + layer.min_brightness) / 2, 1e-12)
        gain.append(1.0 / (expected * (white - black)))
        offset.append(black / (white - black))
    as_tensor = functools.partial(torch.tensor, dtype=smeared.dtype, device=smeared.device)
    return smeared * as_tensor(gain).view(-1, 1, 1, 1) - as_tensor(offset).view(-1, 1, 1, 1)


def _drop_light(image: Tensor, params: Sequence[RainParams], per_image: Callable[[Sequence[float]], Tensor]) -> Tensor:
    """Radiance ``L`` of the drops: ``(B, 1, 1, 1)`` grey, or ``(B, 3, H, W)`` where tinted by the scene's light."""
    batch, _, height, width = image.shape
    light = per_image([p.streak_light for p in params]).view(batch, 1, 1, 1)
    if not any(p.streak_tint > 0 for p in params):
        return light
    # The scene's light at a streak: the background low-passed to a 4x4 field, brightest channel 1.
    scene = F.interpolate(F.adaptive_avg_pool2d(image, 4), size=(height, width), mode="bilinear", align_corners=False)
    chroma = scene / scene.amax(dim=1, keepdim=True).clamp_min(1e-3)
    tint = per_image([p.streak_tint for p in params]).view(batch, 1, 1, 1)
    return light * ((1 - tint) + tint * chroma)


def _splash_opacity(
    params: Sequence[RainParams],
    height: int,
    width: int,
    generator: torch.Generator | None,
    dtype: torch.dtype,
    device: torch.device,
) -> Tensor:
    """``(B, 1, H, W)`` opacity of the splashes: seeds whose density rises from the splash horizon
    to the bottom, each spread into a flat bright ellipse (twice as wide as tall)."""
    batch = len(params)
    rows = (torch.arange(height, dtype=dtype, device=device) + 0.5) / height
    horizon = torch.tensor([p.splash_horizon for p in params], dtype=dtype, device=device).view(batch, 1, 1, 1)
    # 0 at the horizon, 2 at the bottom edge; for the default horizon 0.5 exactly 2 (2 rows - 1),
    # the ramp of the releases before the horizon existed, so their seeds stay the same.
    ramp = ((rows.view(1, 1, height, 1) - horizon) * (2 / (1 - horizon))).clamp_min(0.0)
    density = torch.tensor([p.splash_density for p in params], dtype=dtype, device=device).view(batch, 1, 1, 1)
    seeds = _uniform_field((batch, 1, height, width), generator, dtype, device) < density * ramp
    brightness = 0.5 + 0.5 * _uniform_field((batch, 1, height, width), generator, dtype, device)
    sizes = torch.tensor([p.splash_size for p in params], dtype=torch.float64).view(batch, 1, 1)
    radius = math.ceil(2 * float(sizes.max()))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    ellipse = (offsets.view(1, 1, -1) / sizes) ** 2 + (2 * offsets.view(1, -1, 1) / sizes) ** 2
    kernel = torch.exp(-2 * ellipse).to(dtype=dtype, device=device).view(batch, 1, 2 * radius + 1, 2 * radius + 1)
    splashes = F.conv2d((seeds * brightness).view(1, batch, height, width), kernel, padding=radius, groups=batch)
    return splashes.view(batch, 1, height, width).clamp(0.0, 1.0)


def _add_lens_drops(
    image: Tensor, coverage: Tensor, params: Sequence[RainParams], generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """Drops on the lens: soft ellipses, each showing its neighbourhood blurred and upside down
    (a drop is a lens that inverts what lies behind it), slightly brightened."""
    batch, _, height, width = image.shape
    blurred = gaussian_blur(image, torch.tensor([p.lens_drop_radius / 3 if p.lens_drops else 0.0 for p in params]))
    blurred = blurred + 0.1 * (1 - blurred)
    image, coverage = image.clone(), coverage.clone()
    for index, p in enumerate(params):
        for _ in range(p.lens_drops):
            centre_y, centre_x, size, aspect = torch.rand(
                4, generator=generator, dtype=torch.float64, device=_draw_device(generator)
            ).tolist()
            radius_x = p.lens_drop_radius * (0.6 + 0.8 * size) * (0.8 + 0.45 * aspect)
            radius_y = p.lens_drop_radius * (0.6 + 0.8 * size) / (0.8 + 0.45 * aspect)
            cy, cx = centre_y * height, centre_x * width
            top, bottom = max(0, int(cy - radius_y) - 1), min(height, int(cy + radius_y) + 2)
            left, right = max(0, int(cx - radius_x) - 1), min(width, int(cx + radius_x) + 2)
            if top >= bottom or left >= right:
                continue
            ys = torch.arange(top, bottom, dtype=image.dtype, device=image.device).view(-1, 1) + 0.5
            xs = torch.arange(left, right, dtype=image.dtype, device=image.device).view(1, -1) + 0.5
            distance = torch.sqrt(((ys - cy) / radius_y) ** 2 + ((xs - cx) / radius_x) ** 2)
            # A soft edge a fifth of the radius wide.
            drop = ((1 - distance) / 0.2).clamp(0.0, 1.0)
            inside = blurred[index, :, top:bottom, left:right].flip(-2)
            region = image[index, :, top:bottom, left:right]
            image[index, :, top:bottom, left:right] = (1 - drop) * region + drop * inside
            coverage[index, :, top:bottom, left:right] = 1 - (1 - coverage[index, :, top:bottom, left:right]) * (
                1 - drop
            )
    return image, coverage


def gaussian_blur(images: Tensor, sigma: Tensor) -> Tensor:
    """Blur every image of a batch with its own Gaussian (separable, reflect padding).

    Args:
        images: ``(B, C, H, W)`` float.
        sigma: ``(B,)`` standard deviations in pixels; 0 leaves an image unchanged.

    Returns:
        ``(B, C, H, W)``, the blurred images.
    """
    batch, channels, height, width = images.shape
    sigma = sigma.to(torch.float64).view(batch, 1)
    largest = float(sigma.max()) if sigma.numel() else 0.0
    if largest <= 0:
        return images
    radius = min(math.ceil(3 * largest), (min(height, width) - 1))
    if radius < 1:
        return images
    position = torch.arange(-radius, radius + 1, dtype=torch.float64).view(1, -1)
    weights = torch.exp(-0.5 * (position / sigma.clamp_min(1e-6)) ** 2)
    weights = torch.where(sigma > 0, weights, (position == 0).to(torch.float64))
    weights = (weights / weights.sum(dim=1, keepdim=True)).to(dtype=images.dtype, device=images.device)
    weights = weights.repeat_interleave(channels, dim=0)
    flat = images.reshape(1, batch * channels, height, width)
    flat = F.pad(flat, (radius, radius, radius, radius), mode="reflect")
    flat = F.conv2d(flat, weights.view(-1, 1, 1, 2 * radius + 1), groups=batch * channels)
    flat = F.conv2d(flat, weights.view(-1, 1, 2 * radius + 1, 1), groups=batch * channels)
    return flat.view(batch, channels, height, width)


def _transmission_map(
    params: Sequence[RainParams], height: int, width: int, generator: torch.Generator | None, device: torch.device
) -> Tensor:
    """``(B, 1, H, W)`` float32 veil transmission: the mean plus a smooth random field (bicubic 4x4 noise)."""
    batch = len(params)
    mean = torch.tensor([p.transmission for p in params], device=device).view(batch, 1, 1, 1)
    variation = torch.tensor([p.transmission_variation for p in params], device=device).view(batch, 1, 1, 1)
    field = 2 * _uniform_field((batch, 1, 4, 4), generator, torch.float32, device) - 1
    field = F.interpolate(field, size=(height, width), mode="bicubic", align_corners=False).clamp(-1.0, 1.0)
    return (mean + variation * field).clamp(1e-3, 1.0)


def _jpeg_compress(images: Tensor, qualities: Sequence[int | None]) -> Tensor:
    """JPEG-compress the images with a quality, image by image (Pillow, 4:2:0 as cameras do)."""
    if all(quality is None for quality in qualities):
        return images
    compressed = images.clone()
    for index, quality in enumerate(qualities):
        if quality is None:
            continue
        pixels = (images[index].detach().float().cpu() * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
        decoded = np.array(Image.open(buffer).convert("RGB"), dtype=np.float32) / 255.0
        compressed[index] = torch.from_numpy(decoded).permute(2, 0, 1).to(images)
    return compressed
