"""Pretrained weights: safetensors files only, checked against recorded sha256 sums.

timm resolves where a model's weights come from (its pretrained cfg) and derainzoo's models
read them through their ``load_pretrained`` hook (timm's ``custom_load``), which calls
[`load_weights`][derainzoo.hub.load_weights]; so ``timm.create_model`` and
``derainzoo.create_model`` load the same way:

* ``file``: a local safetensors file, either bundled in the package (``derainzoo/weights``)
  or given by the user with ``pretrained_cfg_overlay=dict(file=PATH)``;
* ``local-dir:FOLDER`` / ``hf-hub:user/name``: the layout of [`save_pretrained`][derainzoo.hub.save_pretrained]
  (``model.safetensors``), on disk or on the Hugging Face Hub, only when the user names one.
  Nothing in derainzoo contacts the network on its own;
* ``state_dict``: tensors already in memory, loaded by timm.

A ``<file>.sha256`` next to a weights file records its checksum; when it exists the file must
match it. Pickle checkpoints (``torch.save``) are refused: unpickling can run arbitrary code.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

__all__ = [
    "BUNDLED_WEIGHTS_DIR",
    "DEFAULT_HUB_FILENAME",
    "ChecksumMismatchError",
    "PretrainedWeightsUnavailableError",
    "UnsafeCheckpointError",
    "WeightsMismatchError",
    "check_state_dict_fits",
    "file_sha256",
    "from_pretrained",
    "load_weights",
    "push_to_hub",
    "read_safetensors",
    "save_pretrained",
    "save_weights",
]

BUNDLED_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
"""Folder of the weights shipped inside the package."""

DEFAULT_HUB_FILENAME = "model.safetensors"
"""Name of the weights file in the Hub layout of [`save_pretrained`][derainzoo.hub.save_pretrained] (timm's)."""


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


def save_weights(
    model_or_state_dict: nn.Module | Mapping[str, torch.Tensor],
    path: str | os.PathLike[str],
    *,
    dtype: torch.dtype | None = None,
    metadata: Mapping[str, str] | None = None,
) -> str:
    """Save weights as safetensors and record their sha256 in ``<path>.sha256``.

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
    save_file(tensors, str(path), metadata=dict(metadata or {}))
    checksum = file_sha256(path)
    _checksum_path(path).write_text(f"{checksum}  {path.name}\n")
    return checksum


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
    """Load a safetensors file into ``model``, after checking it with [`read_safetensors`][derainzoo.hub.read_safetensors].

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
            [`read_safetensors`][derainzoo.hub.read_safetensors].
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
    """Raise [`WeightsMismatchError`][derainzoo.hub.WeightsMismatchError] naming the missing, unexpected and
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
        problems.append(f"missing keys ({len(missing)}): {_preview(missing)}")
    if strict and unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_preview(unexpected)}")
    if mis_shaped:
        problems.append(f"shape mismatches ({len(mis_shaped)}): {_preview(mis_shaped)}")
    if problems:
        architecture = getattr(model, "pretrained_cfg", {}).get("architecture") or type(model).__name__
        raise WeightsMismatchError(
            f"weights in {path} do not fit {architecture} (are they for another variant?): " + "; ".join(problems)
        )


def _preview(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def save_pretrained(
    model: nn.Module,
    folder: str | os.PathLike[str],
    *,
    model_card: str | None = None,
    model_args: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` in timm's Hugging Face Hub layout: ``config.json``, ``model.safetensors``
    (with its ``.sha256``) and a ``README.md`` model card.

    The folder loads back with [`from_pretrained`][derainzoo.hub.from_pretrained], with
    ``timm.create_model("local-dir:FOLDER")``, or, once uploaded
    ([`push_to_hub`][derainzoo.hub.push_to_hub]), from the Hub.

    Args:
        model: a derainzoo model built by ``create_model`` (it carries its ``pretrained_cfg``).
        folder: destination; created if missing.
        model_card: Markdown for ``README.md``; default: a short card naming the architecture,
            its size and how to load it.
        model_args: constructor arguments that differ from the registered architecture's
            (stored in ``config.json`` so the model is rebuilt the same).

    Returns:
        ``folder`` as a ``pathlib.Path``.
    """
    from timm.models import save_for_hf

    folder = Path(folder)
    save_for_hf(model, str(folder), model_args=dict(model_args or {}), safe_serialization=True)
    weights = folder / DEFAULT_HUB_FILENAME
    _checksum_path(weights).write_text(f"{file_sha256(weights)}  {weights.name}\n")
    architecture = model.pretrained_cfg.get("architecture", type(model).__name__)
    if model_card is None:
        parameters = sum(parameter.numel() for parameter in model.parameters())
        model_card = (
            f"---\nlibrary_name: timm\nlicense: {model.pretrained_cfg.get('license', 'apache-2.0')}\n"
            "tags: [image-to-image, deraining, derainzoo]\n---\n\n"
            f"# {architecture}\n\nA derainzoo deraining model ({parameters / 1e6:.2f} M parameters): RGB in [0, 1] "
            "in, the derained image out, any size.\n\n```python\nimport derainzoo\n\n"
            f'model = derainzoo.hub.from_pretrained("{folder.name}").eval()\n```\n'
        )
    (folder / "README.md").write_text(model_card)
    return folder


def from_pretrained(source: str | os.PathLike[str], **kwargs: Any) -> nn.Module:
    """Build a model from a folder written by [`save_pretrained`][derainzoo.hub.save_pretrained],
    or from a Hugging Face Hub repository id in the same layout.

    The weights go through [`load_weights`][derainzoo.hub.load_weights] (with the architecture's
    ``checkpoint_filter_fn``): safetensors only, checked against ``model.safetensors.sha256`` where
    it exists.

    Args:
        source: a local folder, or a Hub repository id (``"user/model"``), which is downloaded
            (and cached) by ``huggingface_hub``.
        **kwargs: passed to the model constructor (overriding ``config.json``'s ``model_args``).

    Returns:
        The model with its weights, in training mode as timm returns it.

    Raises:
        FileNotFoundError: the folder has no ``config.json`` or no ``model.safetensors``.
    """
    from derainzoo._factory import create_model

    folder = Path(source)
    if not folder.is_dir():
        from huggingface_hub import hf_hub_download

        folder = Path(hf_hub_download(str(source), "config.json")).parent
        hf_hub_download(str(source), DEFAULT_HUB_FILENAME)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{folder} holds no config.json: not a folder written by save_pretrained()")
    config = json.loads(config_path.read_text())
    return create_model(
        config["architecture"], weights=folder / DEFAULT_HUB_FILENAME, **{**config.get("model_args", {}), **kwargs}
    )


def push_to_hub(
    model: nn.Module,
    repo_id: str,
    *,
    model_card: str | None = None,
    commit_message: str = "Add model",
    private: bool = False,
    token: str | None = None,
) -> str:
    """Upload ``model`` to a Hugging Face Hub repository in the layout of
    [`save_pretrained`][derainzoo.hub.save_pretrained] (creating the repository if needed).

    Args:
        model: the model to upload.
        repo_id: ``"user/name"``.
        model_card: Markdown for ``README.md`` (see ``save_pretrained``).
        commit_message: the commit's message.
        private: create the repository private.
        token: a Hub token; default: the one ``huggingface-cli login`` stored.

    Returns:
        The URL of the commit.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        save_pretrained(model, folder, model_card=model_card)
        commit = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message)
    return str(getattr(commit, "commit_url", commit))
