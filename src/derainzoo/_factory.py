"""create_model / list_models / list_pretrained over the timm registry, for derainzoo's models."""

from __future__ import annotations

import difflib
import os
import sys
from typing import Any

import timm
from timm.models import get_arch_pretrained_cfgs, model_entrypoint
from torch import nn

from derainzoo.hub import load_weights

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

    Args:
        model_name: an architecture from [`list_models`][derainzoo._factory.list_models], optionally with a pretrained tag
            (``"dual_stage_derain.rain100l"``).
        pretrained: load the weights named by the model's pretrained cfg (bundled file, or
            what ``pretrained_cfg_overlay`` points to).
        weights: a local safetensors file to load instead (checked against ``<file>.sha256``
            when that exists; keys of earlier layouts are mapped by the architecture's
            ``checkpoint_filter_fn``).
        **kwargs: passed to the model constructor and to ``timm.create_model``
            (e.g. ``pretrained_cfg_overlay``).

    Returns:
        The model, in training mode as timm returns it; call ``.eval()`` for inference.

    Raises:
        ValueError: ``model_name`` is not a derainzoo model (the message suggests close names),
            or its tag is unknown (the message lists the tags).
        derainzoo.hub.PretrainedWeightsUnavailableError: ``pretrained=True`` but no weights exist.

    Examples:
        >>> model = create_model("dual_stage_derain_tiny").eval()
    """
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
    if weights is not None and pretrained:
        raise ValueError("pass either pretrained=True or weights=PATH, not both")
    model = timm.create_model(model_name, pretrained=pretrained, **kwargs)
    if weights is not None:
        load_weights(model, weights, filter_fn=_checkpoint_filter_fn(architecture))
    return model


def _checkpoint_filter_fn(architecture: str) -> Any:
    """The ``checkpoint_filter_fn`` of the module that registers ``architecture`` (timm's
    convention for mapping older checkpoints), or ``None``."""
    return getattr(sys.modules[model_entrypoint(architecture).__module__], "checkpoint_filter_fn", None)
