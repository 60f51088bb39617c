"""derainzoo: single-image deraining models and their building blocks."""

from derainzoo import layers

__version__ = "0.1.0"

__all__ = ["__version__", "layers"]
