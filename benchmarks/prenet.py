"""PReNet6, written from its paper for timing only (no weights): the reference row of
``bench_models.py``.

Ren et al., "Progressive Image Deraining Networks: A Better and Simpler Baseline", CVPR 2019:
six stages that share their weights; each stage reads the rainy image and the previous stage's
estimate (6 channels), runs one 3x3 convolution to 32 channels, a convolutional LSTM whose state
carries across stages, five residual blocks of two 3x3 convolutions and a 3x3 convolution back to
3 channels, added to the rainy image. 168,963 parameters.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["PReNet6"]


def _conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1)


class PReNet6(nn.Module):
    """Progressive recurrent deraining network, six stages, 32 channels.

    Shape:
        - Input: ``(B, 3, H, W)`` rainy RGB in ``[0, 1]``.
        - Output: ``(B, 3, H, W)`` the last stage's estimate.
    """

    def __init__(self, stages: int = 6, channels: int = 32, residual_blocks: int = 5) -> None:
        super().__init__()
        self.stages, self.channels = stages, channels
        self.stem = nn.Sequential(_conv(6, channels), nn.ReLU())
        # One convolution per LSTM gate, over [features, hidden state]: input, forget, cell, output.
        self.gates = nn.ModuleList(_conv(2 * channels, channels) for _ in range(4))
        self.residual_blocks = nn.ModuleList(
            nn.Sequential(_conv(channels, channels), nn.ReLU(), _conv(channels, channels), nn.ReLU())
            for _ in range(residual_blocks)
        )
        self.head = _conv(channels, 3)

    def forward(self, rainy: Tensor) -> Tensor:
        batch, _, height, width = rainy.shape
        hidden = rainy.new_zeros(batch, self.channels, height, width)
        cell = torch.zeros_like(hidden)
        estimate = rainy
        for _ in range(self.stages):
            features = torch.cat([self.stem(torch.cat([rainy, estimate], dim=1)), hidden], dim=1)
            input_gate, forget_gate, candidate, output_gate = (gate(features) for gate in self.gates)
            cell = torch.sigmoid(forget_gate) * cell + torch.sigmoid(input_gate) * torch.tanh(candidate)
            hidden = torch.sigmoid(output_gate) * torch.tanh(cell)
            features = hidden
            for block in self.residual_blocks:
                features = torch.relu(block(features) + features)
            estimate = self.head(features) + rainy
        return estimate
