"""PairedImageFolder: pairing by stem, loud failures, deterministic crops."""

from __future__ import annotations

import pytest
import torch

from derainzoo.data import PairedImageFolder

from ..helpers import write_paired_folder


def test_pairs_by_stem_and_returns_unit_range_tensors(tmp_path) -> None:
    write_paired_folder(tmp_path, count=3)
    dataset = PairedImageFolder(tmp_path)
    assert dataset.stems == ["000", "001", "002"] and len(dataset) == 3
    rainy, clean, stem = dataset[1]
    assert stem == "001" and rainy.shape == clean.shape == (3, 40, 48)
    assert rainy.dtype == torch.float32 and 0 <= rainy.min() and rainy.max() <= 1
    assert (rainy - clean).abs().sum() > 0


def test_extensions_may_differ(tmp_path) -> None:
    write_paired_folder(tmp_path, count=2)
    source = tmp_path / "norain" / "001.png"
    from PIL import Image

    Image.open(source).save(tmp_path / "norain" / "001.bmp")
    source.unlink()
    assert len(PairedImageFolder(tmp_path)) == 2


def test_unmatched_files_are_named(tmp_path) -> None:
    write_paired_folder(tmp_path, count=3)
    (tmp_path / "norain" / "002.png").unlink()
    (tmp_path / "norain" / "009.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"rain/ without norain/: 002.png; norain/ without rain/: 009.png"):
        PairedImageFolder(tmp_path)


def test_unreadable_and_mis_sized_pairs_are_named(tmp_path) -> None:
    write_paired_folder(tmp_path, count=2)
    (tmp_path / "rain" / "001.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="001.png: not an image"):
        PairedImageFolder(tmp_path, cache=True)
    write_paired_folder(tmp_path / "sizes", count=1)
    from PIL import Image

    Image.new("RGB", (10, 10)).save(tmp_path / "sizes" / "norain" / "000.png")
    with pytest.raises(ValueError, match="pair '000' has different sizes"):
        PairedImageFolder(tmp_path / "sizes")[0]


def test_missing_folders_and_empty_sets(tmp_path) -> None:
    with pytest.raises(ValueError, match="not a folder"):
        PairedImageFolder(tmp_path)
    (tmp_path / "rain").mkdir()
    (tmp_path / "norain").mkdir()
    with pytest.raises(ValueError, match="no image pairs"):
        PairedImageFolder(tmp_path)


def test_stem_selection(tmp_path) -> None:
    write_paired_folder(tmp_path, count=4)
    assert PairedImageFolder(tmp_path, stems=["003", "001"]).stems == ["003", "001"]
    with pytest.raises(ValueError, match="stems not found.*777"):
        PairedImageFolder(tmp_path, stems=["777"])


def test_crops_are_deterministic_per_epoch_and_index(tmp_path) -> None:
    write_paired_folder(tmp_path, count=2)
    dataset = PairedImageFolder(tmp_path, crop_size=16, augment=True, samples_per_epoch=10, seed=3)
    cached = PairedImageFolder(tmp_path, crop_size=16, augment=True, samples_per_epoch=10, seed=3, cache=True)
    assert len(dataset) == 10
    first = dataset[7]
    assert first[0].shape == (3, 16, 16)
    assert torch.equal(first[0], cached[7][0]) and torch.equal(first[1], cached[7][1])
    draws = {dataset[7][0].sum().item() for _ in range(3)}
    assert len(draws) == 1
    dataset.set_epoch(1)
    assert not torch.equal(dataset[7][0], first[0])


def test_crop_larger_than_image_is_refused(tmp_path) -> None:
    write_paired_folder(tmp_path, count=1)
    with pytest.raises(ValueError, match="smaller than the crop size 64"):
        PairedImageFolder(tmp_path, crop_size=64)[0]


def test_real_training_set_pairs(rain100l_train) -> None:
    dataset = PairedImageFolder(rain100l_train, crop_size=64)
    assert len(dataset) == 200
    rainy, clean, stem = dataset[0]
    assert stem == "001" and rainy.shape == (3, 64, 64)
