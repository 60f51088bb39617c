"""examples/train.py: exact resume, and two-process DistributedDataParallel on CPU (gloo)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

import derainzoo
from derainzoo.data import RAIN_STYLES, PairedImageFolder
from derainzoo.evaluation import evaluate

from .. import helpers
from ..helpers import REPOSITORY, smooth_image, write_paired_folder

SCRIPT = REPOSITORY / "examples" / "train.py"

COMMON = [
    "--model",
    "dual_stage_derain_tiny",
    "--batch-size",
    "2",
    "--crop",
    "32",
    "--val-count",
    "1",
    "--warmup-steps",
    "2",
    "--val-every",
    "100",
    "--ckpt-every",
    "100",
    "--log-every",
    "1",
]


def load_script():
    return helpers.load_script("examples/train.py")


def final_state(out: Path, rank: int = 0) -> dict:
    return json.loads((out / f"final_state_rank{rank}.json").read_text())


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["--epoch-samples", "6"],
        [
            "--rain-mix",
            "--short-exposure",
            "0.5",
            "--drizzle",
            "0.5",
            "--downscaled",
            "0.5",
            "--rain-styles",
            "0.5",
            "--flat-scenes",
            "0.5",
            "--rain-free",
            "0.3",
        ],
    ],
    ids=["one_crop_per_pair", "six_crops_per_epoch", "rendered_rain"],
)
def test_interrupted_and_resumed_run_equals_uninterrupted_run(tmp_path, extra) -> None:
    # 4 training pairs at batch 2: 2 steps per epoch, or 3 with --epoch-samples 6; either way the
    # 5 steps cross epoch boundaries after the resume (and rendered rain is new in each epoch).
    write_paired_folder(tmp_path / "data", count=5)
    train = load_script().main
    common = [*COMMON, *extra]
    train(["--data", str(tmp_path / "data"), "--steps", "5", "--out", str(tmp_path / "straight"), *common])
    # A time limit of 0 stops (and checkpoints) right after the first step; rerunning with the
    # same --out resumes from that checkpoint.
    train(
        [
            "--data",
            str(tmp_path / "data"),
            "--steps",
            "5",
            "--time-limit",
            "0",
            "--out",
            str(tmp_path / "resumed"),
            *common,
        ]
    )
    assert final_state(tmp_path / "resumed")["step"] == 1
    train(["--data", str(tmp_path / "data"), "--steps", "5", "--out", str(tmp_path / "resumed"), *common])
    straight, resumed = final_state(tmp_path / "straight"), final_state(tmp_path / "resumed")
    assert resumed["step"] == straight["step"] == 5
    assert resumed["model_sha256"] == straight["model_sha256"]
    assert resumed["ema_sha256"] == straight["ema_sha256"]
    assert (tmp_path / "resumed" / "final_ema.safetensors").is_file()
    assert (tmp_path / "resumed" / "best_ema.safetensors").is_file()
    assert json.loads((tmp_path / "resumed" / "log.jsonl").read_text().splitlines()[-1])["step"] == 5
    if "--rain-styles" in extra:
        logged = (tmp_path / "resumed" / "log.jsonl").read_text()
        assert "val_heavy" in logged and "val_styles" in logged


def test_rain_rendered_on_the_device_trains_the_same_weights_on_the_cpu(tmp_path) -> None:
    write_paired_folder(tmp_path / "data", count=5)
    train = load_script().main
    common = ["--data", str(tmp_path / "data"), "--steps", "3", "--rain-mix", "--rain-styles", "0.5", *COMMON]
    train([*common, "--out", str(tmp_path / "in_loader")])
    train([*common, "--render-on-device", "--out", str(tmp_path / "on_device")])
    in_loader, on_device = final_state(tmp_path / "in_loader"), final_state(tmp_path / "on_device")
    assert on_device["step"] == 3 and on_device["model_sha256"] == in_loader["model_sha256"]
    with pytest.raises(SystemExit, match="--render-on-device renders the rain of --rain-mix"):
        train(["--data", str(tmp_path / "data"), "--steps", "1", "--render-on-device", "--out", str(tmp_path / "x")])


@pytest.mark.skipif(sys.platform != "linux", reason="gloo multi-process test runs on Linux")
def test_two_process_ddp_ranks_agree(tmp_path) -> None:
    write_paired_folder(tmp_path / "data", count=6)
    out = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(SCRIPT),
        "--data",
        str(tmp_path / "data"),
        "--steps",
        "3",
        "--out",
        str(out),
        *COMMON,
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = final_state(out, 0), final_state(out, 1)
    assert rank0["step"] == rank1["step"] == 3
    assert rank0["model_sha256"] == rank1["model_sha256"]
    assert rank0["ema_sha256"] == rank1["ema_sha256"]


def test_resuming_with_changed_arguments_is_refused_unless_asked_for(tmp_path, capsys) -> None:
    write_paired_folder(tmp_path / "data", count=4)
    train = load_script().main
    out = ["--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), *COMMON]
    train([*out, "--steps", "3", "--time-limit", "0"])
    # Bookkeeping arguments (time limit, logging) may change; the learning rate may not.
    with pytest.raises(SystemExit, match=r"refusing to resume .*--lr: 0.001 -> 0.0005.*--resume-changed"):
        train([*out, "--steps", "3", "--lr", "5e-4"])
    train([*out, "--steps", "3", "--lr", "5e-4", "--resume-changed"])
    assert "with changed arguments: --lr: 0.001 -> 0.0005" in capsys.readouterr().out
    assert final_state(tmp_path / "run")["step"] == 3


def test_rain_style_sets_one_style_over_rain_styles_and_probabilities_are_checked(capsys) -> None:
    script = load_script()
    args = script.parse_args(
        ["--data", "d", "--out", "o", "--rain-mix", "--rain-styles", "0.25", "--rain-style", "haze=0"]
    )
    assert script.training_style_probabilities(args) == {**dict.fromkeys(RAIN_STYLES, 0.25), "haze": 0.0}
    args = script.parse_args(["--data", "d", "--out", "o", "--rain-mix", "--rain-style", "opaque=1"])
    assert script.training_style_probabilities(args) == {**dict.fromkeys(RAIN_STYLES, 0.0), "opaque": 1.0}
    args = script.parse_args(["--data", "d", "--out", "o", "--rain-mix", "--style-min-strength", "haze=0.4"])
    assert args.style_min_strength == [("haze", 0.4)]
    for option in ("--rain-style", "--style-min-strength"):
        for bad, message in (("fog=0.5", "unknown style 'fog'"), ("haze=2", "STYLE=X"), ("haze", "STYLE=X")):
            with pytest.raises(SystemExit):
                script.parse_args(["--data", "d", "--out", "o", option, bad])
            assert message in capsys.readouterr().err
    for option in ("--real-fraction", "--drizzle", "--flat-scenes", "--rain-free"):
        with pytest.raises(SystemExit):
            script.parse_args(["--data", "d", "--out", "o", option, "1.5"])
        assert f"argument {option}: a probability must be in [0, 1], got '1.5'" in capsys.readouterr().err


def test_epoch_samples_must_be_positive(tmp_path) -> None:
    write_paired_folder(tmp_path / "data", count=3)
    with pytest.raises(SystemExit, match="--epoch-samples must be positive, got 0"):
        load_script().main(
            ["--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--epoch-samples", "0", *COMMON]
        )


def test_watched_photos_are_logged_and_do_not_select_weights(tmp_path) -> None:
    write_paired_folder(tmp_path / "data", count=4)
    photos = tmp_path / "photos"
    photos.mkdir()
    for index in range(2):
        pixels = (smooth_image(30 + 10 * index, 44)[0].permute(1, 2, 0).numpy() * 255).astype("uint8")
        Image.fromarray(pixels).save(photos / f"{index}.png")
    common = ["--data", str(tmp_path / "data"), "--steps", "2", *COMMON]
    train = load_script().main
    train([*common, "--out", str(tmp_path / "watched"), "--watch-photos", str(photos)])
    train([*common, "--out", str(tmp_path / "plain")])
    records = [json.loads(line) for line in (tmp_path / "watched" / "log.jsonl").read_text().splitlines()]
    validated = [record for record in records if "val_psnr" in record]
    assert validated
    for record in validated:
        for key in ("photos_change", "photos_detail_change"):
            assert set(record[f"{key}_each"]) == {"0", "1"}
            assert all(change >= 0 for change in record[f"{key}_each"].values())
            assert record[key] == pytest.approx(sum(record[f"{key}_each"].values()) / 2)
    # A guard only: the run and its chosen weights are those of the run without it.
    assert final_state(tmp_path / "watched")["ema_sha256"] == final_state(tmp_path / "plain")["ema_sha256"]
    watched, plain = (load_file(tmp_path / run / "best_ema.safetensors") for run in ("watched", "plain"))
    assert watched.keys() == plain.keys() and all(torch.equal(watched[key], plain[key]) for key in plain)
    (tmp_path / "empty").mkdir()
    for folder, message in (("empty", "no image files there"), ("missing", "not a folder")):
        with pytest.raises(SystemExit, match=message):
            train([*common, "--out", str(tmp_path / "none"), "--watch-photos", str(tmp_path / folder)])


def test_keep_validated_writes_the_ema_of_every_validation(tmp_path) -> None:
    write_paired_folder(tmp_path / "data", count=4)
    out = tmp_path / "run"
    arguments = ["--data", str(tmp_path / "data"), "--out", str(out), "--steps", "4", *COMMON, "--val-every", "2"]
    load_script().main([*arguments, "--keep-validated"])
    kept = sorted(path.name for path in out.glob("ema_step*.safetensors"))
    assert kept == ["ema_step000002.safetensors", "ema_step000004.safetensors"]
    first, last, final = (
        load_file(out / name)
        for name in ("ema_step000002.safetensors", "ema_step000004.safetensors", "final_ema.safetensors")
    )
    # The last validation is the last step, so its weights are the final EMA; the earlier ones differ.
    assert all(torch.equal(last[key], final[key]) for key in final)
    assert not all(torch.equal(first[key], final[key]) for key in final)
    with safe_open(out / "ema_step000002.safetensors", "pt") as weights:
        assert weights.metadata()["step"] == "2"
    # Each validation logs every image's signed error, as evaluate() gives it for the kept weights.
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    validated = {record["step"]: record["val_error_each"] for record in records if "val_psnr" in record}
    assert sorted(validated) == [2, 4]
    val_set = PairedImageFolder(tmp_path / "data", stems=["003"])
    for step, errors in validated.items():
        model = derainzoo.create_model("dual_stage_derain_tiny", weights=out / f"ema_step{step:06d}.safetensors")
        expected = {row.stem: row.mean_error for row in evaluate(model, val_set, progress=False).per_image}
        assert errors.keys() == expected.keys() == {"003"}
        assert errors["003"] == pytest.approx(expected["003"], abs=2e-3)


def test_extra_val_sets_are_scored_and_logged_and_bad_ones_named(tmp_path, capsys) -> None:
    write_paired_folder(tmp_path / "data", count=4)
    write_paired_folder(tmp_path / "wide", count=2)
    out = tmp_path / "run"
    arguments = ["--data", str(tmp_path / "data"), "--out", str(out), "--steps", "2", *COMMON, "--val-every", "2"]
    load_script().main([*arguments, "--keep-validated", "--val-set", f"val_wide={tmp_path / 'wide'}"])
    (record,) = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if "val_psnr" in line]
    model = derainzoo.create_model("dual_stage_derain_tiny", weights=out / "ema_step000002.safetensors")
    expected = evaluate(model, PairedImageFolder(tmp_path / "wide"), progress=False)
    assert record["val_wide_psnr"] == pytest.approx(expected.psnr, abs=1e-3)
    assert record["val_wide_error_each"].keys() == {"000", "001"}
    script = load_script()
    for bad, message in (("val=x", "built-in"), ("2x=dir", "NAME=DIR"), ("wide", "NAME=DIR")):
        with pytest.raises(SystemExit):
            script.parse_args(["--data", "d", "--out", "o", "--val-set", bad])
        assert message in capsys.readouterr().err
    taken = [f"val_wide={tmp_path / 'wide'}", f"val_wide={tmp_path / 'data'}"]
    with pytest.raises(SystemExit, match="the name 'val_wide' is taken"):
        script.main([*arguments, "--out", str(tmp_path / "taken"), *(f"--val-set={value}" for value in taken)])
    with pytest.raises(SystemExit, match="--val-set val_none=.*not a folder"):
        script.main([*arguments, "--out", str(tmp_path / "none"), "--val-set", f"val_none={tmp_path / 'missing'}"])


def test_starting_weights_are_validated_as_step_zero_once(tmp_path) -> None:
    write_paired_folder(tmp_path / "data", count=4)
    common = ["--data", str(tmp_path / "data"), "--steps", "2", *COMMON]
    train = load_script().main
    train([*common, "--out", str(tmp_path / "first")])
    train(
        [
            *common,
            "--out",
            str(tmp_path / "second"),
            "--init-weights",
            str(tmp_path / "first" / "final_ema.safetensors"),
        ]
    )
    train(
        [
            *common,
            "--out",
            str(tmp_path / "second"),
            "--init-weights",
            str(tmp_path / "first" / "final_ema.safetensors"),
        ]
    )

    def validations(run: str) -> list[dict]:
        records = [json.loads(line) for line in (tmp_path / run / "log.jsonl").read_text().splitlines()]
        return [record for record in records if "val_psnr" in record]

    # No start row without --init-weights; with it, the start is scored by the same code as the
    # first run's last validation, whose EMA weights it starts from; a resume does not score it again.
    assert [record["step"] for record in validations("first")] == [2]
    assert [record["step"] for record in validations("second")] == [0, 2]
    assert validations("second")[0]["val_psnr"] == validations("first")[-1]["val_psnr"]
