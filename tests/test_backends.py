"""Inference backends: the ONNX Runtime and OpenVINO modules against eager PyTorch, the graph
cache, derain() and the command line through them, the default choice, errors."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from PIL import Image

import derainzoo
import derainzoo.backends
import derainzoo.cli
from derainzoo.backends import (
    BACKENDS,
    OPENVINO_MEMORY_FACTOR,
    DeferredGraphDerainer,
    OnnxRuntimeDerainer,
    OpenVinoDerainer,
    load_backend,
    onnx_graph_path,
    preferred_backend,
)
from derainzoo.inference import derain, prepare_for_inference
from derainzoo.models import RoutedDerain

from .helpers import TINY, smooth_image

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def bundled_tiny():
    return prepare_for_inference(derainzoo.create_model(TINY, pretrained=True), "cpu")


@pytest.fixture(scope="module")
def onnx_tiny(bundled_tiny, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    announced = []
    runtime = load_backend(bundled_tiny, "onnxruntime", cache_dir=cache, on_export=announced.append)
    assert announced == [onnx_graph_path(bundled_tiny, cache)]  # told before the first export
    return runtime, cache


def test_torch_is_the_model_itself_and_unknown_backends_are_named(bundled_tiny) -> None:
    assert load_backend(bundled_tiny, "torch") is bundled_tiny
    assert BACKENDS == ("torch", "onnxruntime", "openvino")
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'; choose one of torch, onnxruntime, openvino"):
        load_backend(bundled_tiny, "tensorrt")
    with pytest.raises(ValueError, match="CPU in float32"):
        load_backend(derainzoo.create_model(TINY).double(), "onnxruntime")


def test_onnxruntime_derains_like_pytorch_through_derain(onnx_tiny, bundled_tiny) -> None:
    runtime, _ = onnx_tiny
    assert isinstance(runtime, OnnxRuntimeDerainer)
    assert runtime.inference_bytes_per_pixel == bundled_tiny.inference_bytes_per_pixel
    for height, width in ((37, 53), (64, 96)):
        image = smooth_image(height, width, seed=height)
        torch.testing.assert_close(derain(image, runtime), derain(image, bundled_tiny), atol=1e-3, rtol=0)
    # Tiles and the self-ensemble go through it too.
    image = smooth_image(80, 80)
    tiled = derain(image, runtime, tile_size=48, self_ensemble=True)
    torch.testing.assert_close(tiled, derain(image, bundled_tiny, tile_size=48, self_ensemble=True), atol=1e-3, rtol=0)


def test_the_graph_is_exported_once_and_named_by_the_weights(onnx_tiny, bundled_tiny) -> None:
    runtime, cache = onnx_tiny
    path = onnx_graph_path(bundled_tiny, cache)
    assert runtime.onnx_path == path and path.is_file() and list(cache.iterdir()) == [path]
    stamp = path.stat().st_mtime_ns
    announced = []
    again = load_backend(bundled_tiny, "onnxruntime", cache_dir=cache, on_export=announced.append)
    assert path.stat().st_mtime_ns == stamp and again.onnx_path == path and announced == []
    other_weights = derainzoo.create_model(TINY)
    assert onnx_graph_path(other_weights, cache) != path


def test_a_router_runs_each_expert_as_its_own_graph_and_keeps_its_band(onnx_tiny, bundled_tiny) -> None:
    runtime, cache = onnx_tiny
    router = RoutedDerain(bundled_tiny, bundled_tiny, band=(0.0, 0.0))  # every frame takes both passes
    compiled = load_backend(router, "onnxruntime", cache_dir=cache)
    assert isinstance(compiled, RoutedDerain) and compiled.band == router.band
    assert isinstance(compiled.light, OnnxRuntimeDerainer) and isinstance(compiled.heavy, DeferredGraphDerainer)
    assert compiled.heavy.graph is None  # made on the first routed frame
    assert compiled.heavy.inference_bytes_per_pixel == compiled.light.inference_bytes_per_pixel
    image = smooth_image(48, 64)
    torch.testing.assert_close(derain(image, compiled, scale=1), derain(image, router, scale=1), atol=1e-3, rtol=0)
    assert isinstance(compiled.heavy.graph, OnnxRuntimeDerainer)
    assert compiled.heavy.graph.onnx_path == compiled.light.onnx_path == runtime.onnx_path  # same weights, one graph


def test_a_router_exports_its_heavy_expert_only_when_a_frame_is_routed(onnx_tiny, bundled_tiny) -> None:
    _, cache = onnx_tiny
    heavy = prepare_for_inference(derainzoo.create_model(TINY), "cpu")  # other weights: a graph of its own
    announced = []
    compiled = load_backend(
        RoutedDerain(bundled_tiny, heavy, band=(250.0, 255.0)),
        "onnxruntime",
        cache_dir=cache,
        on_export=announced.append,
    )
    image = smooth_image(40, 40)
    torch.testing.assert_close(
        derain(image, compiled, scale=1), derain(image, bundled_tiny, scale=1), atol=1e-3, rtol=0
    )
    assert compiled.heavy.graph is None and announced == [] and not onnx_graph_path(heavy, cache).exists()
    compiled.band = (0.0, 0.0)  # now every frame is routed: the heavy graph is exported, announced, then run
    routed = derain(image, compiled, scale=1)
    assert announced == [onnx_graph_path(heavy, cache)] and announced[0].is_file()
    torch.testing.assert_close(
        routed, derain(image, RoutedDerain(bundled_tiny, heavy, band=(0.0, 0.0)), scale=1), atol=1e-3, rtol=0
    )
    with pytest.raises(ValueError, match="CPU in float32"):  # the deferred expert is still checked up front
        load_backend(RoutedDerain(bundled_tiny, heavy.double()), "onnxruntime", cache_dir=cache)


def test_the_runtime_refuses_inputs_off_the_cpu(onnx_tiny) -> None:
    runtime, _ = onnx_tiny
    if not torch.cuda.is_available():
        pytest.skip("needs a second device")
    with pytest.raises(ValueError, match="runs on the CPU"):
        runtime(torch.rand(1, 3, 8, 8, device="cuda"))


def test_the_command_line_runs_the_cached_graph(onnx_tiny, tmp_path, monkeypatch, capsys) -> None:
    from derainzoo.cli import main

    from .helpers import write_paired_folder

    _, cache = onnx_tiny
    monkeypatch.setenv("DERAINZOO_CACHE", str(cache))
    write_paired_folder(tmp_path / "pairs", count=3)
    common = ["--model", TINY, "--csv"]
    assert main(["eval", "--data", str(tmp_path / "pairs"), *common, str(tmp_path / "torch.csv")]) == 0
    assert (
        main(
            ["eval", "--data", str(tmp_path / "pairs"), *common, str(tmp_path / "ort.csv"), "--backend", "onnxruntime"]
        )
        == 0
    )
    assert "exporting" not in capsys.readouterr().err  # the graph of these weights was cached already

    def mean_psnr(name: str) -> float:
        mean_row = (tmp_path / name).read_text().splitlines()[-1].split(",")
        assert mean_row[0] == "mean"
        return float(mean_row[1])

    assert abs(mean_psnr("ort.csv") - mean_psnr("torch.csv")) < 0.01
    image = tmp_path / "pairs" / "rain" / "000.png"
    assert main(["derain", str(image), "-o", str(tmp_path / "out"), "--model", TINY, "--backend", "onnxruntime"]) == 0
    assert (tmp_path / "out" / "000.png").is_file()


def test_openvino_derains_like_pytorch_and_keeps_each_output(onnx_tiny, bundled_tiny) -> None:
    pytest.importorskip("openvino")
    _, cache = onnx_tiny
    for precision, tolerance in (("fp32", 1e-3), ("auto", 2e-2)):
        runtime = load_backend(bundled_tiny, "openvino", cache_dir=cache, precision=precision)
        assert isinstance(runtime, OpenVinoDerainer) and runtime.onnx_path == onnx_graph_path(bundled_tiny, cache)
        # Tiles are planned with OpenVINO's own, larger, memory per pixel.
        expected_bytes = round(bundled_tiny.inference_bytes_per_pixel * OPENVINO_MEMORY_FACTOR)
        assert runtime.inference_bytes_per_pixel == expected_bytes
        image = smooth_image(37, 53, seed=3)
        torch.testing.assert_close(derain(image, runtime), derain(image, bundled_tiny), atol=tolerance, rtol=0)
    # Each call's output is its own array: the self-ensemble holds eight of them at once.
    image = smooth_image(80, 80)
    ensembled = derain(image, runtime, tile_size=48, self_ensemble=True)
    expected = derain(image, bundled_tiny, tile_size=48, self_ensemble=True)
    torch.testing.assert_close(ensembled, expected, atol=2e-2, rtol=0)
    first = runtime(image)
    runtime(smooth_image(80, 80, seed=9))
    torch.testing.assert_close(first, runtime(image), atol=0, rtol=0)


def test_precision_is_checked_per_backend(bundled_tiny) -> None:
    with pytest.raises(ValueError, match="the onnxruntime backend takes precision fp32 or auto, got 'bf16'"):
        load_backend(bundled_tiny, "onnxruntime", precision="bf16")
    with pytest.raises(ValueError, match="the openvino backend takes precision fp32, bf16 or auto, got 'fp16'"):
        load_backend(bundled_tiny, "openvino", precision="fp16")


def test_the_preferred_backend_is_openvino_where_installed(bundled_tiny, monkeypatch, tmp_path, capsys) -> None:
    installed = importlib.util.find_spec("openvino") is not None
    assert preferred_backend() == ("openvino" if installed else "torch")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        derainzoo.backends.importlib.util,
        "find_spec",
        lambda name, *args: None if name == "openvino" else real_find_spec(name, *args),
    )
    assert preferred_backend() == "torch"
    with pytest.raises(ImportError, match=r"the openvino backend needs openvino: pip install 'derainzoo\[openvino\]'"):
        load_backend(bundled_tiny, "openvino")
    # The command says so in one line, before loading anything.
    image = tmp_path / "photo.png"
    Image.fromarray((smooth_image(20, 24)[0].permute(1, 2, 0).numpy() * 255).astype("uint8")).save(image)
    assert derainzoo.cli.main(["derain", str(image), "--model", TINY, "--backend", "openvino"]) == 2
    err = capsys.readouterr().err
    expected = (
        "derainzoo: error: --backend openvino: the openvino backend needs openvino: pip install 'derainzoo[openvino]'"
    )
    assert err.strip() == expected


def test_the_command_runs_openvino_by_default_where_installed(onnx_tiny, tmp_path, monkeypatch, capsys) -> None:
    pytest.importorskip("openvino")
    from derainzoo.cli import main

    _, cache = onnx_tiny
    monkeypatch.setenv("DERAINZOO_CACHE", str(cache))
    monkeypatch.setattr(derainzoo.cli, "preferred_backend", preferred_backend)  # undo the conftest's choice
    chosen = []
    real_load_backend = derainzoo.cli.load_backend
    monkeypatch.setattr(
        derainzoo.cli,
        "load_backend",
        lambda model, backend, **options: chosen.append(backend) or real_load_backend(model, backend, **options),
    )
    image = tmp_path / "photo.png"
    Image.fromarray((smooth_image(40, 56)[0].permute(1, 2, 0).numpy() * 255).astype("uint8")).save(image)
    assert main(["derain", str(image), "-o", str(tmp_path / "out"), "--model", TINY]) == 0, capsys.readouterr().err
    assert chosen == ["openvino"] and (tmp_path / "out" / "photo.png").is_file()
    # An explicit --backend torch never goes through a graph.
    assert main(["derain", str(image), "-o", str(tmp_path / "cpu"), "--model", TINY, "--backend", "torch"]) == 0
    assert chosen == ["openvino"]
