"""Training throughput of every derainzoo variant: one AdamW step of ``examples/train.py``'s loss,
side by side for fp32 / bf16 autocast, NCHW / channels-last and gradient checkpointing off / on.

Examples:
    python benchmarks/bench_training.py --device cpu --batch-size 4 --crop 128
    python benchmarks/bench_training.py --models dual_stage_derain --dtypes fp32 bf16 --layouts nchw channels_last

Each configuration gets a fresh model and optimizer; the median step time over ``--repeats``
steps (after ``--warmup``) gives steps/s and megapixels/s (crop pixels x batch per second). The
cost of rendering the rain of a ``--rain-mix`` batch is timed beside it, as a share of a step:
image by image on the CPU, as the data loader does, and on the training device, as
``--render-on-device`` does (the same on a CPU).
Results go to ``benchmarks/results/training_<device>_<date>`` (CSV + Markdown).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import sys

import torch
from common import add_timing_arguments, start, time_call, write_results

import derainzoo
from derainzoo.data import render_rain, render_rain_per_image, sample_rain_params
from derainzoo.losses import DualStageLoss


def training_step(
    model,
    optimizer,
    criterion,
    rainy,
    clean,
    dtype_name: str,
    device: torch.device,
    _call: int,
    grad_clip: float | None = None,
    ema=None,
) -> None:
    """One optimisation step (``_call`` is the index time_call passes; every step is the same);
    with ``grad_clip`` and ``ema`` (a timm ``ModelEmaV3``) it is the whole step of ``examples/train.py``."""
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype_name == "bf16"):
        outputs = model.forward_stages(rainy)
    loss, _ = criterion(outputs, rainy, clean)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    if ema is not None:
        ema.update(model)


def render_each(clean: torch.Tensor, params: list, call: int) -> torch.Tensor:
    """The rain of a batch as training renders it: image by image, with a generator on ``clean``'s device."""
    generators = [torch.Generator(clean.device).manual_seed(call * len(params) + index) for index in range(len(params))]
    return render_rain_per_image(clean, params, generators)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=derainzoo.list_models())
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--dtypes", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    parser.add_argument("--layouts", nargs="+", choices=["nchw", "channels_last"], default=["nchw", "channels_last"])
    parser.add_argument(
        "--grad-checkpointing",
        nargs="+",
        choices=["off", "on"],
        default=["off"],
        help="time with activation checkpointing too (models that have set_grad_checkpointing)",
    )
    parser.add_argument(
        "--rain-styles",
        type=float,
        default=0.0,
        metavar="P",
        help="probability of each renderer style in the timed rain (as train.py's --rain-styles)",
    )
    add_timing_arguments(parser)
    args = parser.parse_args()

    device, header = start(args)
    generator = torch.Generator().manual_seed(0)
    clean = torch.rand(args.batch_size, 3, args.crop, args.crop, generator=generator)
    params = [
        sample_rain_params(float(strength), generator, style_probability=args.rain_styles)
        for strength in torch.rand(args.batch_size, generator=generator)
    ]
    render_devices = {"loader": torch.device("cpu"), "device": device} if device.type != "cpu" else {"": device}
    render_ms = {
        where: time_call(
            functools.partial(render_each, clean.to(render_device), params), render_device, args.repeats, 1
        )[0]
        for where, render_device in render_devices.items()
    }
    rainy = render_rain(clean, params, generator).rainy
    megapixels = args.batch_size * args.crop**2 / 1e6
    criterion = DualStageLoss()

    rows = []
    for name in args.models:
        for layout in args.layouts:
            for dtype_name in args.dtypes:
                for checkpointing in args.grad_checkpointing:
                    torch.manual_seed(0)
                    model = derainzoo.create_model(name).to(device).train()
                    if checkpointing == "on":
                        if not hasattr(model, "set_grad_checkpointing"):
                            print(f"{name}: no set_grad_checkpointing, skipped", file=sys.stderr)
                            continue
                        model.set_grad_checkpointing(True)
                    memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
                    model = model.to(memory_format=memory_format)
                    inputs = rainy.to(device).contiguous(memory_format=memory_format)
                    targets = clean.to(device)
                    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
                    step_ms, peak = time_call(
                        functools.partial(
                            training_step, model, optimizer, criterion, inputs, targets, dtype_name, device
                        ),
                        device,
                        args.repeats,
                        args.warmup,
                    )
                    row = {
                        "model": name,
                        "layout": layout,
                        "dtype": dtype_name,
                        "grad_ckpt": checkpointing,
                        "step_ms": f"{step_ms:.0f}",
                        "steps_per_s": f"{1000 / step_ms:.2f}",
                        "megapixels_per_s": f"{megapixels * 1000 / step_ms:.3f}",
                    }
                    row |= {
                        "_".join(filter(None, ("rain_rendering_share", where))): f"{100 * ms / step_ms:.1f}%"
                        for where, ms in render_ms.items()
                    }
                    if peak is not None:
                        row["peak_GiB"] = f"{peak:.2f}"
                    rows.append(row)
                    print(" | ".join(row.values()), flush=True)
    notes = [
        f"batch {args.batch_size} x {args.crop}x{args.crop} crops, AdamW, DualStageLoss (Charbonnier on both stages, "
        "frequency and mask terms), median of "
        f"{args.repeats} steps after {args.warmup}",
        "rendering the rain of one such batch image by image (random strengths, camera effects, "
        f"each style at p = {args.rain_styles:g}): "
        + ", ".join(f"{ms:.0f} ms on {render_devices[where]}" for where, ms in render_ms.items()),
    ]
    tag = args.tag or f"training_{device.type}_{datetime.date.today():%Y%m%d}"
    print(write_results(tag, header, rows, notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
