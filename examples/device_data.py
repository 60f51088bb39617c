"""Carry a paired training set to a GPU machine in a third of its size, and rebuild it there bit for bit.

A lent GPU machine often takes a command over a copy of the project limited in size (64 MiB for
the project's own device tool), and Rain100L train (69 MB of lossless WebP) does not fit. Its
rainy images differ from their clean ones only where the streaks are, so each is stored as its
exact residual ``(rainy - clean) mod 256``, mostly zeros, as lossless WebP (35 MB of rainy
images become about 9 MB):

    python examples/device_data.py pack ../shared/data/Rain100L_train .device_data/Rain100L_train
    python examples/device_data.py unpack .device_data/Rain100L_train     # on the GPU machine

``pack`` copies ``clean/`` (``norain/``) as it is and writes ``residual/``; ``unpack`` writes
``rain/`` as PNG, equal pixel for pixel to the original rainy images, so training there reads
the same pairs as here (``PairedImageFolder`` matches files by stem, whatever their format).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from derainzoo.data import PairedImageFolder
from derainzoo.image_io import load_image

RESIDUAL_FOLDER = "residual"


def read_rgb(path: Path) -> np.ndarray:
    """``(H, W, 3)`` uint8 pixels of an image file, decoded as training decodes it."""
    return np.asarray(load_image(path).convert("RGB"))


def image_files(folder: Path) -> dict[str, Path]:
    """``{stem: path}`` of the files in ``folder``."""
    if not folder.is_dir():
        raise SystemExit(f"{folder}: no such folder")
    return {path.stem: path for path in sorted(folder.iterdir()) if path.is_file()}


def pack(source: Path, destination: Path) -> None:
    """Copy ``source/norain`` to ``destination/norain`` and write the residual of every
    ``source/rain`` image to ``destination/residual``; the pairs are matched as training matches
    them ([`PairedImageFolder`][derainzoo.data.PairedImageFolder])."""
    pairs = PairedImageFolder(source).pairs
    shutil.copytree(source / "norain", destination / "norain", dirs_exist_ok=True)
    (destination / RESIDUAL_FOLDER).mkdir(parents=True, exist_ok=True)
    for stem, (rainy_path, clean_path) in tqdm(pairs.items(), desc="pack", unit="pair"):
        rainy, clean = read_rgb(rainy_path), read_rgb(clean_path)
        if rainy.shape != clean.shape:
            raise SystemExit(f"{stem}: rainy {rainy.shape} and clean {clean.shape} differ in size")
        # uint8 arithmetic wraps around: (rainy - clean) mod 256, undone exactly by clean + residual.
        Image.fromarray(rainy - clean).save(
            destination / RESIDUAL_FOLDER / f"{stem}.webp", lossless=True, quality=100, method=6
        )


def unpack(folder: Path) -> None:
    """Write ``folder/rain/STEM.png`` = ``norain + residual (mod 256)`` for every residual."""
    residual_files, clean_files = image_files(folder / RESIDUAL_FOLDER), image_files(folder / "norain")
    missing = sorted(set(residual_files) - set(clean_files))
    if missing:
        raise SystemExit(f"{folder}: residuals without a clean image in norain/: {missing[:10]}")
    (folder / "rain").mkdir(exist_ok=True)
    for stem, residual_path in tqdm(residual_files.items(), desc="unpack", unit="pair"):
        clean = read_rgb(clean_files[stem])
        Image.fromarray(clean + read_rgb(residual_path)).save(folder / "rain" / f"{stem}.png")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack", help="SOURCE (with rain/ and norain/) -> DESTINATION (norain/, residual/)")
    packing.add_argument("source", type=Path)
    packing.add_argument("destination", type=Path)
    unpacking = commands.add_parser("unpack", help="FOLDER (norain/, residual/) -> FOLDER/rain/")
    unpacking.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "pack":
            pack(args.source, args.destination)
        else:
            unpack(args.folder)
    except ValueError as error:  # a bad folder or file, named by the library
        raise SystemExit(str(error)) from error


if __name__ == "__main__":
    main()
