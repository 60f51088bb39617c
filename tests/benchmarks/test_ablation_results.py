"""The ablation's results table: every row's model and overrides build a model with the
parameter count the row states (the done-when of the ablation issue), and the columns exist."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

import derainzoo

RUNS_CSV = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "ablation_runs.csv"
REQUIRED_COLUMNS = {"model", "overrides", "seed", "params", "budget_hours", "rain100l_psnr", "heavy_val_psnr"}


def rows() -> list[dict[str, str]]:
    if not RUNS_CSV.is_file():
        return []
    with open(RUNS_CSV, newline="") as stream:
        return list(csv.DictReader(stream))


def test_the_table_has_the_required_columns() -> None:
    if not rows():
        pytest.skip("no ablation results yet")
    assert REQUIRED_COLUMNS <= set(rows()[0])


@pytest.mark.parametrize("row", rows(), ids=lambda row: f"{row['key']}_seed{row['seed']}")
def test_each_row_builds_a_model_of_its_parameter_count(row: dict[str, str]) -> None:
    model = derainzoo.create_model(row["model"], **json.loads(row["overrides"]))
    assert sum(p.numel() for p in model.parameters()) == int(row["params"])
