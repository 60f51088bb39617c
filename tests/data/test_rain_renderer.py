"""The rain renderer: compositing and veil against their formulas, geometry of the streaks,
depth ordering of the sampler, camera effects, preset statistics on real backgrounds, each
style measured for what it claims, errors."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import ndimage

from derainzoo.data import (
    PairedImageFolder,
    RainParams,
    StreakLayer,
    render_rain,
    render_rain_per_image,
    sample_rain_params,
    style_min_strengths,
    style_probabilities,
)
from derainzoo.data.rain_renderer import (
    CROSSING_SPREAD,
    FIRST_RELEASE_STYLES,
    MAX_STEEP_ANGLE,
    MAX_WIND_ANGLE,
    RAIN_STYLES,
    SPRAY_DENSITY,
    SPRAY_HORIZON,
    SPRAY_SIZE,
    STEEP_WIND,
    WIDE_FACTOR,
    gaussian_blur,
)

from ..helpers import smooth_image

NO_STREAKS = (StreakLayer(density=0.0),)


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def streak_direction(opacity: torch.Tensor) -> float:
    """Direction in degrees from the vertical (top leaning right is positive) of the largest
    streak: the major axis of its pixels' second moments."""
    labels, count = ndimage.label(opacity.numpy() > 0.05)
    sizes = ndimage.sum(np.ones_like(labels), labels, index=range(1, count + 1))
    rows, cols = np.nonzero(labels == 1 + int(np.argmax(sizes)))
    weights = opacity.numpy()[rows, cols]
    dy, dx = rows - np.average(rows, weights=weights), cols - np.average(cols, weights=weights)
    cxx, cyy, cxy = (np.average(v, weights=weights) for v in (dx * dx, dy * dy, dx * dy))
    axis = 0.5 * math.atan2(2 * cxy, cxx - cyy)  # from the x axis, rows growing downwards
    # Point the axis upwards (negative dy) and measure it from the vertical.
    along_x, along_y = math.cos(axis), math.sin(axis)
    if along_y > 0:
        along_x, along_y = -along_x, -along_y
    return math.degrees(math.atan2(along_x, -along_y))


def test_shapes_range_and_per_image_parameters() -> None:
    clean = torch.cat([smooth_image(40, 56, seed=seed) for seed in range(3)])
    params = [sample_rain_params(s, generator(index), camera_effects=False) for index, s in enumerate((0.0, 0.5, 1.0))]
    rainy, streaks, transmission = render_rain(clean, params, generator())
    assert rainy.shape == clean.shape and streaks.shape == transmission.shape == (3, 1, 40, 56)
    for tensor in (rainy, streaks, transmission):
        assert tensor.dtype == clean.dtype and 0 <= tensor.min() and tensor.max() <= 1
    # Heavier rain changes the image more.
    change = (rainy - clean).abs().mean(dim=(1, 2, 3))
    assert change[0] < change[1] < change[2]


def test_same_generator_same_rain_and_one_params_for_the_batch() -> None:
    clean = smooth_image(48, 48).repeat(2, 1, 1, 1)
    params = sample_rain_params("heavy", generator(3))
    first = render_rain(clean, params, generator(7)).rainy
    torch.testing.assert_close(first, render_rain(clean, params, generator(7)).rainy, rtol=0, atol=0)
    assert not torch.equal(first, render_rain(clean, params, generator(8)).rainy)
    # The drops are drawn per image: one RainParams for the batch still gives two different rains.
    assert not torch.equal(first[0], first[1])


def test_no_streaks_no_veil_no_camera_is_the_identity() -> None:
    clean = torch.rand(2, 3, 17, 23, generator=generator(2))
    rendered = render_rain(clean, RainParams(layers=NO_STREAKS), generator())
    torch.testing.assert_close(rendered.rainy, clean, rtol=0, atol=0)
    assert rendered.streaks.max() == 0 and rendered.transmission.min() == 1


def test_streaks_are_alpha_blended_towards_the_drop_radiance() -> None:
    clean = torch.rand(1, 3, 64, 64, generator=generator(4))
    layer = StreakLayer(angle=10.0, length=20.0, width=2.0, density=0.01, opacity=0.8)
    for light in (1.0, 0.7):
        rendered = render_rain(clean, RainParams(layers=(layer,), streak_light=light), generator(5))
        alpha = rendered.streaks
        torch.testing.assert_close(rendered.rainy, (1 - alpha) * clean + alpha * light)
    # Screen blend (light 1): streaks stay visible on bright areas without clipping to white.
    bright = torch.full((1, 3, 64, 64), 0.9)
    rendered = render_rain(bright, RainParams(layers=(layer,), streak_light=1.0), generator(5))
    assert rendered.rainy.max() > 0.95 and (rendered.rainy[rendered.streaks.expand_as(bright) < 0.5] < 1).all()
    # Drops darker than a bright sky darken it, as real streaks against the sky do.
    white = torch.ones(1, 3, 64, 64)
    assert render_rain(white, RainParams(layers=(layer,), streak_light=0.7), generator(5)).rainy.min() < 0.8


def test_veil_follows_the_heavy_rain_model() -> None:
    clean = torch.rand(2, 3, 32, 40, generator=generator(6))
    params = RainParams(layers=NO_STREAKS, transmission=0.6, atmospheric_light=0.9)
    rendered = render_rain(clean, params, generator())
    torch.testing.assert_close(rendered.rainy, 0.6 * clean + 0.4 * 0.9)
    torch.testing.assert_close(rendered.transmission, torch.full((2, 1, 32, 40), 0.6))


def test_veil_variation_is_smooth_and_bounded() -> None:
    params = RainParams(layers=NO_STREAKS, transmission=0.6, transmission_variation=0.2)
    transmission = render_rain(torch.zeros(1, 3, 96, 96), params, generator(9)).transmission[0, 0]
    assert 0.4 - 1e-6 <= transmission.min() and transmission.max() <= 0.8 + 1e-6
    assert transmission.max() - transmission.min() > 0.05
    assert (transmission[1:] - transmission[:-1]).abs().max() < 0.02  # no pixel-scale structure


@pytest.mark.parametrize("angle", [0.0, 20.0, -30.0, 60.0])
def test_streaks_follow_their_angle(angle: float) -> None:
    layer = StreakLayer(angle=angle, length=61.0, width=1.0, density=0.00005, opacity=1.0)
    streaks = render_rain(torch.zeros(1, 3, 256, 256), RainParams(layers=(layer,)), generator(1)).streaks[0, 0]
    assert streak_direction(streaks) == pytest.approx(angle, abs=1.0)


def test_length_width_and_density_scale_the_streaks() -> None:
    def coverage(**kwargs: float) -> float:
        layer = StreakLayer(**{"length": 15.0, "width": 1.0, "density": 0.002, "opacity": 1.0} | kwargs)
        streaks = render_rain(torch.zeros(1, 3, 128, 128), RainParams(layers=(layer,)), generator(11)).streaks
        return float((streaks > 0.2).float().mean())

    base = coverage()
    assert coverage(length=45.0) > 2 * base
    assert coverage(width=3.0) > 1.5 * base
    assert coverage(density=0.006) > 2 * base
    assert coverage(density=0.0) == 0.0


@pytest.mark.parametrize(("width", "angle"), [(0.5, 0.0), (0.5, 20.0), (0.25, -30.0)])
def test_sub_pixel_streaks_are_the_area_average_of_a_larger_rendering(width: float, angle: float) -> None:
    """A layer of ``width < 1`` is the same rain as the layer ``1 / width`` times larger
    (longer, wider, as many drops per canvas cell) rendered on a ``1 / width`` times larger
    image and averaged over each block of pixels: what downscaling a photo does."""
    factor = round(1 / width)
    thin = StreakLayer(angle=angle, length=9.0, width=width, density=0.02, opacity=0.8)
    large = replace(thin, length=9.0 * factor, width=1.0, density=0.02 / factor**2)
    small = render_rain(torch.zeros(1, 3, 40, 56), RainParams(layers=(thin,)), generator(21)).streaks
    big = render_rain(torch.zeros(1, 3, 40 * factor, 56 * factor), RainParams(layers=(large,)), generator(21)).streaks
    assert float(small.max()) > 0.2
    torch.testing.assert_close(small, torch.nn.functional.avg_pool2d(big, factor), atol=1e-5, rtol=0)


def test_defocus_blurs_a_layer() -> None:
    def edge_energy(defocus: float) -> float:
        layer = StreakLayer(length=20.0, width=2.0, density=0.004, opacity=1.0, defocus=defocus)
        streaks = render_rain(torch.zeros(1, 3, 96, 96), RainParams(layers=(layer,)), generator(12)).streaks[0, 0]
        return float((streaks[:, 1:] - streaks[:, :-1]).abs().sum() / streaks.sum())

    assert edge_energy(2.0) < 0.6 * edge_energy(0.0)


def test_gaussian_blur_equals_scipy_per_image() -> None:
    images = torch.rand(3, 2, 30, 41, generator=generator(13), dtype=torch.float64)
    sigmas = torch.tensor([0.0, 0.8, 2.0])
    blurred = gaussian_blur(images, sigmas)
    radius = math.ceil(3 * 2.0)
    for index, sigma in enumerate(sigmas.tolist()):
        if sigma == 0:
            torch.testing.assert_close(blurred[index], images[index], rtol=0, atol=0)
            continue
        # One kernel radius serves the batch (that of the largest sigma); scipy's "mirror" is torch's "reflect".
        expected = ndimage.gaussian_filter(
            images[index].numpy(), sigma=(0, sigma, sigma), mode="mirror", truncate=radius / sigma
        )
        np.testing.assert_allclose(blurred[index].numpy(), expected, atol=1e-12)


def test_camera_effects() -> None:
    grey = torch.full((1, 3, 64, 64), 0.5)
    noisy = render_rain(grey, RainParams(layers=NO_STREAKS, noise_std=0.02), generator(14)).rainy
    assert float((noisy - grey).std()) == pytest.approx(0.02, rel=0.1)

    image = smooth_image(64, 64)
    image[..., ::4, :] = 1.0  # fine horizontal lines: high frequencies to remove
    blurred = render_rain(image, RainParams(layers=NO_STREAKS, camera_blur=0.8), generator()).rainy
    assert (blurred[..., 1:, :] - blurred[..., :-1, :]).abs().mean() < 0.6 * (
        image[..., 1:, :] - image[..., :-1, :]
    ).abs().mean()

    smooth = smooth_image(64, 64)
    compressed = render_rain(smooth, RainParams(layers=NO_STREAKS, jpeg_quality=60), generator()).rainy
    assert torch.equal(compressed, (compressed * 255).round() / 255)  # decoded 8-bit pixels
    assert 0 < (compressed - smooth).abs().mean() < 0.02


def test_sampler_depth_ordering_and_presets() -> None:
    far, near = (
        {"width": [], "density": [], "opacity": [], "defocus": []},
        {"width": [], "density": [], "opacity": [], "defocus": []},
    )
    for seed in range(60):
        params = sample_rain_params("heavy", generator(seed))
        assert 3 <= len(params.layers) <= 4 and params.transmission < 1
        assert max(layer.angle for layer in params.layers) - min(layer.angle for layer in params.layers) > 0
        for name in far:
            far[name].append(getattr(params.layers[0], name))
            near[name].append(getattr(params.layers[-1], name))
        light = sample_rain_params("light", generator(seed))
        assert len(light.layers) == 1 and light.transmission == 1
        assert all(abs(layer.angle) <= MAX_WIND_ANGLE for layer in params.layers + light.layers)
    mean = {
        side: {name: float(np.mean(values)) for name, values in group.items()}
        for side, group in (("far", far), ("near", near))
    }
    # Distant streaks: thin, dim and dense; near ones: wide, bright, sparse and out of focus.
    assert mean["far"]["width"] < mean["near"]["width"]
    assert mean["far"]["opacity"] < mean["near"]["opacity"]
    assert mean["far"]["density"] > 2 * mean["near"]["density"]
    assert mean["far"]["defocus"] < mean["near"]["defocus"]


def test_sampler_camera_effects_switch() -> None:
    plain = [sample_rain_params(0.5, generator(seed), camera_effects=False) for seed in range(20)]
    assert all(p.camera_blur == 0 and p.noise_std == 0 and p.jpeg_quality is None for p in plain)
    with_camera = [sample_rain_params(0.5, generator(seed)) for seed in range(40)]
    assert any(p.jpeg_quality is not None for p in with_camera) and any(p.jpeg_quality is None for p in with_camera)
    assert any(p.noise_std > 0 for p in with_camera) and any(p.camera_blur > 0 for p in with_camera)


def test_default_sampler_is_unchanged() -> None:
    """The heavy validation sets and the recipes of the bundled weights rely on these draws
    (values recorded before the short-exposure and drizzle options existed)."""
    params = sample_rain_params("heavy", generator(0), camera_effects=False)
    lengths_and_widths = [(layer.length, layer.width) for layer in params.layers]
    expected = [(47.911, 1.246), (46.202, 1.238), (63.650, 1.601), (43.847, 2.471)]
    np.testing.assert_allclose(lengths_and_widths, expected, atol=1e-3)
    assert params.transmission == pytest.approx(0.827, abs=1e-4)


@pytest.mark.parametrize("strength", [0.25, 0.6, 1.0])
def test_short_exposure_shortens_every_streak_of_the_same_rain(strength: float) -> None:
    shortened = 0
    for seed in range(30):
        default = sample_rain_params(strength, generator(seed))
        short = sample_rain_params(strength, generator(seed), short_exposure=1.0)
        assert replace(short, layers=default.layers) == default
        ratios = {
            round(fast.length / slow.length, 9) for fast, slow in zip(short.layers, default.layers) if fast.length > 2.0
        }
        assert len(ratios) <= 1 and all(0.15 <= ratio <= 0.6 for ratio in ratios)
        assert all(fast.length >= 2.0 for fast in short.layers)
        assert [replace(layer, length=1.0) for layer in short.layers] == [
            replace(layer, length=1.0) for layer in default.layers
        ]
        shortened += bool(ratios)
    assert shortened == 30
    half = [sample_rain_params(strength, generator(seed), short_exposure=0.5) for seed in range(40)]
    changed = sum(p != sample_rain_params(strength, generator(seed)) for seed, p in enumerate(half))
    assert 8 <= changed <= 32


def test_drizzle_adds_a_thin_dim_dense_farthest_layer() -> None:
    for seed in range(30):
        default = sample_rain_params("heavy", generator(seed))
        with_drizzle = sample_rain_params("heavy", generator(seed), drizzle=1.0)
        drizzle, *others = with_drizzle.layers
        assert tuple(others) == default.layers
        assert replace(with_drizzle, layers=default.layers) == default
        assert drizzle.width == 1.0 and drizzle.defocus == 0.0 and 0.12 <= drizzle.opacity <= 0.3
        assert drizzle.density > max(layer.density for layer in others)
        assert drizzle.opacity < min(layer.opacity for layer in others)


@pytest.mark.parametrize("strength", ["light", 0.6, "heavy"])
def test_downscaled_shrinks_the_same_rain_by_one_factor(strength: float | str) -> None:
    for seed in range(30):
        default = sample_rain_params(strength, generator(seed), short_exposure=0.5, drizzle=0.5)
        small = sample_rain_params(strength, generator(seed), short_exposure=0.5, drizzle=0.5, downscaled=1.0)
        assert replace(small, layers=default.layers) == default
        factor = small.layers[0].length / default.layers[0].length
        assert 0.35 <= factor <= 0.7 or small.layers[0].length == 1.0
        for shrunk, layer in zip(small.layers, default.layers, strict=True):
            assert shrunk.angle == layer.angle and shrunk.opacity == layer.opacity
            assert shrunk.width == pytest.approx(max(0.25, layer.width * factor))
            assert shrunk.length == pytest.approx(max(1.0, layer.length * factor))
            assert shrunk.density == pytest.approx(min(1.0, layer.density / factor**2))
            assert shrunk.defocus == pytest.approx(layer.defocus * factor)
    some = [sample_rain_params(0.6, generator(seed), downscaled=0.5) for seed in range(40)]
    changed = sum(p != sample_rain_params(0.6, generator(seed)) for seed, p in enumerate(some))
    assert 8 <= changed <= 32


def test_light_rain_ignores_short_exposure_and_drizzle() -> None:
    """Rain100L-like rain keeps its long, single layer (and the light preset its statistics)."""
    for seed in range(20):
        default = sample_rain_params("light", generator(seed))
        assert sample_rain_params("light", generator(seed), short_exposure=1.0, drizzle=1.0) == default


def test_presets_match_the_public_benchmarks_on_real_backgrounds(rain100l_train) -> None:
    """Mean |rainy - clean| on a 0-255 scale: Rain100L 5-6 (light), the Rain100H family 40-60 (heavy)."""
    pairs = PairedImageFolder(rain100l_train, stems=[f"{index:03d}" for index in range(1, 31)])
    measured = {"light": [], "heavy": [], "real": []}
    for index in range(len(pairs)):
        rainy, clean, _ = pairs[index]
        measured["real"].append(float((rainy - clean).abs().mean() * 255))
        for preset in ("light", "heavy"):
            params = sample_rain_params(preset, generator(index), camera_effects=False)
            rendered = render_rain(clean[None], params, generator(1000 + index)).rainy[0]
            measured[preset].append(float((rendered - clean).abs().mean() * 255))
    means = {name: float(np.mean(values)) for name, values in measured.items()}
    assert 5.0 <= means["light"] <= 6.0, means
    assert 40.0 <= means["heavy"] <= 60.0, means
    assert abs(means["light"] - means["real"]) < 1.0, means


def test_bad_input_is_named() -> None:
    params = RainParams()
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        render_rain(torch.rand(1, 1, 8, 8), params)
    with pytest.raises(TypeError, match="float"):
        render_rain(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), params)
    with pytest.raises(ValueError, match="empty"):
        render_rain(torch.rand(0, 3, 8, 8), params)
    with pytest.raises(ValueError, match="one per image"):
        render_rain(torch.rand(2, 3, 8, 8), [params] * 3)
    with pytest.raises(ValueError, match="width"):
        StreakLayer(width=0.2)
    with pytest.raises(ValueError, match="density"):
        StreakLayer(density=float("nan"))
    with pytest.raises(ValueError, match="jpeg_quality"):
        RainParams(jpeg_quality=0)
    with pytest.raises(TypeError, match="StreakLayer"):
        RainParams(layers=({"angle": 0},))
    with pytest.raises(ValueError, match="unknown rain preset 'storm'.*light, medium, heavy"):
        sample_rain_params("storm")
    with pytest.raises(ValueError, match="strength"):
        sample_rain_params(1.5)
    with pytest.raises(ValueError, match="short_exposure"):
        sample_rain_params(0.5, short_exposure=1.5)
    with pytest.raises(ValueError, match="drizzle"):
        sample_rain_params(0.5, drizzle=-0.1)
    with pytest.raises(ValueError, match="downscaled"):
        sample_rain_params(0.5, downscaled=2.0)


# --- styles (domain randomisation) -------------------------------------------------------------

STYLE_FIELDS = {
    "haze": ("contrast", "brightening"),
    "scene_light": ("streak_tint",),
    "splashes": ("splash_density", "splash_size"),
    "lens_drops": ("lens_drops", "lens_drop_radius"),
    "spray": ("splash_density", "splash_size", "splash_horizon"),
}


@pytest.mark.parametrize("style", list(STYLE_FIELDS))
@pytest.mark.parametrize("strength", ["light", 0.6, "heavy"])
def test_a_style_sets_only_its_fields_over_the_same_rain(style: str, strength: float | str) -> None:
    defaults = RainParams()
    for seed in range(10):
        default = sample_rain_params(strength, generator(seed))
        styled = sample_rain_params(strength, generator(seed), styles=[style])
        assert styled.styles == (style,)
        reset = {name: getattr(defaults, name) for name in STYLE_FIELDS[style]}
        assert replace(styled, styles=(), **reset) == default
        assert all(getattr(styled, name) != value for name, value in reset.items())


def test_no_style_keeps_the_draws_of_earlier_releases() -> None:
    for seed in range(20):
        default = sample_rain_params(0.7, generator(seed), short_exposure=0.5, drizzle=0.5)
        for options in ({"styles": ()}, {"style_probability": 0.0}):
            assert sample_rain_params(0.7, generator(seed), short_exposure=0.5, drizzle=0.5, **options) == default


@pytest.mark.parametrize("strength", ["light", 0.5, "heavy"])
def test_crossing_families_are_20_to_40_degrees_apart(strength: float | str) -> None:
    for seed in range(30):
        default = sample_rain_params(strength, generator(seed))
        crossing = sample_rain_params(strength, generator(seed), styles=["crossing"])
        assert len(crossing.layers) >= max(2, len(default.layers))
        # The layers keep their depth (everything but the angle), light rain gains a second family.
        for styled, layer in zip(crossing.layers, default.layers):
            assert replace(styled, angle=0.0) == replace(layer, angle=0.0)
        angles = sorted(layer.angle for layer in crossing.layers)
        assert all(abs(angle) <= CROSSING_SPREAD for angle in angles)
        # Families: angles within 4 degrees (the +-2 jitter) of each other.
        families = [[angles[0]]]
        for angle in angles[1:]:
            if angle - families[-1][-1] <= 4.0:
                families[-1].append(angle)
            else:
                families.append([angle])
        assert len(families) in (2, 3)
        gaps = [np.mean(b) - np.mean(a) for a, b in zip(families, families[1:])]
        assert all(20.0 - 4.0 <= gap <= 40.0 + 4.0 for gap in gaps), angles


def test_crossing_families_render_in_their_directions() -> None:
    params = sample_rain_params("light", generator(3), styles=["crossing"])
    for layer in params.layers:
        sparse = replace(layer, length=61.0, width=1.0, density=0.00005, opacity=1.0)
        streaks = render_rain(torch.zeros(1, 3, 256, 256), RainParams(layers=(sparse,)), generator(1)).streaks[0, 0]
        assert streak_direction(streaks) == pytest.approx(layer.angle, abs=1.5)


def test_opaque_streaks_saturate_and_add_blend_adds_and_clips() -> None:
    dark = torch.full((1, 3, 96, 96), 0.1)

    def streak_pixels(params: RainParams) -> torch.Tensor:
        rendered = render_rain(dark, params, generator(2))
        return rendered.rainy[rendered.streaks.expand_as(dark) > 0.05]

    for seed in range(5):
        default = sample_rain_params("heavy", generator(seed), camera_effects=False)
        opaque = sample_rain_params("heavy", generator(seed), camera_effects=False, styles=["opaque"])
        assert all(0.85 <= layer.opacity and 0.8 <= layer.min_brightness for layer in opaque.layers)
        assert opaque.streak_light >= 0.95
        no_veil = {"transmission": 1.0, "transmission_variation": 0.0}
        bright, usual = (streak_pixels(replace(p, **no_veil)) for p in (opaque, default))
        assert float(bright.quantile(0.99)) > 0.9 and float(bright.median()) > float(usual.median()) + 0.1

    clean = torch.rand(1, 3, 64, 64, generator=generator(4))
    layer = StreakLayer(angle=10.0, length=20.0, width=2.0, density=0.01, opacity=0.9)
    light = render_rain(clean, RainParams(layers=(layer,), streak_light=1.0), generator(5))
    added = render_rain(clean, RainParams(layers=(layer,), streak_light=1.0, streak_blend="add"), generator(5))
    torch.testing.assert_close(added.streaks, light.streaks, rtol=0, atol=0)
    torch.testing.assert_close(added.rainy, (clean + added.streaks).clamp(max=1.0))
    assert (added.rainy >= light.rainy - 1e-6).all() and float((added.rainy == 1).float().mean()) > 0.01


def test_curtains_are_long_soft_low_contrast_stripes_over_the_frame() -> None:
    for seed in range(10):
        params = sample_rain_params(0.5, generator(seed), styles=["curtain"])
        default = sample_rain_params(0.5, generator(seed))
        curtains = params.layers[len(default.layers) :]
        assert params.layers[: len(default.layers)] == default.layers and 1 <= len(curtains) <= 2
        for layer in curtains:
            assert layer.length >= 150 and layer.width >= 4 and layer.opacity <= 0.25 and layer.defocus > 0
    layer = sample_rain_params(0.5, generator(0), styles=["curtain"]).layers[-1]
    streaks = render_rain(torch.zeros(1, 3, 256, 256), RainParams(layers=(layer,)), generator(3)).streaks[0, 0]
    assert float(streaks.max()) <= layer.opacity + 1e-6
    assert float((streaks > 0.01).float().mean()) > 0.5  # over the frame

    def correlation(shift: int, dim: int) -> float:
        centred = (streaks - streaks.mean()).numpy()
        a, b = np.take(centred, range(shift, 256), axis=dim), np.take(centred, range(256 - shift), axis=dim)
        return float((a * b).mean() / centred.var())

    along, across = (0, 1) if abs(layer.angle) < 45 else (1, 0)
    # Tilted by a few degrees, the stripes stay correlated 20 px along them, not 8 px across.
    assert correlation(20, along) > 0.6 and correlation(20, along) > correlation(8, across) + 0.3


def test_haze_is_a_contrast_loss_and_a_brightening_of_the_whole_image() -> None:
    clean = torch.rand(2, 3, 32, 40, generator=generator(6))
    params = RainParams(layers=NO_STREAKS, contrast=0.6, brightening=0.12)
    hazy = render_rain(clean, params, generator()).rainy
    mean = clean.mean(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(hazy, (mean + 0.6 * (clean - mean) + 0.12).clamp(0, 1))
    # Independent of the veil: applied after it, on the veiled image.
    veiled = render_rain(clean, replace(params, transmission=0.7), generator()).rainy
    under = 0.7 * clean + 0.3 * 0.85
    mean = under.mean(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(veiled, (mean + 0.6 * (under - mean) + 0.12).clamp(0, 1))


def test_scene_light_tints_the_drops() -> None:
    lamp = torch.tensor([0.6, 0.3, 0.15]).view(1, 3, 1, 1).expand(1, 3, 64, 64).contiguous()
    layer = StreakLayer(length=20.0, width=2.0, density=0.01, opacity=0.9)
    for tint in (0.0, 0.5, 1.0):
        rendered = render_rain(lamp, RainParams(layers=(layer,), streak_light=1.0, streak_tint=tint), generator(5))
        light = (1 - tint) + tint * lamp / 0.6
        alpha = rendered.streaks
        torch.testing.assert_close(rendered.rainy, (1 - alpha) * lamp + alpha * light)
    added = (rendered.rainy - lamp)[0][:, alpha[0, 0] > 0.5]
    # Fully tinted, the drops' light has the lamp's colour: (1, 0.5, 0.25), red 4 times blue.
    torch.testing.assert_close(light[0, :, 0, 0], torch.tensor([1.0, 0.5, 0.25]))
    assert float(added[0].mean()) > float(added[2].mean()) > 0


def test_splashes_lie_in_the_lower_half() -> None:
    params = RainParams(layers=NO_STREAKS, splash_density=0.004, splash_size=3.0)
    rendered = render_rain(torch.full((1, 3, 160, 120), 0.2), params, generator(8))
    rows = rendered.streaks[0, 0].mean(dim=1)
    assert float(rows[: 160 // 2 - 7].max()) == 0.0  # no seed above the middle, blobs at most 2 x size tall
    assert float(rows[120:].mean()) > 1.5 * float(rows[80:100].mean()) > 0
    # Composited as light, like the streaks (drop radiance 0.9 by default).
    alpha = rendered.streaks.expand(1, 3, 160, 120)
    torch.testing.assert_close(rendered.rainy, (1 - alpha) * 0.2 + alpha * 0.9)


def test_spray_is_dense_pixel_sized_specks_below_its_horizon() -> None:
    """Below the horizon the share of speck pixels rises linearly from 0 to twice the density at
    the bottom edge; a speck is one pixel tall."""
    height, width, density, horizon = 200, 300, 0.03, 0.4
    params = RainParams(layers=NO_STREAKS, splash_density=density, splash_size=1.2, splash_horizon=horizon)
    opacity = render_rain(torch.full((1, 3, height, width), 0.2), params, generator(4)).streaks[0, 0]
    assert float(opacity[: int(horizon * height) - 1].max()) == 0.0
    # Seeds have brightness >= 0.5; a neighbour gets under 0.25 of it across, under 0.01 above or below.
    specks = (opacity > 0.45).float()
    rows = (torch.arange(height) + 0.5) / height
    expected = (2 * density * (rows - horizon) / (1 - horizon)).clamp_min(0.0)
    for band in (slice(100, 150), slice(150, 200)):
        assert float(specks[band].mean()) == pytest.approx(float(expected[band].mean()), rel=0.15)
    labels, count = ndimage.label(specks.numpy())
    sizes = ndimage.find_objects(labels)
    isolated = [box for box in sizes if box[0].stop - box[0].start == 1]
    # Vertically adjacent seeds (a few % at this density) are the only taller specks.
    assert count > 500 and len(isolated) > 0.85 * count


def test_spray_draws_fall_in_their_stated_intervals_and_replace_the_splashes() -> None:
    for seed in range(40):
        params = sample_rain_params(0.6, generator(seed), styles=["spray"])
        assert SPRAY_DENSITY[0] <= params.splash_density <= SPRAY_DENSITY[1]
        assert SPRAY_SIZE[0] <= params.splash_size <= SPRAY_SIZE[1]
        assert SPRAY_HORIZON[0] <= params.splash_horizon <= SPRAY_HORIZON[1]
        both = sample_rain_params(0.6, generator(seed), styles=["splashes", "spray"])
        assert both.styles == ("splashes", "spray")
        assert SPRAY_DENSITY[0] <= both.splash_density <= SPRAY_DENSITY[1] and both.splash_size <= SPRAY_SIZE[1]


def test_the_default_splash_horizon_keeps_the_splashes_of_earlier_releases() -> None:
    """Values recorded before ``splash_horizon`` existed (splashes in the lower half)."""
    params = RainParams(layers=NO_STREAKS, splash_density=0.004, splash_size=3.0)
    assert params.splash_horizon == 0.5
    opacity = render_rain(torch.full((1, 3, 64, 48), 0.3), params, generator(2)).streaks
    assert int((opacity > 0).sum()) == 322
    assert float(opacity.sum()) == pytest.approx(18.68102, abs=1e-4)
    with pytest.raises(ValueError, match="splash_horizon"):
        RainParams(splash_horizon=1.0)


def test_lens_drops_show_the_scene_blurred_and_upside_down() -> None:
    ramp = torch.linspace(0.1, 0.9, 200).view(1, 1, 200, 1).expand(1, 3, 200, 200).contiguous()
    params = RainParams(layers=NO_STREAKS, lens_drops=6, lens_drop_radius=15.0)
    rendered = render_rain(ramp, params, generator(9))
    drops = rendered.streaks[0, 0]
    labels, count = ndimage.label((drops > 0.5).numpy())
    assert 1 <= count <= 6 and float(drops.max()) == 1.0
    inside = (drops == 1.0)[1:-1]
    vertical = (rendered.rainy[0, 0, 2:] - rendered.rainy[0, 0, :-2])[inside]
    # The ramp brightens downwards; through a drop it brightens upwards.
    assert float(vertical.mean()) < 0 and float((ramp[0, 0, 2:] - ramp[0, 0, :-2]).mean()) > 0
    untouched = drops == 0
    torch.testing.assert_close(rendered.rainy[0, :, untouched], ramp[0, :, untouched], rtol=0, atol=0)


@pytest.mark.parametrize("strength", ["light", 0.5, "heavy"])
def test_noise_streaks_add_one_to_three_averaged_families_over_the_same_rain(strength: float | str) -> None:
    family_counts = set()
    for seed in range(30):
        default = sample_rain_params(strength, generator(seed))
        styled = sample_rain_params(strength, generator(seed), styles=["noise_streaks"])
        added = styled.layers[len(default.layers) :]
        assert styled.layers[: len(default.layers)] == default.layers and 1 <= len(added) <= 3
        family_counts.add(len(added))
        for layer in added:
            black, white = layer.levels
            assert 0.8 <= black <= 1.6 and 1.0 <= white - black <= 3.0 and layer.min_brightness == 0.0
            assert 20.0 <= layer.length <= 80.0 and 1.0 <= layer.width <= 3.0 and abs(layer.angle) <= CROSSING_SPREAD
            # A dense noise layer: 5-30% of the canvas cells (width x width pixels) hold a drop.
            assert 0.05 <= layer.density * layer.width**2 <= 0.3
        angles = sorted(layer.angle for layer in added)
        assert all(20.0 - 4.0 <= b - a <= 40.0 + 4.0 for a, b in zip(angles, angles[1:])), angles
    assert family_counts == {1, 2, 3}


def test_noise_streaks_average_the_drops_so_overlaps_add_up_instead_of_saturating() -> None:
    """The same drops as a plain layer: where the plain layer's smear stays below 1, the averaged
    layer is it scaled by one constant; where overlapping streaks saturate the plain layer, the
    averaged one keeps growing with the number of drops."""
    plain = StreakLayer(angle=0.0, length=30.0, width=1.0, density=0.08, opacity=1.0, min_brightness=0.0)
    averaged = replace(plain, levels=(0.0, 50.0))  # a white point no pixel reaches: no clipping

    def streaks(layer: StreakLayer) -> torch.Tensor:
        return render_rain(torch.zeros(1, 3, 96, 96), RainParams(layers=(layer,)), generator(8)).streaks[0, 0]

    summed, mean = streaks(plain), streaks(averaged)
    unsaturated = (summed > 0.05) & (summed < 0.95)
    ratio = mean[unsaturated] / summed[unsaturated]
    torch.testing.assert_close(ratio, torch.full_like(ratio, float(ratio.median())), rtol=1e-4, atol=0)
    saturated = summed == 1.0
    assert float(saturated.float().mean()) > 0.2  # dense enough for streaks to overlap
    assert float((mean[saturated] / float(ratio.median())).median()) > 1.5
    assert float(mean.max()) < 1.0


def test_noise_streak_levels_stretch_the_average_from_black_to_white() -> None:
    """Every cell a drop of brightness 1: the average is its expected value (1 in the units of
    ``levels``) everywhere, so the layer is ``(1 - black) / (white - black)`` times its opacity."""
    full = StreakLayer(angle=15.0, length=25.0, width=1.5, density=1.0, opacity=0.8, min_brightness=1.0)
    for levels, expected in (((0.5, 1.5), 0.5), ((0.0, 4.0), 0.25), ((0.9, 1.0), 1.0), ((1.2, 2.0), 0.0)):
        rendered = render_rain(torch.zeros(1, 3, 48, 64), RainParams(layers=(replace(full, levels=levels),)))
        torch.testing.assert_close(rendered.streaks, torch.full_like(rendered.streaks, 0.8 * expected))
    plain = render_rain(torch.zeros(1, 3, 48, 64), RainParams(layers=(full,))).streaks
    torch.testing.assert_close(plain, torch.full_like(plain, 0.8))  # the plain smear saturates


@pytest.mark.parametrize("strength", ["light", 0.5, "heavy"])
def test_steep_turns_the_whole_rain_by_one_angle_to_the_winds_side(strength: float | str) -> None:
    """The same layers, every one turned by the same angle, so that the wind ends in 40-75 degrees;
    crossing families keep their spacing."""
    low, high = STEEP_WIND
    for seed in range(30):
        for others in ([], ["crossing"], ["curtain", "noise_streaks"]):
            upright = sample_rain_params(strength, generator(seed), styles=others)
            steep = sample_rain_params(strength, generator(seed), styles=[*others, "steep"])
            assert len(steep.layers) == len(upright.layers) and steep.styles == (*upright.styles, "steep")
            for before, after in zip(upright.layers, steep.layers, strict=True):
                assert replace(after, angle=before.angle) == before
            turns = [after.angle - before.angle for before, after in zip(upright.layers, steep.layers, strict=True)]
            unclamped = [
                turn for turn, layer in zip(turns, steep.layers, strict=True) if abs(layer.angle) < MAX_STEEP_ANGLE
            ]
            assert unclamped and max(unclamped) - min(unclamped) < 1e-9
            if not others:
                # Plain rain: the layers lean within 2 + 6 x strength degrees of the wind.
                spread = 8.0
                angles = [layer.angle for layer in steep.layers]
                side = math.copysign(1.0, angles[0])
                assert all(math.copysign(1.0, angle) == side for angle in angles)
                assert all(low - spread <= abs(angle) <= min(high + spread, MAX_STEEP_ANGLE) for angle in angles)
            assert all(abs(layer.angle) <= MAX_STEEP_ANGLE for layer in steep.layers)


def test_steep_winds_cover_their_interval_on_both_sides() -> None:
    winds = [sample_rain_params(0.0, generator(seed), styles=["steep"]).layers[0].angle for seed in range(200)]
    low, high = STEEP_WIND
    # Strength 0: one layer, the wind give or take 2 degrees.
    assert all(low - 2.0 <= abs(wind) <= high + 2.0 for wind in winds)
    negative = [wind for wind in winds if wind < 0]
    positive = [wind for wind in winds if wind > 0]
    assert min(negative) < -(high - 5.0) and max(negative) > -(low + 5.0)
    assert max(positive) > high - 5.0 and min(positive) < low + 5.0


@pytest.mark.parametrize("strength", ["light", 0.5, "heavy"])
def test_wide_enlarges_the_whole_rain_by_one_factor(strength: float | str) -> None:
    """The same layers (crossing families and curtains included), every one resized by one factor
    in ``WIDE_FACTOR``: longer, wider and more defocused streaks, fewer of them per pixel."""
    low, high = WIDE_FACTOR
    factors = []
    for seed in range(30):
        for others in ([], ["crossing"], ["curtain", "noise_streaks", "steep"]):
            plain = sample_rain_params(strength, generator(seed), styles=others)
            wide = sample_rain_params(strength, generator(seed), styles=[*others, "wide"])
            assert wide.styles == (*plain.styles, "wide")
            assert replace(wide, layers=plain.layers, styles=plain.styles) == plain
            factor = wide.layers[0].width / plain.layers[0].width
            assert low <= factor <= high
            for after, expected in zip(wide.layers, (layer.resized(factor) for layer in plain.layers), strict=True):
                sizes = ("length", "width", "density", "defocus")
                assert replace(after, **{name: getattr(expected, name) for name in sizes}) == expected
                assert [getattr(after, name) for name in sizes] == pytest.approx(
                    [getattr(expected, name) for name in sizes]
                )
            factors.append(factor)
    assert max(factors) - min(factors) > 0.5 * (high - low)


def test_wide_streaks_cover_the_same_share_of_the_frame_with_thicker_streaks() -> None:
    """What the style claims on rendered images: about the same mean added brightness (within
    30 %: the thin streaks, more of them, overlap and saturate more), made of streaks that are
    wider across their direction (the autocorrelation of the rain layer across vertical streaks
    falls off over more columns)."""
    clean = torch.zeros(1, 3, 256, 256)
    layer = StreakLayer(angle=0.0, length=30.0, width=1.5, density=0.004, opacity=0.9, min_brightness=0.9)
    params = RainParams(layers=(layer,), streak_light=1.0)
    thin = render_rain(clean, params, generator(3)).rainy[0, 0]
    thick = render_rain(clean, replace(params, layers=(layer.resized(3.0),)), generator(3)).rainy[0, 0]
    assert thick.mean().item() == pytest.approx(thin.mean().item(), rel=0.3)

    def width_of_streaks(rain: torch.Tensor) -> int:
        """Columns over which the horizontal autocorrelation stays above half its peak."""
        rows = rain - rain.mean(dim=1, keepdim=True)
        correlation = [(rows[:, : rows.shape[1] - shift] * rows[:, shift:]).mean().item() for shift in range(20)]
        return next(shift for shift, value in enumerate(correlation) if value < 0.5 * correlation[0])

    assert width_of_streaks(thick) >= 2 * width_of_streaks(thin)


def test_later_styles_at_probability_zero_keep_the_draws_of_the_first_release() -> None:
    """Values recorded with the seven styles of the first release; the fixed ``val_styles`` sets
    of training runs rely on them."""
    first_release = dict.fromkeys(FIRST_RELEASE_STYLES, 0.5)
    params = sample_rain_params(0.6, generator(0), style_probability=first_release)
    assert params.styles == ("crossing", "opaque", "curtain", "haze")
    expected = [(-25.579, 42.897, 0.969), (-2.911, 28.816, 0.922), (-27.362, 47.855, 1.0), (-3.112, 358.811, 0.106)]
    np.testing.assert_allclose([(la.angle, la.length, la.opacity) for la in params.layers], expected, atol=1e-3)
    assert params.contrast == pytest.approx(0.8042, abs=1e-4)
    for seed in range(20):
        without = sample_rain_params(0.6, generator(seed), style_probability=first_release)
        explicit_zero = sample_rain_params(
            0.6,
            generator(seed),
            style_probability={**first_release, "noise_streaks": 0.0, "steep": 0.0, "wide": 0.0, "spray": 0.0},
        )
        assert explicit_zero == without and not {"noise_streaks", "steep", "wide", "spray"} & set(without.styles)


def test_random_style_sampler_mixes_every_style() -> None:
    seen = {style: 0 for style in RAIN_STYLES}
    for seed in range(200):
        params = sample_rain_params(0.5, generator(seed), style_probability=0.4)
        for style in params.styles:
            seen[style] += 1
    assert all(50 <= count <= 110 for count in seen.values()), seen
    everything = sample_rain_params("heavy", generator(1), style_probability=1.0)
    assert everything.styles == RAIN_STYLES
    clean = smooth_image(96, 128)
    rendered = render_rain(clean, everything, generator(1))
    assert rendered.rainy.shape == clean.shape and torch.isfinite(rendered.rainy).all()
    assert 0 <= rendered.rainy.min() and rendered.rainy.max() <= 1


def test_style_probabilities_per_style_leave_the_other_styles_draws_as_they_were() -> None:
    for seed in range(40):
        uniform = sample_rain_params(0.5, generator(seed), style_probability=0.3)
        mapped = sample_rain_params(0.5, generator(seed), style_probability=dict.fromkeys(RAIN_STYLES, 0.3))
        without_haze = sample_rain_params(
            0.5, generator(seed), style_probability={**dict.fromkeys(RAIN_STYLES, 0.3), "haze": 0.0}
        )
        assert mapped == uniform
        assert without_haze.styles == tuple(style for style in uniform.styles if style != "haze")
        assert without_haze.contrast == 1.0 and without_haze.brightening == 0.0
    only_haze = {sample_rain_params(0.5, generator(seed), style_probability={"haze": 1.0}).styles for seed in range(10)}
    assert only_haze == {("haze",)}
    assert style_probabilities({"opaque": 0.5}) == {**dict.fromkeys(RAIN_STYLES, 0.0), "opaque": 0.5}


def test_a_style_below_its_least_strength_is_left_out_and_the_other_draws_kept() -> None:
    probabilities = {"haze": 1.0, "crossing": 0.5, "opaque": 0.5}
    for seed in range(20):
        tied = sample_rain_params(
            0.3, generator(seed), style_probability=probabilities, style_min_strength={"haze": 0.4}
        )
        without_haze = sample_rain_params(0.3, generator(seed), style_probability={**probabilities, "haze": 0.0})
        assert tied == without_haze
        dense = sample_rain_params(
            0.4, generator(seed), style_probability=probabilities, style_min_strength={"haze": 0.4}
        )
        assert "haze" in dense.styles
        assert dense == sample_rain_params(0.4, generator(seed), style_probability=probabilities)
    assert style_min_strengths(None) == dict.fromkeys(RAIN_STYLES, 0.0)


def test_bad_style_input_is_named() -> None:
    with pytest.raises(ValueError, match="styles must be a sequence of names from crossing"):
        sample_rain_params(0.5, styles=["fog"])
    with pytest.raises(ValueError, match="styles must be a sequence"):
        sample_rain_params(0.5, styles="haze")
    with pytest.raises(ValueError, match="style_probability"):
        sample_rain_params(0.5, style_probability=1.5)
    with pytest.raises(ValueError, match=r"unknown styles \['fog'\]; styles: crossing"):
        sample_rain_params(0.5, style_probability={"fog": 0.5})
    with pytest.raises(ValueError, match=r"style_probability\['haze'\] must be a finite number in \[0.0, 1.0\]"):
        sample_rain_params(0.5, style_probability={"haze": -0.1})
    with pytest.raises(ValueError, match=r"style_min_strength names unknown styles \['fog'\]"):
        sample_rain_params(0.5, style_min_strength={"fog": 0.5})
    with pytest.raises(ValueError, match=r"style_min_strength\['haze'\] must be a finite number in \[0.0, 1.0\]"):
        sample_rain_params(0.5, style_min_strength={"haze": 1.5})
    with pytest.raises(ValueError, match="streak_blend must be 'light' or 'add'"):
        RainParams(streak_blend="screen")
    with pytest.raises(ValueError, match="min_brightness"):
        StreakLayer(min_brightness=1.5)
    with pytest.raises(ValueError, match="lens_drops must be an integer"):
        RainParams(lens_drops=2.5)
    with pytest.raises(ValueError, match="contrast"):
        RainParams(contrast=0.0)
    with pytest.raises(ValueError, match=r"levels must be None or a pair \(black, white\)"):
        StreakLayer(levels=1.0)
    with pytest.raises(ValueError, match=r"levels\[1\] \(white\)"):
        StreakLayer(levels=(1.0, 0.5))


def test_rendering_per_image_is_each_image_rendered_alone_and_checks_its_lengths() -> None:
    clean = torch.rand(3, 3, 24, 32, generator=torch.Generator().manual_seed(0))
    params = [sample_rain_params(strength, torch.Generator().manual_seed(9)) for strength in (0.1, 0.6, "heavy")]
    rendered = render_rain_per_image(clean, params, [torch.Generator().manual_seed(seed) for seed in range(3)])
    for index in range(3):
        alone = render_rain(clean[index : index + 1], params[index], torch.Generator().manual_seed(index)).rainy
        torch.testing.assert_close(rendered[index : index + 1], alone, rtol=0, atol=0)
    with pytest.raises(ValueError, match="one per image: 3 images, 2 params, 3 generators"):
        render_rain_per_image(clean, params[:2], [torch.Generator() for _ in range(3)])
