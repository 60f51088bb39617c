"""Export a derainer to ONNX with dynamic batch, height and width, and check it with onnxruntime.

Needs the ``export`` extra: ``pip install "derainzoo[export]"`` (onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import importlib.util
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from derainzoo.inference import eval_mode
from derainzoo.models.routed_derain import RoutedDerain

__all__ = [
    "GRAPH_REVISION",
    "ONNX_CHECK_TOLERANCE",
    "ONNX_INPUT_NAME",
    "ONNX_OUTPUT_NAME",
    "OnnxVerdict",
    "compare_with_onnxruntime",
    "export_onnx",
    "judge_onnx_differences",
]

GRAPH_REVISION = 3
"""Raised whenever the same weights export to a different graph, so that graphs cached by
[`load_backend`][derainzoo.backends.load_backend] are exported again. 2: layer norms as channel
reductions and no channel splits after depth-wise convolutions (see
[`LayerNorm2d`][derainzoo.layers.LayerNorm2d] and [`conv_chunks`][derainzoo.layers.conv_chunks]).
3: no broadcast copies in the attention (additive masks broadcast by an addition, see
[`multi_head_attention`][derainzoo.layers.multi_head_attention]; k-means similarities as matrix
products; [`l2_normalize`][derainzoo.layers.l2_normalize])."""

ONNX_INPUT_NAME = "rainy"
ONNX_OUTPUT_NAME = "derained"
ONNX_CHECK_TOLERANCE = 1e-3
"""Most images must reproduce to this; a clustering tie broken differently by the two runtimes
(see [`compare_with_onnxruntime`][compare_with_onnxruntime]) moves a few images
by more, a wrong graph moves most of them."""


@dataclass(frozen=True)
class OnnxVerdict:
    """The judgement of [`judge_onnx_differences`][judge_onnx_differences].

    Attributes:
        passed: the median difference is below the tolerance.
        median: median of the per-image maximum absolute differences.
        tie_moved: images at or above the tolerance (clustering ties, when the graph passes).
        images: images compared.
    """

    passed: bool
    median: float
    tie_moved: int
    images: int


def judge_onnx_differences(
    differences: Mapping[tuple[int, int], Sequence[float]], tolerance: float = ONNX_CHECK_TOLERANCE
) -> OnnxVerdict:
    """Pass or fail a graph on what [`compare_with_onnxruntime`][compare_with_onnxruntime]
    measured: the *median* image must agree within ``tolerance``, so that a rare clustering tie
    does not fail a correct graph while a wrong graph, which moves most images, fails.

    Examples:
        >>> judge_onnx_differences({(64, 64): [1e-7, 2e-7, 3e-3]})
        OnnxVerdict(passed=True, median=2e-07, tie_moved=1, images=3)
    """
    everything = [difference for per_image in differences.values() for difference in per_image]
    if not everything:
        raise ValueError("no differences to judge: compare at least one image")
    median = statistics.median(everything)
    return OnnxVerdict(
        passed=median < tolerance,
        median=median,
        tie_moved=sum(difference >= tolerance for difference in everything),
        images=len(everything),
    )


def _require(*modules: str) -> None:
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f'ONNX export needs {", ".join(missing)}: install them with pip install "derainzoo[export]"')


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    example_size: tuple[int, int] = (64, 96),
    opset_version: int = 18,
) -> Path:
    """Write ``model`` as an ONNX graph whose batch, height and width are dynamic.

    The graph is traced with ``torch.onnx.export(..., dynamo=True)`` from an example batch of
    two ``example_size`` images (sizes other than 0 and 1, so that no dimension is specialised).
    The model's layers take the size-independent path while exporting (the clustered attention
    always pads and masks its last window, the window attention always builds its mask), so the
    one graph gives the eager model's output for every size: 1x1 up, any batch.

    Args:
        model: a derainer mapping ``(B, 3, H, W)`` to ``(B, 3, H, W)``, e.g. from
            [`derainzoo.create_model`][derainzoo._factory.create_model]. It is exported in eval mode, on its own device
            (export on the CPU in float32 for a portable graph).
        path: the ``.onnx`` file to write; its folder must exist.
        example_size: ``(H, W)`` of the example images used for tracing.
        opset_version: ONNX opset of the graph (18 or newer).

    Returns:
        ``path`` as a `Path`. The graph has one input, ``"rainy"``
            ``(batch, 3, height, width)`` float32 in ``[0, 1]``, and one output, ``"derained"``.

    Raises:
        ImportError: onnx or onnxscript is not installed.
        FileNotFoundError: the folder of ``path`` does not exist.
        ValueError: ``example_size`` has a side shorter than 2, or ``model`` is a
            [`RoutedDerain`][derainzoo.models.RoutedDerain] (two graphs and a decision per frame:
            export ``model.light`` and ``model.heavy``).
    """
    if isinstance(model, RoutedDerain):
        raise ValueError(
            "a routed model is two networks and a decision per frame, not one graph: export model.light and "
            "model.heavy to two files (derain() and the graph backends route between them)"
        )
    _require("onnx", "onnxscript")
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder {path.parent} does not exist")
    if min(example_size) < 2:
        raise ValueError(f"example_size must be at least 2x2 so that no size is specialised, got {example_size}")
    parameter = next(model.parameters())
    example = torch.rand(2, 3, *example_size, generator=torch.Generator().manual_seed(0)).to(parameter)
    dynamic = torch.export.Dim.DYNAMIC
    with eval_mode(model):
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            dynamic_shapes=({0: dynamic, 2: dynamic, 3: dynamic},),
            input_names=[ONNX_INPUT_NAME],
            output_names=[ONNX_OUTPUT_NAME],
            opset_version=opset_version,
            verbose=False,
        )
    program.save(str(path))
    return path


def compare_with_onnxruntime(
    model: nn.Module,
    path: str | Path,
    sizes: Sequence[tuple[int, int]],
    images_per_size: int = 3,
    batch_size: int = 1,
    seed: int = 0,
) -> dict[tuple[int, int], list[float]]:
    """Run the ONNX graph in onnxruntime (CPU) and the model in PyTorch on the same random images.

    Expect differences of about ``1e-7``. The clustering inside
    [`ClusteredNonLocalWindowAttention`][derainzoo.layers.clustered_attention.ClusteredNonLocalWindowAttention] is a hard assignment: where a
    pixel is equally similar to two centroids up to float rounding, the two runtimes may put it
    in different clusters, the sorted sequence shifts by one token and the whole image moves
    (by about ``1e-3`` for the bundled tiny model, in 1 of about 25 random images; more often and
    by up to ``5e-2`` for untrained models, whose keys have no cluster structure). So judge a
    graph by several images: most must agree to float rounding.

    Args:
        model: the model the graph was exported from, on the CPU in float32; it runs in eval mode
            and keeps the mode it had.
        path: the ``.onnx`` file written by [`export_onnx`][export_onnx].
        sizes: ``(H, W)`` image sizes to try.
        images_per_size: random inputs per size.
        batch_size: images per run (each run counts as one input).
        seed: seed of the random images.

    Returns:
        For every size, the maximum absolute difference between the two outputs of each input.

    Raises:
        ImportError: onnxruntime is not installed.
        ValueError: the model is not on the CPU in float32.
    """
    _require("onnxruntime")
    parameter = next(model.parameters())
    if parameter.device.type != "cpu" or parameter.dtype != torch.float32:
        raise ValueError(f"model must be on the CPU in float32 to compare, got {parameter.device} {parameter.dtype}")
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(seed)
    differences: dict[tuple[int, int], list[float]] = {}
    with eval_mode(model), torch.no_grad():
        for height, width in sizes:
            for _ in range(images_per_size):
                images = torch.rand(batch_size, 3, height, width, generator=generator)
                expected = model(images).numpy()
                (produced,) = session.run([ONNX_OUTPUT_NAME], {ONNX_INPUT_NAME: images.numpy()})
                differences.setdefault((height, width), []).append(float(np.abs(produced - expected).max()))
    return differences
