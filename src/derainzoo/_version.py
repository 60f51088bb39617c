"""The version of derainzoo, read by the package and by the build (pyproject.toml)."""

__version__ = "0.1.0"
