"""examples/pick_weights.py: the export rule applied to a training log, refusal by refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .. import helpers


def load_script():
    return helpers.load_script("examples/pick_weights.py")


def record(
    step: int, val: float, heavy: float, photos: dict[str, float] | None = None, detail: dict[str, float] | None = None
) -> dict:
    entry = {"step": step, "lr": 1e-4, "hours": 0.1 * step, "val_psnr": val, "val_ssim": 0.9}
    entry |= {"val_heavy_psnr": heavy, "val_heavy_ssim": 0.8}
    for key, each in (("photos_change", photos), ("photos_detail_change", detail)):
        if each is not None:
            entry |= {key: sum(each.values()) / len(each), f"{key}_each": each}
    return entry


def write_log(folder: Path, records: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(entry) for entry in records]
    # train.py also logs loss lines between validations; they carry no PSNR and are skipped.
    lines.insert(1, json.dumps({"step": 50, "loss": 0.1}))
    (folder / "log.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def verdicts(output: str) -> dict[int | str, str]:
    """The verdict of each row: keyed by step, the start's row by ``"start"``."""
    rows = [
        line.split(" | ") for line in output.splitlines() if line.startswith("| ") and not line.startswith("| step")
    ]
    steps = [row[0].removeprefix("| ") for row in rows]
    return {
        "start" if step.endswith("(start)") else int(step): row[-1].removesuffix(" |") for step, row in zip(steps, rows)
    }


def pick(capsys, run: Path, *arguments: str) -> tuple[dict[int | str, str], str]:
    """Run the script on ``run``; the verdict of each step and the whole output."""
    load_script().main([str(run), *arguments])
    output = capsys.readouterr().out
    return verdicts(output), output


def test_each_guard_refuses_and_the_best_qualifying_mean_is_picked(tmp_path, capsys) -> None:
    start = {"a": 20.0, "b": 2.0}
    run = write_log(
        tmp_path / "run",
        [
            record(0, 35.5, 25.5, start),
            record(500, 35.4, 25.4, start),  # mean below the start's
            record(1000, 34.9, 26.5, start),  # Rain100L floor
            record(1500, 35.6, 25.8, {"a": 19.0, "b": 1.9}),  # mean change falls, each photo within 10%
            record(2000, 35.6, 25.8, {"a": 23.0, "b": 1.7}),  # mean holds, photo b falls by 15%
            record(2500, 35.6, 25.6, {"a": 20.2, "b": 1.9}),  # qualifies: b within 10%
            record(3000, 35.7, 25.7, {"a": 20.5, "b": 2.0}),  # qualifies, best mean
        ],
    )
    found, output = pick(capsys, run, "--floor", "val=35.0")
    assert found["start"] == "start" and 0 not in found
    assert found[500] == "mean not above the start's"
    assert found[1000] == "val below 35"
    assert found[1500] == "photos change below the start's"
    assert found[2000] == "photo b fell > 10%"
    assert found[2500] == found[3000] == "qualifies"
    assert f"pick: step 3000 ({run / 'ema_step003000.safetensors'})" in output
    # A looser tolerance lets photo b through, and step 2000 has the best mean.
    assert "pick: step 2000" in pick(capsys, run, "--floor", "val=35.0", "--photo-tolerance", "0.2")[1]


def with_errors(entry: dict, val: dict[str, float], heavy: dict[str, float] | None = None) -> dict:
    """``entry`` with the per-image mean errors (levels) that train.py logs for each set."""
    return entry | {"val_error_each": val, "val_heavy_error_each": heavy or {"h1": 20.0}}


def test_the_detail_measure_guards_the_change_left_once_the_brightness_shift_is_off(tmp_path, capsys) -> None:
    """Less darkening lowers the change and not the detail change; less rain taken out lowers both."""
    start_change, start_detail = {"a": 20.0, "b": 8.0}, {"a": 6.0, "b": 4.0}
    run = write_log(
        tmp_path / "run",
        [
            record(0, 35.5, 25.5, start_change, start_detail),
            record(500, 35.6, 25.6, {"a": 14.0, "b": 7.0}, {"a": 6.1, "b": 4.0}),  # darkens less
            record(1000, 35.7, 25.6, {"a": 20.0, "b": 8.0}, {"a": 6.0, "b": 3.0}),  # b loses its detail
        ],
    )
    found, _ = pick(capsys, run)
    assert "photos change below the start's" in found[500] and found[1000] == "qualifies"
    found, output = pick(capsys, run, "--photo-measure", "detail_change")
    assert found[500] == "qualifies"
    assert found[1000] == "photos detail change below the start's; photo b fell > 10%"
    assert "| photos detail change |" in output.splitlines()[0] and "pick: step 500" in output
    older = write_log(tmp_path / "older", [record(0, 35.5, 25.5, start_change), record(500, 35.6, 25.6, start_change)])
    with pytest.raises(SystemExit, match="no photos_detail_change"):
        load_script().main([str(older), "--photo-measure", "detail_change"])


def test_an_image_whose_brightness_error_grows_is_refused(tmp_path, capsys) -> None:
    # Phase 13 of the rain_mix card: Rain100L val 199 went from -2.5 to -6.0 levels while the mean
    # PSNR rose; the other images moved by at most 0.5.
    start_errors = {"191": 0.3, "199": -2.5, "200": -1.0}
    run = write_log(
        tmp_path / "run",
        [
            with_errors(record(0, 35.5, 25.5), start_errors),
            with_errors(record(500, 35.6, 25.8), {"191": 0.7, "199": -6.0, "200": -1.2}),  # phase 13
            with_errors(record(1000, 35.6, 25.7), {"191": 0.3, "199": -2.5, "200": 3.5}),  # 200 brighter
            with_errors(record(1500, 35.6, 25.6), {"191": 2.0, "199": 1.5, "200": -2.9}),  # each within 2
            with_errors(record(2000, 35.6, 25.9), start_errors, {"h1": 23.0}),  # a rendered set
            record(2500, 35.7, 25.9),  # logged without errors
        ],
    )
    found, output = pick(capsys, run)
    assert found[500] == "error grew > 2 levels: val/199 darker (-2.5 -> -6.0)"
    assert found[1000] == "error grew > 2 levels: val/200 brighter (-1.0 -> +3.5)"
    # An error that changes sign but stays small is no drift: 199 ends closer to its ground truth.
    assert found[1500] == "qualifies"
    # The rendered sets' errors are rain left behind; they are guarded only when asked for.
    assert found[2000] == "qualifies"
    assert found[2500] == "per-image errors not logged"
    assert "pick: step 2000" in output and "brightness not checked" not in output
    found, _ = pick(capsys, run, "--error-set", "val", "--error-set", "val_heavy")
    assert found[2000] == "error grew > 2 levels: val_heavy/h1 brighter (+20.0 -> +23.0)"
    found, _ = pick(capsys, run, "--error-tolerance", "4")
    assert found[500] == found[1000] == "qualifies"
    with pytest.raises(SystemExit, match="sets without per-image errors at the start: \\['val_styles'\\]"):
        load_script().main([str(run), "--error-set", "val_styles"])


def test_a_start_without_errors_says_brightness_is_not_checked(tmp_path, capsys) -> None:
    run = write_log(tmp_path / "run", [record(0, 35.5, 25.5), with_errors(record(500, 35.6, 25.6), {"199": -9.0})])
    found, output = pick(capsys, run)
    assert found[500] == "qualifies"
    assert "brightness not checked" in output


def test_the_start_stays_when_nothing_qualifies(tmp_path, capsys) -> None:
    run = write_log(tmp_path / "run", [record(0, 35.5, 25.5), record(500, 35.0, 25.0)])
    _, output = pick(capsys, run)
    assert "photos change" not in output.splitlines()[0]  # a run without --watch-photos
    assert "pick: none qualifies; the starting weights stay" in output


def test_the_start_comes_from_another_log_for_older_runs(tmp_path, capsys) -> None:
    start = write_log(tmp_path / "start", [record(0, 35.5, 25.5, {"a": 20.0})])
    old_run = write_log(tmp_path / "old", [record(500, 35.6, 25.6, {"a": 21.0}), record(1000, 35.6, 25.6)])
    with pytest.raises(SystemExit, match="no step-0 record"):
        load_script().main([str(old_run)])
    found, _ = pick(capsys, old_run, "--start-log", str(start / "log.jsonl"))
    assert found["start"] == "start" and found[500] == "qualifies"
    # Without the photos the photo guard cannot pass.
    assert found[1000] == "photos not watched"


def test_a_blend_is_judged_by_the_step_0_of_its_one_step_run(tmp_path, capsys) -> None:
    start = write_log(tmp_path / "start", [record(0, 35.5, 25.5, {"a": 20.0})])
    # A one-step run from a blend: its step 0 is the blend itself, step 1 one update later.
    blend = write_log(tmp_path / "blend", [record(0, 35.4, 25.7, {"a": 19.0}), record(1, 35.6, 25.7, {"a": 21.0})])
    found, output = pick(capsys, blend, "--start-log", str(start / "log.jsonl"))
    assert set(found) == {"start", 0, 1}
    assert "photos change below the start's" in found[0] and found[1] == "qualifies"
    assert "pick: step 1 " in output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--floor", "val35"], "--floor takes SET=DB"),
        (["--floor", "val=high"], "--floor takes SET=DB"),
        (["--floor", "rain100l=35"], "sets the log does not score"),
    ],
)
def test_bad_floors_are_named(tmp_path, arguments, message, capsys) -> None:
    run = write_log(tmp_path / "run", [record(0, 35.5, 25.5)])
    with pytest.raises(SystemExit) as exited:
        load_script().main([str(run), *arguments])
    # argparse prints its errors and exits with status 2; the script's own errors are the exit message.
    assert message in str(exited.value) + capsys.readouterr().err


def test_a_start_scored_on_other_sets_is_refused(tmp_path) -> None:
    start = {"step": 0, "val_psnr": 35.5}
    run = write_log(tmp_path / "run", [start, record(500, 35.6, 25.6)])
    with pytest.raises(SystemExit, match="means cannot be compared"):
        load_script().main([str(run)])


def test_a_missing_log_is_named(tmp_path) -> None:
    with pytest.raises(SystemExit, match="no such log"):
        load_script().main([str(tmp_path / "nowhere")])
