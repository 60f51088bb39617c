"""The derainzoo command, end to end."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, JpegImagePlugin

import derainzoo
from derainzoo._helpers import save_weights
from derainzoo.cli import main

from .helpers import TINY, smooth_image, tiny_model


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_weights(tiny_model(), path)
    return path


def write_image(path, height: int = 30, width: int = 44) -> None:
    pixels = (smooth_image(height, width)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(pixels).save(path)


def run_derain_in_a_new_process(*args: str) -> subprocess.CompletedProcess:
    """``derainzoo derain ARGS`` in PyTorch, what ``--backend auto`` is on a plain install (the
    conftest's fixture cannot reach another process)."""
    command = [sys.executable, "-m", "derainzoo", "derain", *args, "--backend", "torch"]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_derain_files_keeps_names_and_sizes(tmp_path, weights) -> None:
    write_image(tmp_path / "a.png", 30, 44)
    write_image(tmp_path / "b.jpg", 17, 23)
    out = tmp_path / "out"
    result = run_derain_in_a_new_process(
        str(tmp_path / "a.png"),
        str(tmp_path / "b.jpg"),
        "-o",
        str(out),
        "--model",
        TINY,
        "--weights",
        str(weights),
    )
    assert result.returncode == 0, result.stderr
    assert Image.open(out / "a.png").size == (44, 30)
    assert Image.open(out / "b.jpg").size == (23, 17)
    assert "derain" in result.stderr  # the progress bar


def test_a_bad_file_is_reported_and_the_others_written(tmp_path, weights, capsys) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder / "good.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    out = tmp_path / "out"
    code = main(["derain", str(folder), "-o", str(out), "--model", TINY, "--weights", str(weights)])
    captured = capsys.readouterr()
    assert code == 1
    assert "broken.png" in captured.err and "Traceback" not in captured.err
    assert (out / "good.png").is_file() and not (out / "broken.png").exists()


def test_the_memory_budget_counts_what_the_process_holds(tmp_path, weights, capsys, monkeypatch) -> None:
    write_image(tmp_path / "photo.png")
    budgets = []

    def recording_derain(image, model, **options):
        budgets.append(options["memory_budget"])
        return image

    monkeypatch.setattr(derainzoo.cli, "derain", recording_derain)
    monkeypatch.setattr(derainzoo.cli, "_resident_bytes", lambda: 3 * 1024**3 // 4)
    common = [str(tmp_path / "photo.png"), "--model", TINY, "--weights", str(weights), "--backend", "torch"]
    assert main(["derain", *common, "-o", str(tmp_path / "a"), "--memory-budget", "2"]) == 0
    assert budgets == [2 * 1024**3 - 3 * 1024**3 // 4]
    # A budget below what the process holds leaves the smallest automatic tiles, and says so.
    assert main(["derain", *common, "-o", str(tmp_path / "b"), "--memory-budget", "0.5"]) == 0
    assert budgets[1] == 1
    assert "holds 0.75 GiB once the model is loaded, --memory-budget is 0.5 GiB" in capsys.readouterr().err


def test_resident_memory_is_read_from_the_platform() -> None:
    held = derainzoo.cli._resident_bytes()
    # This process has imported PyTorch: more than 50 MB, less than the machine.
    assert 50 * 2**20 < held < 1024**4


def test_tiled_run_and_overwrite_protection(tmp_path, weights, capsys) -> None:
    write_image(tmp_path / "photo.png", 80, 90)
    assert (
        main(
            [
                "derain",
                str(tmp_path / "photo.png"),
                "-o",
                str(tmp_path / "tiled"),
                "--model",
                TINY,
                "--weights",
                str(weights),
                "--tile",
                "48",
                "--tile-overlap",
                "8",
            ]
        )
        == 0
    )
    assert Image.open(tmp_path / "tiled" / "photo.png").size == (90, 80)
    assert (
        main(
            [
                "derain",
                str(tmp_path / "photo.png"),
                "-o",
                str(tmp_path),
                "--model",
                TINY,
                "--weights",
                str(weights),
                "--overwrite",
            ]
        )
        == 2
    )
    assert "would overwrite input file(s)" in capsys.readouterr().err


def test_missing_inputs_and_empty_folders_are_errors(tmp_path, weights, capsys) -> None:
    (tmp_path / "empty").mkdir()
    code = main(
        [
            "derain",
            str(tmp_path / "empty"),
            str(tmp_path / "nope.png"),
            "-o",
            str(tmp_path / "out"),
            "--model",
            TINY,
            "--weights",
            str(weights),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "holds no image files" in err and "nope.png: no such file" in err


def test_unknown_model_and_missing_weights_exit_with_a_message(tmp_path, capsys) -> None:
    write_image(tmp_path / "a.png")
    assert main(["derain", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "--model", "dual_stage_derian"]) == 2
    assert "Did you mean 'dual_stage_derain'" in capsys.readouterr().err
    assert (
        main(["derain", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "--model", "dual_stage_derain_small"]) == 2
    )
    err = capsys.readouterr().err
    assert "no pretrained weights for dual_stage_derain_small" in err and "--weights FILE.safetensors" in err
    assert (
        main(["derain", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "--model", "dual_stage_derain_tiny.gopro"])
        == 2
    )
    assert "unknown pretrained tag 'gopro' for dual_stage_derain_tiny; its tags: dual_stage_derain_tiny.rain100l" in (
        capsys.readouterr().err
    )


def test_quickstart_command_uses_the_bundled_weights(tmp_path) -> None:
    sample = Path(__file__).resolve().parents[1] / "examples" / "assets" / "rainy_rain100l_train_011.jpg"
    result = run_derain_in_a_new_process(str(sample), "-o", str(tmp_path))
    assert result.returncode == 0, result.stderr
    rainy = np.asarray(Image.open(sample), dtype=np.float64)
    derained = np.asarray(Image.open(tmp_path / sample.name), dtype=np.float64)
    assert derained.shape == rainy.shape
    # Rain streaks are bright: removing them darkens the image on average.
    assert derained.mean() < rainy.mean() - 1.0


def test_list_names_every_model(capsys) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("dual_stage_derain ", "dual_stage_derain_tiny", "dual_stage_derain_base"))
    # The weights `derainzoo derain` uses without --model are marked, and only they.
    assert out.count("(default)") == 1 and "dual_stage_derain_routed.rain_mix (default)" in out


def test_real_rain100l_image(rain100l_train, tmp_path, weights) -> None:
    source = rain100l_train / "rain" / "001.webp"
    result = run_derain_in_a_new_process(str(source), "-o", str(tmp_path), "--model", TINY, "--weights", str(weights))
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "001.webp").size == Image.open(source).size


def test_eval_prints_a_table_and_writes_csv(tmp_path, weights, capsys) -> None:
    from .helpers import write_paired_folder

    write_paired_folder(tmp_path / "pairs", count=3)
    csv_path = tmp_path / "scores.csv"
    assert (
        main(
            [
                "eval",
                "--data",
                str(tmp_path / "pairs"),
                "--model",
                TINY,
                "--weights",
                str(weights),
                "--csv",
                str(csv_path),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "| dual_stage_derain_tiny" in out and "PSNR (Y)" in out
    rows = csv_path.read_text().splitlines()
    assert rows[0] == "image,psnr,ssim,mean_error" and len(rows) == 5 and rows[-1].startswith("mean,")
    printed_mean_error = float(out.splitlines()[-1].split("|")[5])
    assert printed_mean_error == pytest.approx(float(rows[-1].split(",")[3]), abs=0.006)
    assert main(["eval", "--data", str(tmp_path / "pairs"), "--input-baseline"]) == 0
    assert "rainy input" in capsys.readouterr().out
    assert main(["eval", "--data", str(tmp_path / "nothing"), "--input-baseline"]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_eval_of_rendered_rain_adds_a_row_per_style(tmp_path, capsys) -> None:
    from derainzoo.data import RAIN_PARAMS_FILE, PairedImageFolder, write_rendered_pairs
    from derainzoo.evaluation import evaluate, scores_by_style

    from .helpers import write_paired_folder

    write_paired_folder(tmp_path / "pairs", count=4)
    rendered = write_rendered_pairs(PairedImageFolder(tmp_path / "pairs"), tmp_path / "styled", style_probability=0.5)
    assert main(["eval", "--data", str(rendered), "--input-baseline"]) == 0
    printed = {line.split("|")[1].strip(): line.split("|")[2:6] for line in capsys.readouterr().out.splitlines()[2:]}
    groups = scores_by_style(
        evaluate(None, rendered, progress=False), json.loads((rendered / RAIN_PARAMS_FILE).read_text())
    )
    assert groups and len(printed) == 1 + len(groups)
    for style, scores in groups.items():
        label = "images without styles" if style == "none" else f"images with {style}"
        images, psnr = printed[label][:2]
        assert int(images) == len(scores.per_image) and float(psnr) == pytest.approx(scores.psnr, abs=0.006)
    (rendered / RAIN_PARAMS_FILE).write_text("{not json")
    assert main(["eval", "--data", str(rendered), "--input-baseline"]) == 0
    captured = capsys.readouterr()
    assert "no rows per style" in captured.err and len(captured.out.splitlines()) == 3


def test_self_ensemble_in_eval_and_derain(tmp_path, weights, capsys) -> None:
    from .helpers import write_paired_folder

    write_paired_folder(tmp_path / "pairs", count=2)
    common = ["--model", TINY, "--weights", str(weights)]
    assert main(["eval", "--data", str(tmp_path / "pairs"), *common, "--csv", str(tmp_path / "plain.csv")]) == 0
    assert (
        main(
            [
                "eval",
                "--data",
                str(tmp_path / "pairs"),
                *common,
                "--self-ensemble",
                "--csv",
                str(tmp_path / "ensemble.csv"),
            ]
        )
        == 0
    )
    assert "x8 self-ensemble" in capsys.readouterr().out
    assert (tmp_path / "plain.csv").read_text() != (tmp_path / "ensemble.csv").read_text()
    assert main(["eval", "--data", str(tmp_path / "pairs"), "--input-baseline", "--self-ensemble"]) == 2
    assert "--self-ensemble needs a model" in capsys.readouterr().err

    write_image(tmp_path / "photo.png")
    for flag, folder in (([], "plain"), (["--self-ensemble"], "ensemble")):
        assert main(["derain", str(tmp_path / "photo.png"), "-o", str(tmp_path / folder), *common, *flag]) == 0
    plain, ensemble = (np.asarray(Image.open(tmp_path / folder / "photo.png")) for folder in ("plain", "ensemble"))
    assert plain.shape == ensemble.shape and not np.array_equal(plain, ensemble)


def test_eval_at_a_scale_scores_what_derain_returns(tmp_path, weights, capsys) -> None:
    from derainzoo import create_model
    from derainzoo.evaluation import evaluate
    from derainzoo.inference import prepare_for_inference

    from .helpers import write_paired_folder

    write_paired_folder(tmp_path / "pairs", count=2)
    data, common = ["--data", str(tmp_path / "pairs")], ["--model", TINY, "--weights", str(weights)]
    assert main(["eval", *data, *common, "--scale", "0.5", "--csv", str(tmp_path / "half.csv")]) == 0
    assert ", at scale 0.5 |" in capsys.readouterr().out
    model = prepare_for_inference(create_model(TINY, weights=weights), "cpu")  # as the command builds it
    expected = evaluate(model, tmp_path / "pairs", scale=0.5, progress=False)
    printed = [float(row.split(",")[1]) for row in (tmp_path / "half.csv").read_text().splitlines()[1:-1]]
    assert printed == pytest.approx([row.psnr for row in expected.per_image], abs=1e-3)
    assert main(["eval", *data, *common, "--scale", "2"]) == 2
    assert "--scale must be 'auto' or a number in (0, 1]" in capsys.readouterr().err
    assert main(["eval", *data, "--input-baseline", "--scale", "0.5"]) == 2
    assert "--scale needs a model; --input-baseline scores the inputs" in capsys.readouterr().err
    assert main(["eval", *data, "--input-baseline", "--self-ensemble", "--scale", "0.5"]) == 2
    assert "--self-ensemble and --scale need a model" in capsys.readouterr().err


def test_output_folder_that_cannot_be_created_is_reported(tmp_path, weights, capsys) -> None:
    write_image(tmp_path / "a.png")
    (tmp_path / "taken").write_text("a file where the output folder should be")
    code = main(
        ["derain", str(tmp_path / "a.png"), "-o", str(tmp_path / "taken"), "--model", TINY, "--weights", str(weights)]
    )
    err = capsys.readouterr().err
    assert code == 2 and "cannot create output folder" in err and "Traceback" not in err


def test_an_output_file_that_cannot_be_written_is_reported_and_the_others_written(tmp_path, weights, capsys) -> None:
    # A folder squatting on one output name makes that write fail the way an unwritable target
    # does (the test process runs as root in CI, so permission bits would not stop it).
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder / "a.png")
    write_image(folder / "b.png")
    out = tmp_path / "out"
    (out / "a.png").mkdir(parents=True)
    code = main(["derain", str(folder), "-o", str(out), "--model", TINY, "--weights", str(weights)])
    err = capsys.readouterr().err
    assert code == 1
    assert "a.png" in err and "Traceback" not in err
    assert (out / "b.png").is_file()


def derain_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["derain", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_outputs_are_lossless_where_the_format_allows_it(tmp_path, weights, capsys) -> None:
    from derainzoo.inference import derain, prepare_for_inference

    model = prepare_for_inference(derainzoo.create_model(TINY, weights=weights), "cpu")  # as the command builds it
    for name in ("a.png", "b.webp"):
        pixels = np.random.default_rng(0).integers(0, 256, (30, 44, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / name, lossless=True)
    code, out, _ = derain_cli(
        capsys,
        str(tmp_path / "a.png"),
        str(tmp_path / "b.webp"),
        "-o",
        str(tmp_path / "out"),
        "--model",
        TINY,
        "--weights",
        str(weights),
    )
    assert code == 0 and f"wrote 2 image(s) to {tmp_path / 'out'}" in out
    for name in ("a.png", "b.webp"):
        in_memory = np.asarray(derain(Image.open(tmp_path / name), model, precision="auto"))  # the command's default
        assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / name)), in_memory), name


def test_format_and_quality_options(tmp_path, weights, capsys) -> None:
    write_image(tmp_path / "photo.png")
    common = ["--model", TINY, "--weights", str(weights)]
    assert (
        derain_cli(capsys, str(tmp_path / "photo.png"), "-o", str(tmp_path / "jpg"), "--format", "jpeg", *common)[0]
        == 0
    )
    written = Image.open(tmp_path / "jpg" / "photo.jpg")
    assert written.format == "JPEG" and JpegImagePlugin.get_sampling(written) == 0
    assert (
        derain_cli(
            capsys,
            str(tmp_path / "photo.png"),
            "-o",
            str(tmp_path / "q"),
            "--format",
            "jpeg",
            "--quality",
            "50",
            *common,
        )[0]
        == 0
    )
    assert (tmp_path / "q" / "photo.jpg").stat().st_size < (tmp_path / "jpg" / "photo.jpg").stat().st_size
    code, _, err = derain_cli(
        capsys, str(tmp_path / "photo.png"), "-o", str(tmp_path / "bad"), "--quality", "90", "--format", "png", *common
    )
    assert code == 2 and err.count("\n") == 1 and "--format png is always lossless" in err
    assert not (tmp_path / "bad").exists()


def test_name_collisions_and_existing_outputs_are_refused_up_front(tmp_path, weights, capsys) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        write_image(tmp_path / folder / "p.png")
    common = ["-o", str(tmp_path / "out"), "--model", TINY, "--weights", str(weights)]
    code, _, err = derain_cli(capsys, str(tmp_path / "a" / "p.png"), str(tmp_path / "b" / "p.png"), *common)
    assert code == 2 and "2 inputs would be written to the same file" in err and str(tmp_path / "b" / "p.png") in err
    assert not (tmp_path / "out").exists()
    assert derain_cli(capsys, str(tmp_path / "a" / "p.png"), *common)[0] == 0
    before = (tmp_path / "out" / "p.png").read_bytes()
    code, _, err = derain_cli(capsys, str(tmp_path / "b" / "p.png"), *common)
    assert code == 2 and "1 output file(s) exist already" in err and "--overwrite" in err
    assert (tmp_path / "out" / "p.png").read_bytes() == before
    assert derain_cli(capsys, str(tmp_path / "b" / "p.png"), *common, "--overwrite")[0] == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--device", "gpu"], "--device gpu: not a device name; use cpu, cuda or cuda:N"),
        (["--tile", "4"], "--tile must be 0 (whole image) or an integer of at least 8 pixels, got 4"),
        (["--tile", "64", "--tile-overlap", "40"], "--tile-overlap 40 is more than half of --tile 64"),
        (["--memory-budget", "0"], "--memory-budget must be a positive number"),
        (["--quality", "0"], "--quality must be in [1, 100]"),
        (["--scale", "2"], "--scale must be 'auto' or a number in (0, 1] (1: full resolution), got '2'"),
        (["--scale", "half"], "--scale must be 'auto' or a number in (0, 1]"),
        (
            ["--backend", "onnxruntime", "--precision", "bf16"],
            "--backend onnxruntime runs the exported float32 graph; drop --precision bf16",
        ),
    ],
)
def test_argument_mistakes_are_one_line_up_front(tmp_path, weights, capsys, options, message) -> None:
    for index in range(3):
        write_image(tmp_path / f"{index}.png")
    code, _, err = derain_cli(
        capsys, str(tmp_path), "-o", str(tmp_path / "out"), "--model", TINY, "--weights", str(weights), *options
    )
    assert code == 2 and err.startswith(f"derainzoo: error: {message}") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_one_clear_line(tmp_path, weights, capsys) -> None:
    write_image(tmp_path / "a.png")
    for command in (
        ["derain", str(tmp_path / "a.png"), "-o", str(tmp_path / "out")],
        ["eval", "--data", str(tmp_path)],
    ):
        assert main([*command, "--model", TINY, "--weights", str(weights), "--device", "cuda"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "CUDA is not available here" in err and "--device cpu" in err


def test_version_notes_and_error_paths(tmp_path, weights, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"derainzoo {derainzoo.__version__}"
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder / "good.png")
    (folder / "notes.txt").write_text("shot on a rainy day")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    code, out, err = derain_cli(
        capsys, str(folder), "-o", str(tmp_path / "out"), "--model", TINY, "--weights", str(weights)
    )
    assert code == 1
    assert f"note: {folder}: skipping 1 file(s) that are not images: notes.txt" in err
    broken_line = next(line for line in err.splitlines() if "broken.png" in line)
    assert broken_line.count("broken.png") == 1  # the path is named once, not twice
    assert re.search(
        rf"wrote 1 image\(s\) to {re.escape(str(tmp_path / 'out'))} in .* s \(.* images/s\); 1 input\(s\) failed", out
    )


def test_sixteen_bit_grayscale_is_written_sixteen_bit(tmp_path, weights, capsys) -> None:
    plane = (np.linspace(0, 1, 30 * 40).reshape(30, 40) * 65535).astype(np.uint16)
    Image.fromarray(plane).save(tmp_path / "scan.png")
    assert (
        derain_cli(
            capsys, str(tmp_path / "scan.png"), "-o", str(tmp_path / "out"), "--model", TINY, "--weights", str(weights)
        )[0]
        == 0
    )
    written = Image.open(tmp_path / "out" / "scan.png")
    assert written.mode.startswith("I") and np.asarray(written).max() > 255


def test_sixteen_bit_colour_is_one_note_and_still_derained(tmp_path, weights, capsys) -> None:
    from .test_image_io import write_png_16_bit_rgb

    pixels = (smooth_image(30, 40)[0].permute(1, 2, 0).numpy() * 65535).astype(np.uint16)
    write_png_16_bit_rgb(tmp_path / "deep.png", pixels)
    code, _, err = derain_cli(
        capsys, str(tmp_path / "deep.png"), "-o", str(tmp_path / "out"), "--model", TINY, "--weights", str(weights)
    )
    notes = [line for line in re.split(r"[\r\n]", err) if line.startswith("derainzoo: note:")]
    assert code == 0 and len(notes) == 1 and "16-bit colour is read as 8-bit" in notes[0]
    assert Image.open(tmp_path / "out" / "deep.png").size == (40, 30)


def test_without_o_outputs_go_next_to_their_inputs_and_never_overwrite(tmp_path, weights, capsys) -> None:
    write_image(tmp_path / "a.png")
    (tmp_path / "sub").mkdir()
    write_image(tmp_path / "sub" / "b.jpg", 17, 23)
    before = (tmp_path / "a.png").read_bytes()
    command = ["derain", str(tmp_path / "a.png"), str(tmp_path / "sub" / "b.jpg"), "--model", TINY]
    assert main([*command, "--weights", str(weights)]) == 0
    assert "their inputs' folders (*_derained)" in capsys.readouterr().out
    assert Image.open(tmp_path / "a_derained.png").size == (44, 30)
    assert Image.open(tmp_path / "sub" / "b_derained.jpg").size == (23, 17)
    assert (tmp_path / "a.png").read_bytes() == before
    # A second run finds its outputs and refuses, naming the way out.
    written = (tmp_path / "a_derained.png").read_bytes()
    assert main([*command, "--weights", str(weights)]) == 2
    err = capsys.readouterr().err
    assert "2 output file(s) exist already" in err and "use --overwrite" in err
    assert (tmp_path / "a_derained.png").read_bytes() == written


def test_ctrl_c_during_eval_is_one_line_and_keeps_the_partial_scores(tmp_path, capsys, monkeypatch) -> None:
    from .helpers import write_paired_folder

    write_paired_folder(tmp_path / "pairs", count=4)
    import derainzoo.evaluation

    real_scores = derainzoo.evaluation._scores

    def interrupted_after_two(*args, **kwargs):
        for index, row in enumerate(real_scores(*args, **kwargs)):
            if index == 2:
                raise KeyboardInterrupt
            yield row

    monkeypatch.setattr(derainzoo.evaluation, "_scores", interrupted_after_two)
    csv_path = tmp_path / "partial.csv"
    assert main(["eval", "--data", str(tmp_path / "pairs"), "--input-baseline", "--csv", str(csv_path)]) == 130
    captured = capsys.readouterr()
    messages = [line for line in captured.err.splitlines() if line.startswith("derainzoo:")]
    assert messages == ["derainzoo: error: interrupted after 2 image(s); the scores below are of those only"]
    assert "Traceback" not in captured.err
    assert "| rainy input | 2 |" in captured.out
    assert len(csv_path.read_text().splitlines()) == 4  # header, 2 images, mean


def test_scale_derains_small_and_writes_full_size(tmp_path, weights, capsys) -> None:
    write_image(tmp_path / "p.png", 64, 96)
    common = ["--model", TINY, "--weights", str(weights)]
    for scale in ("0.5", "auto"):
        out = tmp_path / f"out_{scale}"
        code, _, err = derain_cli(capsys, str(tmp_path / "p.png"), "-o", str(out), "--scale", scale, *common)
        assert code == 0, err
        assert Image.open(out / "p.png").size == (96, 64)
    # A 96-pixel image is under the auto long side: auto is the full-resolution pass, byte for byte.
    assert derain_cli(capsys, str(tmp_path / "p.png"), "-o", str(tmp_path / "full"), *common)[0] == 0
    assert (tmp_path / "out_auto" / "p.png").read_bytes() == (tmp_path / "full" / "p.png").read_bytes()
    assert (tmp_path / "out_0.5" / "p.png").read_bytes() != (tmp_path / "full" / "p.png").read_bytes()


def test_a_long_run_keeps_memory_flat_skips_the_bad_file_and_writes_every_other(
    tmp_path, weights, capsys, monkeypatch
) -> None:
    """200 photos of mixed sizes in one process, one of them corrupt: decoding and encoding run
    beside the model, memory does not grow with the number of images."""
    import derainzoo.cli as cli

    folder = tmp_path / "in"
    folder.mkdir()
    sizes = [(24 + 7 * (index % 5), 40 + 9 * (index % 7)) for index in range(200)]
    for index, (height, width) in enumerate(sizes):
        write_image(folder / f"{index:03d}.png", height, width)
    (folder / "117.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    resident = []
    original_save = cli.save_image

    def save_and_measure(*args, **kwargs) -> None:
        original_save(*args, **kwargs)
        with open("/proc/self/statm") as statm:
            resident.append(int(statm.read().split()[1]) * 4096)

    monkeypatch.setattr(cli, "save_image", save_and_measure)
    code, out, err = derain_cli(
        capsys, str(folder), "-o", str(tmp_path / "out"), "--model", TINY, "--weights", str(weights)
    )
    assert code == 1 and "117.png" in err and err.count("117.png") == 1
    written = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert written == [f"{index:03d}.png" for index in range(200) if index != 117]
    assert all(Image.open(tmp_path / "out" / f"{i:03d}.png").size == sizes[i][::-1] for i in (0, 1, 199))
    assert re.search(r"wrote 199 image\(s\) to .* in [0-9.]+ s \([0-9.]+ images/s\); 1 input\(s\) failed", out)
    if len(resident) == 199:  # /proc exists (Linux)
        assert resident[-1] - resident[49] < 40 * 1024**2, (resident[49], resident[-1])
