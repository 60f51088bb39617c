"""Time and memory of the attention blocks against plain window and global attention.

Examples:
    python benchmarks/bench_layers.py --device cpu --sizes 64 128 256
    python benchmarks/bench_layers.py --device cuda --sizes 64 128 256 512 1024 --backward

Every block runs on the same ``(1, C, S, S)`` feature maps; global attention (one
``scaled_dot_product_attention`` over all pixels) runs until it no longer fits. Prints and writes
a Markdown/CSV table under ``benchmarks/results/``, the ratios the targets are stated in
(clustered time at 256^2 over 128^2, clustered over window attention), and a log-log plot of
time against pixels when matplotlib is installed.
"""

from __future__ import annotations

import argparse
import datetime
import sys

import torch
import torch.nn.functional as F
from common import RESULTS_DIR, add_timing_arguments, start, time_call, write_results
from einops import rearrange
from torch import Tensor, nn

from derainzoo.layers import ClusteredNonLocalWindowAttention, RainMaskAttention, ShiftedWindowAttention


class GlobalAttention(nn.Module):
    """Every pixel attends to every pixel: the ``O(N^2)`` baseline."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        height = x.shape[-2]
        tokens = rearrange(x, "b c h w -> b (h w) c")
        query, key, value = (
            rearrange(t, "b n (h d) -> b h n d", h=self.num_heads) for t in self.qkv(tokens).chunk(3, -1)
        )
        out = rearrange(F.scaled_dot_product_attention(query, key, value), "b h n d -> b n (h d)")
        return rearrange(self.proj(out), "b (h w) c -> b c h w", h=height)


class MaskedAttention(nn.Module):
    """RainMaskAttention with a mask derived from the input (about 20% rain), so every block
    takes one input and the mask costs only a comparison."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.attention = RainMaskAttention(dim, num_heads)

    def forward(self, x: Tensor) -> Tensor:
        return self.attention(x, (x[:, :1] > 0.84).to(x.dtype))


def build_blocks(dim: int, num_heads: int, window_size: int) -> dict[str, nn.Module]:
    return {
        "RainMaskAttention": MaskedAttention(dim, num_heads),
        "ClusteredNonLocalWindowAttention": ClusteredNonLocalWindowAttention(dim, num_heads, window_size),
        "ShiftedWindowAttention": ShiftedWindowAttention(dim, num_heads, window_size, shift_size=window_size // 2),
        "GlobalAttention (SDPA)": GlobalAttention(dim, num_heads),
    }


def measure(block: nn.Module, x: Tensor, backward: bool, repeats: int, warmup: int) -> tuple[float, float | None]:
    """Median milliseconds and peak CUDA memory (GiB) of forward (+ backward)."""

    def run(_: int) -> None:
        if backward:
            block(x.detach().requires_grad_(True)).sum().backward()
        else:
            with torch.no_grad():
                block(x)

    return time_call(run, x.device, repeats, warmup)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 128, 256])
    parser.add_argument("--dim", type=int, default=48)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--window-size", type=int, default=8)
    parser.add_argument("--backward", action="store_true", help="time forward + backward as well")
    parser.add_argument("--global-max-pixels", type=int, default=128 * 128, help="skip global attention above this")
    add_timing_arguments(parser)
    args = parser.parse_args()

    device, header = start(args)
    torch.manual_seed(0)
    blocks = {name: block.to(device) for name, block in build_blocks(args.dim, args.heads, args.window_size).items()}
    rows = []
    for size in args.sizes:
        x = torch.randn(1, args.dim, size, size, device=device)
        for name, block in blocks.items():
            for backward in [False, True] if args.backward else [False]:
                if name.startswith("Global") and size * size > args.global_max_pixels:
                    continue
                try:
                    latency, peak = measure(block, x, backward, args.repeats, args.warmup)
                except torch.OutOfMemoryError:
                    torch.cuda.empty_cache()
                    continue
                row = {
                    "block": name,
                    "size": f"{size}x{size}",
                    "pixels": size * size,
                    "pass": "fwd+bwd" if backward else "fwd",
                    "ms": f"{latency:.2f}",
                    "peak_GiB": "" if peak is None else f"{peak:.3f}",
                }
                rows.append(row)
                print(" | ".join(str(v) for v in row.values()), flush=True)

    def time_of(block: str, size: int, pass_name: str = "fwd") -> float | None:
        for row in rows:
            if row["block"] == block and row["size"] == f"{size}x{size}" and row["pass"] == pass_name:
                return float(row["ms"])
        return None

    ratios = []
    clustered, window = "ClusteredNonLocalWindowAttention", "ShiftedWindowAttention"
    if time_of(clustered, 128) and time_of(clustered, 256):
        ratios.append(
            f"clustered time 256^2 / 128^2 = {time_of(clustered, 256) / time_of(clustered, 128):.2f} (target <= 5, linear = 4)"
        )
    for size in args.sizes:
        if time_of(clustered, size) and time_of(window, size):
            ratios.append(
                f"clustered / window attention at {size}^2 = {time_of(clustered, size) / time_of(window, size):.2f} (target <= 1.5)"
            )

    tag = args.tag or f"layers_{device.type}_{datetime.date.today():%Y%m%d}"
    settings = f"dim {args.dim}, heads {args.heads}, window {args.window_size}, batch 1, fp32, median of {args.repeats}"
    print(write_results(tag, f"{header}\n\n{settings}", rows, notes=ratios))
    print("\n".join(ratios))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return 0
    figure, axis = plt.subplots(figsize=(6, 4))
    for name in blocks:
        points = [(row["pixels"], float(row["ms"])) for row in rows if row["block"] == name and row["pass"] == "fwd"]
        if points:
            axis.loglog(*zip(*points), marker="o", label=name)
    axis.set_xlabel("pixels")
    axis.set_ylabel("forward time (ms)")
    axis.set_title(f"{device.type}: {settings}", fontsize=8)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(RESULTS_DIR / f"{tag}.png", dpi=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
