"""Weights files: safetensors only, written atomically with a ``<file>.sha256`` sidecar and read
back only when they match it (timm keeps the same concern in ``timm/models/_helpers.py``).

Every way of giving a model weights ends in [`load_weights`][load_weights]:
timm resolves the source from the model's pretrained cfg (a bundled file, a file of the user's
through ``create_model(name, weights=PATH)`` or ``pretrained_cfg_overlay=dict(file=PATH)``, a
``local-dir:`` folder or an ``hf-hub:`` repository; see [`create_model`][derainzoo._factory.create_model])
and hands the file to the model's ``load_pretrained`` hook (timm's ``custom_load``), which calls
it. Nothing in derainzoo contacts the network on its own.

Pickle checkpoints (``torch.save``) are refused: unpickling can run arbitrary code.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

__all__ = [
    "BUNDLED_WEIGHTS_DIR",
    "ChecksumMismatchError",
    "PretrainedWeightsUnavailableError",
    "UnsafeCheckpointError",
    "WeightsMismatchError",
    "check_state_dict_fits",
    "file_sha256",
    "load_weights",
    "preview_names",
    "read_safetensors",
    "save_weights",
    "write_checksum",
]

BUNDLED_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
"""Folder of the weights shipped inside the package."""


class PretrainedWeightsUnavailableError(RuntimeError):
    """The requested model has no pretrained weights here."""


class ChecksumMismatchError(ValueError):
    """A weights file does not match its recorded sha256."""


class UnsafeCheckpointError(ValueError):
    """A checkpoint is not a safetensors file (for example a pickle written by ``torch.save``)."""


class WeightsMismatchError(ValueError):
    """A state dict does not fit the model (missing, unexpected or mis-shaped tensors)."""


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def write_checksum(path: str | os.PathLike[str]) -> str:
    """Record the sha256 of ``path`` in ``<path>.sha256``, in ``sha256sum`` format (so
    ``sha256sum -c`` checks it), and return it."""
    path = Path(path)
    checksum = file_sha256(path)
    _checksum_path(path).write_text(f"{checksum}  {path.name}\n")
    return checksum


def save_weights(
    model_or_state_dict: nn.Module | Mapping[str, torch.Tensor],
    path: str | os.PathLike[str],
    *,
    dtype: torch.dtype | None = None,
    metadata: Mapping[str, str] | None = None,
) -> str:
    """Save weights as safetensors and record their sha256 in ``<path>.sha256``.

    The file is written beside ``path`` first and renamed, so an interrupted save never leaves a
    broken file (or a sidecar naming the partial one) behind.

    Args:
        model_or_state_dict: a module (its ``state_dict()`` is saved) or a state dict.
        path: destination file, conventionally ending in ``.safetensors``.
        dtype: cast floating-point tensors to this dtype (``torch.float16`` halves the size).
        metadata: string key/values stored in the safetensors header (e.g. the architecture).

    Returns:
        The hex sha256 of the written file.
    """
    state_dict = model_or_state_dict.state_dict() if isinstance(model_or_state_dict, nn.Module) else model_or_state_dict
    tensors = {
        name: (tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor)
        .detach()
        .cpu()
        .contiguous()
        for name, tensor in state_dict.items()
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    save_file(tensors, str(partial), metadata=dict(metadata or {}))
    partial.replace(path)
    return write_checksum(path)


def _recorded_sha256(path: Path) -> str | None:
    checksum_file = _checksum_path(path)
    if not checksum_file.is_file():
        return None
    return checksum_file.read_text().split()[0].lower()


def _check_is_safetensors(path: Path) -> None:
    with open(path, "rb") as stream:
        head = stream.read(9)
    # A safetensors file opens with its header length (8 bytes, little-endian) and the JSON header;
    # test for that first, because a header length can itself begin with pickle's 0x80 byte.
    if len(head) == 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] <= path.stat().st_size - 8:
        return
    if head[:2] == b"PK" or head[:1] == b"\x80":
        raise UnsafeCheckpointError(
            f"{path} is a pickle checkpoint (torch.save format). derainzoo loads safetensors only, because "
            "unpickling a file can run arbitrary code. If you trust the file, convert it once with "
            "`safetensors.torch.save_file(torch.load(path, weights_only=True), 'weights.safetensors')`."
        )
    raise UnsafeCheckpointError(f"{path} is not a valid safetensors file (bad or truncated header)")


def read_safetensors(
    path: str | os.PathLike[str], *, sha256: str | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file after checking its format and checksum.

    Args:
        path: the safetensors file.
        sha256: expected hex checksum; defaults to the one recorded in ``<path>.sha256`` when
            that file exists.

    Returns:
        ``(tensors, metadata)``: the tensors on the CPU and the header's string metadata.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UnsafeCheckpointError: the file is a pickle, or not a (complete) safetensors file.
        ChecksumMismatchError: the file's sha256 differs from the expected one.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    _check_is_safetensors(path)
    expected = (sha256 or _recorded_sha256(path) or "").lower()
    if expected:
        actual = file_sha256(path)
        if actual != expected:
            raise ChecksumMismatchError(
                f"sha256 of {path} is {actual}, but {expected} was recorded: the file is corrupt or was changed"
            )
    try:
        with safe_open(str(path), framework="pt") as stream:
            metadata = stream.metadata() or {}
        tensors = load_file(str(path))
    except SafetensorError as error:
        raise UnsafeCheckpointError(f"{path} could not be read as safetensors: {error}") from error
    return tensors, metadata


def load_weights(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    strict: bool = True,
    filter_fn: Callable[[dict[str, torch.Tensor], nn.Module], dict[str, torch.Tensor]] | None = None,
) -> nn.Module:
    """Load a safetensors file into ``model``, after checking it with [`read_safetensors`][read_safetensors].

    Args:
        model: the module to fill; tensors are cast to its parameters' dtypes.
        path: the safetensors file.
        sha256: expected hex checksum; defaults to the one recorded in ``<path>.sha256``.
        strict: require exactly the model's keys and shapes.
        filter_fn: maps the file's state dict to the model's layout (timm's
            ``checkpoint_filter_fn(state_dict, model)`` convention), e.g. keys of older versions.

    Returns:
        ``model``, for chaining.

    Raises:
        FileNotFoundError, UnsafeCheckpointError, ChecksumMismatchError: see
            [`read_safetensors`][read_safetensors].
        WeightsMismatchError: the tensors do not fit the model; the message names them.
    """
    state_dict, metadata = read_safetensors(path, sha256=sha256)
    if {"param_groups", "scheduler"} <= set(metadata):  # written by derainzoo.training.save_training_state
        raise WeightsMismatchError(
            f"{path} is a training checkpoint (model, EMA and optimizer state), not a weights file: use "
            "best_ema.safetensors or final_ema.safetensors from the same folder"
        )
    if filter_fn is not None:
        state_dict = filter_fn(state_dict, model)
    check_state_dict_fits(model, state_dict, Path(path), strict)
    model.load_state_dict(state_dict, strict=strict)
    return model


def check_state_dict_fits(model: nn.Module, state_dict: Mapping[str, torch.Tensor], path: Path, strict: bool) -> None:
    """Raise [`WeightsMismatchError`][WeightsMismatchError] naming the missing, unexpected and
    mis-shaped tensors of ``state_dict`` (read from ``path``) for ``model``."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mis_shaped = sorted(
        f"{name}: file {tuple(state_dict[name].shape)} vs model {tuple(expected[name].shape)}"
        for name in set(expected) & set(state_dict)
        if state_dict[name].shape != expected[name].shape
    )
    problems = []
    if strict and missing:
        problems.append(f"missing keys ({len(missing)}): {preview_names(missing)}")
    if strict and unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {preview_names(unexpected)}")
    if mis_shaped:
        problems.append(f"shape mismatches ({len(mis_shaped)}): {preview_names(mis_shaped)}")
    if problems:
        architecture = getattr(model, "pretrained_cfg", {}).get("architecture") or type(model).__name__
        raise WeightsMismatchError(
            f"weights in {path} do not fit {architecture} (are they for another variant?): " + "; ".join(problems)
        )


def preview_names(names: Sequence[str], limit: int = 8) -> str:
    """The first ``limit`` of ``names`` for a message, and how many more there are.

    Examples:
        >>> preview_names(["a", "b", "c"], limit=2)
        'a, b and 1 more'
    """
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
