"""Weights: safetensors round trips, sha256 checks, refusal of pickles and foreign state dicts."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

import derainzoo
from derainzoo.hub import (
    ChecksumMismatchError,
    UnsafeCheckpointError,
    WeightsMismatchError,
    file_sha256,
    load_weights,
    save_weights,
)

from .helpers import TINY, tiny_model


@pytest.fixture
def saved(tmp_path):
    model = tiny_model(seed=1)
    path = tmp_path / "tiny.safetensors"
    checksum = save_weights(model, path, metadata={"architecture": TINY})
    return model, path, checksum


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


def test_hub_files_must_be_safetensors() -> None:
    import timm

    # Refused before anything is downloaded.
    with pytest.raises(UnsafeCheckpointError, match=r"\.safetensors"):
        timm.create_model(
            "dual_stage_derain_small",
            pretrained=True,
            pretrained_cfg_overlay=dict(hf_hub_id="someone/model", hf_hub_filename="model.bin"),
        )


def test_hub_downloads_go_through_the_checked_loader(saved, monkeypatch) -> None:
    import timm
    import timm.models._hub

    model, path, _ = saved
    requested = []

    def fake_download(repo_id, filename, revision=None, cache_dir=None):
        requested.append((repo_id, filename))
        return str(path)

    monkeypatch.setattr(timm.models._hub, "hf_hub_download", fake_download)
    overlay = dict(hf_hub_id=f"someone/{TINY}", file=None)
    loaded = timm.create_model(TINY, pretrained=True, pretrained_cfg_overlay=overlay)
    assert requested == [(f"someone/{TINY}", "model.safetensors")]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError):
        timm.create_model(TINY, pretrained=True, pretrained_cfg_overlay=overlay)


def test_save_pretrained_round_trips_through_from_pretrained_and_timm_local_dir(tmp_path) -> None:
    import timm

    from derainzoo.hub import from_pretrained, save_pretrained

    model = derainzoo.create_model("dual_stage_derain_tiny", pretrained=True).eval()
    folder = save_pretrained(model, tmp_path / "tiny")
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
        "model.safetensors.sha256",
    ]
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "dual_stage_derain_tiny" and config["num_features"] == model.num_features
    assert "from_pretrained" in (folder / "README.md").read_text()
    x = torch.rand(1, 3, 37, 45, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(x)
        for loaded in (from_pretrained(folder), timm.create_model(f"local-dir:{folder}", pretrained=True)):
            # The same weights bit for bit; outputs agree to float rounding (kernel choices vary).
            assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
            torch.testing.assert_close(loaded.eval()(x), expected, rtol=0, atol=1e-6)


def test_from_pretrained_checks_the_folder(tmp_path) -> None:
    from derainzoo.hub import from_pretrained, save_pretrained

    folder = save_pretrained(derainzoo.create_model("dual_stage_derain_tiny"), tmp_path / "m", model_card="# mine\n")
    assert (folder / "README.md").read_text() == "# mine\n"
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\x00\x00\x00\x01")
    with pytest.raises(ChecksumMismatchError):
        from_pretrained(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        from_pretrained(tmp_path / "empty")


def test_push_to_hub_uploads_the_save_pretrained_layout(monkeypatch) -> None:
    import huggingface_hub

    from derainzoo.hub import push_to_hub

    calls = {}

    class FakeApi:
        def __init__(self, token=None) -> None:
            calls["token"] = token

        def create_repo(self, repo_id, private=False, exist_ok=False) -> None:
            calls["create"] = (repo_id, private, exist_ok)

        def upload_folder(self, repo_id, folder_path, commit_message):
            calls["files"] = sorted(p.name for p in Path(folder_path).iterdir())
            calls["upload"] = (repo_id, commit_message)
            return "https://hub.example/commit/1"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    url = push_to_hub(derainzoo.create_model("dual_stage_derain_tiny"), "someone/derain-tiny", token="t", private=True)
    assert url == "https://hub.example/commit/1"
    assert calls["create"] == ("someone/derain-tiny", True, True) and calls["token"] == "t"
    assert calls["files"] == ["README.md", "config.json", "model.safetensors", "model.safetensors.sha256"]
    assert calls["upload"] == ("someone/derain-tiny", "Add model")
