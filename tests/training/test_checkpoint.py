"""Training checkpoints restore model, EMA, optimizer, scheduler and RNG exactly."""

from __future__ import annotations

import pickle
import subprocess

import pytest
import torch

from derainzoo._helpers import WeightsMismatchError, load_weights
from derainzoo.training import load_training_state, save_training_state, warmup_cosine_schedule

from ..helpers import assert_same_weights, smooth_image, tiny_model


def make_state(seed: int):
    model = tiny_model(seed)
    ema = tiny_model(seed + 100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = warmup_cosine_schedule(optimizer, 2, 10)
    return model, ema, optimizer, scheduler


def train_steps(model, optimizer, scheduler, count: int) -> None:
    for _ in range(count):
        loss = (model(smooth_image(16, 16) + 0.01 * torch.randn(1, 3, 16, 16)) - smooth_image(16, 16)).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()


def test_resume_continues_exactly(tmp_path) -> None:
    model, ema, optimizer, scheduler = make_state(0)
    train_steps(model, optimizer, scheduler, 3)
    path = tmp_path / "last.safetensors"
    save_training_state(
        path, model=model, optimizer=optimizer, scheduler=scheduler, step=3, ema_model=ema, extra={"best": 1.5}
    )
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())
    train_steps(model, optimizer, scheduler, 2)

    other, other_ema, other_optimizer, other_scheduler = make_state(7)
    step, extra = load_training_state(
        path, model=other, optimizer=other_optimizer, scheduler=other_scheduler, ema_model=other_ema
    )
    assert step == 3 and extra == {"best": 1.5}
    assert other_scheduler.last_epoch == 3
    assert_same_weights(other_ema, ema)
    train_steps(other, other_optimizer, other_scheduler, 2)
    assert_same_weights(other, model)


def test_checkpoint_holds_no_pickle(tmp_path) -> None:
    model, ema, optimizer, scheduler = make_state(0)
    path = tmp_path / "c.safetensors"
    save_training_state(path, model=model, optimizer=optimizer, scheduler=scheduler, step=0)
    assert pickle.PROTO not in path.read_bytes()[:2]
    assert path.read_bytes()[8:9] == b"{"


def test_sha256_sidecar_names_the_checkpoint_so_sha256sum_can_check_it(tmp_path) -> None:
    model, ema, optimizer, scheduler = make_state(0)
    path = tmp_path / "last.safetensors"
    checksum = save_training_state(path, model=model, optimizer=optimizer, scheduler=scheduler, step=1)
    assert (tmp_path / "last.safetensors.sha256").read_text() == f"{checksum}  last.safetensors\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.safetensors", "last.safetensors.sha256"]
    result = subprocess.run(
        ["sha256sum", "-c", "last.safetensors.sha256"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0 and "last.safetensors: OK" in result.stdout


def test_a_training_checkpoint_is_not_taken_for_weights(tmp_path) -> None:
    model, ema, optimizer, scheduler = make_state(0)
    path = tmp_path / "last.safetensors"
    save_training_state(path, model=model, optimizer=optimizer, scheduler=scheduler, step=1, ema_model=ema)
    with pytest.raises(WeightsMismatchError, match="is a training checkpoint.*best_ema.safetensors"):
        load_weights(model, path)


def test_resuming_into_another_parameter_layout_is_refused_with_a_way_out(tmp_path) -> None:
    import derainzoo

    model, ema, optimizer, scheduler = make_state(0)
    path = tmp_path / "last.safetensors"
    save_training_state(path, model=model, optimizer=optimizer, scheduler=scheduler, step=3, ema_model=ema)
    # Another variant stands in for an earlier layout: its parameters cannot take this optimizer state.
    torch.manual_seed(0)
    small = derainzoo.create_model("dual_stage_derain_small")
    small_optimizer = torch.optim.AdamW(small.parameters(), lr=1e-3)
    with pytest.raises(WeightsMismatchError, match=r"cannot resume .*--init-weights .*best_ema\.safetensors"):
        load_training_state(path, model=small, optimizer=small_optimizer)
