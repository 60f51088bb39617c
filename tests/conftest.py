"""Shared fixtures: the real benchmark data, when this checkout has it beside the project."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA_ROOT = Path(os.environ.get("DERAINZOO_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def rain100l_train() -> Path:
    """``Rain100L_train`` folder (``rain/`` + ``norain/``); the test is skipped without it."""
    folder = DATA_ROOT / "Rain100L_train"
    if not (folder / "rain").is_dir():
        pytest.skip(f"Rain100L_train not found under {DATA_ROOT} (set DERAINZOO_DATA)")
    return folder


@pytest.fixture(scope="session")
def rain100l_test() -> Path:
    """``Rain100L_test`` folder; the test is skipped without it. Used for the evaluation oracle only."""
    folder = DATA_ROOT / "Rain100L_test"
    if not (folder / "rain").is_dir():
        pytest.skip(f"Rain100L_test not found under {DATA_ROOT} (set DERAINZOO_DATA)")
    return folder
