"""evaluate(): per-image scores equal the metrics computed by hand, or of what derain() returns at a scale."""

from __future__ import annotations

import pytest
import torch

from derainzoo.data import PairedImageFolder
from derainzoo.evaluation import EvaluationResult, ImageScore, evaluate, scores_by_style
from derainzoo.inference import derain
from derainzoo.metrics import psnr_y, quantize, ssim_y

from .helpers import tiny_model, write_paired_folder


@pytest.mark.parametrize("rounding", [True, False])
def test_scores_equal_hand_computed_metrics(tmp_path, rounding: bool) -> None:
    write_paired_folder(tmp_path, count=3)
    model = tiny_model()
    result = evaluate(model, tmp_path, rounding=rounding, progress=False)
    assert result.rounding == rounding
    dataset = PairedImageFolder(tmp_path)
    for (stem, psnr, ssim, mean_error), index in zip(result.per_image, range(3)):
        rainy, clean, expected_stem = dataset[index]
        with torch.no_grad():
            output = quantize(model(rainy[None]), rounding=rounding)
        assert stem == expected_stem
        assert psnr == pytest.approx(psnr_y(output, clean[None]).item())
        assert ssim == pytest.approx(ssim_y(output, clean[None]).item())
        assert mean_error == pytest.approx(float((output - clean[None]).mean()) * 255, abs=1e-4)
    assert result.psnr == pytest.approx(sum(row.psnr for row in result.per_image) / 3)


class Darken(torch.nn.Module):
    """Returns its input ``levels`` of 255 darker: a model whose brightness error is known."""

    def __init__(self, levels: int) -> None:
        super().__init__()
        self.levels = levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.levels / 255


def test_mean_error_is_the_signed_brightness_error_in_levels(tmp_path) -> None:
    write_paired_folder(tmp_path, count=2)
    dataset = PairedImageFolder(tmp_path)
    baseline = evaluate(torch.nn.Identity(), dataset, progress=False).per_image
    darker = evaluate(Darken(5), dataset, progress=False).per_image
    for plain, dark, index in zip(baseline, darker, range(2)):
        rainy, clean, _ = dataset[index]
        # Where the input is under 5 levels the darkened output clips at 0 and loses less.
        expected_shift = -float((rainy * 255).clamp(max=5).mean())
        assert plain.mean_error == pytest.approx(float((rainy - clean).mean()) * 255, abs=1e-3)
        assert dark.mean_error - plain.mean_error == pytest.approx(expected_shift, abs=0.01)
        assert dark.mean_error < plain.mean_error


def test_csv_holds_every_score_and_the_means(tmp_path) -> None:
    write_paired_folder(tmp_path / "data", count=2)
    result = evaluate(Darken(3), tmp_path / "data", progress=False)
    result.write_csv(tmp_path / "scores.csv")
    rows = (tmp_path / "scores.csv").read_text().splitlines()
    assert rows[0] == "image,psnr,ssim,mean_error"
    assert [row.split(",")[0] for row in rows[1:]] == [*(row.stem for row in result.per_image), "mean"]
    mean_error = sum(row.mean_error for row in result.per_image) / 2
    assert result.mean_error == pytest.approx(mean_error)
    assert float(rows[-1].split(",")[3]) == pytest.approx(mean_error, abs=1e-3)
    with pytest.raises(ValueError, match="no per-image scores"):
        _ = EvaluationResult(psnr=30.0, ssim=0.9).mean_error
    assert float(rows[-1].split(",")[1]) == pytest.approx(result.psnr, abs=1e-4)


@pytest.mark.parametrize("scale", [0.5, "auto"])
def test_a_scale_scores_what_derain_returns_at_that_scale(tmp_path, scale: float | str) -> None:
    write_paired_folder(tmp_path, count=2, size=(40, 52))
    model = tiny_model()
    dataset = PairedImageFolder(tmp_path)
    at_scale = evaluate(model, dataset, scale=scale, progress=False).per_image
    for row, index in zip(at_scale, range(2)):
        rainy, clean, _ = dataset[index]
        output = quantize(derain(rainy[None], model, scale=scale, tile_size=0))
        assert row.psnr == pytest.approx(psnr_y(output, clean[None]).item(), abs=1e-4)
    full_size = evaluate(model, dataset, progress=False).per_image
    if scale == "auto":  # a 52-pixel long side is under AUTO_SCALE_LONG_SIDE: its own size
        assert at_scale == full_size
    else:
        assert [row.psnr for row in at_scale] != [row.psnr for row in full_size]


@pytest.mark.parametrize("scale", [0, 1.5, "half"])
def test_a_bad_scale_is_refused_before_any_image(tmp_path, scale: float | str) -> None:
    write_paired_folder(tmp_path, count=1)
    with pytest.raises(ValueError, match="scale must be"):
        evaluate(tiny_model(), tmp_path, scale=scale, progress=False)


def test_cropped_datasets_are_refused(tmp_path) -> None:
    write_paired_folder(tmp_path, count=1)
    with pytest.raises(ValueError, match="whole images"):
        evaluate(None, PairedImageFolder(tmp_path, crop_size=16), progress=False)


def test_scores_by_style_are_the_means_over_the_images_of_each_style() -> None:
    rows = [ImageScore("a", 30.0, 0.9, 2.0), ImageScore("b", 20.0, 0.7, 10.0), ImageScore("c", 40.0, 0.95, -1.0)]
    rain = {"a": {"styles": ["haze"]}, "b": {"styles": ["opaque", "haze"]}, "c": {"styles": []}}
    groups = scores_by_style(EvaluationResult.from_scores(rows), rain)
    # RAIN_STYLES order, then the images without a style; styles no image has are left out.
    assert list(groups) == ["opaque", "haze", "none"]
    assert groups["haze"].psnr == pytest.approx(25.0) and groups["haze"].mean_error == pytest.approx(6.0)
    assert [row.stem for row in groups["opaque"].per_image] == ["b"]
    assert [row.stem for row in groups["none"].per_image] == ["c"]
    with pytest.raises(ValueError, match="no styles for image 'c'"):
        scores_by_style(EvaluationResult.from_scores(rows), {"a": rain["a"], "b": rain["b"]})
