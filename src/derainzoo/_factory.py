"""create_model / list_models / list_pretrained over the timm registry, for derainzoo's models."""

from __future__ import annotations

import difflib
import os
from typing import Any

import timm
from timm.models import get_arch_pretrained_cfgs, model_entrypoint, parse_model_name
from timm.models._factory import load_model_config_from_path
from torch import nn

__all__ = ["create_model", "list_models", "list_pretrained"]


def _is_derainzoo_model(name: str) -> bool:
    """Whether the architecture of ``name`` (``arch`` or ``arch.tag``) was registered by derainzoo:
    its entrypoint lives in a derainzoo module, whichever module registers the next variants."""
    return model_entrypoint(name.split(".", 1)[0]).__module__.startswith("derainzoo.")


def list_models(pattern: str = "*") -> list[str]:
    """Names of derainzoo's architectures matching a shell-style ``pattern``.

    Examples:
        >>> list_models("*tiny")
        ['dual_stage_derain_tiny']
    """
    return [name for name in timm.list_models(pattern) if _is_derainzoo_model(name)]


def list_pretrained(pattern: str = "*") -> list[str]:
    """``architecture.tag`` names that have pretrained weights available in this installation."""
    return [name for name in timm.list_models(pattern, pretrained=True) if _is_derainzoo_model(name)]


def create_model(
    model_name: str,
    pretrained: bool = False,
    *,
    weights: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a derainzoo model, optionally with weights.

    Every source of weights takes one path: timm resolves it from the model's pretrained cfg and
    the model's ``load_pretrained`` hook reads the file with
    [`load_weights`][derainzoo._helpers.load_weights] (safetensors only, checked against its
    ``.sha256``, keys of earlier layouts mapped by the architecture's ``checkpoint_filter_fn``).

    Args:
        model_name: an architecture from [`list_models`][list_models], optionally with a pretrained tag
            (``"dual_stage_derain.rain100l"``); or, as in timm, ``"local-dir:FOLDER"`` (a folder
            written by [`save_pretrained`][derainzoo.hub.save_pretrained]) or ``"hf-hub:user/name"``
            (the same layout on the Hugging Face Hub), whose weights are loaded (``pretrained``
            is implied).
        pretrained: load the weights named by the model's pretrained cfg (bundled file, or
            what ``pretrained_cfg_overlay`` points to).
        weights: a local safetensors file to load instead: the same as
            ``pretrained=True, pretrained_cfg_overlay=dict(file=weights)``.
        **kwargs: passed to the model constructor and to ``timm.create_model``
            (e.g. ``pretrained_cfg_overlay``).

    Returns:
        The model, in training mode as timm returns it; call ``.eval()`` for inference.

    Raises:
        ValueError: ``model_name`` is not a derainzoo model (the message suggests close names),
            its tag is unknown (the message lists the tags), or ``weights`` comes with
            ``pretrained=True`` or a source name.
        FileNotFoundError: a ``local-dir:`` folder without ``config.json``.
        derainzoo._helpers.PretrainedWeightsUnavailableError: ``pretrained=True`` but no weights exist.

    Examples:
        >>> model = create_model("dual_stage_derain_tiny").eval()
    """
    source, model_id = parse_model_name(model_name)
    if weights is not None and (pretrained or source):
        raise ValueError("pass weights=PATH alone, not with pretrained=True or a local-dir:/hf-hub: name")
    if source == "local-dir":
        if not os.path.isfile(os.path.join(model_id, "config.json")):
            raise FileNotFoundError(f"{model_id} holds no config.json: not a folder written by save_pretrained()")
        _check_architecture(load_model_config_from_path(model_id)[1])
    elif source is None:
        _check_architecture(model_name)
    if weights is not None:
        pretrained = True
        kwargs["pretrained_cfg_overlay"] = {**(kwargs.get("pretrained_cfg_overlay") or {}), "file": os.fspath(weights)}
    return timm.create_model(model_name, pretrained=pretrained or source is not None, **kwargs)


def _check_architecture(model_name: str) -> None:
    """Raise a ValueError with close names unless ``model_name`` (``arch`` or ``arch.tag``) is a
    derainzoo architecture with a known tag."""
    architecture = model_name.split(".", 1)[0]
    if architecture not in list_models():
        candidates = list_models() + list_pretrained()
        close = difflib.get_close_matches(model_name, candidates, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(name) for name in close)}?" if close else ""
        raise ValueError(
            f"unknown model {model_name!r}.{hint} Available: {', '.join(list_models())} (derainzoo.list_models())."
        )
    if "." in model_name:
        tags = list(get_arch_pretrained_cfgs(architecture))
        if model_name not in tags:
            raise ValueError(
                f"unknown pretrained tag {model_name.split('.', 1)[1]!r} for {architecture}; "
                + (f"its tags: {', '.join(tags)}" if tags else f"{architecture} has no tagged weights")
            )
