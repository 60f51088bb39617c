"""Reading and writing image files without silent loss: lossless where the format allows it,
high-quality JPEG, ICC profile and EXIF carried over."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["OUTPUT_FORMATS", "check_quality", "load_image", "output_format", "save_image"]

OUTPUT_FORMATS: dict[str, str] = {"png": "PNG", "webp": "WEBP", "jpeg": "JPEG", "tiff": "TIFF", "bmp": "BMP"}
"""Formats [`save_image`][derainzoo.image_io.save_image] writes, by the name the command line takes (``--format``)."""

_SUFFIXES = {"PNG": ".png", "WEBP": ".webp", "JPEG": ".jpg", "TIFF": ".tif", "BMP": ".bmp"}
_EXIF_ORIENTATION = 0x0112
DEFAULT_JPEG_QUALITY = 95


def load_image(path: str | os.PathLike[str]) -> Image.Image:
    """Open an image file, apply its EXIF orientation and decode it fully.

    ``image.format`` keeps the file's format, for [`save_image`][derainzoo.image_io.save_image].

    Raises:
        ValueError: the file is missing, not an image, or corrupt; the message names it.
    """
    try:
        with Image.open(path) as opened:
            file_format = opened.format
            image = ImageOps.exif_transpose(opened)
            image.load()
    except (FileNotFoundError, IsADirectoryError) as error:
        raise ValueError(f"{path}: no such image file") from error
    except UnidentifiedImageError as error:
        raise ValueError(f"{path}: not an image Pillow can read") from error
    except (OSError, SyntaxError) as error:
        raise ValueError(f"{path}: corrupt or truncated image ({error})") from error
    image.format = file_format
    return image


def output_format(input_path: str | os.PathLike[str], requested: str | None = None) -> tuple[str, str]:
    """The Pillow format and file suffix to write the result of ``input_path`` in.

    Args:
        input_path: the input file; its suffix decides the format when none is requested.
        requested: a key of [`OUTPUT_FORMATS`][derainzoo.image_io.OUTPUT_FORMATS], or ``None`` for the input's own format.
            Formats that cannot hold an RGB result (GIF and other palette formats) and
            unknown suffixes give PNG.

    Returns:
        ``(pillow_format, suffix)``, e.g. ``("WEBP", ".webp")``; the suffix is the input's own
        when the format is unchanged (``.jpeg`` stays ``.jpeg``).

    Raises:
        ValueError: ``requested`` is not a key of [`OUTPUT_FORMATS`][derainzoo.image_io.OUTPUT_FORMATS].
    """
    suffix = Path(input_path).suffix
    if requested is not None:
        if requested.lower() not in OUTPUT_FORMATS:
            raise ValueError(f"unknown output format {requested!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
        pillow_format = OUTPUT_FORMATS[requested.lower()]
    else:
        pillow_format = Image.registered_extensions().get(suffix.lower(), "PNG")
        if pillow_format not in _SUFFIXES:
            pillow_format = "PNG"
    if Image.registered_extensions().get(suffix.lower()) == pillow_format:
        return pillow_format, suffix
    return pillow_format, _SUFFIXES[pillow_format]


def check_quality(
    quality: int, file_format: str | None = None, quality_name: str = "quality", format_label: str | None = None
) -> None:
    """Check a JPEG/WebP ``quality`` before any work.

    Args:
        quality: 1-100.
        file_format: the Pillow format it is for; ``None`` when not known yet (only the range
            is checked).
        quality_name: how the caller calls the quality in messages (the command line: ``--quality``).
        format_label: how the caller calls the format in messages; default ``file_format``.

    Raises:
        ValueError: out of range, or given for a format that is always lossless.
    """
    if not 1 <= quality <= 100:
        raise ValueError(f"{quality_name} must be in [1, 100], got {quality}")
    if file_format is not None and file_format not in ("JPEG", "WEBP"):
        raise ValueError(
            f"{quality_name} applies to JPEG and WebP only; {format_label or file_format} is always lossless"
        )


def save_image(
    image: Image.Image,
    path: str | os.PathLike[str],
    *,
    file_format: str | None = None,
    quality: int | None = None,
    source: Image.Image | None = None,
) -> None:
    """Write ``image`` without losing more than the format must.

    * PNG, TIFF and BMP are lossless; WebP is written **lossless** unless a ``quality`` is given;
      JPEG at ``quality`` (default 95) with full-resolution chroma (4:4:4).
    * The ICC colour profile and the EXIF data of ``source`` (the input image) are carried
      over where the format stores them, with the EXIF orientation reset to "normal", since
      [`load_image`][derainzoo.image_io.load_image] already turned the pixels upright.
    * 16-bit grayscale (Pillow mode ``I;16``) is kept in PNG and TIFF.

    Args:
        image: the image to write.
        path: the file to write.
        file_format: a Pillow format name (``"PNG"``, ``"WEBP"``, ...); default from the suffix.
        quality: 1-100 for JPEG and lossy WebP; ``None`` for the defaults above.
        source: the image ``image`` was made from, whose metadata to keep.

    Raises:
        ValueError: ``quality`` out of range or given for a lossless-only format.
        OSError: the file cannot be written.
    """
    file_format = (file_format or Image.registered_extensions().get(Path(path).suffix.lower(), "PNG")).upper()
    if quality is not None:
        check_quality(quality, file_format)
    options: dict[str, object] = {}
    if file_format == "JPEG":
        options = {"quality": quality or DEFAULT_JPEG_QUALITY, "subsampling": 0}
    elif file_format == "WEBP":
        options = {"quality": quality} if quality is not None else {"lossless": True, "quality": 100, "method": 4}
    if image.mode.startswith("I;16") and file_format not in ("PNG", "TIFF"):
        image = image.point(lambda value: value / 257).convert("L")  # 8-bit is all these formats hold
    if file_format == "JPEG" and image.mode in ("RGBA", "LA"):
        image = image.convert(image.mode[:-1])  # JPEG has no alpha channel
    if source is not None:
        icc_profile = source.info.get("icc_profile")
        if icc_profile and file_format in ("PNG", "WEBP", "JPEG", "TIFF"):
            options["icc_profile"] = icc_profile
        exif = source.getexif()
        if len(exif) and file_format in ("PNG", "WEBP", "JPEG", "TIFF"):
            if _EXIF_ORIENTATION in exif:
                exif[_EXIF_ORIENTATION] = 1
            options["exif"] = exif.tobytes()
    image.save(path, format=file_format, **options)
