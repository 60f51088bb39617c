"""Training checkpoints in safetensors: weights, EMA, optimizer and scheduler, for exact resume.

Tensors (model, EMA model, optimizer state, random generator states) go into the safetensors
body under prefixes; everything else (step, epoch, optimizer hyper-parameters, scheduler
state, user extras) goes into the header metadata as JSON. Nothing is pickled.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from derainzoo._helpers import WeightsMismatchError, check_state_dict_fits, read_safetensors, save_weights

__all__ = ["load_training_state", "save_training_state"]

_MODEL, _EMA, _OPTIMIZER, _RNG = "model.", "ema.", "optimizer.", "rng."


def save_training_state(
    path: str | os.PathLike[str],
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    step: int,
    ema_model: nn.Module | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """Write everything needed to continue training exactly where it stopped.

    The file is written next to ``path`` first and renamed, so an interrupted save never leaves
    a broken checkpoint behind (as every [`save_weights`][save_weights] does).

    Args:
        path: destination ``.safetensors`` file.
        model: the trained model (unwrapped from DistributedDataParallel / torch.compile).
        optimizer: its optimizer.
        scheduler: its learning-rate scheduler.
        step: optimisation steps done so far.
        ema_model: the exponential moving average of the weights, if kept.
        extra: JSON-serialisable information to keep (arguments, best score, ...).

    Returns:
        The sha256 of the file.
    """
    tensors = {_MODEL + name: value for name, value in model.state_dict().items()}
    if ema_model is not None:
        tensors.update({_EMA + name: value for name, value in ema_model.state_dict().items()})
    optimizer_state = optimizer.state_dict()
    for index, state in optimizer_state["state"].items():
        for name, value in state.items():
            tensors[f"{_OPTIMIZER}{index}.{name}"] = value if torch.is_tensor(value) else torch.tensor(value)
    tensors[_RNG + "cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors[_RNG + "cuda"] = torch.cuda.get_rng_state()
    metadata = {
        "step": json.dumps(step),
        "param_groups": json.dumps(optimizer_state["param_groups"]),
        "scheduler": json.dumps(scheduler.state_dict()),
        "extra": json.dumps(extra or {}),
    }
    return save_weights(tensors, path, metadata=metadata)


def load_training_state(
    path: str | os.PathLike[str],
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    ema_model: nn.Module | None = None,
) -> tuple[int, dict[str, Any]]:
    """Restore a checkpoint written by [`save_training_state`][save_training_state] (sha256-checked).

    Args:
        path: the checkpoint.
        model: receives the model weights.
        optimizer: receives the optimizer state, if given.
        scheduler: receives the scheduler state, if given.
        ema_model: receives the EMA weights, if given.

    Returns:
        ``(step, extra)``.

    Raises:
        WeightsMismatchError: the checkpoint is for another model or an earlier parameter layout
            (whose optimizer state cannot be matched to today's parameters; the message says how
            to continue from its weights in a new run), or ``ema_model`` is given and the
            checkpoint holds no EMA weights.
    """
    tensors, metadata = read_safetensors(path)

    def take(prefix: str) -> dict[str, torch.Tensor]:
        return {key[len(prefix) :]: value for key, value in tensors.items() if key.startswith(prefix)}

    ema_state = take(_EMA)
    if ema_model is not None and not ema_state:
        raise WeightsMismatchError(
            f"{path} has no '{_EMA}' tensors: it is not a training checkpoint saved with an EMA model"
        )
    model_state = take(_MODEL)
    try:
        check_state_dict_fits(model, model_state, Path(path), strict=True)
    except WeightsMismatchError as error:
        raise WeightsMismatchError(
            f"cannot resume {path}: {error}. A run resumes only into the same model and parameter layout; "
            f"start a new run from its weights instead (train.py --init-weights {Path(path).parent / 'best_ema.safetensors'}), "
            "which maps keys of earlier layouts"
        ) from error
    model.load_state_dict(model_state)
    if ema_model is not None:
        ema_model.load_state_dict(ema_state)
    if optimizer is not None:
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in take(_OPTIMIZER).items():
            index, name = key.split(".", 1)
            state.setdefault(int(index), {})[name] = value
        optimizer.load_state_dict({"state": state, "param_groups": json.loads(metadata["param_groups"])})
    if scheduler is not None:
        scheduler.load_state_dict(json.loads(metadata["scheduler"]))
    rng = take(_RNG)
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])
    return json.loads(metadata["step"]), json.loads(metadata["extra"])
