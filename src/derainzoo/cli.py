"""The ``derainzoo`` command: derain image files, list models."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from tqdm.auto import tqdm

from derainzoo._factory import create_model, list_models, list_pretrained
from derainzoo.hub import PretrainedWeightsUnavailableError
from derainzoo.inference import DEFAULT_MODEL, derain, load_image

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="derainzoo", description="Single-image deraining.")
    commands = parser.add_subparsers(dest="command", required=True)

    derain_parser = commands.add_parser("derain", help="derain image files or folders of images")
    derain_parser.add_argument("inputs", nargs="+", type=Path, help="image files and/or folders (not recursive)")
    derain_parser.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    derain_parser.add_argument("--model", default=DEFAULT_MODEL, help=f"architecture (default {DEFAULT_MODEL})")
    derain_parser.add_argument("--weights", type=Path, help="safetensors weights to use instead of the bundled ones")
    derain_parser.add_argument("--tile", type=int, help="derain in overlapping tiles of this size (bounded memory)")
    derain_parser.add_argument("--tile-overlap", type=int, default=32, help="overlap of neighbouring tiles (pixels)")
    derain_parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    derain_parser.add_argument("--overwrite", action="store_true", help="allow writing over an input file")

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


def _derain_command(args: argparse.Namespace) -> int:
    files, errors = _collect_inputs(args.inputs)
    for message in errors:
        print(f"derainzoo: error: {message}", file=sys.stderr)
    if not files:
        print("derainzoo: error: nothing to derain", file=sys.stderr)
        return 1
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        if args.weights is not None:
            model = create_model(args.model, weights=args.weights)
        else:
            model = create_model(args.model, pretrained=True)
    except (ValueError, FileNotFoundError, PretrainedWeightsUnavailableError) as error:
        print(f"derainzoo: error: {error}", file=sys.stderr)
        return 2
    model = model.eval().to(device)
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
            result = derain(image, model, tile_size=args.tile, tile_overlap=args.tile_overlap, device=device)
            result.save(target, **({"quality": 95} if target.suffix.lower() in (".jpg", ".jpeg") else {}))
        except (ValueError, OSError) as error:
            tqdm.write(f"derainzoo: error: {path}: {error}", file=sys.stderr)
            failures += 1
    if failures:
        print(f"derainzoo: {failures} input(s) failed, {len(files) - failures + len(errors)} written", file=sys.stderr)
    return 1 if failures else 0


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
    return _derain_command(args)


if __name__ == "__main__":
    sys.exit(main())
