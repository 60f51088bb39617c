"""MixedRainDataset and write_rendered_pairs: the mix, its reproducibility, new rain every epoch, files."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from derainzoo.data import (
    RAIN_PARAMS_FILE,
    MixedRainDataset,
    PairedImageFolder,
    sample_rain_params,
    write_rendered_pairs,
)
from derainzoo.evaluation import evaluate

from ..helpers import write_paired_folder


@pytest.fixture()
def pairs(tmp_path) -> PairedImageFolder:
    write_paired_folder(tmp_path, count=4, size=(48, 56))
    return PairedImageFolder(tmp_path, crop_size=32, augment=True, samples_per_epoch=16, seed=3)


def test_items_are_reproducible_and_new_every_epoch(pairs) -> None:
    first, second = (
        MixedRainDataset(pairs, real_fraction=0.0, seed=1),
        MixedRainDataset(pairs, real_fraction=0.0, seed=1),
    )
    rainy, clean, stem = first[5]
    assert rainy.shape == clean.shape == (3, 32, 32) and rainy.dtype == torch.float32 and stem == pairs[5][2]
    torch.testing.assert_close(rainy, second[5][0], rtol=0, atol=0)
    assert not torch.equal(rainy, MixedRainDataset(pairs, real_fraction=0.0, seed=2)[5][0])
    first.set_epoch(1)
    assert first.pairs.epoch == 1
    assert not torch.equal(first[5][1], clean)  # a new crop ...
    second.set_epoch(1)
    torch.testing.assert_close(first[5][0], second[5][0], rtol=0, atol=0)  # ... reproducible too


def test_real_fraction_chooses_between_real_and_rendered_pairs(pairs) -> None:
    real = MixedRainDataset(pairs, real_fraction=1.0)
    for index in range(len(pairs)):
        for got, expected in zip(real[index][:2], pairs[index][:2]):
            torch.testing.assert_close(got, expected, rtol=0, atol=0)
    rendered = MixedRainDataset(pairs, real_fraction=0.0, strength="heavy", camera_effects=False)
    for index in range(len(pairs)):
        rainy, clean, _ = rendered[index]
        torch.testing.assert_close(clean, pairs[index][1], rtol=0, atol=0)
        assert not torch.equal(rainy, pairs[index][0])
        assert (rainy - clean).abs().mean() > 20 / 255  # heavy rain, not the light rain of the folder
    half = MixedRainDataset(pairs, real_fraction=0.5)
    is_real = [torch.equal(half[index][0], pairs[index][0]) for index in range(len(pairs))]
    assert 3 <= sum(is_real) <= 13


def test_strength_range_and_errors(pairs) -> None:
    light = MixedRainDataset(pairs, real_fraction=0.0, strength="light", camera_effects=False)
    heavy = MixedRainDataset(pairs, real_fraction=0.0, strength=(0.9, 1.0), camera_effects=False)

    def change(data: MixedRainDataset) -> float:
        return sum(float((data[i][0] - data[i][1]).abs().mean()) for i in range(8)) / 8

    assert change(light) < 0.5 * change(heavy)
    with pytest.raises(ValueError, match="real_fraction"):
        MixedRainDataset(pairs, real_fraction=1.5)
    with pytest.raises(ValueError, match="strength"):
        MixedRainDataset(pairs, strength=(0.8, 0.2))
    with pytest.raises(ValueError, match="unknown rain preset"):
        MixedRainDataset(pairs, strength="drizzle")
    with pytest.raises(ValueError, match="short_exposure"):
        MixedRainDataset(pairs, short_exposure=2.0)
    with pytest.raises(ValueError, match="drizzle"):
        MixedRainDataset(pairs, drizzle=-1.0)
    with pytest.raises(ValueError, match="downscaled"):
        MixedRainDataset(pairs, downscaled=1.5)
    with pytest.raises(ValueError, match="style_probability"):
        MixedRainDataset(pairs, style_probability=-0.5)


def test_short_exposure_drizzle_downscaled_and_styles_reach_the_renderer(pairs) -> None:
    """The options change the heavy rain of every rendered item; at 0 it is the default rain."""
    options = {"real_fraction": 0.0, "strength": "heavy", "camera_effects": False, "seed": 4}
    default = MixedRainDataset(pairs, **options)
    explicit_zero = MixedRainDataset(
        pairs,
        short_exposure=0.0,
        drizzle=0.0,
        downscaled=0.0,
        style_probability=0.0,
        flat_scenes=0.0,
        rain_free=0.0,
        **options,
    )
    changed = [
        MixedRainDataset(pairs, short_exposure=1.0, **options),
        MixedRainDataset(pairs, drizzle=1.0, **options),
        MixedRainDataset(pairs, downscaled=1.0, **options),
        MixedRainDataset(pairs, style_probability=1.0, **options),
        MixedRainDataset(pairs, flat_scenes=1.0, **options),
    ]
    for index in range(4):
        rainy = default[index][0]
        torch.testing.assert_close(explicit_zero[index][0], rainy, rtol=0, atol=0)
        assert not any(torch.equal(data[index][0], rainy) for data in changed)


def test_style_min_strength_reaches_the_renderer(pairs) -> None:
    """Haze tied to rain of strength 0.5 or more leaves light rain as if haze were off."""
    options = {"real_fraction": 0.0, "strength": (0.0, 0.3), "camera_effects": False, "seed": 5}
    with_haze = {"crossing": 0.5, "haze": 1.0}
    tied = MixedRainDataset(pairs, style_probability=with_haze, style_min_strength={"haze": 0.5}, **options)
    without = MixedRainDataset(pairs, style_probability={**with_haze, "haze": 0.0}, **options)
    hazy = MixedRainDataset(pairs, style_probability=with_haze, **options)
    for index in range(3):
        torch.testing.assert_close(tied[index][0], without[index][0], rtol=0, atol=0)
        assert not torch.equal(hazy[index][0], without[index][0])
    with pytest.raises(ValueError, match="style_min_strength"):
        MixedRainDataset(pairs, style_min_strength={"haze": -1.0})


def test_flat_scenes_change_real_pairs_alike_and_leave_the_other_draws(pairs) -> None:
    options = {"real_fraction": 0.5, "seed": 3, "style_probability": 0.3}
    plain, flat = MixedRainDataset(pairs, **options), MixedRainDataset(pairs, flat_scenes=1.0, **options)
    real_items = 0
    for index in range(len(pairs)):
        (rainy, clean, _), (flat_rainy, flat_clean, _) = plain[index], flat[index]
        assert flat_clean.std() < clean.std()
        if torch.equal(plain.pairs[index][0], rainy):  # a real pair: the rain is scaled by the contrast
            real_items += 1
            contrast = float(flat_clean.std() / clean.std())
            inside = (flat_rainy > 0) & (flat_rainy < 1) & (flat_clean > 0) & (flat_clean < 1)
            torch.testing.assert_close(
                (flat_rainy - flat_clean)[inside], contrast * (rainy - clean)[inside], rtol=0, atol=1e-4
            )
    assert real_items > 0
    with pytest.raises(ValueError, match="flat_scenes must be in"):
        MixedRainDataset(pairs, flat_scenes=1.5)


def test_rain_free_items_are_their_clean_image_twice_and_leave_the_other_draws(pairs) -> None:
    options = {"real_fraction": 0.3, "seed": 6, "style_probability": 0.3, "flat_scenes": 0.5}
    plain, rain_free = MixedRainDataset(pairs, **options), MixedRainDataset(pairs, rain_free=0.5, **options)
    kinds = set()
    for epoch in range(3):
        for data in (plain, rain_free):
            data.set_epoch(epoch)
        for index in range(len(pairs)):
            (rainy, clean, stem), (free_rainy, free_clean, free_stem) = plain[index], rain_free[index]
            assert free_stem == stem
            torch.testing.assert_close(free_clean, clean, rtol=0, atol=0)
            is_rain_free = torch.equal(free_rainy, free_clean)
            if not is_rain_free:  # every other item is drawn exactly as without the option
                torch.testing.assert_close(free_rainy, rainy, rtol=0, atol=0)
            kinds.add(is_rain_free)
    assert kinds == {True, False}
    always = MixedRainDataset(pairs, rain_free=1.0, **options)
    assert all(torch.equal(always[index][0], always[index][1]) for index in range(len(pairs)))
    with pytest.raises(ValueError, match="rain_free must be in"):
        MixedRainDataset(pairs, rain_free=-0.1)


def test_write_rendered_pairs_is_a_reproducible_paired_folder(tmp_path) -> None:
    write_paired_folder(tmp_path / "source", count=3)
    source = PairedImageFolder(tmp_path / "source")
    first = write_rendered_pairs(source, tmp_path / "heavy_a", strength="heavy", seed=4)
    write_rendered_pairs(source, tmp_path / "heavy_b", strength="heavy", seed=4)
    for side in ("rain", "norain"):
        names = sorted(path.name for path in (first / side).iterdir())
        assert names == ["000.png", "001.png", "002.png"]
        for name in names:
            assert (first / side / name).read_bytes() == (tmp_path / "heavy_b" / side / name).read_bytes()
    written = PairedImageFolder(first)
    for index in range(3):
        # Clean images are copied losslessly; the rainy ones carry heavy rain.
        torch.testing.assert_close(written[index][1], source[index][1], rtol=0, atol=0)
    assert evaluate(None, first, progress=False).psnr < evaluate(None, source, progress=False).psnr
    # With styles, the same clean images under other rain (no style draws at 0: the files above).
    styled = write_rendered_pairs(source, tmp_path / "styled", strength="heavy", seed=4, style_probability=1.0)
    for name in ("000.png", "001.png", "002.png"):
        assert (styled / "norain" / name).read_bytes() == (first / "norain" / name).read_bytes()
        assert (styled / "rain" / name).read_bytes() != (first / "rain" / name).read_bytes()
    with pytest.raises(ValueError, match="whole images"):
        write_rendered_pairs(PairedImageFolder(tmp_path / "source", crop_size=16), tmp_path / "x")


def test_write_rendered_pairs_records_the_rain_of_each_image(tmp_path) -> None:
    """rain_params.json holds, per stem, the RainParams drawn for that image (styles included)."""
    write_paired_folder(tmp_path / "source", count=3)
    source = PairedImageFolder(tmp_path / "source")
    folder = write_rendered_pairs(source, tmp_path / "styled", strength="medium", seed=7, style_probability=0.5)
    recorded = json.loads((folder / RAIN_PARAMS_FILE).read_text())
    assert list(recorded) == ["000", "001", "002"]
    for index, stem in enumerate(recorded):
        generator = torch.Generator().manual_seed(7 + index)
        drawn = sample_rain_params("medium", generator, camera_effects=False, style_probability=0.5)
        assert recorded[stem] == json.loads(json.dumps(dataclasses.asdict(drawn)))
    assert len({tuple(params["styles"]) for params in recorded.values()}) > 1
    assert len(PairedImageFolder(folder)) == 3  # the record beside rain/ and norain/ is not an image


def test_rendering_later_gives_the_same_batches_bit_for_bit(pairs) -> None:
    """render_later items + render_batch on the CPU = the items rendered in the loader, real pairs kept."""
    options = {
        "real_fraction": 0.4,
        "seed": 7,
        "style_probability": 0.5,
        "drizzle": 0.3,
        "downscaled": 0.3,
        "flat_scenes": 0.5,
        "rain_free": 0.3,
    }
    now, later = MixedRainDataset(pairs, **options), MixedRainDataset(pairs, render_later=True, **options)
    for data in (now, later):
        data.set_epoch(2)
    loader = torch.utils.data.DataLoader(later, batch_size=8)
    real_items = 0
    for batch_index, (rainy, clean, stems, rain_seeds) in enumerate(loader):
        assert rain_seeds.dtype == torch.int64 and rain_seeds.shape == (8,)
        rendered = later.render_batch(rainy, clean, rain_seeds)
        for offset in range(8):
            expected_rainy, expected_clean, stem = now[8 * batch_index + offset]
            assert stems[offset] == stem
            torch.testing.assert_close(clean[offset], expected_clean, rtol=0, atol=0)
            torch.testing.assert_close(rendered[offset], expected_rainy, rtol=0, atol=0)
        is_real = rain_seeds < 0
        real_items += int(is_real.sum())
        torch.testing.assert_close(rendered[is_real], rainy[is_real], rtol=0, atol=0)  # real rain untouched
        torch.testing.assert_close(rainy[~is_real], clean[~is_real], rtol=0, atol=0)  # the loader rendered nothing
    assert 0 < real_items < len(later)  # both kinds were checked


def test_render_batch_errors_name_the_problem(pairs) -> None:
    later = MixedRainDataset(pairs, render_later=True)
    rainy, clean, _, seed = later[0]
    with pytest.raises(ValueError, match="one batch"):
        later.render_batch(rainy[None], clean[None], torch.stack([seed, seed]))
    with pytest.raises(RuntimeError, match="render_later=True"):
        MixedRainDataset(pairs).render_batch(rainy[None], clean[None], seed[None])
