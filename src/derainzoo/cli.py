"""The ``derainzoo`` command: derain image files, evaluate on a paired folder, export to ONNX,
list models.

The console script's arguments are parsed in the torch-free launcher ``derainzoo_cli`` (so that
``--help`` answers at once); ``run_command`` runs what they ask for.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch
from timm.models import get_pretrained_cfg
from tqdm.auto import tqdm

from derainzoo._factory import create_model, list_models, list_pretrained
from derainzoo._helpers import PretrainedWeightsUnavailableError, preview_names
from derainzoo.backends import check_installed, load_backend, preferred_backend
from derainzoo.data import RAIN_PARAMS_FILE
from derainzoo.evaluation import EvaluationResult, ImageScore, iter_scores, scores_by_style
from derainzoo.export import ONNX_CHECK_TOLERANCE, compare_with_onnxruntime, export_onnx, judge_onnx_differences
from derainzoo.image_io import (
    OUTPUT_FORMATS,
    check_quality,
    folder_images,
    output_format,
    read_image,
    save_image,
)
from derainzoo.inference import DEFAULT_MODEL, derain, prepare_for_inference, resolve_device
from derainzoo.scaling import SCALE_CHOICES, check_scale
from derainzoo.self_ensemble import SelfEnsemble
from derainzoo.tiling import check_tile_settings
from derainzoo_cli import DERAINED_SUFFIX, main

__all__ = ["main", "run_command"]

# Two sizes that the export's example did not have, one needing padding inside and one not.
ONNX_CHECK_SIZES = ((77, 131), (128, 128))


def _collect_inputs(inputs: Sequence[Path]) -> tuple[list[Path], list[str], list[str]]:
    """Files to process, error messages for inputs that name nothing usable, and notes on
    files of input folders that were skipped as not images."""
    files, errors, notes = [], [], []
    for path in inputs:
        if path.is_dir():
            images, others = folder_images(path)
            if others:
                skipped = [other.name for other in others]
                notes.append(f"{path}: skipping {len(skipped)} file(s) that are not images: {preview_names(skipped)}")
            if not images:
                errors.append(f"{path}: folder holds no image files")
            files.extend(images)
        elif path.exists():
            files.append(path)
        else:
            errors.append(f"{path}: no such file or folder")
    return files, errors, notes


def _check_run_arguments(args: argparse.Namespace) -> torch.device:
    """Everything about the run that does not depend on an image, checked once up front."""
    device = resolve_device(args.device, name="--device")
    if args.backend == "auto":
        # The graph backends run on the CPU only: a GPU keeps PyTorch.
        args.backend = preferred_backend() if device.type == "cpu" else "torch"
    if args.backend != "torch":
        if args.device is not None and device.type != "cpu":
            raise ValueError(f"--backend {args.backend} runs on the CPU; drop --device {args.device}")
        if args.backend == "onnxruntime" and getattr(args, "precision", "auto") == "bf16":
            raise ValueError("--backend onnxruntime runs the exported float32 graph; drop --precision bf16")
        try:
            check_installed(args.backend)
        except ImportError as error:
            raise ValueError(f"--backend {args.backend}: {error}") from None
        device = torch.device("cpu")
    check_tile_settings(args.tile, args.tile_overlap, names=("--tile", "--tile-overlap"))
    if args.memory_budget <= 0:
        raise ValueError(f"--memory-budget must be a positive number of GiB, got {args.memory_budget:g}")
    if getattr(args, "scale", None) is not None:
        args.scale = _parse_scale(args.scale)
    return device


def _parse_scale(text: str) -> float | str:
    """``--scale``: ``auto`` or a number in (0, 1]."""
    try:
        scale = text if text == "auto" else float(text)
        check_scale(scale)
    except ValueError:
        raise ValueError(f"--scale must be {SCALE_CHOICES}, got {text!r}") from None
    return scale


def _load_model(args: argparse.Namespace, device: torch.device) -> torch.nn.Module | None:
    """The requested model with its weights, or ``None`` after reporting why it cannot be built."""
    try:
        if args.weights is not None:
            model = create_model(args.model, weights=args.weights)
        else:
            model = create_model(args.model, pretrained=True)
    except PretrainedWeightsUnavailableError:
        _error(
            f"no pretrained weights for {args.model} in this installation; pass --weights FILE.safetensors, "
            f"or use a model that has them: {', '.join(list_pretrained())}"
        )
        return None
    except (ValueError, FileNotFoundError) as error:
        _error(str(error))
        return None
    model = prepare_for_inference(model, device)
    backend = getattr(args, "backend", "torch")  # export has none
    if backend == "torch":
        return model

    def announce_export(graph: Path) -> None:
        tqdm.write(
            f"derainzoo: note: exporting {args.model} to ONNX once for --backend {backend} (a minute or two); "
            f"cached as {graph}",
            file=sys.stderr,
        )

    return load_backend(model, backend, precision=getattr(args, "precision", "auto"), on_export=announce_export)


def _memory_left(args: argparse.Namespace, device: torch.device) -> int:
    """``--memory-budget`` in bytes, less what this process holds once the model is loaded when
    it runs on the CPU (libraries, weights, a graph runtime: about 0.85 GiB for the default
    model with OpenVINO), so that the command as a whole stays within the budget."""
    budget = int(args.memory_budget * 1024**3)
    if device.type != "cpu":
        return budget
    held = _resident_bytes()
    if held >= budget:
        tqdm.write(
            f"derainzoo: note: this process holds {held / 1024**3:.2f} GiB once the model is loaded, "
            f"--memory-budget is {args.memory_budget:g} GiB: images are derained in the smallest automatic tiles",
            file=sys.stderr,
        )
        return 1
    return budget - held


def _resident_bytes() -> int:
    """Memory this process holds now: its resident pages on Linux, its peak so far where only
    ``getrusage`` tells (macOS), 0 where neither does (Windows)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        pass
    try:
        import resource
    except ImportError:
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def _error(message: str) -> None:
    tqdm.write(f"derainzoo: error: {message}", file=sys.stderr)


def _plan_outputs(files: Sequence[Path], args: argparse.Namespace) -> tuple[list[tuple[Path, Path, str]], list[str]]:
    """``(input, output, pillow_format)`` for every file, and the reasons the plan is refused:
    two inputs written to one file, an input overwritten, an existing output without --overwrite."""
    plan = []
    for path in files:
        pillow_format, suffix = output_format(path, args.format)
        folder, name = (args.output, path.stem) if args.output else (path.parent, path.stem + DERAINED_SUFFIX)
        plan.append((path, folder / (name + suffix), pillow_format))
    problems = []
    by_target: dict[Path, list[Path]] = {}
    for path, target, _ in plan:
        by_target.setdefault(target.resolve(), []).append(path)
    for target, sources in by_target.items():
        if len(sources) > 1:
            problems.append(
                f"{len(sources)} inputs would be written to the same file {target}: {preview_names([str(p) for p in sources])}; "
                "derain them into different output folders"
            )
    inputs = {path.resolve() for path in files}
    clobbered_inputs = [str(target) for _, target, _ in plan if target.resolve() in inputs]
    if clobbered_inputs:
        problems.append(
            f"the output would overwrite input file(s) {preview_names(clobbered_inputs)}; choose another -o folder"
        )
    existing = [str(target) for _, target, _ in plan if target.is_file() and target.resolve() not in inputs]
    if existing and not args.overwrite:
        problems.append(
            f"{len(existing)} output file(s) exist already: {preview_names(existing)}; use --overwrite to replace them"
        )
    return plan, problems


def _derain_command(args: argparse.Namespace) -> int:
    try:
        device = _check_run_arguments(args)
        if args.quality is not None:
            pillow_format = OUTPUT_FORMATS[args.format] if args.format else None
            check_quality(args.quality, pillow_format, "--quality", f"--format {args.format}")
    except ValueError as error:
        _error(str(error))
        return 2
    files, errors, notes = _collect_inputs(args.inputs)
    for message in notes:
        print(f"derainzoo: note: {message}", file=sys.stderr)
    for message in errors:
        _error(message)
    if not files:
        _error("nothing to derain")
        return 1
    plan, problems = _plan_outputs(files, args)
    if problems:
        for message in problems:
            _error(message)
        return 2
    model = _load_model(args, device)
    if model is None:
        return 2
    memory_budget = _memory_left(args, device)
    try:
        if args.output:
            args.output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        _error(f"cannot create output folder {args.output}: {error}")
        return 2

    failures, written = len(errors), 0
    started = time.perf_counter()
    # Decoding the next image and encoding the last result run in threads beside the model
    # (Pillow releases the GIL while it decodes and encodes), one image ahead and one behind, so
    # at most three images are held at once, however many there are.
    with (
        ThreadPoolExecutor(1, thread_name_prefix="derainzoo-decode") as decoder,
        ThreadPoolExecutor(1, thread_name_prefix="derainzoo-encode") as encoder,
    ):
        next_read = decoder.submit(read_image, plan[0][0]) if plan else None
        saving: tuple[Path, Future] | None = None
        for index, (path, target, pillow_format) in enumerate(tqdm(plan, desc="derain", unit="image")):
            reading = next_read
            next_read = decoder.submit(read_image, plan[index + 1][0]) if index + 1 < len(plan) else None
            try:
                image, notes = reading.result()  # its errors name the file already
            except ValueError as error:
                _error(str(error))
                failures += 1
                continue
            for note in notes:
                tqdm.write(f"derainzoo: note: {note}", file=sys.stderr)  # on its own line, under the bar
            try:
                result = derain(
                    image,
                    model,
                    tile_size=args.tile,
                    tile_overlap=args.tile_overlap,
                    memory_budget=memory_budget,
                    device=device,
                    self_ensemble=args.self_ensemble,
                    scale=args.scale,
                    # A graph backend computes in its own precision (given to load_backend).
                    precision=args.precision if args.backend == "torch" else "fp32",
                    progress=True,
                )
            except (ValueError, OSError) as error:
                _error(f"{path}: {error}")
                failures += 1
                continue
            written, failures = _finish_saving(saving, written, failures)
            options = {"file_format": pillow_format, "quality": args.quality, "source": image}
            saving = (path, encoder.submit(save_image, result, target, **options))
        written, failures = _finish_saving(saving, written, failures)
    seconds = time.perf_counter() - started
    where = args.output or f"their inputs' folders (*{DERAINED_SUFFIX})"
    print(
        f"derainzoo: wrote {written} image(s) to {where} in {seconds:.1f} s ({written / seconds:.2f} images/s)"
        + (f"; {failures} input(s) failed" if failures else "")
    )
    return 1 if failures else 0


def _finish_saving(saving: tuple[Path, Future] | None, written: int, failures: int) -> tuple[int, int]:
    """Wait for the image being written, if any; the counts of written and failed images after it."""
    if saving is None:
        return written, failures
    path, future = saving
    try:
        future.result()
    except (ValueError, OSError) as error:
        _error(f"{path}: {error}")
        return written, failures + 1
    return written + 1, failures


def _eval_command(args: argparse.Namespace) -> int:
    try:
        device = _check_run_arguments(args)
    except ValueError as error:
        _error(str(error))
        return 2
    model_options = [
        name for name, given in (("--self-ensemble", args.self_ensemble), ("--scale", args.scale != 1)) if given
    ]
    if args.input_baseline and model_options:
        verb = "needs" if len(model_options) == 1 else "need"
        _error(f"{' and '.join(model_options)} {verb} a model; --input-baseline scores the inputs")
        return 2
    model = None
    if not args.input_baseline:
        model = _load_model(args, device)
        if model is None:
            return 2
        if args.self_ensemble:
            model = SelfEnsemble(model)
    memory_budget = _memory_left(args, device)
    scores: list[ImageScore] = []
    interrupted = False
    try:
        for row in iter_scores(
            model,
            args.data,
            device=device,
            tile_size=args.tile,
            tile_overlap=args.tile_overlap,
            memory_budget=memory_budget,
            scale=args.scale,
            rounding=not args.truncate,
        ):
            scores.append(row)
    except ValueError as error:
        _error(str(error))
        return 2
    except KeyboardInterrupt:
        interrupted = True
        _error(f"interrupted after {len(scores)} image(s); the scores below are of those only")
        if not scores:
            return 130
    result = EvaluationResult.from_scores(scores, rounding=not args.truncate)
    name = "rainy input" if args.input_baseline else args.model + (f" ({args.weights})" if args.weights else "")
    if args.self_ensemble:
        name += ", x8 self-ensemble"
    if args.scale != 1:
        name += f", at scale {args.scale}"
    print("| model | images | PSNR (Y) | SSIM (Y) | mean error (levels) |\n|---|---|---|---|---|")
    print(_table_row(name, result))
    _print_rows_by_style(result, args.data / RAIN_PARAMS_FILE)
    if args.csv is not None:
        result.write_csv(args.csv)
    return 130 if interrupted else 0


def _print_rows_by_style(result: EvaluationResult, record: Path) -> None:
    """For a folder of rendered rain with its record, one more row per renderer style."""
    if not record.is_file():
        return
    try:
        groups = scores_by_style(result, json.loads(record.read_text()))
    except ValueError as error:  # json.JSONDecodeError included
        _error(f"{record}: {error}; no rows per style")
        return
    for style, scores in groups.items():
        print(_table_row("images without styles" if style == "none" else f"images with {style}", scores))


def _table_row(label: str, result: EvaluationResult) -> str:
    """One row of the ``eval`` table: label, images, PSNR, SSIM, mean error."""
    return f"| {label} | {len(result.per_image)} | {result.psnr:.2f} | {result.ssim:.4f} | {result.mean_error:+.2f} |"


def _export_command(args: argparse.Namespace) -> int:
    model = _load_model(args, torch.device("cpu"))
    if model is None:
        return 2
    print(f"derainzoo: exporting {args.model} to {args.output} (tracing takes a minute or two)", file=sys.stderr)
    try:
        export_onnx(model, args.output, opset_version=args.opset)
    except (ImportError, FileNotFoundError, ValueError) as error:
        _error(str(error))
        return 2
    print(f"wrote {args.output}")
    if not args.check:
        return 0
    try:
        differences = compare_with_onnxruntime(model, args.output, ONNX_CHECK_SIZES)
    except ImportError as error:
        _error(str(error))
        return 2
    for (height, width), per_image in differences.items():
        listed = " ".join(f"{difference:.1e}" for difference in per_image)
        print(f"onnxruntime vs PyTorch at {height}x{width}, max abs difference per image: {listed}")
    verdict = judge_onnx_differences(differences)
    if verdict.tie_moved:
        print(
            f"derainzoo: {verdict.tie_moved} of {verdict.images} images differ by {ONNX_CHECK_TOLERANCE:g} or more: "
            "clustering ties broken differently by the two runtimes (see derainzoo.export.compare_with_onnxruntime)",
            file=sys.stderr,
        )
    if not verdict.passed:
        _error(
            f"the graph does not reproduce the model: the median difference is {verdict.median:.1e}, "
            f"not below {ONNX_CHECK_TOLERANCE:g}"
        )
        return 1
    return 0


def _list_command() -> int:
    pretrained = list_pretrained()
    # What `derainzoo derain` uses without --model: the default architecture's default tag (timm's first).
    default = f"{DEFAULT_MODEL}.{get_pretrained_cfg(DEFAULT_MODEL).tag}"
    for name in list_models():
        tags = [tag + (" (default)" if tag == default else "") for tag in pretrained if tag.split(".", 1)[0] == name]
        print(f"{name:28s} {'pretrained: ' + ', '.join(tags) if tags else 'no pretrained weights'}")
    return 0


def run_command(args: argparse.Namespace) -> int:
    """Run the command that ``derainzoo_cli.build_parser`` parsed into
    ``args``; returns the exit code."""
    if args.command == "list":
        return _list_command()
    if args.command == "eval":
        return _eval_command(args)
    if args.command == "export":
        return _export_command(args)
    return _derain_command(args)
