"""Small builders shared by the tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import torch

import derainzoo

TINY = "dual_stage_derain_tiny"
REPOSITORY = Path(__file__).resolve().parents[1]


def load_script(relative_path: str) -> ModuleType:
    """Import a script of the repository (``examples/train.py``, ``docs/make_architecture.py``) as a module.

    It is registered in ``sys.modules`` while it runs, because dataclasses look their module up there.
    """
    path = REPOSITORY / relative_path
    spec = importlib.util.spec_from_file_location(f"derainzoo_script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def tiny_model(seed: int = 0) -> torch.nn.Module:
    """The tiny variant with random weights, in eval mode, reproducibly initialised."""
    torch.manual_seed(seed)
    return derainzoo.create_model(TINY).eval()


def assert_same_weights(actual: torch.nn.Module, expected: torch.nn.Module) -> None:
    """Assert that two modules hold the same tensors under the same names, bit for bit.

    The message names the missing or extra keys, or the first tensor that differs.
    """
    actual_state, expected_state = actual.state_dict(), expected.state_dict()
    assert actual_state.keys() == expected_state.keys(), sorted(actual_state.keys() ^ expected_state.keys())[:5]
    for name, tensor in expected_state.items():
        assert torch.equal(actual_state[name], tensor), name


def smooth_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """``(1, 3, H, W)`` smooth colour gradients with gentle waves, in [0.1, 0.9]."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.linspace(0, 1, height)[:, None]
    cols = torch.linspace(0, 1, width)[None, :]
    phases = torch.rand(3, generator=generator) * 6.28
    channels = [0.5 + 0.3 * torch.sin(3 * rows + 2 * cols + phase) + 0.1 * (rows - cols) for phase in phases]
    return torch.stack(channels)[None].clamp(0.1, 0.9)


def write_paired_folder(root, count: int = 4, size: tuple[int, int] = (40, 48), seed: int = 0) -> None:
    """A small rain/ + norain/ dataset of smooth images with synthetic streaks, as PNG files."""
    import numpy as np
    from PIL import Image

    from derainzoo.data import synthesize_rain

    (root / "rain").mkdir(parents=True, exist_ok=True)
    (root / "norain").mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    for index in range(count):
        clean = smooth_image(*size, seed=seed + index)
        rainy, _ = synthesize_rain(clean, density=0.01, length=9, angle=70 + 5 * index, generator=generator)
        for folder, image in (("rain", rainy), ("norain", clean)):
            pixels = (image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            Image.fromarray(pixels).save(root / folder / f"{index:03d}.png")


class RecordingIdentity(torch.nn.Module):
    """Identity that states its memory need, records the input sizes it saw and counts the
    calls to ``release_memory`` (as a graph runtime's arena would be released)."""

    def __init__(self, inference_bytes_per_pixel: int = 1000) -> None:
        super().__init__()
        self.inference_bytes_per_pixel = inference_bytes_per_pixel
        self.sizes: list[tuple[int, int]] = []
        self.releases = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(tuple(x.shape[-2:]))
        return x

    def release_memory(self) -> None:
        self.releases += 1
