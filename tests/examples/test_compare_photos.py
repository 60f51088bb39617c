"""examples/compare_photos.py: full-size comparison of weights on photos, its measures and its guards."""

from __future__ import annotations

import pytest
import torch
from PIL import Image, ImageDraw

from derainzoo._helpers import save_weights
from tests.helpers import TINY, load_script, smooth_image, tiny_model

compare_photos = load_script("examples/compare_photos.py")


def outputs_with_a_patch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A rainy input, a baseline output 0.1 darker, and a candidate 2 levels brighter than the
    baseline in red only, with a patch 40 levels brighter at rows 24-31, columns 40-47."""
    rainy = torch.full((1, 3, 64, 96), 0.5)
    baseline = rainy - 0.1
    candidate = baseline.clone()
    candidate[:, 0] += 2 / 255
    candidate[..., 24:32, 40:48] += 40 / 255
    return rainy, baseline, candidate


def test_compare_measures_change_shift_cast_and_hot_spot() -> None:
    rainy, baseline, candidate = outputs_with_a_patch()

    measured = compare_photos.compare(rainy, candidate, baseline, window=8)

    assert measured.change == pytest.approx(float((candidate - rainy).abs().mean() * 255), rel=1e-5)
    difference = (candidate - rainy) * 255
    detail = difference - difference.mean(dim=(2, 3), keepdim=True)
    assert measured.detail_change == pytest.approx(float(detail.abs().mean()), rel=1e-5)
    patch_share = 8 * 8 / (64 * 96)
    expected_shift = (2 + 40 * patch_share, 40 * patch_share, 40 * patch_share)
    assert measured.shift == pytest.approx(expected_shift, abs=1e-3)
    assert measured.cast == pytest.approx(2.0, abs=1e-3)
    # The patch covers a minority of the pixels: the median keeps the part that covers the photo.
    assert measured.offset == pytest.approx(2 / 3, abs=1e-3)
    assert measured.hot_spot == (24, 40)
    assert measured.hot_spot_difference == pytest.approx(40 + 2 / 3, abs=1e-3)


def test_baseline_against_itself_shows_no_difference() -> None:
    rainy, baseline, _ = outputs_with_a_patch()

    measured = compare_photos.compare(rainy, baseline, baseline, window=16)

    assert measured.change == pytest.approx(0.1 * 255, rel=1e-4)
    assert measured.shift == (0.0, 0.0, 0.0) and measured.hot_spot_difference == 0.0
    assert measured.offset == 0.0


def test_offset_tells_a_uniform_darkening_from_streaks_removed() -> None:
    rainy = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
    baseline = rainy.clone()
    # Streaks removed: 30 of the 96 columns, in thin vertical lines, 20 levels darker.
    streaks_removed = baseline.clone()
    streaks_removed[..., ::10] -= 20 / 255
    streaks_removed[..., 1::10] -= 20 / 255
    streaks_removed[..., 2::10] -= 20 / 255
    darkened = baseline - 6 / 255

    streaks = compare_photos.compare(rainy, streaks_removed, baseline, window=16)
    uniform = compare_photos.compare(rainy, darkened, baseline, window=16)

    # Alike in mean shift (about -6 levels each), told apart by the median.
    assert sum(streaks.shift) / 3 == pytest.approx(-20 * 30 / 96, abs=1e-3)
    assert sum(uniform.shift) / 3 == pytest.approx(-6.0, abs=1e-3)
    assert streaks.offset == pytest.approx(0.0, abs=1e-4)
    assert uniform.offset == pytest.approx(-6.0, abs=1e-3)
    # And alike in change, told apart by the detail change: a uniform darkening has none.
    assert streaks.change == pytest.approx(uniform.change, abs=0.5)
    assert uniform.detail_change == pytest.approx(0.0, abs=1e-3) and streaks.detail_change > 8.0


def test_window_larger_than_the_photo_shrinks_to_it() -> None:
    rainy = torch.full((1, 3, 64, 96), 0.5)
    candidate = rainy.clone()
    candidate[..., 24:32, 80:88] += 40 / 255

    measured = compare_photos.compare(rainy, candidate, rainy, window=500)

    # Windows of 64 px (the photo's height) at columns 0 and 32: only the second holds the patch.
    assert measured.hot_spot == (0, 32)
    assert measured.hot_spot_difference == pytest.approx(40 * (8 * 8) / (64 * 64), abs=1e-4)


def test_labels_wider_than_their_panel_keep_both_ends_and_fit() -> None:
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label = "src/derainzoo/weights/dual_stage_derain.rain_mix.safetensors, hot spot (2240, 576)"

    shortened = compare_photos.fit_label(draw, label, 200)

    assert draw.textlength(shortened) <= 200 < draw.textlength(label)
    head, tail = shortened.split("...")
    assert label.startswith(head) and label.endswith(tail) and len(head) >= len(tail) > 0
    assert compare_photos.fit_label(draw, "rainy", 200) == "rainy"


def comparison(change: float, detail: float = 5.0, shift=(1.0, 1.0, 1.0), offset: float = 1.0):
    return compare_photos.Comparison(
        change=change, detail_change=detail, shift=shift, offset=offset, hot_spot=(0, 0), hot_spot_difference=0.0
    )


@pytest.mark.parametrize(
    ("change", "shift", "offset", "expected"),
    [
        (9.5, (1.0, 1.0, 1.0), 1.0, []),
        (8.9, (1.0, 1.0, 1.0), 1.0, ["change fell > 10%"]),
        (9.5, (3.5, 1.0, 1.0), 1.5, ["colour cast 2.5 > 2"]),
        (9.5, (-4.0, -4.5, -4.5), -4.5, ["offset -4.5 beyond 3"]),
        (9.5, (-5.0, -5.0, -5.0), -0.2, []),
        (8.0, (0.0, 0.0, -3.0), 3.5, ["change fell > 10%", "colour cast 3.0 > 2", "offset +3.5 beyond 3"]),
    ],
)
def test_each_guard_refuses_on_its_own(change, shift, offset, expected) -> None:
    reasons = compare_photos.refusals(
        comparison(change, shift=shift, offset=offset),
        comparison(10.0),
        photo_tolerance=0.1,
        max_cast=2.0,
        max_offset=3.0,
    )
    assert reasons == expected


def test_the_detail_measure_guards_the_detail_change_alone() -> None:
    baseline = comparison(10.0, detail=5.0)
    darkens_less, loses_detail = comparison(8.0, detail=5.0), comparison(10.0, detail=4.4)
    guard = {"photo_tolerance": 0.1, "max_cast": 2.0, "max_offset": 3.0, "photo_measure": "detail_change"}
    assert compare_photos.refusals(darkens_less, baseline, **guard) == []
    assert compare_photos.refusals(loses_detail, baseline, **guard) == ["detail change fell > 10%"]


def write_photos(folder, sizes: list[tuple[int, int]]) -> None:
    folder.mkdir()
    for index, (height, width) in enumerate(sizes):
        image = smooth_image(height, width, seed=index)[0].mul(255).round().byte().permute(1, 2, 0).numpy()
        Image.fromarray(image).save(folder / f"{index:03d}.png")
    (folder / "README.md").write_text("not a photo")


def test_command_compares_weights_and_writes_a_sheet_per_photo(tmp_path, capsys) -> None:
    write_photos(tmp_path / "photos", [(40, 56), (48, 36)])
    baseline, candidate = tmp_path / "baseline.safetensors", tmp_path / "candidate.safetensors"
    save_weights(tiny_model(seed=0), baseline)
    save_weights(tiny_model(seed=1), candidate)
    copy = tmp_path / "copy" / "baseline.safetensors"
    save_weights(tiny_model(seed=0), copy)

    compare_photos.main(
        [str(tmp_path / "photos"), "--model", TINY, "--weights", str(baseline), str(candidate), str(copy)]
        + ["--out", str(tmp_path / "sheets"), "--window", "16", "--panel-width", "100"]
    )

    table = capsys.readouterr().out.splitlines()
    # Two files named alike are told apart by their paths.
    assert table[0].startswith(
        f"| photo | change {baseline} | change {candidate} | change {copy} | detail {baseline} | detail {candidate} |"
    )
    rows = [line.split(" | ") for line in table[2:4]]
    assert [row[0] for row in rows] == ["| 000", "| 001"]
    for row in rows:
        assert row[1] == row[3] and row[4] == row[6]  # the same weights change a photo alike
        assert row[-4:] == ["+0.0/+0.0/+0.0", "+0.0", "0.0 at (0, 0)", "passes |"]
    assert f"{copy}: passes on every photo" in table
    sheet = Image.open(tmp_path / "sheets" / "000.png")
    # Four panels of 100 px (rainy and three outputs); under them, crops of max(16, 100 // 2) px.
    assert sheet.size == (400, (round(40 * 100 / 56) + 18) + (50 + 18))


def test_bad_arguments_are_named(tmp_path) -> None:
    weights = tmp_path / "w.safetensors"
    save_weights(tiny_model(), weights)
    with pytest.raises(SystemExit) as single:
        compare_photos.parse_args([str(tmp_path), "--model", TINY, "--weights", str(weights), "--out", "o"])
    assert single.value.code == 2
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="holds no image files"):
        compare_photos.main(
            [str(tmp_path / "empty"), "--model", TINY, "--weights", str(weights), str(weights), "--out", "o"]
        )
    with pytest.raises(SystemExit, match="no such folder"):
        compare_photos.photo_paths(tmp_path / "missing")
