"""examples/device_data.py: a paired set packed as residuals and rebuilt pixel for pixel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .. import helpers


def load_script():
    return helpers.load_script("examples/device_data.py")


def write_pairs(root: Path, count: int = 3, seed: int = 0) -> None:
    """Clean images of random texture; rainy ones add sparse bright streaks and, as real sets
    have after compression, a few pixels darker than the clean image (negative residuals)."""
    rng = np.random.default_rng(seed)
    (root / "rain").mkdir(parents=True)
    (root / "norain").mkdir()
    for index in range(count):
        clean = rng.integers(0, 256, size=(40, 56, 3), dtype=np.uint8)
        rainy = clean.astype(np.int16)
        rainy[:, rng.integers(0, 56, size=6)] += 120
        rainy[rng.integers(0, 40, size=5), rng.integers(0, 56, size=5)] -= 30
        Image.fromarray(clean).save(root / "norain" / f"{index:03d}.webp", lossless=True)
        Image.fromarray(rainy.clip(0, 255).astype(np.uint8)).save(root / "rain" / f"{index:03d}.webp", lossless=True)


def test_pack_then_unpack_rebuilds_every_rainy_image_exactly(tmp_path: Path) -> None:
    script = load_script()
    write_pairs(tmp_path / "source")
    script.main(["pack", str(tmp_path / "source"), str(tmp_path / "carried")])
    assert not (tmp_path / "carried" / "rain").exists()
    script.main(["unpack", str(tmp_path / "carried")])
    for original in sorted((tmp_path / "source" / "rain").iterdir()):
        rebuilt = tmp_path / "carried" / "rain" / f"{original.stem}.png"
        np.testing.assert_array_equal(np.asarray(Image.open(rebuilt)), np.asarray(Image.open(original)))
        clean = tmp_path / "carried" / "norain" / original.name
        assert clean.read_bytes() == (tmp_path / "source" / "norain" / original.name).read_bytes()


def test_residuals_of_sparse_rain_are_smaller_than_the_rainy_images(tmp_path: Path) -> None:
    script = load_script()
    write_pairs(tmp_path / "source")
    script.main(["pack", str(tmp_path / "source"), str(tmp_path / "carried")])
    residuals = sum(path.stat().st_size for path in (tmp_path / "carried" / "residual").iterdir())
    rainy = sum(path.stat().st_size for path in (tmp_path / "source" / "rain").iterdir())
    assert residuals < rainy / 3


def test_bad_input_is_named(tmp_path: Path) -> None:
    script = load_script()
    write_pairs(tmp_path / "source")
    (tmp_path / "source" / "rain" / "000.webp").unlink()
    with pytest.raises(SystemExit, match=r"unmatched files in .*: norain/ without rain/: 000.webp"):
        script.main(["pack", str(tmp_path / "source"), str(tmp_path / "carried")])
    (tmp_path / "source" / "rain" / "000.webp").write_bytes(b"not an image")
    with pytest.raises(SystemExit, match="000.webp: not an image Pillow can read"):
        script.main(["pack", str(tmp_path / "source"), str(tmp_path / "carried")])
    with pytest.raises(SystemExit, match="no such folder"):
        script.main(["unpack", str(tmp_path / "nowhere")])
