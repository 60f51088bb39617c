"""Inference backends: run a derainer in PyTorch (eager) or through ONNX Runtime, behind one
module interface that [`derain`][derainzoo.inference.derain] and the command line take.

``onnxruntime`` exports the model once with [`export_onnx`][derainzoo.export.export_onnx] (dynamic
batch, height and width), keeps the graph in a cache folder under a name made of the weights'
SHA-256 and the library versions (so new weights or a new exporter give a new graph), and runs
it on the CPU with as many threads as PyTorch uses. Needs the ``export`` extra.
"""

from __future__ import annotations

import copy
import hashlib
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from derainzoo._version import __version__
from derainzoo.export import ONNX_INPUT_NAME, ONNX_OUTPUT_NAME, export_onnx
from derainzoo.tiling import FALLBACK_BYTES_PER_PIXEL

__all__ = ["BACKENDS", "OnnxRuntimeDerainer", "default_cache_dir", "load_backend", "onnx_graph_path"]

BACKENDS = ("torch", "onnxruntime")
"""The backends [`load_backend`][load_backend] knows."""


def default_cache_dir() -> Path:
    """``$DERAINZOO_CACHE``, else ``$XDG_CACHE_HOME/derainzoo``, else ``~/.cache/derainzoo``."""
    if os.environ.get("DERAINZOO_CACHE"):
        return Path(os.environ["DERAINZOO_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "derainzoo"


class OnnxRuntimeDerainer(nn.Module):
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

    def __init__(self, onnx_path: str | os.PathLike[str], inference_bytes_per_pixel: int, threads: int | None = None):
        super().__init__()
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        self.session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.onnx_path = Path(onnx_path)
        self.inference_bytes_per_pixel = inference_bytes_per_pixel

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type != "cpu":
            raise ValueError(f"the onnxruntime backend runs on the CPU; got an input on {x.device}")
        images = x.detach().float().contiguous().numpy()
        (derained,) = self.session.run([ONNX_OUTPUT_NAME], {ONNX_INPUT_NAME: images})
        return torch.from_numpy(derained)


def onnx_graph_path(model: nn.Module, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where [`load_backend`][load_backend] keeps ``model``'s ONNX graph: ``cache_dir`` (default
    [`default_cache_dir`][default_cache_dir]) / ``<class>-<hash>.onnx``, the hash covering the weights, the
    class and the versions of derainzoo and PyTorch. The file exists once exported."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return folder / _graph_name(model)


def _graph_name(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().contiguous().cpu().numpy().tobytes())
    digest.update(f"{type(model).__name__} derainzoo {__version__} torch {torch.__version__}".encode())
    return f"{type(model).__name__}-{digest.hexdigest()[:16]}.onnx"


def load_backend(
    model: nn.Module, backend: str = "torch", cache_dir: str | os.PathLike[str] | None = None
) -> nn.Module:
    """``model`` ready to run on ``backend``.

    Args:
        model: a derainer on the CPU in float32 (for ``onnxruntime``).
        backend: one of [`BACKENDS`][BACKENDS]; ``"torch"`` returns ``model`` itself.
        cache_dir: where exported graphs are kept; default [`default_cache_dir`][default_cache_dir].

    Returns:
        A module mapping ``(B, 3, H, W)`` to ``(B, 3, H, W)``.

    Raises:
        ValueError: an unknown backend, or a model that is not on the CPU in float32.
        ImportError: ``onnxruntime`` without the ``export`` extra installed.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "torch":
        return model
    parameter = next(model.parameters())
    if parameter.device.type != "cpu" or parameter.dtype != torch.float32:
        raise ValueError(
            f"the onnxruntime backend needs the model on the CPU in float32, got {parameter.device} {parameter.dtype}"
        )
    path = onnx_graph_path(model, cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file():
        # Written beside and renamed, so an interrupted export never leaves a half graph behind.
        partial = path.with_suffix(f".{os.getpid()}.partial")
        export_onnx(copy.deepcopy(model).to(memory_format=torch.contiguous_format), partial)
        partial.replace(path)
    return OnnxRuntimeDerainer(path, getattr(model, "inference_bytes_per_pixel", FALLBACK_BYTES_PER_PIXEL))
