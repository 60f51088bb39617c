"""What every derainzoo architecture shares when it is built: the image-to-image pretrained cfg,
the weights-source policy, and one build function over timm's ``build_model_with_cfg``.

An architecture file imports ``layers`` and this module; weights files are read only through the
model's ``load_pretrained`` hook (timm's ``custom_load``), which this module routes every source to.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from timm.models import build_model_with_cfg, resolve_pretrained_cfg
from timm.models._hub import HF_SAFE_WEIGHTS_NAME
from timm.models._pretrained import PretrainedCfg
from torch import nn

from derainzoo._helpers import BUNDLED_WEIGHTS_DIR, PretrainedWeightsUnavailableError, UnsafeCheckpointError

__all__ = [
    "BUNDLED_WEIGHTS_DIR",
    "build_derainzoo_model",
    "checked_pretrained_cfg",
    "image_to_image_cfg",
]


def image_to_image_cfg(**kwargs: Any) -> dict[str, Any]:
    """A pretrained cfg for an image-to-image model: no classifier, no normalisation, any size,
    weights read by the model's ``load_pretrained`` hook; ``kwargs`` add or override keys."""
    return {
        "num_classes": None,
        "input_size": (3, 256, 256),
        "min_input_size": (3, 1, 1),
        "fixed_input_size": False,
        "mean": (0.0, 0.0, 0.0),
        "std": (1.0, 1.0, 1.0),
        "crop_pct": 1.0,
        "classifier": None,
        "custom_load": "hf",
        "hf_hub_filename": HF_SAFE_WEIGHTS_NAME,
        "license": "apache-2.0",
        "notes": (
            "Image to image: feed whole RGB images in [0, 1], neither resized, cropped nor normalized (any size; "
            "input_size is only a size for benchmarks). timm's resolve_data_config + create_transform would "
            "resize and center-crop: use derainzoo.derain(), or torchvision's ToTensor() alone.",
        ),
        **kwargs,
    }


def checked_pretrained_cfg(variant: str, kwargs: dict[str, Any]) -> PretrainedCfg:
    """Resolve the pretrained cfg as timm would (popping ``pretrained_cfg`` and
    ``pretrained_cfg_overlay`` from ``kwargs``), then route every weights file through the model's
    ``load_pretrained`` hook (timm's ``custom_load``): a ``local-dir:`` folder becomes its
    ``model.safetensors``; a Hub repository must hold a ``.safetensors`` file. Missing weights
    raise here, with what to do instead."""
    cfg = resolve_pretrained_cfg(
        variant,
        pretrained_cfg=kwargs.pop("pretrained_cfg", None),
        pretrained_cfg_overlay=kwargs.pop("pretrained_cfg_overlay", None),
    )
    # timm resets custom_load when an overlay names a new source; files must still take our loader.
    cfg = dataclasses.replace(cfg, custom_load="hf")
    if cfg.source == "local-dir":
        cfg = dataclasses.replace(cfg, source="", file=str(Path(cfg.file) / HF_SAFE_WEIGHTS_NAME))
    label = f"{cfg.architecture}.{cfg.tag}" if cfg.tag else str(cfg.architecture)
    if cfg.hf_hub_id and not (cfg.file or cfg.state_dict):
        filename = cfg.hf_hub_filename or HF_SAFE_WEIGHTS_NAME
        if not filename.endswith(".safetensors"):
            raise UnsafeCheckpointError(f"hf_hub_filename must name a .safetensors file, got {filename!r}")
        cfg = dataclasses.replace(cfg, hf_hub_filename=filename)
    if cfg.file and BUNDLED_WEIGHTS_DIR in Path(cfg.file).parents and not Path(cfg.file).is_file():
        raise PretrainedWeightsUnavailableError(
            f"the weights of {label} are not bundled in this installation ({cfg.file} is missing)"
        )
    if not (cfg.file or cfg.state_dict or cfg.url or cfg.hf_hub_id):
        raise PretrainedWeightsUnavailableError(
            f"no pretrained weights are available for {label}. derainzoo.list_pretrained() lists the models "
            "that have them; to use your own, pass pretrained_cfg_overlay=dict(file='weights.safetensors') "
            "or create_model(name, weights='weights.safetensors')."
        )
    return cfg


def build_derainzoo_model(
    model_cls: type[nn.Module], variant: str, pretrained: bool, num_feature_levels: int, **kwargs: Any
) -> nn.Module:
    """Build ``model_cls`` through timm's ``build_model_with_cfg``, with the checked pretrained cfg.

    Args:
        model_cls: the architecture's class, a [`DerainzooModel`][derainzoo.models._base.DerainzooModel]
            whose ``load_pretrained`` reads weights files.
        variant: the registered name.
        pretrained: load the weights the cfg names.
        num_feature_levels: feature maps ``features_only`` can return (``out_indices`` default).
        **kwargs: constructor arguments, and timm's (``pretrained_cfg_overlay``, ``features_only``...).

    Returns:
        The model.
    """
    pretrained_cfg = checked_pretrained_cfg(variant, kwargs) if pretrained else kwargs.pop("pretrained_cfg", None)
    return build_model_with_cfg(
        model_cls,
        variant,
        pretrained,
        pretrained_cfg=pretrained_cfg,
        pretrained_filter_fn=model_cls.pretrained_filter_fn,
        feature_cfg=dict(feature_cls="getter", out_indices=tuple(range(num_feature_levels))),
        **kwargs,
    )
