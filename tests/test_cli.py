"""The derainzoo command, end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from derainzoo.cli import main
from derainzoo.hub import save_weights

from .helpers import TINY, smooth_image, tiny_model


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_weights(tiny_model(), path)
    return path


def write_image(path, height: int = 30, width: int = 44) -> None:
    pixels = (smooth_image(height, width)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(pixels).save(path)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "derainzoo", *args], capture_output=True, text=True, timeout=300)


def test_derain_files_keeps_names_and_sizes(tmp_path, weights) -> None:
    write_image(tmp_path / "a.png", 30, 44)
    write_image(tmp_path / "b.jpg", 17, 23)
    out = tmp_path / "out"
    result = run_cli("derain", str(tmp_path / "a.png"), str(tmp_path / "b.jpg"), "-o", str(out),
                     "--model", TINY, "--weights", str(weights))
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


def test_tiled_run_and_overwrite_protection(tmp_path, weights, capsys) -> None:
    write_image(tmp_path / "photo.png", 80, 90)
    assert main(["derain", str(tmp_path / "photo.png"), "-o", str(tmp_path / "tiled"), "--model", TINY,
                 "--weights", str(weights), "--tile", "48", "--tile-overlap", "8"]) == 0
    assert Image.open(tmp_path / "tiled" / "photo.png").size == (90, 80)
    assert main(["derain", str(tmp_path / "photo.png"), "-o", str(tmp_path), "--model", TINY,
                 "--weights", str(weights)]) == 1
    assert "overwrite the input" in capsys.readouterr().err


def test_missing_inputs_and_empty_folders_are_errors(tmp_path, weights, capsys) -> None:
    (tmp_path / "empty").mkdir()
    code = main(["derain", str(tmp_path / "empty"), str(tmp_path / "nope.png"), "-o", str(tmp_path / "out"),
                 "--model", TINY, "--weights", str(weights)])
    err = capsys.readouterr().err
    assert code == 1 and "holds no image files" in err and "nope.png: no such file" in err


def test_unknown_model_and_missing_weights_exit_with_a_message(tmp_path, capsys) -> None:
    write_image(tmp_path / "a.png")
    assert main(["derain", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "--model", "dual_stage_derian"]) == 2
    assert "Did you mean 'dual_stage_derain'" in capsys.readouterr().err
    assert main(["derain", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "--model", "dual_stage_derain_small"]) == 2
    assert "no pretrained weights" in capsys.readouterr().err


def test_quickstart_command_uses_the_bundled_weights(tmp_path) -> None:
    sample = Path(__file__).resolve().parents[1] / "examples" / "assets" / "rainy_rain100l_train_011.jpg"
    result = run_cli("derain", str(sample), "-o", str(tmp_path))
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


def test_real_rain100l_image(rain100l_train, tmp_path, weights) -> None:
    source = rain100l_train / "rain" / "001.webp"
    result = run_cli("derain", str(source), "-o", str(tmp_path), "--model", TINY, "--weights", str(weights))
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "001.webp").size == Image.open(source).size


def test_eval_prints_a_table_and_writes_csv(tmp_path, weights, capsys) -> None:
    from .helpers import write_paired_folder

    write_paired_folder(tmp_path / "pairs", count=3)
    csv_path = tmp_path / "scores.csv"
    assert main(["eval", "--data", str(tmp_path / "pairs"), "--model", TINY, "--weights", str(weights),
                 "--csv", str(csv_path)]) == 0
    out = capsys.readouterr().out
    assert "| dual_stage_derain_tiny" in out and "PSNR (Y)" in out
    rows = csv_path.read_text().splitlines()
    assert rows[0] == "image,psnr,ssim" and len(rows) == 5 and rows[-1].startswith("mean,")
    assert main(["eval", "--data", str(tmp_path / "pairs"), "--input-baseline"]) == 0
    assert "rainy input" in capsys.readouterr().out
    assert main(["eval", "--data", str(tmp_path / "nothing"), "--input-baseline"]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_self_ensemble_in_eval_and_derain(tmp_path, weights, capsys) -> None:
    from .helpers import write_paired_folder

    write_paired_folder(tmp_path / "pairs", count=2)
    common = ["--model", TINY, "--weights", str(weights)]
    assert main(["eval", "--data", str(tmp_path / "pairs"), *common, "--csv", str(tmp_path / "plain.csv")]) == 0
    assert main(["eval", "--data", str(tmp_path / "pairs"), *common, "--self-ensemble",
                 "--csv", str(tmp_path / "ensemble.csv")]) == 0
    assert "x8 self-ensemble" in capsys.readouterr().out
    assert (tmp_path / "plain.csv").read_text() != (tmp_path / "ensemble.csv").read_text()
    assert main(["eval", "--data", str(tmp_path / "pairs"), "--input-baseline", "--self-ensemble"]) == 2
    assert "--self-ensemble needs a model" in capsys.readouterr().err

    write_image(tmp_path / "photo.png")
    for flag, folder in (([], "plain"), (["--self-ensemble"], "ensemble")):
        assert main(["derain", str(tmp_path / "photo.png"), "-o", str(tmp_path / folder), *common, *flag]) == 0
    plain, ensemble = (np.asarray(Image.open(tmp_path / folder / "photo.png")) for folder in ("plain", "ensemble"))
    assert plain.shape == ensemble.shape and not np.array_equal(plain, ensemble)


def test_output_folder_that_cannot_be_created_is_reported(tmp_path, weights, capsys) -> None:
    write_image(tmp_path / "a.png")
    (tmp_path / "taken").write_text("a file where the output folder should be")
    code = main(["derain", str(tmp_path / "a.png"), "-o", str(tmp_path / "taken"), "--model", TINY,
                 "--weights", str(weights)])
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
