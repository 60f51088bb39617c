"""Shared fixtures: the real benchmark data, when this checkout has it beside the project."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA_ROOT = Path(os.environ.get("DERAINZOO_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def _benchmark_folder(name: str) -> Path:
    folder = DATA_ROOT / name
    if not (folder / "rain").is_dir():
        pytest.skip(f"{name} not found under {DATA_ROOT} (set DERAINZOO_DATA)")
    return folder


@pytest.fixture(scope="session")
def rain100l_train() -> Path:
    """``Rain100L_train`` folder (``rain/`` + ``norain/``); the test is skipped without it."""
    return _benchmark_folder("Rain100L_train")


@pytest.fixture(scope="session")
def rain100l_test() -> Path:
    """``Rain100L_test`` folder; the test is skipped without it. Used for scoring only, never training."""
    return _benchmark_folder("Rain100L_test")


@pytest.fixture
def saved(tmp_path):
    """``(model, path, sha256)``: a tiny model with random weights saved by ``save_weights``."""
    from derainzoo._helpers import save_weights

    from .helpers import TINY, tiny_model

    model = tiny_model(seed=1)
    path = tmp_path / "tiny.safetensors"
    checksum = save_weights(model, path, metadata={"architecture": TINY})
    return model, path, checksum


@pytest.fixture(autouse=True)
def pytorch_unless_a_test_chooses_a_backend(monkeypatch):
    """``derainzoo derain`` runs OpenVINO where it is installed (after an ONNX export per new
    weights): in-process command-line tests run PyTorch unless they pass ``--backend``, so that
    they test the same thing on every machine. ``tests/test_backends.py`` tests the choice."""
    import derainzoo.cli

    monkeypatch.setattr(derainzoo.cli, "preferred_backend", lambda: "torch")
