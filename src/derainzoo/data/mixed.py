"""MixedRainDataset: real rainy/clean pairs mixed with rain rendered on the fly over the clean images."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from derainzoo.data.paired import PairedImageFolder
from derainzoo.data.rain_renderer import (
    RainParams,
    RainPreset,
    preset_range,
    render_rain,
    render_rain_per_image,
    sample_rain_params,
    style_min_strengths,
    style_probabilities,
)
from derainzoo.data.transforms import paired_tone_change

__all__ = ["RAIN_PARAMS_FILE", "MixedRainDataset", "write_rendered_pairs"]

RAIN_PARAMS_FILE = "rain_params.json"
"""Name of the record [`write_rendered_pairs`][write_rendered_pairs] writes beside ``rain/`` and ``norain/``:
a JSON object mapping each image's stem to the fields of its [`RainParams`][RainParams] (its
``styles`` among them), so that a score can be read against the rain that produced it."""


class MixedRainDataset(Dataset):
    """Real pairs of a [`PairedImageFolder`][PairedImageFolder] mixed with rendered rain over their clean images.

    Item ``i`` takes item ``i`` of ``pairs`` (its crop and flips/rotations come from there). With
    probability ``real_fraction`` it is returned as it is; otherwise its rainy image is thrown
    away and rain of a strength drawn uniformly in ``strength`` (see [`sample_rain_params`][sample_rain_params])
    is rendered over the clean image. The clean crop is flipped/rotated before the rain is
    rendered, so rendered streaks keep their natural near-vertical directions.

    The rain of item ``i`` in epoch ``e`` depends only on ``(seed, e, i)``: every epoch brings
    new rain (call [`set_epoch`][MixedRainDataset.set_epoch], which is passed on to ``pairs``), and a resumed run or a
    worker process renders exactly the same rain.

    With ``render_later=True`` the items carry the rain's seed instead of the rendered rain, and
    [`render_batch`][MixedRainDataset.render_batch] renders a whole batch where it lies, on the
    training device: a GPU then renders its own batches instead of waiting for the CPU. On the
    CPU the rain is the same, bit for bit; on a GPU the drops are drawn by the GPU's generator
    (the same parameters, other random positions).

    Args:
        pairs: the real pairs; use only training pairs (never a test set).
        real_fraction: share of items returned as real pairs, in ``[0, 1]``.
        strength: ``(low, high)`` range of the rain strength of rendered items, within
            ``[0, 1]``, or a preset name of [`RAIN_PRESETS`][derainzoo.data.rain_renderer.RAIN_PRESETS].
        camera_effects: let rendered items have camera blur, noise and JPEG compression.
        seed: base seed of the rendered rain.
        short_exposure: probability of fast-shutter rain with short streaks (see
            [`sample_rain_params`][sample_rain_params]; 0 renders the rain of earlier releases).
        drizzle: probability of one more thin, dim, very dense far layer (see
            [`sample_rain_params`][sample_rain_params]; 0 renders the rain of earlier releases).
        downscaled: probability of rain as in a photo downscaled from a larger one: shorter,
            denser streaks, most thinner than a pixel (see
            [`sample_rain_params`][sample_rain_params]; 0 renders the rain of earlier releases).
        style_probability: probability of each style of
            [`RAIN_STYLES`][derainzoo.data.rain_renderer.RAIN_STYLES] (rain the physical presets
            miss, from crossing families to ground spray) on top of the physical rain: domain
            randomisation (0 renders the rain of earlier releases); a mapping gives
            each style its own probability (see
            [`style_probabilities`][derainzoo.data.rain_renderer.style_probabilities]).
        style_min_strength: ``{style: strength}``: a style is added only to rain of at least that
            strength (see [`sample_rain_params`][sample_rain_params]; ``None`` for none).
        flat_scenes: probability that an item's scene is made flatter and brighter or darker,
            the same in both images (see
            [`paired_tone_change`][derainzoo.data.transforms.paired_tone_change]), so that the
            model learns to keep a flat scene's tone and take off only the veil of the rain; drawn
            from a stream of its own, so 0 leaves every other draw as in earlier releases.
        rain_free: probability that an item is a rain-free pair, its clean image as both input
            and target, so that the model learns to leave a photo without rain as it is (a model
            taught only rainy inputs darkens some bright rain-free scenes by up to 13 levels);
            drawn from a stream of its own, after ``flat_scenes``, so 0 leaves every other draw
            as in earlier releases.
        render_later: return the rain's seed instead of rendering it (see above).

    Items:
        ``(rainy, clean, stem)``: two ``(3, h, w)`` float32 tensors in ``[0, 1]`` and the stem.
        With ``render_later``, ``(rainy, clean, stem, rain_seed)``: ``rainy`` is the clean image
        where rain is still to be rendered, and ``rain_seed`` an int64 scalar tensor, ``-1`` for
        a real or a rain-free pair.

    Examples:
        >>> pairs = PairedImageFolder("Rain100L_train", crop_size=128, augment=True)  # doctest: +SKIP
        >>> data = MixedRainDataset(pairs, real_fraction=0.25, strength=(0.0, 1.0))  # doctest: +SKIP
    """

    def __init__(
        self,
        pairs: PairedImageFolder,
        real_fraction: float = 0.25,
        strength: tuple[float, float] | RainPreset = (0.0, 1.0),
        camera_effects: bool = True,
        seed: int = 0,
        short_exposure: float = 0.0,
        drizzle: float = 0.0,
        downscaled: float = 0.0,
        style_probability: float | Mapping[str, float] = 0.0,
        style_min_strength: Mapping[str, float] | None = None,
        flat_scenes: float = 0.0,
        rain_free: float = 0.0,
        render_later: bool = False,
    ) -> None:
        for name, probability in (
            ("real_fraction", real_fraction),
            ("short_exposure", short_exposure),
            ("drizzle", drizzle),
            ("downscaled", downscaled),
            ("flat_scenes", flat_scenes),
            ("rain_free", rain_free),
        ):
            if not 0.0 <= probability <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {probability}")
        if isinstance(strength, str):
            strength = preset_range(strength)
        low, high = strength
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"strength must be a range (low, high) with 0 <= low <= high <= 1, got {strength}")
        self.pairs = pairs
        self.real_fraction = real_fraction
        self.strength = (float(low), float(high))
        self.camera_effects = camera_effects
        self.seed = seed
        self.short_exposure = short_exposure
        self.drizzle = drizzle
        self.downscaled = downscaled
        self.style_probability = style_probabilities(style_probability)
        self.style_min_strength = style_min_strengths(style_min_strength)
        self.flat_scenes = flat_scenes
        self.rain_free = rain_free
        self.render_later = render_later
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Render new rain (and draw new crops) in each epoch."""
        self.epoch = epoch
        self.pairs.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, str] | tuple[Tensor, Tensor, str, Tensor]:
        rainy, clean, stem = self.pairs[index]
        rain_seed = self._item_seed(index, 1)
        if self.flat_scenes > 0:
            tone_generator, flatten = _first_draw(self._item_seed(index, 2), self.flat_scenes)
            if flatten:
                rainy, clean = paired_tone_change(rainy, clean, tone_generator)
        generator, is_real = _first_draw(rain_seed, self.real_fraction)
        if self.rain_free > 0 and _first_draw(self._item_seed(index, 3), self.rain_free)[1]:
            # A rain-free pair is a real pair whose rainy image is the clean one: nothing to render.
            rainy, is_real = clean, True
        if self.render_later:
            return (rainy if is_real else clean), clean, stem, torch.tensor(-1 if is_real else rain_seed)
        if is_real:
            return rainy, clean, stem
        return render_rain(clean[None], self._rain_params(generator), generator).rainy[0], clean, stem

    def _item_seed(self, index: int, stream: int) -> int:
        """Seed of one of item ``index``'s random streams in this epoch: 1 the rain (and whether the
        item is a real pair), 2 the flat scene, 3 the rain-free pair; one stream each, so that an
        option at 0 leaves the other streams' draws as they were."""
        # Integers only: Python's hash of a tuple of ints is the same in every process.
        return hash((self.seed, self.epoch, index, stream)) % 2**63

    def _rain_params(self, generator: torch.Generator) -> RainParams:
        """The rendered rain's parameters, drawn after the real-or-rendered draw of ``generator``."""
        low, high = self.strength
        strength = low + (high - low) * float(torch.rand((), generator=generator))
        return sample_rain_params(
            strength,
            generator,
            camera_effects=self.camera_effects,
            short_exposure=self.short_exposure,
            drizzle=self.drizzle,
            downscaled=self.downscaled,
            style_probability=self.style_probability,
            style_min_strength=self.style_min_strength,
        )

    def render_batch(self, rainy: Tensor, clean: Tensor, rain_seeds: Tensor) -> Tensor:
        """Render the rain of a batch of ``render_later`` items on the batch's device.

        Args:
            rainy: ``(B, 3, h, w)`` the items' ``rainy`` images (real rain is kept as it is).
            clean: ``(B, 3, h, w)`` the items' clean images, on the device to render on.
            rain_seeds: ``(B,)`` the items' ``rain_seed`` (``-1`` for a real pair).

        Returns:
            ``(B, 3, h, w)`` rainy images on ``clean``'s device.

        Cost:
            One [`render_rain`][derainzoo.data.rain_renderer.render_rain] call per rendered
            item ([`render_rain_per_image`][derainzoo.data.render_rain_per_image]),
            all on ``clean``'s device.
        """
        if not self.render_later:
            raise RuntimeError("render_batch() renders the items of a MixedRainDataset(render_later=True)")
        if rainy.shape != clean.shape or rain_seeds.shape != clean.shape[:1]:
            raise ValueError(
                f"rainy {tuple(rainy.shape)}, clean {tuple(clean.shape)} and rain_seeds {tuple(rain_seeds.shape)} "
                "must be one batch: (B, 3, h, w), (B, 3, h, w) and (B,)"
            )
        rendered = rainy.to(clean.device, copy=True)
        seeds = rain_seeds.tolist()
        indices = [index for index, rain_seed in enumerate(seeds) if rain_seed >= 0]
        params, generators = [], []
        for index in indices:
            rain_seed = seeds[index]
            generator, _ = _first_draw(rain_seed, self.real_fraction)
            params.append(self._rain_params(generator))
            if clean.device.type != "cpu":
                generator = torch.Generator(device=clean.device).manual_seed(rain_seed)
            generators.append(generator)
        if indices:
            rendered[indices] = render_rain_per_image(clean[indices], params, generators)
        return rendered


def _first_draw(seed: int, probability: float) -> tuple[torch.Generator, bool]:
    """A generator seeded with ``seed``, after its first draw, and whether that draw fell below
    ``probability``: the coin an item's stream starts with."""
    generator = torch.Generator().manual_seed(seed)
    return generator, float(torch.rand((), generator=generator)) < probability


def write_rendered_pairs(
    pairs: PairedImageFolder,
    folder: str | os.PathLike[str],
    strength: float | RainPreset = "heavy",
    seed: int = 0,
    camera_effects: bool = False,
    style_probability: float | Mapping[str, float] = 0.0,
) -> Path:
    """Render rain over the clean images of ``pairs`` and write a paired folder of PNG files.

    The result is a fixed, reproducible test or validation set (``folder/rain`` +
    ``folder/norain``, lossless) that [`derainzoo.evaluation.evaluate`][derainzoo.evaluation.evaluate] and
    ``derainzoo eval --data`` read. Image ``k`` gets the rain of
    ``sample_rain_params(strength, Generator().manual_seed(seed + k), camera_effects,
    style_probability=style_probability)``, recorded in ``folder/rain_params.json``
    ([`RAIN_PARAMS_FILE`][RAIN_PARAMS_FILE]).

    Args:
        pairs: whole images (no crop, no augmentation); only their clean images are used.
        folder: output folder; created if missing. Existing files of the same names are replaced.
        strength: a rain strength in ``[0, 1]`` or a preset name.
        seed: seed of the rain of the first image.
        camera_effects: add camera blur, noise and JPEG compression.
        style_probability: probability of each renderer style (see
            [`RAIN_STYLES`][derainzoo.data.rain_renderer.RAIN_STYLES]), or a mapping of one per
            style; 0 renders the sets of earlier releases.

    Returns:
        ``folder`` as a `Path`.
    """
    pairs.check_whole_images("write_rendered_pairs()")
    folder = Path(folder)
    for side in ("rain", "norain"):
        (folder / side).mkdir(parents=True, exist_ok=True)
    rain_of_each_image = {}
    for index in range(len(pairs)):
        _, clean, stem = pairs[index]
        generator = torch.Generator().manual_seed(seed + index)
        params = sample_rain_params(
            strength, generator, camera_effects=camera_effects, style_probability=style_probability
        )
        rainy = render_rain(clean[None], params, generator).rainy[0]
        for side, image in (("rain", rainy), ("norain", clean)):
            pixels = (image * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            Image.fromarray(pixels).save(folder / side / f"{stem}.png")
        rain_of_each_image[stem] = dataclasses.asdict(params)
    (folder / RAIN_PARAMS_FILE).write_text(json.dumps(rain_of_each_image, indent=1) + "\n")
    return folder
