"""Tiled inference: the tile settings, the automatic choice from a memory budget, and the
seamless blending of overlapping tiles. [`derain`][derainzoo.inference.derain] and
[`evaluate`][derainzoo.evaluation.evaluate] both plan and run their passes here."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from derainzoo.models.routed_derain import RoutedDerain
from derainzoo.self_ensemble import SelfEnsemble, unwrap_self_ensemble

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "FALLBACK_BYTES_PER_PIXEL",
    "MIN_AUTO_TILE_SIZE",
    "TilePlan",
    "check_memory_budget",
    "check_tile_settings",
    "choose_tile_size",
    "default_tile_overlap",
    "estimate_inference_memory",
    "plan_tiles",
    "run_tiled",
    "tiled_forward",
]

DEFAULT_MEMORY_BUDGET = 2 * 1024**3
"""Bytes a whole-image forward pass may take before [`plan_tiles`][plan_tiles] switches to tiles (2 GiB)."""

FALLBACK_BYTES_PER_PIXEL = 4096
"""Peak memory per pixel assumed for a model that does not state its own
(``inference_bytes_per_pixel``): about that of the largest derainzoo variant."""

MIN_AUTO_TILE_SIZE = 256
"""The smallest tile [`choose_tile_size`][choose_tile_size] picks, whatever the
budget. derainzoo's attentions gather statistics over the whole input, so a tile needs context:
on Rain100L test images 001-006 (481x321, bundled ``dual_stage_derain_tiny.rain100l``, default
overlap) tiles of 32 / 48 / 64 / 128 / 256 pixels scored -2.77 / -1.65 / -0.93 / -0.40 / +0.05 dB
against whole images, and a wider overlap barely helped (-2.46 at 32 with 16 pixels)."""


class TilePlan(NamedTuple):
    """How to run one pass: ``tile_size`` 0 is the whole image, else tiles of that side sharing
    ``tile_overlap`` pixels with their neighbours."""

    tile_size: int
    tile_overlap: int


def default_tile_overlap(tile_size: int) -> int:
    """The overlap used when none is given: ``min(32, tile_size // 4)``, so any valid tile size
    has a valid overlap (at most half the tile).

    Examples:
        >>> [default_tile_overlap(size) for size in (8, 32, 256)]
        [2, 8, 32]
    """
    return min(32, tile_size // 4)


def check_tile_settings(
    tile_size: int | None, tile_overlap: int | None, names: tuple[str, str] = ("tile_size", "tile_overlap")
) -> int | None:
    """Check tile arguments before any work; returns ``tile_overlap``.

    Args:
        tile_size: ``None`` (choose from the memory budget), 0 (whole image) or a tile side of
            at least 8.
        tile_overlap: ``None`` (the default overlap) or an integer in ``[0, tile_size / 2]``.
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
    models do, from measurements); a [`SelfEnsemble`][SelfEnsemble] uses its model's (it runs one pass
    at a time), a [`RoutedDerain`][derainzoo.models.RoutedDerain] its larger expert's (one expert
    runs at a time); any other model is assumed to need
    [`FALLBACK_BYTES_PER_PIXEL`][FALLBACK_BYTES_PER_PIXEL].

    Returns:
        ``bytes_per_pixel * batch_size * height * width``.
    """
    inner = unwrap_self_ensemble(model)
    if isinstance(inner, RoutedDerain):
        return max(estimate_inference_memory(expert, height, width, batch_size) for expert in inner.experts)
    bytes_per_pixel = getattr(inner, "inference_bytes_per_pixel", FALLBACK_BYTES_PER_PIXEL)
    return int(bytes_per_pixel * batch_size * height * width)


def check_memory_budget(memory_budget: int) -> None:
    """Check a ``memory_budget`` in bytes before any work.

    Raises:
        ValueError: it is not positive.
    """
    if memory_budget <= 0:
        raise ValueError(f"memory_budget must be a positive number of bytes, got {memory_budget}")


def choose_tile_size(
    model: nn.Module, height: int, width: int, memory_budget: int = DEFAULT_MEMORY_BUDGET, batch_size: int = 1
) -> int:
    """0 (the whole image) when a whole-image pass fits ``memory_budget``, else the largest tile
    side, a multiple of 64, whose pass fits it, but never below
    [`MIN_AUTO_TILE_SIZE`][MIN_AUTO_TILE_SIZE]: below that, tiles cost more
    quality than a budget that small is worth (the pass then takes more than the budget).

    Raises:
        ValueError: ``memory_budget`` is not positive.
    """
    check_memory_budget(memory_budget)
    if estimate_inference_memory(model, height, width, batch_size) <= memory_budget:
        return 0
    per_pixel = estimate_inference_memory(model, 1, 1, batch_size)
    return max(MIN_AUTO_TILE_SIZE, int(math.sqrt(memory_budget / per_pixel)) // 64 * 64)


def plan_tiles(
    model: nn.Module,
    height: int,
    width: int,
    tile_size: int | None = None,
    tile_overlap: int | None = None,
    memory_budget: int | None = DEFAULT_MEMORY_BUDGET,
    batch_size: int = 1,
) -> TilePlan:
    """The pass for one image from settings already checked by
    [`check_tile_settings`][check_tile_settings]: ``tile_size=None`` is chosen by
    [`choose_tile_size`][choose_tile_size] from ``memory_budget`` (``None``: never
    tile), and a missing overlap is [`default_tile_overlap`][default_tile_overlap].

    Raises:
        ValueError: ``memory_budget`` is not positive, or a given ``tile_overlap`` is more than half
            of the tile size chosen for this image.
    """
    if tile_size is None:
        tile_size = 0 if memory_budget is None else choose_tile_size(model, height, width, memory_budget, batch_size)
        if tile_size and tile_overlap is not None and tile_overlap > tile_size // 2:
            raise ValueError(
                f"tile_overlap {tile_overlap} is more than half of the tile size {tile_size} chosen for a "
                f"{height}x{width} image from the memory budget; pass a smaller overlap or a tile size"
            )
    overlap = default_tile_overlap(tile_size) if tile_overlap is None else tile_overlap
    return TilePlan(tile_size, overlap if tile_size else 0)


def run_tiled(model: Callable[[Tensor], Tensor], x: Tensor, plan: TilePlan, *, progress: bool = False) -> Tensor:
    """Run ``model`` on ``x`` as ``plan`` says: whole, or in blended tiles.

    A [`RoutedDerain`][derainzoo.models.RoutedDerain] (alone or in a
    [`SelfEnsemble`][SelfEnsemble]) routes whole frames: each expert's pass is run as ``plan``
    says (self-ensembled when the router is), so every tile of a frame takes the same route.
    After a tiled pass, a model (or expert) that holds a graph runtime's arena hands it back.

    Args:
        model: maps ``(B, C, h, w)`` to ``(B, C', h, w)``.
        x: ``(B, C, H, W)`` input.
        plan: from [`plan_tiles`][plan_tiles].
        progress: show a progress bar over tiles.

    Returns:
        ``(B, C', H, W)``.
    """
    inner = unwrap_self_ensemble(model)
    if isinstance(inner, RoutedDerain):

        def run_expert(expert: nn.Module, frames: Tensor) -> Tensor:
            runner = expert if model is inner else SelfEnsemble(expert, model.num_transforms)
            return run_tiled(runner, frames, plan, progress=progress)

        return inner.route_frames(x, run_expert)
    if not plan.tile_size:
        return model(x)
    derained = _blend_tiles(model, x, plan.tile_size, plan.tile_overlap, progress)
    if hasattr(inner, "release_memory"):
        # A graph runtime's arena, sized for a tile, is not held while the caller blends and
        # upsamples, nor while a router's other expert runs.
        inner.release_memory()
    return derained


def tiled_forward(
    model: Callable[[Tensor], Tensor],
    x: Tensor,
    tile_size: int,
    tile_overlap: int | None = None,
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
        tile_size: tile side in pixels, at least 8 (clipped to the image size).
        tile_overlap: overlap of neighbouring tiles, ``0 <= tile_overlap <= tile_size / 2``;
            default [`default_tile_overlap`][default_tile_overlap].
        progress: show a progress bar over tiles.

    Returns:
        ``(B, C', H, W)`` blended output.
    """
    if not tile_size:
        raise ValueError(f"tile_size must be an integer of at least 8 pixels, got {tile_size!r}")
    check_tile_settings(tile_size, tile_overlap)
    overlap = default_tile_overlap(tile_size) if tile_overlap is None else tile_overlap
    return _blend_tiles(model, x, tile_size, overlap, progress)


def _blend_tiles(
    model: Callable[[Tensor], Tensor], x: Tensor, tile_size: int, tile_overlap: int, progress: bool
) -> Tensor:
    height, width = x.shape[-2:]
    rows = _tile_starts(height, tile_size, tile_overlap)
    cols = _tile_starts(width, tile_size, tile_overlap)
    tile_h, tile_w = min(tile_size, height), min(tile_size, width)
    output: Tensor | None = None
    weight_sum = torch.zeros(1, 1, height, width, device=x.device, dtype=torch.float32)
    positions = [(top, left) for top in rows for left in cols]
    for top, left in tqdm(positions, desc="tiles", unit="tile", disable=not progress, leave=False):
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
