"""Deraining one image or a batch, from a file, a PIL image, a numpy array or a tensor."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator

import torch
from PIL import Image
from torch import nn

from derainzoo.image_io import ImageLike, load_image, to_batch
from derainzoo.models.routed_derain import RoutedDerain
from derainzoo.scaling import check_scale, choose_scale, derain_at_scale
from derainzoo.self_ensemble import SelfEnsemble, unwrap_self_ensemble
from derainzoo.tiling import DEFAULT_MEMORY_BUDGET, check_memory_budget, check_tile_settings, plan_tiles, run_tiled

__all__ = [
    "DEFAULT_MODEL",
    "PRECISIONS",
    "default_model",
    "derain",
    "eval_mode",
    "native_bf16",
    "prepare_for_inference",
    "resolve_device",
    "resolve_precision",
]

DEFAULT_MODEL = "dual_stage_derain_routed"
"""The architecture [`derain`][derain] and the command use when no model is given, with its
pretrained tag ``rain_mix``: ``dual_stage_derain.rain_mix`` (trained on real and rendered rain from
light to heavy, for real photos) routed by frame to a heavy-rain expert where it removes much rain
([`RoutedDerain`][derainzoo.models.RoutedDerain]); a lightly rained frame is ``rain_mix``'s output
exactly. For the Rain100L benchmark, ``dual_stage_derain.rain100l`` scores higher."""


PRECISIONS = ("fp32", "bf16", "auto")
"""What [`derain`][derain]'s ``precision`` may be: float32, bfloat16 autocast, or ``"auto"`` (bfloat16
where the device computes it natively, see [`resolve_precision`][resolve_precision])."""


@functools.lru_cache(maxsize=4)
def default_model(device: str = "cpu") -> nn.Module:
    """[`DEFAULT_MODEL`][DEFAULT_MODEL] with its bundled pretrained weights, made ready by
    [`prepare_for_inference`][prepare_for_inference] (cached)."""
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


def resolve_device(
    device: str | torch.device | None, model: nn.Module | None = None, name: str = "device"
) -> torch.device:
    """The device to run on: ``device`` when given (checked to be usable here), else the device
    of ``model``'s parameters, else CUDA when available, else the CPU. ``name`` is how error
    messages call the argument (the command line passes ``"--device"``).

    Raises:
        ValueError: ``device`` is not a device name, or names one this machine lacks; the
            message says what to use instead.
    """
    if device is None:
        parameter = None if model is None else next(model.parameters(), None)
        if parameter is not None:
            return parameter.device
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(f"{name} {device}: not a device name; use cpu, cuda or cuda:N") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"{name} {device}: CUDA is not available here (torch {torch.__version__}); use --device cpu"
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"{name} {device}: there are only {torch.cuda.device_count()} CUDA device(s)")
    elif resolved.type != "cpu":
        backend = getattr(torch.backends, resolved.type, None)
        if not (backend is not None and getattr(backend, "is_available", lambda: False)()):
            raise ValueError(f"{name} {device}: the {resolved.type} backend is not available here; use --device cpu")
    return resolved


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively: a CUDA device that supports it, or a CPU with
    AVX512-BF16 or AMX (elsewhere bfloat16 is emulated, and slower than float32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"fp32"`` or ``"bf16"``: ``precision`` itself, or for ``"auto"`` bfloat16 where
    [`native_bf16`][native_bf16] holds.

    bfloat16 autocast keeps the Rain100L score of the bundled models within 0.02 dB and runs the
    default model 1.9 times faster at 481 x 321 on a CPU with AVX512-BF16
    (``benchmarks/bench_backends.py``, 2026-12-01).

    Raises:
        ValueError: ``precision`` is not one of [`PRECISIONS`][PRECISIONS].
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def derain(
    image: ImageLike | str | os.PathLike[str],
    model: nn.Module | None = None,
    *,
    tile_size: int | None = None,
    tile_overlap: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    device: str | torch.device | None = None,
    self_ensemble: bool = False,
    scale: float | str | None = "auto",
    precision: str = "fp32",
    progress: bool = False,
) -> ImageLike | Image.Image:
    """Remove rain from one image (or a batch of tensors) and return it in the same form.

    Memory stays bounded by default: when a whole-image pass would take more than what
    ``memory_budget`` leaves it (see [`estimate_inference_memory`][derainzoo.tiling.estimate_inference_memory]), the image is derained in
    overlapping tiles, blended without seams ([`tiled_forward`][derainzoo.tiling.tiled_forward]).

    Args:
        image: one of
            * a file path (``str`` or ``os.PathLike``): read with [`load_image`][load_image]; the
              result is a PIL image;
            * a PIL image: any mode; EXIF orientation is applied, grayscale comes back
              grayscale (16-bit stays 16-bit) and an alpha channel is kept unchanged;
            * a numpy array ``(H, W, 3)``: ``uint8`` (0..255), ``uint16`` (0..65535) or float
              in ``[0, 1]``; the result has the same dtype;
            * a tensor ``(3, H, W)`` or ``(B, 3, H, W)``, float in ``[0, 1]`` (or ``uint8``);
              the result has the same shape, dtype and device.
        model: a deraining model taking ``(B, 3, H, W)`` in ``[0, 1]``; ``None`` uses
            [`default_model`][default_model]. It is run in eval mode and its mode restored afterwards.
        tile_size: ``None`` (default) chooses: the whole image when it fits ``memory_budget``,
            tiles of [`choose_tile_size`][derainzoo.tiling.choose_tile_size] otherwise; ``0`` always derains the whole image;
            a size of at least 8 derains overlapping tiles of that size.
        tile_overlap: pixels shared by neighbouring tiles (blended with linear ramps); default
            [`default_tile_overlap`][derainzoo.tiling.default_tile_overlap].
        memory_budget: bytes deraining the image may take (default 2 GiB): the float32 input,
            the downscaled copy and the blending buffer are counted first, and the model's pass
            gets the rest, tiled when a whole-image pass would not fit
            ([`choose_tile_size`][derainzoo.tiling.choose_tile_size]). What the process holds
            already (libraries, weights, the caller's image) is not counted; the command line
            counts it.
        device: where to run; defaults to the model's device (CUDA if available for the
            default model).
        self_ensemble: average the model over the eight flips and 90-degree rotations of the
            input ([`SelfEnsemble`][SelfEnsemble]): more accurate, eight times
            slower.
        scale: ``"auto"`` (default) derains an image whose long side exceeds
            [`AUTO_SCALE_LONG_SIDE`][derainzoo.scaling.AUTO_SCALE_LONG_SIDE] (1280 px) brought down to it,
            and smaller images at their own size ([`choose_scale`][derainzoo.scaling.choose_scale]); a number in
            ``(0, 1)`` derains the image downscaled by it; either way only the removed rain is brought
            back to full resolution, with the photo's own detail where the rain has strong structure
            ([`derain_at_scale`][derainzoo.scaling.derain_at_scale]), so the background keeps its detail. ``1``
            derains at full resolution. Tiles, if any, are planned at that scale.
        precision: ``"fp32"`` (default), ``"bf16"`` (the model under bfloat16 autocast; the
            rest of the work stays float32) or ``"auto"`` ([`resolve_precision`][resolve_precision]).
        progress: show a progress bar over tiles.

    Returns:
        The derained image, of the same kind as ``image`` (a PIL image for a path).

    Raises:
        TypeError: unsupported input type or dtype.
        ValueError: unreadable file, wrong shape, NaN/inf values, float values outside
            ``[0, 1]``, empty image, or bad tile, memory budget or scale settings.

    Examples:
        >>> derained = derain("rainy.jpg")  # doctest: +SKIP
        >>> derained.save("derained.png")  # doctest: +SKIP
    """
    check_tile_settings(tile_size, tile_overlap)
    check_memory_budget(memory_budget)
    check_scale(scale)
    if isinstance(image, (str, os.PathLike)):
        image = load_image(image)
    batch, restore = to_batch(image)
    run_device = resolve_device(device, model)
    bf16 = resolve_precision(precision, run_device) == "bf16"
    net = model if model is not None else default_model(str(run_device))
    runner = SelfEnsemble(net) if self_ensemble else net

    batch = batch.to(run_device)
    input_bytes, full_size = batch.numel() * batch.element_size(), batch.shape[-2:]

    def derain_tiled(x: torch.Tensor) -> torch.Tensor:
        # Held beside the pass: the full-resolution input, the downscaled copy the pass runs on
        # (when it is one), the buffer tiles are blended into (x's size again) and, for a router,
        # the light expert's output while the heavy one runs.
        frames_held = (2 if x.shape[-2:] != full_size else 1) + isinstance(unwrap_self_ensemble(net), RoutedDerain)
        held = input_bytes + x.numel() * 4 * frames_held
        pass_budget = max(1, memory_budget - held)
        plan = plan_tiles(net, *x.shape[-2:], tile_size, tile_overlap, pass_budget, batch_size=x.shape[0])
        with torch.autocast(run_device.type, dtype=torch.bfloat16, enabled=bf16):
            return run_tiled(runner, x, plan, progress=progress).float()

    with eval_mode(net), torch.inference_mode():
        output = derain_at_scale(derain_tiled, batch, choose_scale(*batch.shape[-2:], scale))
        # In place unless the model handed back its input (or a view of it), which may be the caller's.
        shares_input = output.untyped_storage().data_ptr() == batch.untyped_storage().data_ptr()
        output = output.clamp(0.0, 1.0) if shares_input else output.clamp_(0.0, 1.0)
    del batch  # the input's full-resolution copy, before restore makes the output's
    return restore(output)
