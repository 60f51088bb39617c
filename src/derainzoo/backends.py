"""Inference backends: run a derainer in PyTorch (eager), through ONNX Runtime or through OpenVINO,
behind one module interface that [`derain`][derainzoo.inference.derain] and the command line take.

``onnxruntime`` and ``openvino`` export the model once with
[`export_onnx`][derainzoo.export.export_onnx] (dynamic batch, height and width), keep the graph in a
cache folder under a name made of the weights' SHA-256 and the library versions (so new weights
or a new exporter give a new graph), and run it on the CPU with as many threads as PyTorch uses.
``onnxruntime`` needs the ``export`` extra, ``openvino`` the ``openvino`` extra.

On the project's 2-core AMD EPYC (AVX512-BF16), the default model at 481 x 321 took 2.68 s in
eager float32, 1.44 s under bfloat16 autocast, 1.87 s in ONNX Runtime and 1.26 s in OpenVINO (which
computes in bfloat16 there by itself), all within 0.011 dB of eager float32 on Rain100L test
(``benchmarks/bench_backends.py``, 2026-12-01): [`preferred_backend`][preferred_backend] picks
OpenVINO where it is installed.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from derainzoo._version import __version__
from derainzoo.export import GRAPH_REVISION, ONNX_INPUT_NAME, ONNX_OUTPUT_NAME, export_onnx
from derainzoo.inference import PRECISIONS
from derainzoo.models.routed_derain import RoutedDerain
from derainzoo.tiling import FALLBACK_BYTES_PER_PIXEL

__all__ = [
    "BACKENDS",
    "DeferredGraphDerainer",
    "OnnxRuntimeDerainer",
    "OPENVINO_MEMORY_FACTOR",
    "OpenVinoDerainer",
    "check_installed",
    "default_cache_dir",
    "load_backend",
    "onnx_graph_path",
    "preferred_backend",
]

BACKENDS = ("torch", "onnxruntime", "openvino")
"""The backends [`load_backend`][load_backend] knows."""

_REQUIREMENTS = {"onnxruntime": ("onnxruntime", "onnx", "onnxscript"), "openvino": ("openvino", "onnx", "onnxscript")}
_EXTRAS = {"onnxruntime": "export", "openvino": "openvino"}
_OPENVINO_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}

OPENVINO_MEMORY_FACTOR = 1.45
"""OpenVINO's peak memory per pixel over the PyTorch model's own figure
(``inference_bytes_per_pixel``), which tiles are planned with. Graph revision 2 took 4422 and 4136
bytes per pixel at 512 x 512 and 1024 x 1024 for the default model (its figure: 3072), 1634 and
1540 for the tiny one (1536): the rise of the peak over a process warmed up at 64 x 64 (2-core AMD
EPYC, 2026-12-02). The factor covers the larger ratio, the default model's 1.44."""


def default_cache_dir() -> Path:
    """``$DERAINZOO_CACHE``, else ``$XDG_CACHE_HOME/derainzoo``, else ``~/.cache/derainzoo``."""
    if os.environ.get("DERAINZOO_CACHE"):
        return Path(os.environ["DERAINZOO_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "derainzoo"


class _GraphDerainer(nn.Module):
    """What the graph backends share: CPU float32 input as numpy, the graph's path and the memory
    per pixel that tiles are planned with. Subclasses run the graph in ``_run``."""

    backend = ""

    def __init__(self, onnx_path: str | os.PathLike[str], inference_bytes_per_pixel: int):
        super().__init__()
        self.onnx_path = Path(onnx_path)
        self.inference_bytes_per_pixel = inference_bytes_per_pixel

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type != "cpu":
            raise ValueError(f"the {self.backend} backend runs on the CPU; got an input on {x.device}")
        return torch.from_numpy(self._run(x.detach().float().contiguous().numpy()))

    def _run(self, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def release_memory(self) -> None:
        """Hand back the buffers the runtime keeps between calls, where it can (see
        [`OpenVinoDerainer.release_memory`][derainzoo.backends.OpenVinoDerainer.release_memory])."""


class OnnxRuntimeDerainer(_GraphDerainer):
    """A derainer's ONNX graph run by ONNX Runtime on the CPU, as a module.

    Args:
        onnx_path: the graph, from [`export_onnx`][derainzoo.export.export_onnx].
        inference_bytes_per_pixel: peak memory per pixel to plan tiles with (the source
            model's figure; see [`estimate_inference_memory`][derainzoo.tiling.estimate_inference_memory]).
        threads: ONNX Runtime's intra-op threads; default PyTorch's thread count.

    Shape:
        - Input: ``(B, 3, H, W)`` float in ``[0, 1]`` on the CPU.
        - Output: ``(B, 3, H, W)`` float32.
    """

    backend = "onnxruntime"

    def __init__(self, onnx_path: str | os.PathLike[str], inference_bytes_per_pixel: int, threads: int | None = None):
        super().__init__(onnx_path, inference_bytes_per_pixel)
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        self.session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    def _run(self, images: np.ndarray) -> np.ndarray:
        (derained,) = self.session.run([ONNX_OUTPUT_NAME], {ONNX_INPUT_NAME: images})
        return derained


class OpenVinoDerainer(_GraphDerainer):
    """A derainer's ONNX graph compiled and run by OpenVINO on the CPU, as a module.

    Args:
        onnx_path: the graph, from [`export_onnx`][derainzoo.export.export_onnx].
        inference_bytes_per_pixel: peak memory per pixel to plan tiles with (OpenVINO's own; see
            [`OPENVINO_MEMORY_FACTOR`][OPENVINO_MEMORY_FACTOR] and
            [`estimate_inference_memory`][derainzoo.tiling.estimate_inference_memory]).
        threads: OpenVINO's inference threads; default PyTorch's thread count.
        precision: ``"fp32"``, ``"bf16"``, or ``"auto"``: OpenVINO's own choice, bfloat16 where
            the CPU computes it natively (within 0.011 dB of float32 on Rain100L test for the
            default model).
        cache_dir: where OpenVINO keeps compiled graphs, so later processes skip the
            compilation; ``None`` compiles every time.

    Shape:
        - Input: ``(B, 3, H, W)`` float in ``[0, 1]`` on the CPU.
        - Output: ``(B, 3, H, W)`` float32.
    """

    backend = "openvino"

    def __init__(
        self,
        onnx_path: str | os.PathLike[str],
        inference_bytes_per_pixel: int,
        threads: int | None = None,
        precision: str = "auto",
        cache_dir: str | os.PathLike[str] | None = None,
    ):
        super().__init__(onnx_path, inference_bytes_per_pixel)
        import openvino

        config: dict[str, object] = {"INFERENCE_NUM_THREADS": threads or torch.get_num_threads()}
        if precision != "auto":
            config["INFERENCE_PRECISION_HINT"] = _OPENVINO_PRECISIONS[precision]
        if cache_dir is not None:
            config["CACHE_DIR"] = str(cache_dir)
        self.compiled = openvino.Core().compile_model(str(onnx_path), "CPU", config)

    def _run(self, images: np.ndarray) -> np.ndarray:
        # share_outputs=False (the default): each call returns its own array, not the request's buffer.
        return self.compiled(images)[0]

    def release_memory(self) -> None:
        """Free the activation arena OpenVINO keeps, sized for the largest input so far, until
        the next call allocates it again. [`run_tiled`][derainzoo.tiling.run_tiled] (so
        [`derain`][derainzoo.inference.derain]) calls it after a tiled pass, so blending,
        scale-aware upsampling and a router's other expert do not add to the arena: at 12 MP this
        took the command's peak from 2266 to 1948 MiB (a 448-pixel tile's arena is about 850 MiB)."""
        self.compiled.release_memory()


class DeferredGraphDerainer(nn.Module):
    """A graph backend made on its first call: how [`load_backend`][load_backend] readies a
    router's heavy expert, so a run whose frames are never routed neither exports nor compiles a
    graph it does not use (the first export of the default model's heavy expert took 3.5 min
    on the 2-core AMD EPYC).

    Args:
        build: makes the backend module (exports the graph if the cache lacks it, then compiles).
        inference_bytes_per_pixel: peak memory per pixel to plan tiles with before the graph
            exists (the backend module's own figure).

    Shape:
        - Input: ``(B, 3, H, W)`` float in ``[0, 1]`` on the CPU.
        - Output: ``(B, 3, H, W)`` float32.
    """

    def __init__(self, build: Callable[[], nn.Module], inference_bytes_per_pixel: int):
        super().__init__()
        self._build = build
        self.inference_bytes_per_pixel = inference_bytes_per_pixel
        self.graph: nn.Module | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.graph is None:
            # The first call comes from inside derain()'s inference mode, where the exporter cannot trace.
            with torch.inference_mode(False):
                self.graph = self._build()
        return self.graph(x)

    def release_memory(self) -> None:
        """Hand back the graph runtime's buffers, once it exists (see
        [`OpenVinoDerainer.release_memory`][derainzoo.backends.OpenVinoDerainer.release_memory])."""
        if self.graph is not None:
            self.graph.release_memory()


def preferred_backend() -> str:
    """The fastest backend installed here: ``"openvino"`` when it and the ONNX exporter are
    installed (the ``openvino`` extra), else ``"torch"``."""
    return "openvino" if not _missing_packages("openvino") else "torch"


def check_installed(backend: str) -> None:
    """Check that the packages ``backend`` needs are installed, before any work.

    Raises:
        ImportError: some are missing; the message names them and the extra to install.
    """
    missing = _missing_packages(backend)
    if missing:
        raise ImportError(
            f"the {backend} backend needs {', '.join(missing)}: pip install 'derainzoo[{_EXTRAS[backend]}]'"
        )


def _missing_packages(backend: str) -> list[str]:
    return [name for name in _REQUIREMENTS.get(backend, ()) if importlib.util.find_spec(name) is None]


def onnx_graph_path(model: nn.Module, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where [`load_backend`][load_backend] keeps ``model``'s ONNX graph: ``cache_dir`` (default
    [`default_cache_dir`][default_cache_dir]) / ``<class>-<hash>.onnx``, the hash covering the weights, the
    class, the versions of derainzoo and PyTorch and the
    [`GRAPH_REVISION`][derainzoo.export.GRAPH_REVISION]. The file exists once exported."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return folder / _graph_name(model)


def _graph_name(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().contiguous().cpu().numpy().tobytes())
    digest.update(
        f"{type(model).__name__} derainzoo {__version__} graph {GRAPH_REVISION} torch {torch.__version__}".encode()
    )
    return f"{type(model).__name__}-{digest.hexdigest()[:16]}.onnx"


def load_backend(
    model: nn.Module,
    backend: str = "torch",
    cache_dir: str | os.PathLike[str] | None = None,
    precision: str = "auto",
    on_export: Callable[[Path], None] | None = None,
) -> nn.Module:
    """``model`` ready to run on ``backend``.

    Args:
        model: a derainer on the CPU in float32 (for ``onnxruntime`` and ``openvino``).
        backend: one of [`BACKENDS`][BACKENDS]; ``"torch"`` returns ``model`` itself.
        cache_dir: where exported graphs (and OpenVINO's compiled ones) are kept; default
            [`default_cache_dir`][default_cache_dir].
        precision: ``openvino``'s arithmetic (see [`OpenVinoDerainer`][OpenVinoDerainer]);
            ``onnxruntime`` runs float32 and takes ``"fp32"`` or ``"auto"``; ``torch`` ignores it
            (give it to [`derain`][derainzoo.inference.derain]).
        on_export: called with the graph's path before the graph is exported (once per weights:
            a minute or two), for example to tell a user why the first run waits.

    Returns:
        A module mapping ``(B, 3, H, W)`` to ``(B, 3, H, W)``. For a
        [`RoutedDerain`][derainzoo.models.RoutedDerain], a router with the same band over each
        expert made ready on ``backend`` (two graphs: the decision per frame stays in PyTorch);
        the heavy expert's graph is exported and compiled on the first frame routed to it
        ([`DeferredGraphDerainer`][DeferredGraphDerainer]).

    Raises:
        ValueError: an unknown backend or precision, or a model that is not on the CPU in float32.
        ImportError: a graph backend whose packages are not installed; the message names the extra.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS or (backend == "onnxruntime" and precision == "bf16"):
        allowed = "fp32 or auto" if backend == "onnxruntime" else "fp32, bf16 or auto"
        raise ValueError(f"the {backend} backend takes precision {allowed}, got {precision!r}")
    if backend == "torch":
        return model
    if isinstance(model, RoutedDerain):
        heavy = model.heavy
        _check_graph_input(heavy, backend)
        return model.with_experts(
            load_backend(model.light, backend, cache_dir, precision, on_export),
            DeferredGraphDerainer(
                lambda: load_backend(heavy, backend, cache_dir, precision, on_export),
                _graph_bytes_per_pixel(heavy, backend),
            ),
        )
    _check_graph_input(model, backend)
    path = onnx_graph_path(model, cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file():
        if on_export is not None:
            on_export(path)
        # Written beside and renamed, so an interrupted export never leaves a half graph behind.
        partial = path.with_suffix(f".{os.getpid()}.partial")
        export_onnx(copy.deepcopy(model).to(memory_format=torch.contiguous_format), partial)
        partial.replace(path)
    bytes_per_pixel = _graph_bytes_per_pixel(model, backend)
    if backend == "openvino":
        return OpenVinoDerainer(path, bytes_per_pixel, precision=precision, cache_dir=path.parent / "openvino")
    return OnnxRuntimeDerainer(path, bytes_per_pixel)


def _check_graph_input(model: nn.Module, backend: str) -> None:
    check_installed(backend)
    parameter = next(model.parameters())
    if parameter.device.type != "cpu" or parameter.dtype != torch.float32:
        raise ValueError(
            f"the {backend} backend needs the model on the CPU in float32, got {parameter.device} {parameter.dtype}"
        )


def _graph_bytes_per_pixel(model: nn.Module, backend: str) -> int:
    bytes_per_pixel = getattr(model, "inference_bytes_per_pixel", FALLBACK_BYTES_PER_PIXEL)
    return round(bytes_per_pixel * OPENVINO_MEMORY_FACTOR) if backend == "openvino" else bytes_per_pixel
