"""Input checks shared by the building blocks and the models."""

from __future__ import annotations

from torch import Tensor

__all__ = ["check_feature_map", "check_image_batch"]


def check_feature_map(x: Tensor, channels: int | None = None, name: str = "x") -> None:
    """Raise a clear error unless ``x`` is a floating-point ``(B, C, H, W)`` tensor.

    Args:
        x: the value to check.
        channels: the required ``C``, or ``None`` for any number of channels.
        name: how the error messages call ``x``.

    Raises:
        TypeError: ``x`` is not a tensor, or not floating-point.
        ValueError: ``x`` is not 4-D or has the wrong number of channels.
    """
    expected = f"(B, {'C' if channels is None else channels}, H, W)"
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {expected}, got {type(x).__name__}")
    if x.ndim != 4 or (channels is not None and x.shape[1] != channels):
        raise ValueError(f"{name} must have shape {expected}, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")


def check_image_batch(x: Tensor, channels: int) -> None:
    """Raise a clear error unless ``x`` is a non-empty floating-point ``(B, channels, H, W)``
    image batch, the input every derainzoo model takes.

    Raises:
        TypeError: as [`check_feature_map`][check_feature_map].
        ValueError: the shape is wrong, or the batch, height or width is 0.
    """
    check_feature_map(x, channels, "input")
    if x.shape[0] == 0 or x.shape[-1] == 0 or x.shape[-2] == 0:
        raise ValueError(f"input must not be empty, got shape {tuple(x.shape)}")
