"""The Hub layout and the one path every source of weights takes (local file, overlay, local-dir:, hf-hub:)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import timm.models._hub
import torch

import derainzoo
import derainzoo._helpers
from derainzoo._helpers import ChecksumMismatchError, UnsafeCheckpointError
from derainzoo.hub import from_pretrained, push_to_hub, save_pretrained

from .helpers import TINY, assert_same_weights, tiny_model


def test_hub_files_must_be_safetensors() -> None:
    # Refused before anything is downloaded.
    with pytest.raises(UnsafeCheckpointError, match=r"\.safetensors"):
        timm.create_model(
            "dual_stage_derain_small",
            pretrained=True,
            pretrained_cfg_overlay=dict(hf_hub_id="someone/model", hf_hub_filename="model.bin"),
        )


def test_hub_downloads_go_through_the_checked_loader(saved, monkeypatch) -> None:
    model, path, _ = saved
    requested = []

    def fake_download(repo_id, filename, revision=None, cache_dir=None):
        requested.append((repo_id, filename))
        return str(path)

    monkeypatch.setattr(timm.models._hub, "hf_hub_download", fake_download)
    overlay = dict(hf_hub_id=f"someone/{TINY}", file=None)
    loaded = timm.create_model(TINY, pretrained=True, pretrained_cfg_overlay=overlay)
    assert requested == [(f"someone/{TINY}", "model.safetensors")]
    assert_same_weights(loaded, model)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError):
        timm.create_model(TINY, pretrained=True, pretrained_cfg_overlay=overlay)


def test_save_pretrained_round_trips_through_from_pretrained_and_timm_local_dir(tmp_path) -> None:
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
            assert_same_weights(loaded, model)
            torch.testing.assert_close(loaded.eval()(x), expected, rtol=0, atol=1e-6)


def test_from_pretrained_checks_the_folder(tmp_path) -> None:
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


def test_every_source_of_weights_loads_the_same_tensors_through_one_function(tmp_path, monkeypatch) -> None:
    """weights=PATH, a pretrained_cfg overlay file, local-dir: and hf-hub: all end in
    derainzoo._helpers.load_weights (the models' load_pretrained hook) and give the same tensors."""
    trained = tiny_model(seed=3)
    folder = save_pretrained(trained, tmp_path / "folder")
    weights = folder / "model.safetensors"
    calls = []
    original = derainzoo._helpers.load_weights

    def spy(model, path, **kwargs):
        calls.append(Path(path))
        return original(model, path, **kwargs)

    monkeypatch.setattr(derainzoo._helpers, "load_weights", spy)

    def fake_download(repo_id, filename, revision=None, cache_dir=None, **kwargs):
        return str(folder / filename)

    monkeypatch.setattr(timm.models._hub, "hf_hub_download", fake_download)
    loaded = [
        derainzoo.create_model(TINY, weights=weights),
        derainzoo.create_model(TINY, pretrained=True, pretrained_cfg_overlay=dict(file=str(weights))),
        timm.create_model(TINY, pretrained=True, pretrained_cfg_overlay=dict(file=str(weights))),
        derainzoo.create_model(f"local-dir:{folder}"),
        from_pretrained(folder),
        derainzoo.create_model("hf-hub:someone/tiny"),
    ]
    assert calls == [weights] * len(loaded)
    for model in loaded:
        assert_same_weights(model, trained)


def test_weights_and_pretrained_or_a_source_name_are_refused_together(saved) -> None:
    _, path, _ = saved
    with pytest.raises(ValueError, match="weights=PATH alone"):
        derainzoo.create_model(TINY, pretrained=True, weights=path)
    with pytest.raises(ValueError, match="weights=PATH alone"):
        derainzoo.create_model(f"local-dir:{path.parent}", weights=path)


def test_a_local_dir_of_another_library_is_named(tmp_path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "resnet18", "num_classes": 10}))
    with pytest.raises(ValueError, match="unknown model 'resnet18'"):
        derainzoo.create_model(f"local-dir:{tmp_path}")
