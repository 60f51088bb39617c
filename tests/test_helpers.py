"""Weights files: safetensors round trips, sha256 checks, refusal of pickles and foreign state dicts."""

from __future__ import annotations

import pickle

import pytest
import torch

import derainzoo
from derainzoo._helpers import (
    ChecksumMismatchError,
    UnsafeCheckpointError,
    WeightsMismatchError,
    file_sha256,
    load_weights,
    save_weights,
)

from .helpers import TINY, tiny_model


def test_round_trip_gives_identical_outputs(saved) -> None:
    model, path, checksum = saved
    assert path.with_name("tiny.safetensors.sha256").read_text().split()[0] == checksum == file_sha256(path)
    loaded = load_weights(tiny_model(seed=2), path)
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_half_precision_storage_is_smaller_and_close(tmp_path) -> None:
    model = tiny_model(seed=1)
    full, half = tmp_path / "full.safetensors", tmp_path / "half.safetensors"
    save_weights(model, full)
    save_weights(model, half, dtype=torch.float16)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = load_weights(tiny_model(seed=2), half)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=5e-3)


def test_tampered_file_is_refused(saved) -> None:
    _, path, _ = saved
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError, match="sha256"):
        load_weights(tiny_model(), path)


def test_explicit_checksum_is_checked(saved) -> None:
    _, path, checksum = saved
    load_weights(tiny_model(), path, sha256=checksum.upper())
    with pytest.raises(ChecksumMismatchError):
        load_weights(tiny_model(), path, sha256="f" * 64)


def test_truncated_file_is_refused(saved) -> None:
    _, path, _ = saved
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    path.with_name(path.name + ".sha256").unlink()
    with pytest.raises(UnsafeCheckpointError, match="safetensors"):
        load_weights(tiny_model(), path)


@pytest.mark.parametrize(
    ("write", "magic"),
    [
        (lambda path: torch.save(tiny_model().state_dict(), path), b"PK"),  # torch.save's zip archive
        (lambda path: path.write_bytes(pickle.dumps({"weight": [1.0, 2.0]}, protocol=4)), b"\x80"),  # plain pickle
    ],
    ids=["torch_save", "plain_pickle"],
)
def test_pickle_checkpoint_is_refused_with_an_explanation(tmp_path, write, magic) -> None:
    path = tmp_path / "model.pth"
    write(path)
    assert path.read_bytes().startswith(magic)
    with pytest.raises(UnsafeCheckpointError, match="pickle.*arbitrary code"):
        load_weights(tiny_model(), path)


def test_safetensors_whose_header_length_starts_like_a_pickle_loads(tmp_path) -> None:
    # Pickles open with the byte 0x80; so does a safetensors file whose header is 0x..80 bytes long
    # (a bundled weights file once was, and was refused).
    model, path = tiny_model(seed=1), tmp_path / "tiny.safetensors"
    for padding in range(0, 2048, 8):
        save_weights(model, path, metadata={"architecture": TINY, "padding": "x" * padding})
        if path.read_bytes()[:1] == b"\x80":
            break
    else:
        pytest.fail("no padding gave a header length whose first byte is 0x80")
    loaded = load_weights(tiny_model(seed=2), path)
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_weights_of_another_variant_name_the_mismatch(tmp_path) -> None:
    path = tmp_path / "small.safetensors"
    save_weights(derainzoo.create_model("dual_stage_derain_small"), path)
    with pytest.raises(WeightsMismatchError, match="another variant") as info:
        load_weights(tiny_model(), path)
    message = str(info.value)
    # small has a second block at U-Net level 1, and wider layers everywhere.
    assert "unexpected keys" in message and "stage1_body.decoder_stages.0.blocks.1." in message
    assert "shape mismatches" in message and "file (96,) vs model (64,)" in message


def test_missing_and_unexpected_keys_are_named(tmp_path) -> None:
    state = tiny_model().state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["stage2_head.weight"]
    path = tmp_path / "odd.safetensors"
    save_weights(state, path)
    with pytest.raises(
        WeightsMismatchError, match=r"missing keys \(1\): stage2_head.weight.*unexpected keys \(1\): extra.weight"
    ):
        load_weights(tiny_model(), path)


def test_missing_file_is_reported(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        load_weights(tiny_model(), tmp_path / "nothing.safetensors")
