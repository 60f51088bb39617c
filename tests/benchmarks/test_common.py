"""The argument parsers the benchmark scripts share."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from common import parse_named_folder  # noqa: E402


def test_a_named_folder_splits_at_the_first_equals_sign() -> None:
    assert parse_named_folder("dense=runs/a=b") == ("dense", Path("runs/a=b"))


@pytest.mark.parametrize("text", ["runs/val", "=runs/val", "dense="])
def test_a_named_folder_needs_both_parts(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="NAME=FOLDER"):
        parse_named_folder(text)
