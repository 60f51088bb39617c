"""The ``derainzoo`` console script's front end: its argument parser, and nothing that imports torch.

``import derainzoo`` imports torch and timm (it registers the models with timm), which takes
seconds and most of a gigabyte. This module lives beside the package, not in it, so that
``derainzoo --help``, ``--version`` and argument mistakes answer in a tenth of a second; the commands
themselves run in ``derainzoo.cli``, imported once the arguments parse.

The defaults the help texts state are restated here, because reading them from the package would
import it; ``tests/test_derainzoo_cli.py`` checks every one against the package's own constant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

__all__ = [
    "AUTO_SCALE_LONG_SIDE",
    "BACKENDS",
    "DEFAULT_MEMORY_BUDGET_GB",
    "DEFAULT_EXPORT_MODEL",
    "DEFAULT_MODEL",
    "DEFAULT_SCALE",
    "DERAINED_SUFFIX",
    "OUTPUT_FORMAT_NAMES",
    "PRECISIONS",
    "build_parser",
    "main",
]

DEFAULT_MODEL = "dual_stage_derain_routed"
"""``derainzoo.inference.DEFAULT_MODEL``."""

DEFAULT_EXPORT_MODEL = "dual_stage_derain"
"""What ``derainzoo export`` writes without ``--model``: one network (a router is two graphs),
the default model's light expert, ``dual_stage_derain.rain_mix``."""

BACKENDS = ("torch", "onnxruntime", "openvino")
"""``derainzoo.backends.BACKENDS``."""

AUTO_SCALE_LONG_SIDE = 1280
"""``derainzoo.scaling.AUTO_SCALE_LONG_SIDE``."""

PRECISIONS = ("fp32", "bf16", "auto")
"""``derainzoo.inference.PRECISIONS``."""

DEFAULT_SCALE = "auto"
"""``derainzoo.inference.derain``'s default ``scale``."""

DEFAULT_MEMORY_BUDGET_GB = 2.0
"""``derainzoo.tiling.DEFAULT_MEMORY_BUDGET`` in GiB."""

OUTPUT_FORMAT_NAMES = ("bmp", "jpeg", "png", "tiff", "webp")
"""The keys of ``derainzoo.image_io.OUTPUT_FORMATS``, sorted."""

DERAINED_SUFFIX = "_derained"
"""Added to an input's name for its output when ``derain`` has no ``-o`` folder."""


def _installed_version() -> str:
    try:
        return version("derainzoo")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _add_model_arguments(parser: argparse.ArgumentParser, default: str = DEFAULT_MODEL) -> None:
    parser.add_argument("--model", default=default, help=f"architecture (default {default})")
    parser.add_argument("--weights", type=Path, help="safetensors weights to use instead of the bundled ones")


def _add_backend_argument(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--backend",
        choices=("auto", *BACKENDS),
        default=default,
        help="run the model in PyTorch, or through ONNX Runtime (derainzoo[export]) or OpenVINO "
        "(derainzoo[openvino]) on the CPU, exported once and cached; auto: OpenVINO where installed and running "
        f"on the CPU (the fastest measured), else PyTorch (default {default})",
    )


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tile",
        type=int,
        help="derain in overlapping tiles of this size; 0 for the whole image (default: tiles only when the whole "
        "image would exceed --memory-budget). Tiles under 256 pixels cost quality: the attention needs context",
    )
    parser.add_argument(
        "--tile-overlap", type=int, help="overlap of neighbouring tiles in pixels (default min(32, tile/4))"
    )
    parser.add_argument(
        "--memory-budget",
        type=float,
        default=DEFAULT_MEMORY_BUDGET_GB,
        metavar="GiB",
        help=f"memory the command may take on the CPU, in GiB (default {DEFAULT_MEMORY_BUDGET_GB:g}): what it holds "
        "once the model is loaded is counted, and each image is derained in tiles when a whole-image pass would "
        "not fit in the rest (on a GPU: the GPU memory a pass may take)",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    parser.add_argument(
        "--self-ensemble",
        action="store_true",
        help="average over the 8 flips/rotations of each input (8x slower, more accurate)",
    )


def _add_scale_argument(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--scale",
        default=default,
        help="derain at this scale and bring the removed rain back to full resolution: 'auto' (a long side over "
        f"{AUTO_SCALE_LONG_SIDE} px is brought down to it, smaller images stay as they are), or a number in (0, 1]; "
        f"1 is full resolution (default {default})",
    )


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``derainzoo`` command and its subcommands ``derain``, ``eval``, ``export``
    and ``list``."""
    parser = argparse.ArgumentParser(prog="derainzoo", description="Single-image deraining.")
    parser.add_argument("--version", action="version", version=f"derainzoo {_installed_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    derain_parser = commands.add_parser("derain", help="derain image files or folders of images")
    derain_parser.add_argument("inputs", nargs="+", type=Path, help="image files and/or folders (not recursive)")
    derain_parser.add_argument(
        "-o",
        "--output",
        type=Path,
        help=f"output folder (default: next to each input, named <name>{DERAINED_SUFFIX}<ext>)",
    )
    _add_model_arguments(derain_parser)
    _add_backend_argument(derain_parser, default="auto")
    _add_run_arguments(derain_parser)
    _add_scale_argument(derain_parser, DEFAULT_SCALE)
    derain_parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="the model's arithmetic: fp32, bf16 (bfloat16 autocast), or auto (default): bf16 where the device "
        "computes it natively (CPUs with AVX512-BF16 or AMX, recent GPUs), else fp32",
    )
    derain_parser.add_argument(
        "--format",
        choices=OUTPUT_FORMAT_NAMES,
        help="output format (default: the input's own; lossless PNG/WebP stay lossless)",
    )
    derain_parser.add_argument(
        "--quality", type=int, help="JPEG or lossy WebP quality, 1-100 (default: JPEG 95, WebP lossless)"
    )
    derain_parser.add_argument("--overwrite", action="store_true", help="replace output files that exist already")

    eval_parser = commands.add_parser("eval", help="score a model on a paired rain/norain folder (Y-channel PSNR/SSIM)")
    eval_parser.add_argument(
        "--data",
        type=Path,
        required=True,
        help="folder with rain/ and norain/; with the rain_params.json of rendered rain, also one row per style",
    )
    _add_model_arguments(eval_parser)
    # Scores as the papers compute them: PyTorch in float32 unless asked otherwise.
    _add_backend_argument(eval_parser, default="torch")
    _add_run_arguments(eval_parser)
    _add_scale_argument(eval_parser, "1")
    eval_parser.add_argument("--input-baseline", action="store_true", help="score the rainy inputs themselves")
    eval_parser.add_argument(
        "--truncate", action="store_true", help="truncate outputs to 8 bits (as PReNet/BRN) instead of rounding"
    )
    eval_parser.add_argument("--csv", type=Path, help="write per-image scores to this CSV file")

    export_parser = commands.add_parser("export", help="write a model as ONNX with dynamic batch, height and width")
    export_parser.add_argument("-o", "--output", type=Path, required=True, help="the .onnx file to write")
    _add_model_arguments(export_parser, DEFAULT_EXPORT_MODEL)
    export_parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    export_parser.add_argument(
        "--check", action="store_true", help="run the graph in onnxruntime on two sizes and compare with PyTorch"
    )

    commands.add_parser("list", help="list the models and the pretrained weights available")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``derainzoo`` console script: parse the arguments here, then run the
    command in ``derainzoo.cli``; returns the exit code."""
    args = build_parser().parse_args(argv)
    from derainzoo.cli import run_command  # imports torch: only once there is work to do

    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
