"""Deraining whole images or overlapping tiles, from PIL images, numpy arrays or tensors."""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import Callable, Iterator
from typing import TypeVar

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor, nn
from tqdm.auto import tqdm

from derainzoo.image_io import load_image
from derainzoo.self_ensemble import SelfEnsemble

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "DEFAULT_MODEL",
    "check_tile_settings",
    "choose_tile_size",
    "default_model",
    "derain",
    "estimate_inference_memory",
    "eval_mode",
    "load_image",
    "prepare_for_inference",
    "tiled_forward",
]

DEFAULT_MODEL = "dual_stage_derain"
"""The architecture [`derain`][derainzoo.inference.derain] and the command use when no model is
given, with its default pretrained tag ``rain_mix``: trained on real and rendered rain from light
to heavy, for real photos. For the Rain100L benchmark, ``dual_stage_derain_tiny`` (tag
``rain100l``) scores higher."""

DEFAULT_MEMORY_BUDGET = 2 * 1024**3
"""Bytes a whole-image forward pass may take before [`derain`][derainzoo.inference.derain] switches to tiles (2 GiB)."""

FALLBACK_BYTES_PER_PIXEL = 4096
"""Peak memory per pixel assumed for a model that does not state its own
(``inference_bytes_per_pixel``): about that of the largest derainzoo variant."""

ImageLike = TypeVar("ImageLike", Image.Image, np.ndarray, Tensor)


@functools.lru_cache(maxsize=4)
def default_model(device: str = "cpu") -> nn.Module:
    """[`DEFAULT_MODEL`][derainzoo.inference.DEFAULT_MODEL] with its bundled pretrained weights, made ready by
    [`prepare_for_inference`][derainzoo.inference.prepare_for_inference] (cached)."""
    from derainzoo._factory import create_model

    return prepare_for_inference(create_model(DEFAULT_MODEL, pretrained=True), device)


def prepare_for_inference(model: nn.Module, device: str | torch.device) -> nn.Module:
    """Put ``model`` in eval mode on ``device`` in channels-last memory layout (in place).

    Channels-last makes the convolutions, most of the model's time, faster on the CPU: about 25%
    less time for the tiny model at 481x321 in a side-by-side run (see ``docs/benchmarks.md``).

    Returns:
        ``model`` itself.
    """
    return model.eval().to(device, memory_format=torch.channels_last)


@contextlib.contextmanager
def eval_mode(model: nn.Module | None) -> Iterator[None]:
    """Run the ``with`` block with ``model`` in eval mode and give it back in the mode it had
    (also when the block raises). ``None`` does nothing, for callers whose model is optional."""
    if model is None:
        yield
        return
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _resolve_device(device: str | torch.device | None, model: nn.Module | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    if model is not None:
        parameter = next(model.parameters(), None)
        if parameter is not None:
            return parameter.device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def derain(
    image: ImageLike | str | os.PathLike[str],
    model: nn.Module | None = None,
    *,
    tile_size: int | None = None,
    tile_overlap: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    device: str | torch.device | None = None,
    self_ensemble: bool = False,
    progress: bool = False,
) -> ImageLike | Image.Image:
    """Remove rain from one image (or a batch of tensors) and return it in the same form.

    Memory stays bounded by default: when a whole-image pass would take more than
    ``memory_budget`` (see [`estimate_inference_memory`][derainzoo.inference.estimate_inference_memory]), the image is derained in
    overlapping tiles, blended without seams ([`tiled_forward`][derainzoo.inference.tiled_forward]).

    Args:
        image: one of
            * a file path (``str`` or ``os.PathLike``): read with [`load_image`][derainzoo.image_io.load_image]; the
              result is a PIL image;
            * a PIL image: any mode; EXIF orientation is applied, grayscale comes back
              grayscale (16-bit stays 16-bit) and an alpha channel is kept unchanged;
            * a numpy array ``(H, W, 3)``: ``uint8`` (0..255), ``uint16`` (0..65535) or float
              in ``[0, 1]``; the result has the same dtype;
            * a tensor ``(3, H, W)`` or ``(B, 3, H, W)``, float in ``[0, 1]`` (or ``uint8``);
              the result has the same shape, dtype and device.
        model: a deraining model taking ``(B, 3, H, W)`` in ``[0, 1]``; ``None`` uses
            [`default_model`][derainzoo.inference.default_model]. It is run in eval mode and its mode restored afterwards.
        tile_size: ``None`` (default) chooses: the whole image when it fits ``memory_budget``,
            tiles of [`choose_tile_size`][derainzoo.inference.choose_tile_size] otherwise; ``0`` always derains the whole image;
            a size of at least 8 derains overlapping tiles of that size.
        tile_overlap: pixels shared by neighbouring tiles (blended with linear ramps); default
            ``min(32, tile_size // 4)``.
        memory_budget: bytes a whole-image pass may take before tiling (default 2 GiB).
        device: where to run; defaults to the model's device (CUDA if available for the
            default model).
        self_ensemble: average the model over the eight flips and 90-degree rotations of the
            input ([`SelfEnsemble`][derainzoo.self_ensemble.SelfEnsemble]): more accurate, eight times
            slower.
        progress: show a progress bar over tiles.

    Returns:
        The derained image, of the same kind as ``image`` (a PIL image for a path).

    Raises:
        TypeError: unsupported input type or dtype.
        ValueError: unreadable file, wrong shape, NaN/inf values, float values outside
            ``[0, 1]``, empty image, or bad tile settings.

    Examples:
        >>> derained = derain("rainy.jpg")  # doctest: +SKIP
        >>> derained.save("derained.png")  # doctest: +SKIP
    """
    tile_overlap = check_tile_settings(tile_size, tile_overlap)
    if isinstance(image, (str, os.PathLike)):
        image = load_image(image)
    batch, restore = _to_batch(image)
    run_device = _resolve_device(device, model)
    net = model if model is not None else default_model(str(run_device))
    runner = SelfEnsemble(net) if self_ensemble else net
    if tile_size is None:
        tile_size = choose_tile_size(net, *batch.shape[-2:], memory_budget, batch_size=batch.shape[0])
        check_tile_settings(tile_size, tile_overlap)
    with eval_mode(net), torch.inference_mode():
        inputs = batch.to(run_device)
        if tile_size == 0:
            output = runner(inputs)
        else:
            overlap = min(32, tile_size // 4) if tile_overlap is None else tile_overlap
            output = tiled_forward(runner, inputs, tile_size, overlap, progress=progress)
    return restore(output.clamp(0.0, 1.0))


def check_tile_settings(
    tile_size: int | None, tile_overlap: int | None, names: tuple[str, str] = ("tile_size", "tile_overlap")
) -> int | None:
    """Check the tile arguments of [`derain`][derainzoo.inference.derain] before any work; returns ``tile_overlap``.

    Args:
        tile_size: ``None``, 0 or a tile side of at least 8.
        tile_overlap: ``None`` or an integer in ``[0, tile_size / 2]``.
        names: how the caller calls the two arguments in error messages (the command line
            passes ``("--tile", "--tile-overlap")``).

    Raises:
        ValueError: a bad value; the message names the argument the caller set.
    """
    size_name, overlap_name = names
    if tile_size is not None and (
        not isinstance(tile_size, int) or isinstance(tile_size, bool) or (tile_size != 0 and tile_size < 8)
    ):
        raise ValueError(f"{size_name} must be 0 (whole image) or an integer of at least 8 pixels, got {tile_size!r}")
    if tile_overlap is not None:
        if not isinstance(tile_overlap, int) or tile_overlap < 0:
            raise ValueError(f"{overlap_name} must be a non-negative integer, got {tile_overlap!r}")
        if tile_size and tile_overlap > tile_size // 2:
            raise ValueError(f"{overlap_name} {tile_overlap} is more than half of {size_name} {tile_size}")
    return tile_overlap


def estimate_inference_memory(model: nn.Module, height: int, width: int, batch_size: int = 1) -> int:
    """Bytes of peak memory a whole-image forward pass of ``model`` takes, estimated.

    A model may state its own figure as ``model.inference_bytes_per_pixel`` (the derainzoo
    models do, from measurements); a [`SelfEnsemble`][derainzoo.self_ensemble.SelfEnsemble] uses its model's (it runs one pass
    at a time); any other model is assumed to need [`FALLBACK_BYTES_PER_PIXEL`][derainzoo.inference.FALLBACK_BYTES_PER_PIXEL].

    Returns:
        ``bytes_per_pixel * batch_size * height * width``.
    """
    inner = model.model if isinstance(model, SelfEnsemble) else model
    bytes_per_pixel = getattr(inner, "inference_bytes_per_pixel", FALLBACK_BYTES_PER_PIXEL)
    return int(bytes_per_pixel * batch_size * height * width)


def choose_tile_size(
    model: nn.Module, height: int, width: int, memory_budget: int = DEFAULT_MEMORY_BUDGET, batch_size: int = 1
) -> int:
    """0 (the whole image) when a whole-image pass fits ``memory_budget``, else the largest tile
    side, a multiple of 64 (at least 64), whose pass fits it.

    Raises:
        ValueError: ``memory_budget`` is not positive.
    """
    if memory_budget <= 0:
        raise ValueError(f"memory_budget must be a positive number of bytes, got {memory_budget}")
    if estimate_inference_memory(model, height, width, batch_size) <= memory_budget:
        return 0
    per_pixel = estimate_inference_memory(model, 1, 1, batch_size)
    return max(64, int(math.sqrt(memory_budget / per_pixel)) // 64 * 64)


def tiled_forward(
    model: Callable[[Tensor], Tensor],
    x: Tensor,
    tile_size: int,
    tile_overlap: int = 32,
    *,
    progress: bool = False,
) -> Tensor:
    """Run ``model`` on overlapping tiles of ``x`` and blend the results.

    Each tile's output is weighted by a separable ramp that rises linearly over the overlap
    with each neighbour (and is flat at the image border), so seams are blended away; a single
    tile covering the image gives exactly ``model(x)``.

    Args:
        model: maps ``(B, C, h, w)`` to ``(B, C', h, w)``.
        x: ``(B, C, H, W)`` input.
        tile_size: tile side in pixels (clipped to the image size).
        tile_overlap: overlap of neighbouring tiles; ``0 <= tile_overlap < tile_size``.
        progress: show a progress bar over tiles.

    Returns:
        ``(B, C', H, W)`` blended output.
    """
    if not tile_size:
        raise ValueError(f"tile_size must be an integer of at least 8 pixels, got {tile_size!r}")
    check_tile_settings(tile_size, tile_overlap)
    height, width = x.shape[-2:]
    rows = _tile_starts(height, tile_size, tile_overlap)
    cols = _tile_starts(width, tile_size, tile_overlap)
    tile_h, tile_w = min(tile_size, height), min(tile_size, width)
    output: Tensor | None = None
    weight_sum = torch.zeros(1, 1, height, width, device=x.device, dtype=torch.float32)
    positions = [(top, left) for top in rows for left in cols]
    for top, left in tqdm(positions, desc="tiles", disable=not progress, leave=False):
        tile_out = model(x[..., top : top + tile_h, left : left + tile_w]).float()
        if output is None:
            output = torch.zeros(*tile_out.shape[:2], height, width, device=x.device, dtype=torch.float32)
        weight = (
            _ramp(top, tile_h, height, tile_overlap, x.device)[:, None]
            * _ramp(left, tile_w, width, tile_overlap, x.device)[None, :]
        )
        output[..., top : top + tile_h, left : left + tile_w] += tile_out * weight
        weight_sum[..., top : top + tile_h, left : left + tile_w] += weight
    assert output is not None  # there is always at least one tile
    return (output / weight_sum).to(x.dtype)


def _tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def _ramp(start: int, size: int, total: int, overlap: int, device: torch.device) -> Tensor:
    """1-D blending weights of a tile: rising over the overlap on sides that have a neighbour."""
    weight = torch.ones(size, device=device)
    if overlap == 0:
        return weight
    rise = torch.arange(1, overlap + 1, device=device, dtype=torch.float32) / (overlap + 1)
    if start > 0:
        weight[:overlap] = rise
    if start + size < total:
        weight[-overlap:] = torch.minimum(weight[-overlap:], rise.flip(0))
    return weight


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


def _to_batch(image: ImageLike) -> tuple[Tensor, Callable[[Tensor], ImageLike]]:
    """Convert ``image`` to a ``(B, 3, H, W)`` float32 batch in [0, 1] and a function that
    converts a model output back to the caller's form."""
    if isinstance(image, Image.Image):
        batch, restore = _pil_to_batch(image)
    elif isinstance(image, np.ndarray):
        batch, restore = _array_to_batch(image)
    elif isinstance(image, Tensor):
        batch, restore = _tensor_to_batch(image)
    else:
        raise TypeError(
            f"image must be a PIL.Image.Image, a numpy array (H, W, 3) or a tensor (B, 3, H, W), got {type(image).__name__}"
        )
    # Integer and PIL inputs are in range by construction; the check costs one pass over the pixels.
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
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    batch = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]

    def restore(output: Tensor) -> Image.Image:
        if sixteen_bit:  # 16-bit grayscale stays 16-bit (the model's luma, as for 8-bit grayscale)
            luma = output[0].cpu().numpy().transpose(1, 2, 0) @ np.array([0.299, 0.587, 0.114])
            return Image.fromarray((luma * 65535.0).round().astype(np.uint16))
        pixels = (output[0].permute(1, 2, 0).cpu().numpy() * 255.0).round().astype(np.uint8)
        result = Image.fromarray(pixels, mode="RGB")
        if grayscale:
            result = result.convert("L")
        if alpha is not None:
            result = result.convert("LA" if grayscale else "RGBA")
            result.putalpha(alpha.convert("L"))
        return result

    return batch, restore


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
            return (output * 255.0).round().to(torch.uint8).to(tensor.device)
        return output.to(device=tensor.device, dtype=tensor.dtype)

    return batch, restore
