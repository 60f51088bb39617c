"""PairedImageFolder: rainy / clean image pairs from ``rain/`` and ``norain/`` folders."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from derainzoo.data.transforms import paired_augment, paired_random_crop
from derainzoo.image_io import load_image

__all__ = ["PairedImageFolder", "image_to_tensor"]


def image_to_tensor(image: Image.Image) -> Tensor:
    """``(3, H, W)`` uint8 tensor of an image converted to RGB."""
    return torch.from_numpy(np.array(image.convert("RGB"), dtype=np.uint8)).permute(2, 0, 1).contiguous()


class PairedImageFolder(Dataset):
    """Rainy/clean pairs: ``root/rain/<stem>.<ext>`` with ``root/norain/<stem>.<ext>``.

    Files are matched by stem (extensions may differ) and may be in any format Pillow reads.
    A stem present on one side only, two files with one stem, a pair of different sizes or an
    unreadable file raises ``ValueError`` naming the files; nothing is skipped silently.

    Args:
        root: folder holding ``rain/`` and ``norain/``.
        crop_size: if set, every item is a random ``crop_size`` square crop of its pair
            (images smaller than that are refused at load time).
        augment: random horizontal/vertical flips and 90-degree rotations (same for both images).
        cache: decode every image once, at construction, and keep the uint8 pixels in memory.
        samples_per_epoch: length of the dataset; defaults to the number of pairs. Larger
            values draw several random crops per pair in one epoch.
        seed: base seed of the random crops and augmentations. Item ``i`` of epoch ``e`` is the
            same wherever and whenever it is loaded (worker processes, resumed runs), which
            [`set_epoch`][PairedImageFolder.set_epoch] makes vary between epochs.
        stems: use only these pairs (e.g. a validation split); unknown stems are an error.

    Items:
        ``(rainy, clean, stem)``: two ``(3, h, w)`` float32 tensors in ``[0, 1]`` and the stem.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        crop_size: int | None = None,
        augment: bool = False,
        cache: bool = False,
        samples_per_epoch: int | None = None,
        seed: int = 0,
        stems: Sequence[str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.pairs = _match_pairs(self.root)
        if stems is not None:
            unknown = sorted(set(stems) - set(self.pairs))
            if unknown:
                raise ValueError(f"stems not found in {self.root}: {', '.join(unknown)}")
            self.pairs = {stem: self.pairs[stem] for stem in stems}
        self.stems = list(self.pairs)
        self.crop_size = crop_size
        self.augment = augment
        self.samples_per_epoch = samples_per_epoch or len(self.stems)
        self.seed = seed
        self.epoch = 0
        self._cache = [self._load_pair(stem) for stem in self.stems] if cache else None

    def set_epoch(self, epoch: int) -> None:
        """Draw different crops and augmentations in each epoch."""
        self.epoch = epoch

    def check_whole_images(self, caller: str) -> None:
        """Raise a ValueError naming ``caller`` unless this folder gives whole images (no crop,
        no augmentation), as scoring and writing fixed sets need."""
        if self.crop_size is not None or self.augment:
            raise ValueError(f"{caller} needs whole images: build the PairedImageFolder without crop_size and augment")

    def __len__(self) -> int:
        return self.samples_per_epoch

    def _load_pair(self, stem: str) -> tuple[Tensor, Tensor]:
        rain_path, clean_path = self.pairs[stem]
        rainy, clean = image_to_tensor(load_image(rain_path)), image_to_tensor(load_image(clean_path))
        if rainy.shape != clean.shape:
            raise ValueError(
                f"pair {stem!r} has different sizes: {rain_path} is {tuple(rainy.shape[1:])}, "
                f"{clean_path} is {tuple(clean.shape[1:])}"
            )
        return rainy, clean

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, str]:
        pair_index = index % len(self.stems)
        stem = self.stems[pair_index]
        rainy, clean = self._cache[pair_index] if self._cache is not None else self._load_pair(stem)
        generator = torch.Generator().manual_seed(hash((self.seed, self.epoch, index)) % 2**63)
        if self.crop_size is not None:
            rainy, clean = paired_random_crop(rainy, clean, self.crop_size, generator, name=stem)
        if self.augment:
            rainy, clean = paired_augment(rainy, clean, generator)
        return rainy.float() / 255.0, clean.float() / 255.0, stem


def _image_files(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder (expected rain/ and norain/ under the dataset root)")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.stem in files:
            raise ValueError(
                f"two files share the stem {path.stem!r} in {folder}: {files[path.stem].name}, {path.name}"
            )
        files[path.stem] = path
    return files


def _match_pairs(root: Path) -> dict[str, tuple[Path, Path]]:
    rain, clean = _image_files(root / "rain"), _image_files(root / "norain")
    only_rain, only_clean = sorted(set(rain) - set(clean)), sorted(set(clean) - set(rain))
    if only_rain or only_clean:
        raise ValueError(
            f"unmatched files in {root}: "
            + "; ".join(
                part
                for part in (
                    f"rain/ without norain/: {', '.join(rain[s].name for s in only_rain)}" if only_rain else "",
                    f"norain/ without rain/: {', '.join(clean[s].name for s in only_clean)}" if only_clean else "",
                )
                if part
            )
        )
    if not rain:
        raise ValueError(f"no image pairs in {root}")
    return {stem: (rain[stem], clean[stem]) for stem in sorted(rain)}
