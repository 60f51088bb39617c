"""Input checks shared by the building blocks and the models."""

from __future__ import annotations

from torch import Tensor

__all__ = ["check_feature_map"]


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
