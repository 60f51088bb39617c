"""examples/export_weights.py: half-precision export with a checksum, and the EMA of a training checkpoint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

import derainzoo
from derainzoo._helpers import read_safetensors, save_weights
from derainzoo.training import save_training_state

from ..helpers import assert_same_weights

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "export_weights.py"
MODEL = "dual_stage_derain_tiny"


def export(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_ema_of_a_training_checkpoint_is_exported(tmp_path) -> None:
    torch.manual_seed(0)
    trained, averaged = derainzoo.create_model(MODEL), derainzoo.create_model(MODEL)
    optimizer = torch.optim.AdamW(trained.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    save_training_state(
        tmp_path / "last.safetensors",
        model=trained,
        optimizer=optimizer,
        scheduler=scheduler,
        step=7,
        ema_model=averaged,
    )

    result = export(str(tmp_path / "last.safetensors"), "--ema", "--model", MODEL, "--tag", "t", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    exported, _ = read_safetensors(tmp_path / f"{MODEL}.t.safetensors")  # checks the written sha256 too
    # A weights file: the factory loads it (it refuses training checkpoints).
    derainzoo.create_model(MODEL, weights=tmp_path / f"{MODEL}.t.safetensors")
    for name, tensor in averaged.state_dict().items():
        if tensor.is_floating_point():
            torch.testing.assert_close(exported[name].float(), tensor.half().float(), rtol=0, atol=0)

    plain = export(
        str(tmp_path / f"{MODEL}.t.safetensors"), "--ema", "--model", MODEL, "--tag", "u", "--out", str(tmp_path)
    )
    assert plain.returncode != 0 and "no 'ema.' tensors" in plain.stderr


def test_blend_is_the_weighted_mean_of_the_files(tmp_path) -> None:
    torch.manual_seed(0)
    first, second = derainzoo.create_model(MODEL), derainzoo.create_model(MODEL)
    save_weights(first, tmp_path / "first.safetensors")
    save_weights(second, tmp_path / "second.safetensors")

    result = export(
        str(tmp_path / "first.safetensors"),
        str(tmp_path / "second.safetensors"),
        *("--blend", "1", "3", "--dtype", "float32", "--model", MODEL, "--tag", "b", "--out", str(tmp_path)),
    )
    assert result.returncode == 0, result.stderr
    blended, metadata = read_safetensors(tmp_path / f"{MODEL}.b.safetensors")
    assert metadata["blend"] == "1 x first.safetensors + 3 x second.safetensors"
    differing = 0
    for name, tensor in first.state_dict().items():
        if tensor.is_floating_point():
            expected = 0.25 * tensor + 0.75 * second.state_dict()[name]
            torch.testing.assert_close(blended[name], expected, rtol=1e-6, atol=1e-7)
            differing += not torch.equal(tensor, second.state_dict()[name])
    assert differing > 0  # two random initialisations: the mean is not either file


def test_blend_needs_one_coefficient_per_file(tmp_path) -> None:
    save_weights(derainzoo.create_model(MODEL), tmp_path / "w.safetensors")
    weights = str(tmp_path / "w.safetensors")

    miscounted = export(weights, weights, "--blend", "1", "--model", MODEL, "--tag", "b", "--out", str(tmp_path))
    assert miscounted.returncode != 0 and "1 coefficients for 2 weights files" in miscounted.stderr
    negative = export(weights, weights, "--blend", "1", "-1", "--model", MODEL, "--tag", "b", "--out", str(tmp_path))
    assert negative.returncode != 0 and "non-negative" in negative.stderr
    assert not (tmp_path / f"{MODEL}.b.safetensors").exists()


def test_experts_write_one_routed_file_light_first(tmp_path) -> None:
    torch.manual_seed(0)
    light, heavy = derainzoo.create_model("dual_stage_derain"), derainzoo.create_model("dual_stage_derain")
    save_weights(light, tmp_path / "light.safetensors")
    save_weights(heavy, tmp_path / "heavy.safetensors")
    files = (str(tmp_path / "light.safetensors"), str(tmp_path / "heavy.safetensors"))
    routed = "dual_stage_derain_routed"

    result = export(*files, "--experts", "--dtype", "float32", "--model", routed, "--tag", "r", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    _, metadata = read_safetensors(tmp_path / f"{routed}.r.safetensors")
    assert metadata["experts"] == "light: light.safetensors, heavy: heavy.safetensors"
    model = derainzoo.create_model(routed, weights=tmp_path / f"{routed}.r.safetensors")
    assert_same_weights(model.light, light)
    assert_same_weights(model.heavy, heavy)

    not_routed = export(*files, "--experts", "--model", "dual_stage_derain", "--tag", "r", "--out", str(tmp_path))
    assert not_routed.returncode != 0 and "builds a routed model" in not_routed.stderr
    three = export(*files, files[0], "--experts", "--model", routed, "--tag", "s", "--out", str(tmp_path))
    assert three.returncode != 0 and "exactly two weights files" in three.stderr
