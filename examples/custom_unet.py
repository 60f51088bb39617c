"""Drop derainzoo's attention blocks into your own restoration network.

A two-level U-Net whose encoder uses ``RainMaskAttention`` (fed by a ``MorphologicalMaskHead``)
and whose bottleneck uses ``ClusteredNonLocalWindowAttention``, trained for a few steps on
synthetic rain to show that it learns:

    python examples/custom_unet.py --steps 200
"""

from __future__ import annotations

import argparse

import torch
from torch import Tensor, nn

from derainzoo.data import synthesize_rain
from derainzoo.layers import (
    ClusteredNonLocalWindowAttention,
    MorphologicalMaskHead,
    RainMaskAttention,
    TransformerBlock,
    pad_to_multiple,
)
from derainzoo.losses import charbonnier_loss


class TinyRestorationUNet(nn.Module):
    """``(B, 3, H, W) -> (B, 3, H, W)``: mask-aware encoder, non-local bottleneck, residual output."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.mask_head = MorphologicalMaskHead()
        self.embed = nn.Conv2d(3, dim, 3, padding=1)
        # Any block of derainzoo.layers fits TransformerBlock; extra forward arguments (the mask)
        # are handed to the attention.
        self.encoder = TransformerBlock(dim, RainMaskAttention(dim, num_heads=1))
        self.down = nn.Conv2d(dim, 2 * dim, 2, stride=2)
        self.bottleneck = TransformerBlock(
            2 * dim, ClusteredNonLocalWindowAttention(2 * dim, num_heads=2, window_size=4)
        )
        self.up = nn.ConvTranspose2d(2 * dim, dim, 2, stride=2)
        self.head = nn.Conv2d(2 * dim, 3, 3, padding=1)

    def forward(self, image: Tensor) -> Tensor:
        height, width = image.shape[-2:]
        padded = pad_to_multiple(image, 2, mode="reflect")
        mask = self.mask_head(padded)
        skip = self.encoder(self.embed(padded), mask)
        deep = self.bottleneck(self.down(skip))
        residual = self.head(torch.cat([self.up(deep), skip], dim=1))
        return (padded + residual)[..., :height, :width]


def train(steps: int, size: int = 48, batch: int = 4, seed: int = 0) -> list[float]:
    """Train on fresh synthetic rain every step; returns the loss of every step."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = TinyRestorationUNet()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(steps):
        # Smooth random backgrounds: low-resolution noise upsampled.
        clean = nn.functional.interpolate(
            torch.rand(batch, 3, size // 8, size // 8, generator=generator),
            size=(size, size),
            mode="bicubic",
            align_corners=False,
        ).clamp(0, 1)
        rainy, _ = synthesize_rain(clean, density=0.004, length=11, angle=80.0, generator=generator)
        loss = charbonnier_loss(model(rainy), clean)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    losses = train(args.steps)
    window = max(1, len(losses) // 10)
    print(
        f"loss: first {window} steps {sum(losses[:window]) / window:.4f}, last {window} steps {sum(losses[-window:]) / window:.4f}"
    )


if __name__ == "__main__":
    main()
