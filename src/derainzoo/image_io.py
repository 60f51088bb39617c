"""Images in and out: reading and writing files without silent loss (lossless where the format
allows it, high-quality JPEG, ICC profile and EXIF carried over), and converting PIL images, numpy
arrays and tensors to a model's input and back."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, TypeVar

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from derainzoo.layers.color import rgb_to_luma

__all__ = [
    "LOSSLESS_ENCODER_OPTIONS",
    "OUTPUT_FORMATS",
    "ImageLike",
    "PrecisionLossWarning",
    "FolderImages",
    "check_quality",
    "folder_images",
    "load_image",
    "output_format",
    "read_image",
    "save_image",
    "to_batch",
]


class PrecisionLossWarning(UserWarning):
    """An image file holds more precision than derainzoo can read or write: 16-bit colour
    (48- or 64-bit RGB/RGBA PNG and TIFF), which Pillow decodes to 8 bits per channel.
    To keep 16 bits, read the file yourself (e.g. with ``tifffile`` or OpenCV) and pass
    [`derain`][derainzoo.inference.derain] a ``uint16`` array: the result is ``uint16`` too."""


ImageLike = TypeVar("ImageLike", Image.Image, np.ndarray, Tensor)
"""The kinds of image [`derainzoo.derain`][derainzoo.inference.derain] takes and gives back."""

OUTPUT_FORMATS: dict[str, str] = {"png": "PNG", "webp": "WEBP", "jpeg": "JPEG", "tiff": "TIFF", "bmp": "BMP"}
"""Formats [`save_image`][save_image] writes, by the name the command line takes (``--format``)."""

_SUFFIXES = {"PNG": ".png", "WEBP": ".webp", "JPEG": ".jpg", "TIFF": ".tif", "BMP": ".bmp"}
_EXIF_ORIENTATION = 0x0112
DEFAULT_JPEG_QUALITY = 95

LOSSLESS_ENCODER_OPTIONS: dict[str, dict[str, object]] = {
    "PNG": {"compress_level": 1},
    "WEBP": {"lossless": True, "quality": 50, "method": 0},
}
"""Encoder effort of the lossless formats [`save_image`][save_image] writes: the fastest settings,
since more effort hardly shrinks a photo. On Rain100L images (481 x 321, 2-core AMD EPYC,
2026-12-01) PNG level 1 took 13 ms against 51 ms at Pillow's default level 6, for files 1 % larger;
lossless WebP at method 0 took 9 ms against 966 ms at quality 100, method 4, for files 9 % larger.
In the command line the encoder runs beside the model, so its time is taken from the model."""


class FolderImages(NamedTuple):
    """The files of a folder, sorted by name, split by whether they are images.

    Attributes:
        images: files whose suffix is an image format Pillow reads (``.png``, ``.jpg``, ``.webp``,
            ``.tif``, ``.bmp``, ...), in any letter case.
        others: the other files; hidden files (``.DS_Store``) are in neither list.
    """

    images: list[Path]
    others: list[Path]


def folder_images(folder: str | os.PathLike[str]) -> FolderImages:
    """List the image files of ``folder`` (not its subfolders), as the command line and the
    scripts that derain a folder of photos take them.

    Args:
        folder: a folder that exists.

    Returns:
        [`FolderImages`][FolderImages]: the images and the other files, each sorted by name.
    """
    image_suffixes = Image.registered_extensions()
    files = sorted(path for path in Path(folder).iterdir() if path.is_file() and not path.name.startswith("."))
    return FolderImages(
        images=[path for path in files if path.suffix.lower() in image_suffixes],
        others=[path for path in files if path.suffix.lower() not in image_suffixes],
    )


def load_image(path: str | os.PathLike[str]) -> Image.Image:
    """Open an image file, apply its EXIF orientation and decode it fully.

    ``image.format`` keeps the file's format, for [`save_image`][save_image].

    Warns:
        PrecisionLossWarning: the file holds 16-bit colour, which Pillow reads as 8-bit
            (16-bit grayscale is read and written at 16 bits).

    Raises:
        ValueError: the file is missing, not an image, corrupt, or holds several frames (an
            animation or a multi-page file, which would otherwise lose all but its first frame);
            the message names it.
    """
    image, notes = read_image(path)
    for note in notes:
        warnings.warn(note, PrecisionLossWarning, stacklevel=2)
    return image


def read_image(path: str | os.PathLike[str]) -> tuple[Image.Image, list[str]]:
    """[`load_image`][load_image] without warnings: the image and what it would warn, as messages.

    It touches no global state, so it may run in a thread of its own (the command line decodes
    the next image while the model works on the current one).

    Raises:
        ValueError: as [`load_image`][load_image].
    """
    notes = []
    try:
        with Image.open(path) as opened:
            file_format = opened.format
            frames = getattr(opened, "n_frames", 1)
            if frames > 1:
                raise ValueError(
                    f"{path}: holds {frames} frames ({file_format}); derainzoo derains single images, so "
                    "extract the frames first (e.g. with Pillow's ImageSequence) and derain each"
                )
            if _holds_16_bit_colour(opened):
                notes.append(
                    f"{path}: 16-bit colour is read as 8-bit (Pillow's limit), so the result is 8-bit; pass "
                    "derain() a uint16 array to keep 16 bits"
                )
            image = ImageOps.exif_transpose(opened)
            image.load()
    except (FileNotFoundError, IsADirectoryError) as error:
        raise ValueError(f"{path}: no such image file") from error
    except UnidentifiedImageError as error:
        raise ValueError(f"{path}: not an image Pillow can read") from error
    except (OSError, SyntaxError) as error:
        raise ValueError(f"{path}: corrupt or truncated image ({error})") from error
    image.format = file_format
    return image, notes


def _holds_16_bit_colour(opened: Image.Image) -> bool:
    """Whether a not yet decoded RGB(A) file stores 16 bits per channel (its raw mode says so)."""
    if opened.mode not in ("RGB", "RGBA") or not opened.tile:
        return False
    args = opened.tile[0].args
    raw_mode = args if isinstance(args, str) else (args[0] if args else "")
    return isinstance(raw_mode, str) and ";16" in raw_mode


def output_format(input_path: str | os.PathLike[str], requested: str | None = None) -> tuple[str, str]:
    """The Pillow format and file suffix to write the result of ``input_path`` in.

    Args:
        input_path: the input file; its suffix decides the format when none is requested.
        requested: a key of [`OUTPUT_FORMATS`][OUTPUT_FORMATS], or ``None`` for the input's own format.
            Formats that cannot hold an RGB result (GIF and other palette formats) and
            unknown suffixes give PNG.

    Returns:
        ``(pillow_format, suffix)``, e.g. ``("WEBP", ".webp")``; the suffix is the input's own
            when the format is unchanged (``.jpeg`` stays ``.jpeg``).

    Raises:
        ValueError: ``requested`` is not a key of [`OUTPUT_FORMATS`][OUTPUT_FORMATS].
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
      [`load_image`][load_image] already turned the pixels upright.
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
    options: dict[str, object] = dict(LOSSLESS_ENCODER_OPTIONS.get(file_format, {}))
    if file_format == "JPEG":
        options = {"quality": quality or DEFAULT_JPEG_QUALITY, "subsampling": 0}
    elif file_format == "WEBP" and quality is not None:
        options = {"quality": quality}
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


def _check_values(batch: Tensor, what: str) -> None:
    if batch.numel() == 0:
        raise ValueError(f"{what} is empty (shape {tuple(batch.shape)})")
    if not torch.isfinite(batch).all():
        raise ValueError(f"{what} contains NaN or infinite values")
    low, high = batch.min().item(), batch.max().item()
    if low < -1e-3 or high > 1 + 1e-3:
        raise ValueError(
            f"{what} must hold values in [0, 1] for a float image, got [{low:.4g}, {high:.4g}]"
            + (" (divide 0..255 data by 255)" if high > 1.5 else "")
        )


def to_batch(image: ImageLike) -> tuple[Tensor, Callable[[Tensor], ImageLike]]:
    """Convert ``image`` to a model's input and say how to convert the output back.

    Args:
        image: a PIL image (any mode; EXIF orientation applied; grayscale, 16-bit and alpha
            remembered), a numpy array ``(H, W, 3)`` (``uint8``, ``uint16`` or float in
            ``[0, 1]``) or a tensor ``(3, H, W)`` / ``(B, 3, H, W)`` (float in ``[0, 1]`` or ``uint8``).

    Returns:
        ``(batch, restore)``: a ``(B, 3, H, W)`` float32 batch in ``[0, 1]``, and a function that
            turns a ``(B, 3, H, W)`` output in ``[0, 1]`` into the caller's kind, dtype and device.

    Raises:
        TypeError: an unsupported type or dtype.
        ValueError: a wrong shape, an empty image, NaN/inf, or float values outside ``[0, 1]``.
    """
    # Only float data (a PIL "F" image, a float array or tensor) may hold NaN or values outside
    # [0, 1]; integer data is in range by construction, so most photos skip the check's passes.
    if isinstance(image, Image.Image):
        batch, restore = _pil_to_batch(image)
        is_float = image.mode == "F"
    elif isinstance(image, np.ndarray):
        batch, restore = _array_to_batch(image)
        is_float = bool(np.issubdtype(image.dtype, np.floating))
    elif isinstance(image, Tensor):
        batch, restore = _tensor_to_batch(image)
        is_float = image.is_floating_point()
    else:
        raise TypeError(
            f"image must be a PIL.Image.Image, a numpy array (H, W, 3) or a tensor (B, 3, H, W), got {type(image).__name__}"
        )
    if is_float:
        _check_values(batch, "image")
    return batch, restore


def _pil_to_batch(image: Image.Image) -> tuple[Tensor, Callable[[Tensor], Image.Image]]:
    image = ImageOps.exif_transpose(image)
    if image.mode in ("P", "PA"):
        has_alpha = image.mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    alpha = image.getchannel("A") if image.mode in ("RGBA", "LA") else None
    grayscale = image.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
    sixteen_bit = False
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        plane = np.asarray(image, dtype=np.float64)
        sixteen_bit = image.mode.startswith("I;16") or (image.mode == "I" and plane.max() > 255)
        scale = 65535.0 if sixteen_bit else (1.0 if image.mode == "F" else 255.0)
        rgb = np.repeat((plane / scale).clip(0, 1)[..., None], 3, axis=2).astype(np.float32)
    else:
        # One float32 array (a 12 MP photo's is 144 MB): the division casts as it goes.
        rgb = np.divide(np.asarray(image if image.mode == "RGB" else image.convert("RGB")), 255, dtype=np.float32)
    batch = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]

    def restore(output: Tensor) -> Image.Image:
        if sixteen_bit:  # 16-bit grayscale stays 16-bit (the model's luma, as for 8-bit grayscale)
            luma = rgb_to_luma(output[:1].float())[0, 0].cpu().numpy()
            return Image.fromarray((luma * 65535.0).round().astype(np.uint16))
        result = Image.fromarray(_to_uint8(output[0]).permute(1, 2, 0).contiguous().cpu().numpy(), mode="RGB")
        if grayscale:
            result = result.convert("L")
        if alpha is not None:
            result = result.convert("LA" if grayscale else "RGBA")
            result.putalpha(alpha.convert("L"))
        return result

    return batch, restore


def _to_uint8(image: Tensor) -> Tensor:
    """Float in ``[0, 1]`` to uint8 of the same shape, rounded, through one float temporary."""
    return image.mul(255.0).round_().to(torch.uint8)


def _array_to_batch(array: np.ndarray) -> tuple[Tensor, Callable[[Tensor], np.ndarray]]:
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"a numpy image must have shape (H, W, 3), got {array.shape}")
    dtype = array.dtype
    if dtype == np.uint8 or dtype == np.uint16:
        scale = float(np.iinfo(dtype).max)
        batch = torch.from_numpy(array.astype(np.float32) / scale).permute(2, 0, 1)[None]
    elif np.issubdtype(dtype, np.floating):
        scale = None
        batch = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1)[None]
    else:
        raise TypeError(f"a numpy image must be uint8, uint16 or float in [0, 1], got dtype {dtype}")

    def restore(output: Tensor) -> np.ndarray:
        pixels = output[0].permute(1, 2, 0).cpu().numpy()
        if scale is None:
            return pixels.astype(dtype)
        return (pixels * scale).round().astype(dtype)

    return batch, restore


def _tensor_to_batch(tensor: Tensor) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
    if tensor.ndim not in (3, 4) or tensor.shape[-3] != 3:
        raise ValueError(f"a tensor image must have shape (3, H, W) or (B, 3, H, W), got {tuple(tensor.shape)}")
    batch = tensor if tensor.ndim == 4 else tensor[None]
    if tensor.dtype == torch.uint8:
        batch = batch.float() / 255.0
    elif tensor.is_floating_point():
        batch = batch.float()
    else:
        raise TypeError(f"a tensor image must be float in [0, 1] or uint8, got dtype {tensor.dtype}")

    def restore(output: Tensor) -> Tensor:
        output = output if tensor.ndim == 4 else output[0]
        if tensor.dtype == torch.uint8:
            return _to_uint8(output).to(tensor.device)
        return output.to(device=tensor.device, dtype=tensor.dtype)

    return batch, restore
