"""Image files in and out: lossless round trips, JPEG settings, metadata, 16-bit, formats, bad files."""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms, JpegImagePlugin

from derainzoo.image_io import PrecisionLossWarning, folder_images, load_image, output_format, save_image


def photo(height: int = 40, width: int = 56, seed: int = 0) -> Image.Image:
    """Noise-like RGB content: the hardest case for a lossy encoder."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def exif_with(orientation: int | None = None) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "derainzoo test camera"  # Make
    exif[0x0132] = "2026:11:26 10:00:00"  # DateTime
    if orientation is not None:
        exif[0x0112] = orientation
    return exif


@pytest.mark.parametrize("suffix", [".png", ".webp", ".tif", ".bmp"])
def test_lossless_formats_round_trip_exactly(tmp_path, suffix) -> None:
    image = photo()
    path = tmp_path / f"out{suffix}"
    save_image(image, path)
    assert np.array_equal(np.asarray(load_image(path)), np.asarray(image))


def test_jpeg_is_high_quality_with_full_chroma_and_quality_is_settable(tmp_path) -> None:
    image = photo()
    save_image(image, tmp_path / "default.jpg")
    save_image(image, tmp_path / "low.jpg", quality=60)
    written = Image.open(tmp_path / "default.jpg")
    assert JpegImagePlugin.get_sampling(written) == 0  # 4:4:4
    assert (tmp_path / "low.jpg").stat().st_size < (tmp_path / "default.jpg").stat().st_size
    error = np.abs(np.asarray(written, dtype=float) - np.asarray(image, dtype=float)).mean()
    assert error < 8  # quality 95 on noise; Pillow's default (75, 4:2:0) is about three times worse
    save_image(image, tmp_path / "lossy.webp", quality=80)
    assert not np.array_equal(np.asarray(load_image(tmp_path / "lossy.webp")), np.asarray(image))


def test_icc_profile_and_exif_are_kept_and_orientation_reset(tmp_path) -> None:
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    source_path = tmp_path / "source.jpg"
    # Orientation 6: the camera was rotated; the stored pixels are 56 wide, the photo 56 tall.
    photo(40, 56).save(source_path, quality=95, icc_profile=profile, exif=exif_with(orientation=6))
    source = load_image(source_path)
    assert source.size == (40, 56)
    for suffix in (".jpg", ".png", ".webp", ".tif"):
        target = tmp_path / f"out{suffix}"
        save_image(source, target, source=source)
        written = Image.open(target)
        assert written.info.get("icc_profile") == profile, suffix
        exif = written.getexif()
        assert exif.get(0x010F) == "derainzoo test camera" and exif.get(0x0132) == "2026:11:26 10:00:00", suffix
        assert exif.get(0x0112, 1) == 1, suffix  # the pixels are upright already
        assert load_image(target).size == (40, 56), suffix


def test_sixteen_bit_grayscale_is_kept_where_the_format_can_hold_it(tmp_path) -> None:
    values = np.random.default_rng(1).integers(0, 65536, (20, 30), dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    for suffix in (".png", ".tif"):
        save_image(image, tmp_path / f"deep{suffix}")
        assert np.array_equal(np.asarray(load_image(tmp_path / f"deep{suffix}")), values), suffix
    save_image(image, tmp_path / "shallow.webp")
    assert np.abs(np.asarray(load_image(tmp_path / "shallow.webp").convert("L"), dtype=int) - values // 257).max() <= 1


def write_png_16_bit_rgb(path, pixels: np.ndarray) -> None:
    """A 48-bit RGB PNG written by hand (Pillow cannot write one): IHDR, one IDAT, IEND."""
    height, width, _ = pixels.shape
    rows = b"".join(b"\x00" + pixels[row].astype(">u2").tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    )


def test_sixteen_bit_colour_is_read_as_8_bit_and_said_so(tmp_path) -> None:
    pixels = np.random.default_rng(2).integers(0, 65536, (6, 7, 3), dtype=np.uint16)
    write_png_16_bit_rgb(tmp_path / "deep.png", pixels)
    with pytest.warns(PrecisionLossWarning, match=r"deep.png: 16-bit colour is read as 8-bit .* uint16 array"):
        image = load_image(tmp_path / "deep.png")
    assert image.mode == "RGB" and np.abs(np.asarray(image, dtype=int) - pixels // 257).max() <= 1
    # 8-bit colour and 16-bit grayscale load without a word.
    photo().save(tmp_path / "shallow.png")
    Image.fromarray(pixels[..., 0]).save(tmp_path / "grey16.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_image(tmp_path / "shallow.png")
        load_image(tmp_path / "grey16.png")


def test_output_format_follows_the_input_or_the_request() -> None:
    assert output_format("a/photo.webp") == ("WEBP", ".webp")
    assert output_format("photo.JPEG") == ("JPEG", ".JPEG")
    assert output_format("photo.jpeg", "png") == ("PNG", ".png")
    assert output_format("anim.gif") == ("PNG", ".png")  # GIF holds 256 colours: not the result
    assert output_format("scan.tiff", "jpeg") == ("JPEG", ".jpg")
    with pytest.raises(ValueError, match="unknown output format 'heic'"):
        output_format("a.png", "heic")


def test_quality_is_checked() -> None:
    with pytest.raises(ValueError, match=r"\[1, 100\]"):
        save_image(photo(), io.BytesIO(), file_format="JPEG", quality=0)
    with pytest.raises(ValueError, match="PNG is always lossless"):
        save_image(photo(), io.BytesIO(), file_format="PNG", quality=90)


def test_load_image_reports_bad_files(tmp_path) -> None:
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ValueError, match="notes.png: not an image"):
        load_image(tmp_path / "notes.png")
    photo().save(tmp_path / "whole.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "whole.png").read_bytes()[:200])
    with pytest.raises(ValueError, match="cut.png: corrupt or truncated"):
        load_image(tmp_path / "cut.png")
    with pytest.raises(ValueError, match="missing.png: no such image file"):
        load_image(tmp_path / "missing.png")
    assert load_image(tmp_path / "whole.png").format == "PNG"


def test_multi_frame_files_are_refused_with_the_way_out(tmp_path) -> None:
    frames = [Image.new("RGB", (8, 6), color) for color in ("red", "green", "blue")]
    frames[0].save(tmp_path / "rain.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(ValueError, match=r"rain\.gif: holds 3 frames \(GIF\).*extract the frames first"):
        load_image(tmp_path / "rain.gif")
    frames[0].save(tmp_path / "one.gif")  # a single frame is an ordinary image
    assert load_image(tmp_path / "one.gif").size == (8, 6)


def test_folder_images_lists_every_format_pillow_reads_and_sets_the_rest_aside(tmp_path) -> None:
    pixels = Image.new("RGB", (4, 4), "gray")
    for name, image_format in [("b.PNG", "PNG"), ("a.jpg", "JPEG"), ("c.webp", "WEBP"), ("d.tif", "TIFF")]:
        pixels.save(tmp_path / name, format=image_format)
    pixels.save(tmp_path / "e.BMP", format="BMP")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden.png").write_bytes(b"")
    (tmp_path / "nested.png").mkdir()  # a folder, whatever its name

    images, others = folder_images(tmp_path)

    assert [path.name for path in images] == ["a.jpg", "b.PNG", "c.webp", "d.tif", "e.BMP"]
    assert [path.name for path in others] == ["notes.txt"]
    # Every listed image opens.
    assert all(load_image(path).size == (4, 4) for path in images)
