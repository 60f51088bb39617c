"""The ``derainzoo`` command: derain image files, evaluate on a paired folder, export to ONNX,
list models."""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from tqdm.auto import tqdm

from derainzoo._factory import create_model, list_models, list_pretrained
from derainzoo.evaluation import evaluate
from derainzoo.export import compare_with_onnxruntime, export_onnx
from derainzoo.hub import PretrainedWeightsUnavailableError
from derainzoo.inference import DEFAULT_MODEL, derain, load_image, prepare_for_inference
from derainzoo.self_ensemble import SelfEnsemble

__all__ = ["main"]

# Two sizes that the export's example did not have, one needing padding inside and one not.
ONNX_CHECK_SIZES = ((77, 131), (128, 128))
# Most images must reproduce to this; a clustering tie broken differently by the two runtimes
# (see compare_with_onnxruntime) moves a few images by more, a wrong graph moves most of them.
ONNX_CHECK_TOLERANCE = 1e-3


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"architecture (default {DEFAULT_MODEL})")
    parser.add_argument("--weights", type=Path, help="safetensors weights to use instead of the bundled ones")


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tile", type=int, help="derain in overlapping tiles of this size (bounded memory)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument(
        "--self-ensemble", action="store_true", help="average over the 8 flips/rotations of each input (8x slower, more accurate)"
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="derainzoo", description="Single-image deraining.")
    commands = parser.add_subparsers(dest="command", required=True)

    derain_parser = commands.add_parser("derain", help="derain image files or folders of images")
    derain_parser.add_argument("inputs", nargs="+", type=Path, help="image files and/or folders (not recursive)")
    derain_parser.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    _add_model_arguments(derain_parser)
    _add_run_arguments(derain_parser)
    derain_parser.add_argument("--tile-overlap", type=int, default=32, help="overlap of neighbouring tiles (pixels)")
    derain_parser.add_argument("--overwrite", action="store_true", help="allow writing over an input file")

    eval_parser = commands.add_parser("eval", help="score a model on a paired rain/norain folder (Y-channel PSNR/SSIM)")
    eval_parser.add_argument("--data", type=Path, required=True, help="folder with rain/ and norain/")
    _add_model_arguments(eval_parser)
    _add_run_arguments(eval_parser)
    eval_parser.add_argument("--input-baseline", action="store_true", help="score the rainy inputs themselves")
    eval_parser.add_argument("--truncate", action="store_true", help="truncate outputs to 8 bits (as PReNet/BRN) instead of rounding")
    eval_parser.add_argument("--csv", type=Path, help="write per-image scores to this CSV file")

    export_parser = commands.add_parser("export", help="write a model as ONNX with dynamic batch, height and width")
    export_parser.add_argument("-o", "--output", type=Path, required=True, help="the .onnx file to write")
    _add_model_arguments(export_parser)
    export_parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    export_parser.add_argument(
        "--check", action="store_true", help="run the graph in onnxruntime on two sizes and compare with PyTorch"
    )

    commands.add_parser("list", help="list the models and the pretrained weights available")
    return parser


def _collect_inputs(inputs: Sequence[Path]) -> tuple[list[Path], list[str]]:
    """Files to process, and error messages for inputs that name nothing usable."""
    files, errors = [], []
    for path in inputs:
        if path.is_dir():
            images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in Image.registered_extensions())
            if not images:
                errors.append(f"{path}: folder holds no image files")
            files.extend(images)
        elif path.exists():
            files.append(path)
        else:
            errors.append(f"{path}: no such file or folder")
    return files, errors


def _device(args: argparse.Namespace) -> torch.device:
    return torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _load_model(args: argparse.Namespace, device: torch.device) -> torch.nn.Module | None:
    """The requested model with its weights, or ``None`` after reporting why it cannot be built."""
    try:
        if args.weights is not None:
            model = create_model(args.model, weights=args.weights)
        else:
            model = create_model(args.model, pretrained=True)
    except (ValueError, FileNotFoundError, PretrainedWeightsUnavailableError) as error:
        print(f"derainzoo: error: {error}", file=sys.stderr)
        return None
    return prepare_for_inference(model, device)


def _derain_command(args: argparse.Namespace) -> int:
    files, errors = _collect_inputs(args.inputs)
    for message in errors:
        print(f"derainzoo: error: {message}", file=sys.stderr)
    if not files:
        print("derainzoo: error: nothing to derain", file=sys.stderr)
        return 1
    device = _device(args)
    model = _load_model(args, device)
    if model is None:
        return 2
    try:
        args.output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print(f"derainzoo: error: cannot create output folder {args.output}: {error}", file=sys.stderr)
        return 2

    failures = len(errors)
    for path in tqdm(files, desc="derain", unit="image"):
        target = args.output / path.name
        if not args.overwrite and target.resolve() == path.resolve():
            tqdm.write(f"derainzoo: error: {path}: output would overwrite the input (use --overwrite)", file=sys.stderr)
            failures += 1
            continue
        try:
            image = load_image(path)
            result = derain(
                image,
                model,
                tile_size=args.tile,
                tile_overlap=args.tile_overlap,
                device=device,
                self_ensemble=args.self_ensemble,
            )
            result.save(target, **({"quality": 95} if target.suffix.lower() in (".jpg", ".jpeg") else {}))
        except (ValueError, OSError) as error:
            tqdm.write(f"derainzoo: error: {path}: {error}", file=sys.stderr)
            failures += 1
    if failures:
        print(f"derainzoo: {failures} input(s) failed, {len(files) - failures + len(errors)} written", file=sys.stderr)
    return 1 if failures else 0


def _eval_command(args: argparse.Namespace) -> int:
    if args.input_baseline and args.self_ensemble:
        print("derainzoo: error: --self-ensemble needs a model; --input-baseline scores the inputs", file=sys.stderr)
        return 2
    device = _device(args)
    model = None
    if not args.input_baseline:
        model = _load_model(args, device)
        if model is None:
            return 2
        if args.self_ensemble:
            model = SelfEnsemble(model)
    try:
        result = evaluate(model, args.data, device=device, tile_size=args.tile, rounding=not args.truncate)
    except ValueError as error:
        print(f"derainzoo: error: {error}", file=sys.stderr)
        return 2
    name = "rainy input" if args.input_baseline else args.model + (f" ({args.weights})" if args.weights else "")
    if args.self_ensemble:
        name += ", x8 self-ensemble"
    print("| model | images | PSNR (Y) | SSIM (Y) |\n|---|---|---|---|")
    print(f"| {name} | {len(result.per_image)} | {result.psnr:.2f} | {result.ssim:.4f} |")
    if args.csv is not None:
        result.write_csv(args.csv)
    return 0


def _export_command(args: argparse.Namespace) -> int:
    model = _load_model(args, torch.device("cpu"))
    if model is None:
        return 2
    print(f"derainzoo: exporting {args.model} to {args.output} (tracing takes a minute or two)", file=sys.stderr)
    try:
        export_onnx(model, args.output, opset_version=args.opset)
    except (ImportError, FileNotFoundError) as error:
        print(f"derainzoo: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}")
    if not args.check:
        return 0
    try:
        differences = compare_with_onnxruntime(model, args.output, ONNX_CHECK_SIZES)
    except ImportError as error:
        print(f"derainzoo: error: {error}", file=sys.stderr)
        return 2
    for (height, width), per_image in differences.items():
        listed = " ".join(f"{difference:.1e}" for difference in per_image)
        print(f"onnxruntime vs PyTorch at {height}x{width}, max abs difference per image: {listed}")
    everything = [difference for per_image in differences.values() for difference in per_image]
    flipped = sum(difference >= ONNX_CHECK_TOLERANCE for difference in everything)
    if flipped:
        print(
            f"derainzoo: {flipped} of {len(everything)} images differ by {ONNX_CHECK_TOLERANCE:g} or more: clustering "
            "ties broken differently by the two runtimes (see derainzoo.export.compare_with_onnxruntime)",
            file=sys.stderr,
        )
    if statistics.median(everything) >= ONNX_CHECK_TOLERANCE:
        print(
            f"derainzoo: error: the graph does not reproduce the model: the median difference is "
            f"{statistics.median(everything):.1e}, not below {ONNX_CHECK_TOLERANCE:g}",
            file=sys.stderr,
        )
        return 1
    return 0


def _list_command() -> int:
    pretrained = list_pretrained()
    for name in list_models():
        tags = [tag for tag in pretrained if tag.split(".", 1)[0] == name]
        print(f"{name:28s} {'pretrained: ' + ', '.join(tags) if tags else 'no pretrained weights'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``derainzoo`` console script; returns the exit code."""
    args = _build_parser().parse_args(argv)
    if args.command == "list":
        return _list_command()
    if args.command == "eval":
        return _eval_command(args)
    if args.command == "export":
        return _export_command(args)
    return _derain_command(args)


if __name__ == "__main__":
    sys.exit(main())
