"""Reference training script for derainzoo models on a paired rain/norain folder.

One process (CPU or one GPU):
    python examples/train.py --data ../shared/data/Rain100L_train --model dual_stage_derain_tiny \
        --steps 20000 --batch-size 8 --crop 96 --out runs/tiny

Several GPUs or nodes (DistributedDataParallel, one process per GPU):
    torchrun --nproc_per_node 4 examples/train.py --data ... --out runs/base

Mixed real and rendered rain (the recipe of ``dual_stage_derain.rain_mix``):
    python examples/train.py --data ../shared/data/Rain100L_train --model dual_stage_derain \
        --rain-mix --real-fraction 0.25 --bf16 --channels-last --out runs/rain_mix

AdamW with a linear warm-up and cosine decay, bf16 autocast (on GPU by default, on CPU with
``--bf16``), an exponential moving average (EMA) of the weights, gradient clipping, validation
on held-out *training* pairs (Y-channel PSNR/SSIM; with ``--rain-mix`` also on a fixed set of
heavy rain rendered over the held-out clean images; with ``--init-weights`` the starting weights
are validated too, as step 0), safetensors checkpoints with exact resume
(``--resume``, or rerun with the same ``--out``), and ``--time-limit`` to stop cleanly before a
deadline.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
from timm.optim import create_optimizer_v2
from timm.utils import ModelEmaV3
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

import derainzoo
from derainzoo._helpers import save_weights
from derainzoo.data import FIRST_RELEASE_STYLES, RAIN_STYLES, MixedRainDataset, PairedImageFolder, write_rendered_pairs
from derainzoo.evaluation import evaluate
from derainzoo.image_io import folder_images, load_image, to_batch
from derainzoo.inference import derain
from derainzoo.losses import PIXEL_LOSSES, DualStageLoss
from derainzoo.metrics import detail_change, mean_absolute_error
from derainzoo.training import load_training_state, save_training_state, warmup_cosine_schedule


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="folder with rain/ and norain/ (training pairs)")
    parser.add_argument("--val-count", type=int, default=10, help="pairs held out of --data for validation")
    parser.add_argument("--model", default="dual_stage_derain_tiny")
    parser.add_argument(
        "--model-kwargs",
        type=json.loads,
        default={},
        metavar="JSON",
        help='constructor overrides of --model as a JSON object, e.g. \'{"stage2_attention": "window"}\' '
        "(the ablation switches of DualStageDerain)",
    )
    parser.add_argument("--init-weights", type=Path, help="start from these safetensors weights")
    parser.add_argument("--steps", type=int, default=20000, help="total optimisation steps")
    parser.add_argument("--batch-size", type=int, default=8, help="per process")
    parser.add_argument("--crop", type=int, default=96)
    parser.add_argument(
        "--epoch-samples",
        type=int,
        default=None,
        help="random crops drawn per epoch (default: one per training pair); more means fewer "
        "DataLoader restarts, which matters with --workers on a fast GPU",
    )
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--warmup-steps", type=int, default=500)
    parser.add_argument("--min-lr-ratio", type=float, default=0.01)
    parser.add_argument("--grad-clip", type=float, default=0.5)
    parser.add_argument("--ema-decay", type=float, default=0.999)
    parser.add_argument("--stage1-weight", type=float, default=0.5)
    parser.add_argument("--frequency-weight", type=float, default=0.05)
    parser.add_argument(
        "--pixel-loss",
        choices=sorted(PIXEL_LOSSES),
        default="charbonnier",
        help="pixel loss on both stages; psnr for a last fine-tune aimed at the metric (with "
        "--frequency-weight 0 --mask-weight 0)",
    )
    parser.add_argument("--mask-weight", type=float, default=0.05)
    parser.add_argument("--val-every", type=int, default=1000)
    parser.add_argument("--ckpt-every", type=int, default=500)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--no-bf16", action="store_true", help="disable bf16 autocast on GPU")
    parser.add_argument(
        "--bf16", action="store_true", help="bf16 autocast on the CPU too (fast on CPUs with AVX512-BF16/AMX)"
    )
    parser.add_argument("--channels-last", action="store_true", help="train in the channels-last memory layout")
    parser.add_argument(
        "--drop-path-rate", type=float, default=0.0, help="stochastic depth (timm's linear rule); 0 disables it"
    )
    parser.add_argument(
        "--grad-checkpointing",
        action="store_true",
        help="recompute activations in the backward pass: less memory, about a third more time, same gradients",
    )
    parser.add_argument(
        "--rain-mix", action="store_true", help="mix the real pairs with rain rendered over their clean images"
    )
    parser.add_argument(
        "--real-fraction", type=probability_argument, default=0.25, help="with --rain-mix: share of real pairs"
    )
    parser.add_argument(
        "--rain-strength",
        type=float,
        nargs=2,
        default=(0.0, 1.0),
        metavar=("LOW", "HIGH"),
        help="with --rain-mix: range of the rendered rain strength (0 light .. 1 heavy)",
    )
    parser.add_argument(
        "--short-exposure",
        type=probability_argument,
        default=0.0,
        help="with --rain-mix: probability of fast-shutter rain (short streaks)",
    )
    parser.add_argument(
        "--drizzle",
        type=probability_argument,
        default=0.0,
        help="with --rain-mix: probability of an extra thin, dim, very dense far streak layer",
    )
    parser.add_argument(
        "--downscaled",
        type=probability_argument,
        default=0.0,
        help="with --rain-mix: probability of rain as in a photo downscaled from a larger one (sub-pixel streaks)",
    )
    parser.add_argument(
        "--rain-styles",
        type=probability_argument,
        default=0.0,
        metavar="P",
        help="with --rain-mix: probability of each renderer style (crossing, opaque, curtain, haze, scene light, "
        "splashes, lens drops, noise streaks, steep, wide, spray); above 0 also validates on a fixed set of medium rain "
        "with the first seven styles (val_styles). Runs from before a later style existed drew their rain as "
        "--rain-style STYLE=0 for each later style does",
    )
    parser.add_argument(
        "--rain-style",
        type=style_value_argument,
        action="append",
        default=[],
        metavar="STYLE=P",
        help="with --rain-mix: probability of one style instead of --rain-styles' (repeatable), "
        "e.g. --rain-styles 0.25 --rain-style haze=0 draws every style but haze at 0.25",
    )
    parser.add_argument(
        "--style-min-strength",
        type=style_value_argument,
        action="append",
        default=[],
        metavar="STYLE=S",
        help="with --rain-mix: add STYLE only to rain of strength S or more (repeatable), e.g. haze=0.4 ties the "
        "haze to dense rain, as a downpour's rain accumulation is",
    )
    parser.add_argument(
        "--flat-scenes",
        type=probability_argument,
        default=0.0,
        metavar="P",
        help="with --rain-mix: probability that a pair's scene is made flatter and brighter or darker in both "
        "images alike (paired_tone_change), so the model keeps a flat scene's tone instead of darkening it",
    )
    parser.add_argument(
        "--rain-free",
        type=probability_argument,
        default=0.0,
        metavar="P",
        help="with --rain-mix: probability that a pair is rain-free, its clean image as input and target, so the "
        "model leaves a photo without rain as it is",
    )
    parser.add_argument(
        "--render-on-device",
        action="store_true",
        help="with --rain-mix: render each batch's rain on the training device instead of in the data loader "
        "(a GPU renders its own batches; on the CPU the same rain, bit for bit)",
    )
    parser.add_argument(
        "--watch-photos",
        type=Path,
        help="folder of rainy photos without ground truth (e.g. real_rain/): at each validation the EMA model derains "
        f"them (long side brought to {WATCH_LONG_SIDE} px) and the mean change |output - input| (0-255) is logged as "
        "photos_change (per photo as photos_change_each), and the same with each photo's brightness shift taken off "
        "as photos_detail_change (the rain taken out, not the tone; derainzoo.metrics.detail_change): guards against "
        "a model that stops removing real rain; best_ema never depends on them "
        "(an export rule may refuse weights whose change fell)",
    )
    parser.add_argument(
        "--val-set",
        type=val_set_argument,
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="one more validation set (repeatable): a paired folder (rain/ + norain/), e.g. rain of a new style "
        "written by derainzoo.data.write_rendered_pairs; scored and logged as NAME at every validation and "
        "counted in the mean that picks best_ema like the built-in sets",
    )
    parser.add_argument(
        "--keep-validated",
        action="store_true",
        help="also keep the EMA weights of every validation as OUT/ema_stepNNNNNN.safetensors (7 MB each for the "
        "default model), so that weights can be chosen afterwards by a rule other than the best mean PSNR",
    )
    parser.add_argument("--time-limit", type=float, default=None, help="minutes; checkpoint and stop after that")
    parser.add_argument("--resume", type=Path, help="checkpoint to resume (default: OUT/last.safetensors if present)")
    parser.add_argument(
        "--resume-changed",
        action="store_true",
        help="resume even though arguments that define the run changed (they are listed); the run is then no longer exact",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder for checkpoints and logs")
    args = parser.parse_args(argv)
    if args.render_on_device and not args.rain_mix:
        raise SystemExit("--render-on-device renders the rain of --rain-mix; add --rain-mix or drop it")
    return args


def probability_argument(text: str) -> float:
    """A probability in ``[0, 1]``, refused by argparse (with the option's name) otherwise."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a probability must be in [0, 1], got {text!r}")
    return value


def style_value_argument(text: str) -> tuple[str, float]:
    """``STYLE=X`` of ``--rain-style`` (a probability) and ``--style-min-strength`` (a strength)
    as ``(style, X)``, with ``X`` in ``[0, 1]``."""
    style, _, value = text.partition("=")
    if style not in RAIN_STYLES:
        raise argparse.ArgumentTypeError(f"unknown style {style!r} in {text!r}; styles: {', '.join(RAIN_STYLES)}")
    try:
        return style, probability_argument(value)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected STYLE=X with X in [0, 1], got {text!r}") from None


BUILT_IN_VAL_SETS = ("val", "val_heavy", "val_styles")


def val_set_argument(text: str) -> tuple[str, Path]:
    """``NAME=DIR`` of ``--val-set`` as ``(name, folder)``."""
    name, _, folder = text.partition("=")
    if not (name.isidentifier() and folder):
        raise argparse.ArgumentTypeError(f"expected NAME=DIR with NAME a word such as val_wide, got {text!r}")
    if name in BUILT_IN_VAL_SETS:
        raise argparse.ArgumentTypeError(f"{name!r} is a built-in validation set; choose another name")
    return name, Path(folder)


def training_style_probabilities(args: argparse.Namespace) -> dict[str, float]:
    """The probability of each style in the training rain: ``--rain-styles``, each ``--rain-style`` over it."""
    return {**dict.fromkeys(RAIN_STYLES, args.rain_styles), **dict(args.rain_style)}


WATCH_LONG_SIDE = 640
"""Long side the photos of ``--watch-photos`` are brought down to (so the guard costs seconds)."""

VAL_STYLE_PROBABILITY = dict.fromkeys(FIRST_RELEASE_STYLES, 0.5)
"""Share of each renderer style in the fixed ``val_styles`` set (medium rain) of ``--rain-styles`` runs:
the styles of the first release only, so that every run validates on the same images."""

# Arguments that only steer bookkeeping; every other argument defines the run and must not change on resume.
BOOKKEEPING_ARGUMENTS = frozenset(
    {
        "resume",
        "resume_changed",
        "out",
        "time_limit",
        "workers",
        "log_every",
        "val_every",
        "ckpt_every",
        "grad_checkpointing",
        "watch_photos",
        "keep_validated",
        # Where the rain is rendered, not which: the same on the CPU, the same distribution on a GPU.
        "render_on_device",
    }
)


def argument_text(value: object) -> str:
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def changed_arguments(saved: dict[str, str], args: argparse.Namespace) -> list[str]:
    """``--name: old -> new`` for every run-defining argument that differs from the checkpoint's."""
    return [
        f"--{name.replace('_', '-')}: {saved[name]} -> {argument_text(value)}"
        for name, value in vars(args).items()
        if name not in BOOKKEEPING_ARGUMENTS and name in saved and saved[name] != argument_text(value)
    ]


class StagesForward(nn.Module):
    """Make ``forward`` return every stage, so DistributedDataParallel sees the real forward."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> derainzoo.DerainOutput:
        return self.model.forward_stages(x)


def setup_distributed() -> tuple[int, int, torch.device]:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world_size, device


def parameters_digest(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@dataclasses.dataclass
class RunState:
    """What a run carries from step to step and across resumes (all saved in the checkpoint)."""

    step: int = 0
    best_psnr: float = float("-inf")
    hours_before: float = 0.0  # training hours of the earlier phases of a resumed run
    start_time: float = dataclasses.field(default_factory=time.monotonic)

    def train_hours(self) -> float:
        """Hours of training of this run, all phases of a resumed run together (time-to-quality)."""
        return self.hours_before + (time.monotonic() - self.start_time) / 3600


@dataclasses.dataclass
class Trainer:
    """The objects one optimisation step touches, built once by ``main``."""

    args: argparse.Namespace
    model: nn.Module  # the bare model (checkpoints, EMA, clipping)
    network: nn.Module  # what runs the forward pass: the model wrapped by DDP / torch.compile
    ema: ModelEmaV3
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    criterion: DualStageLoss
    autocast: torch.autocast
    device: torch.device
    val_sets: dict[str, PairedImageFolder]
    watch_photos: dict[str, torch.Tensor]  # file stem -> (1, 3, H, W) rainy photo of --watch-photos; empty if none
    render_batch: Callable[[Tensor, Tensor, Tensor], Tensor] | None  # --render-on-device: rain of a batch
    is_main: bool
    world_size: int


def save_checkpoint(trainer: Trainer, state: RunState) -> None:
    """Write ``OUT/last.safetensors``: everything an exact resume needs (main process only)."""
    if not trainer.is_main:
        return
    args = trainer.args
    save_training_state(
        args.out / "last.safetensors",
        model=trainer.model,
        optimizer=trainer.optimizer,
        scheduler=trainer.scheduler,
        step=state.step,
        ema_model=trainer.ema.module,
        extra={
            "best_psnr": state.best_psnr,
            "train_hours": state.train_hours(),
            "args": {k: argument_text(v) for k, v in vars(args).items()},
        },
    )


def save_ema_weights(ema_model: nn.Module, args: argparse.Namespace, step: int, name: str) -> None:
    """Write the EMA weights as ``OUT/name``, with the architecture and step that
    ``export_weights.py`` carries over."""
    save_weights(ema_model, args.out / name, metadata={"architecture": args.model, "step": str(step)})


def load_watch_photos(folder: Path) -> dict[str, torch.Tensor]:
    """The photos of ``--watch-photos`` by file stem, as ``(1, 3, H, W)`` tensors with the long side at most
    ``WATCH_LONG_SIDE``."""
    if not folder.is_dir():
        raise SystemExit(f"--watch-photos {folder}: not a folder")
    paths = folder_images(folder).images
    if not paths:
        raise SystemExit(f"--watch-photos {folder}: no image files there")
    photos = {}
    for path in paths:
        photo = load_image(path).convert("RGB")
        photo.thumbnail((WATCH_LONG_SIDE, WATCH_LONG_SIDE))
        photos[path.stem] = to_batch(photo)[0]
    return photos


def validate(trainer: Trainer, state: RunState) -> None:
    """Score the EMA weights on every validation set, log them, and keep the best weights."""
    if not (trainer.is_main and trainer.val_sets):
        return
    args = trainer.args
    record: dict[str, float] = {
        "step": state.step,
        "lr": trainer.scheduler.get_last_lr()[0],
        "hours": state.train_hours(),
    }
    for name, val_set in trainer.val_sets.items():
        result = evaluate(trainer.ema.module, val_set, device=trainer.device, progress=False)
        record |= {f"{name}_psnr": result.psnr, f"{name}_ssim": result.ssim}
        # Per image, the mean signed error: a mean PSNR held while one bright scene turned 14 levels
        # darker than its ground truth (phase 13 of the rain_mix card); pick_weights.py guards on it.
        record[f"{name}_error_each"] = {row.stem: round(row.mean_error, 3) for row in result.per_image}
        tqdm.write(f"step {state.step}: {name} PSNR {result.psnr:.2f} dB, SSIM {result.ssim:.4f} (EMA weights)")
    if trainer.watch_photos:
        with torch.inference_mode():
            derained = {
                stem: derain(photo, trainer.ema.module, device=trainer.device)
                for stem, photo in trainer.watch_photos.items()
            }
        # The change is mostly the photos' brightness shift; the detail change is the rain (and
        # texture) taken out alone (derainzoo.metrics.detail_change). Per photo too: a mean can
        # hold while the heaviest photos lose streak removal (phase 11 of the rain_mix card).
        for key, measure in (("photos_change", mean_absolute_error), ("photos_detail_change", detail_change)):
            each = {
                stem: round(float(measure(output, trainer.watch_photos[stem])[0]), 3)
                for stem, output in derained.items()
            }
            record[key] = sum(each.values()) / len(each)
            record[f"{key}_each"] = each
        tqdm.write(
            f"step {state.step}: mean change on the watched photos {record['photos_change']:.2f} of 255 "
            f"(detail {record['photos_detail_change']:.2f})"
        )
    with open(args.out / "log.jsonl", "a") as log:
        log.write(json.dumps(record) + "\n")
    if args.keep_validated:
        save_ema_weights(trainer.ema.module, args, state.step, f"ema_step{state.step:06d}.safetensors")
    # Model selection weighs every validation set alike (light real rain and heavy rendered rain).
    score = sum(record[f"{name}_psnr"] for name in trainer.val_sets) / len(trainer.val_sets)
    if score > state.best_psnr:
        state.best_psnr = score
        save_ema_weights(trainer.ema.module, args, state.step, "best_ema.safetensors")


def train_one_epoch(trainer: Trainer, state: RunState, loader: DataLoader, skip_batches: int, progress: tqdm) -> bool:
    """Train on the epoch's batches from ``skip_batches`` on, validating and checkpointing on
    schedule; returns True when the run must stop (its last step, or out of time).

    Skipping the batches already done in the epoch makes a resumed run see exactly the batches
    the uninterrupted run would have seen.
    """
    args = trainer.args
    for batch in itertools.islice(loader, skip_batches, None):
        rainy, clean = (images.to(trainer.device, non_blocking=True) for images in batch[:2])
        if trainer.render_batch is not None:
            rainy = trainer.render_batch(rainy, clean, batch[3])
        if args.channels_last:
            rainy = rainy.contiguous(memory_format=torch.channels_last)
        with trainer.autocast:
            outputs = trainer.network(rainy)
        loss, parts = trainer.criterion(outputs, rainy, clean)
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainer.model.parameters(), args.grad_clip)
        trainer.optimizer.step()
        trainer.scheduler.step()
        state.step += 1
        trainer.ema.update(trainer.model, step=state.step)
        progress.update(1)
        if state.step % args.log_every == 0 and trainer.is_main:
            progress.set_postfix(
                {name: f"{value.item():.4f}" for name, value in parts.items()}
                | {"lr": f"{trainer.scheduler.get_last_lr()[0]:.2e}"}
            )
        if state.step % args.val_every == 0 or state.step == args.steps:
            validate(trainer, state)
        out_of_time = args.time_limit is not None and time.monotonic() - state.start_time > 60 * args.time_limit
        if trainer.world_size > 1:
            flag = torch.tensor(float(out_of_time), device=trainer.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            out_of_time = bool(flag.item())
        if state.step % args.ckpt_every == 0 or state.step == args.steps or out_of_time:
            save_checkpoint(trainer, state)
        if out_of_time or state.step >= args.steps:
            return True
    return False


def build_data(
    args: argparse.Namespace, rank: int, world_size: int, is_main: bool, device: torch.device
) -> tuple[PairedImageFolder | MixedRainDataset, DistributedSampler, DataLoader, dict[str, PairedImageFolder]]:
    """The training set, its sampler and loader, and the validation sets (held-out pairs, and
    with ``--rain-mix`` heavy rain rendered over them)."""
    stems = PairedImageFolder(args.data).stems
    style_probability = training_style_probabilities(args)
    if not 0 <= args.val_count < len(stems):
        raise SystemExit(f"--val-count must be in [0, {len(stems) - 1}], got {args.val_count}")
    train_stems, val_stems = stems[: len(stems) - args.val_count], stems[len(stems) - args.val_count :]
    if args.epoch_samples is not None and args.epoch_samples < 1:
        raise SystemExit(f"--epoch-samples must be positive, got {args.epoch_samples}")
    samples_per_epoch = max(args.epoch_samples or len(train_stems), args.batch_size * world_size)
    train_set = PairedImageFolder(
        args.data,
        crop_size=args.crop,
        augment=True,
        cache=True,
        seed=args.seed,
        stems=train_stems,
        samples_per_epoch=samples_per_epoch,
    )
    if args.rain_mix:
        train_set = MixedRainDataset(
            train_set,
            real_fraction=args.real_fraction,
            strength=tuple(args.rain_strength),
            seed=args.seed,
            short_exposure=args.short_exposure,
            drizzle=args.drizzle,
            downscaled=args.downscaled,
            style_probability=style_probability,
            style_min_strength=dict(args.style_min_strength),
            flat_scenes=args.flat_scenes,
            rain_free=args.rain_free,
            render_later=args.render_on_device,
        )
    val_sets = {"val": PairedImageFolder(args.data, stems=val_stems, cache=True)} if val_stems else {}
    if val_stems and args.rain_mix:
        # Fixed rendered rain over the held-out clean images: the same files in every run and phase.
        rendered = {"val_heavy": {"strength": "heavy"}}
        if any(probability > 0 for probability in style_probability.values()):
            rendered["val_styles"] = {"strength": "medium", "style_probability": VAL_STYLE_PROBABILITY}
        for name, options in rendered.items():
            if is_main:
                write_rendered_pairs(val_sets["val"], args.out / name, seed=0, **options)
        if world_size > 1:
            dist.barrier()
        for name in rendered:
            val_sets[name] = PairedImageFolder(args.out / name, cache=True)
    for name, folder in args.val_set:
        if name in val_sets:
            raise SystemExit(f"--val-set {name}={folder}: the name {name!r} is taken; give each set its own")
        try:
            val_sets[name] = PairedImageFolder(folder, cache=True)
        except ValueError as error:
            raise SystemExit(f"--val-set {name}={folder}: {error}") from None
    sampler = DistributedSampler(
        train_set, num_replicas=world_size, rank=rank, shuffle=True, seed=args.seed, drop_last=True
    )
    loader = DataLoader(
        train_set,
        batch_size=args.batch_size,
        sampler=sampler,
        num_workers=args.workers,
        drop_last=True,
        pin_memory=device.type == "cuda",
    )
    return train_set, sampler, loader, val_sets


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rank, world_size, device = setup_distributed()
    is_main = rank == 0
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    train_set, sampler, loader, val_sets = build_data(args, rank, world_size, is_main, device)
    steps_per_epoch = len(loader)

    if not isinstance(args.model_kwargs, dict):
        raise SystemExit(f"--model-kwargs must be a JSON object, got {args.model_kwargs!r}")
    model = derainzoo.create_model(
        args.model, weights=args.init_weights, drop_path_rate=args.drop_path_rate, **args.model_kwargs
    ).to(device)
    model.set_grad_checkpointing(args.grad_checkpointing)
    ema = ModelEmaV3(model, decay=args.ema_decay, use_warmup=True)
    optimizer = create_optimizer_v2(model, "adamw", lr=args.lr, weight_decay=args.weight_decay)
    scheduler = warmup_cosine_schedule(optimizer, args.warmup_steps, args.steps, args.min_lr_ratio)
    criterion = DualStageLoss(args.stage1_weight, args.frequency_weight, args.mask_weight, args.pixel_loss)

    state = RunState()
    resume = args.resume or (args.out / "last.safetensors")
    if resume.is_file():
        state.step, extra = load_training_state(
            resume, model=model, optimizer=optimizer, scheduler=scheduler, ema_model=ema.module
        )
        state.best_psnr = extra.get("best_psnr", state.best_psnr)
        state.hours_before = float(extra.get("train_hours", 0.0))
        changes = changed_arguments(extra.get("args", {}), args)
        if changes and not args.resume_changed:
            raise SystemExit(
                f"refusing to resume {resume}: arguments that define the run changed ({'; '.join(changes)}). "
                "Rerun with the original arguments, choose a new --out, or pass --resume-changed to continue with the new ones."
            )
        if is_main:
            print(
                f"resumed from {resume} at step {state.step}"
                + (f" with changed arguments: {'; '.join(changes)}" if changes else "")
            )

    network: nn.Module = StagesForward(model)
    if world_size > 1:
        network = DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None)
    if args.compile:
        network = torch.compile(network)
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    bf16 = (device.type == "cuda" and not args.no_bf16) or args.bf16
    trainer = Trainer(
        args=args,
        model=model,
        network=network,
        ema=ema,
        optimizer=optimizer,
        scheduler=scheduler,
        criterion=criterion,
        autocast=torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16),
        device=device,
        val_sets=val_sets,
        watch_photos=load_watch_photos(args.watch_photos) if is_main and args.watch_photos else {},
        render_batch=train_set.render_batch if args.render_on_device else None,
        is_main=is_main,
        world_size=world_size,
    )

    if args.init_weights is not None and state.step == 0:
        # The starting weights are scored by the same code as every later validation and logged as
        # step 0: the row that an export rule (examples/pick_weights.py) compares the run against.
        validate(trainer, state)
    # The clock of --time-limit and of the logged hours starts here, after the set-up.
    state.start_time = time.monotonic()
    progress = tqdm(total=args.steps, initial=state.step, desc="train", disable=not is_main, dynamic_ncols=True)
    model.train()
    stop = state.step >= args.steps
    while not stop:
        epoch = state.step // steps_per_epoch
        sampler.set_epoch(epoch)
        train_set.set_epoch(epoch)
        stop = train_one_epoch(trainer, state, loader, state.step % steps_per_epoch, progress)
    progress.close()

    if is_main and state.step >= args.steps:
        save_ema_weights(ema.module, args, state.step, "final_ema.safetensors")
    (args.out / f"final_state_rank{rank}.json").write_text(
        json.dumps(
            {
                "step": state.step,
                "model_sha256": parameters_digest(model),
                "ema_sha256": parameters_digest(ema.module),
            }
        )
    )
    if world_size > 1:
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
