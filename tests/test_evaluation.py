"""evaluate(): per-image scores equal the metrics computed by hand."""

from __future__ import annotations

import pytest
import torch

from derainzoo.data import PairedImageFolder
from derainzoo.evaluation import evaluate
from derainzoo.metrics import psnr_y, quantize, ssim_y

from .helpers import tiny_model, write_paired_folder


@pytest.mark.parametrize("rounding", [True, False])
def test_scores_equal_hand_computed_metrics(tmp_path, rounding: bool) -> None:
    write_paired_folder(tmp_path, count=3)
    model = tiny_model()
    result = evaluate(model, tmp_path, rounding=rounding, progress=False)
    assert result.rounding == rounding
    dataset = PairedImageFolder(tmp_path)
    for (stem, psnr, ssim), index in zip(result.per_image, range(3)):
        rainy, clean, expected_stem = dataset[index]
        with torch.no_grad():
            output = quantize(model(rainy[None]), rounding=rounding)
        assert stem == expected_stem
        assert psnr == pytest.approx(psnr_y(output, clean[None]).item())
        assert ssim == pytest.approx(ssim_y(output, clean[None]).item())
    assert result.psnr == pytest.approx(sum(p for _, p, _ in result.per_image) / 3)


def test_cropped_datasets_are_refused(tmp_path) -> None:
    write_paired_folder(tmp_path, count=1)
    with pytest.raises(ValueError, match="whole images"):
        evaluate(None, PairedImageFolder(tmp_path, crop_size=16), progress=False)
