"""LayerNorm2d: timm's normalisation in PyTorch, the same numbers without transposes in an export;
l2_normalize: F.normalize without a broadcast copy."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d as TimmLayerNorm2d

from derainzoo.layers.norm import LayerNorm2d, l2_normalize


def reference(x: torch.Tensor, norm: torch.nn.Module) -> torch.Tensor:
    """F.layer_norm over the channels of every pixel, written out with a permute."""
    out = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), norm.weight, norm.bias, norm.eps)
    return out.permute(0, 3, 1, 2)


def randomised(norm: LayerNorm2d) -> LayerNorm2d:
    with torch.no_grad():
        for parameter in norm.parameters():
            parameter.normal_()
    return norm


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("exporting", [False, True])
def test_both_forms_are_layer_norm_over_the_channels(monkeypatch, exporting, channels_last) -> None:
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: exporting)
    torch.manual_seed(0)
    norm = randomised(LayerNorm2d(12)).double()
    x = 3 * torch.randn(2, 12, 7, 9, dtype=torch.float64) + 1
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    torch.testing.assert_close(norm(x), reference(x, norm))


@pytest.mark.parametrize("options", [{"affine": False}, {"bias": False}])
def test_the_export_form_without_affine_parameters(monkeypatch, options) -> None:
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
    norm = randomised(LayerNorm2d(5, **options))
    x = torch.randn(1, 5, 4, 4)
    torch.testing.assert_close(norm(x), reference(x, norm))


def test_weights_load_from_and_into_timms_layer_norm() -> None:
    ours, timms = randomised(LayerNorm2d(6)), TimmLayerNorm2d(6)
    timms.load_state_dict(ours.state_dict())
    x = torch.randn(2, 6, 3, 3)
    torch.testing.assert_close(timms(x), ours(x))


def test_an_exported_program_has_no_permute_and_gives_the_same_output() -> None:
    norm = randomised(LayerNorm2d(8)).eval()
    x = torch.randn(2, 8, 6, 5)
    program = torch.export.export(norm, (x,))
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert not any("permute" in target or "layer_norm" in target for target in targets), targets
    torch.testing.assert_close(program.module()(x), norm(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_l2_normalize_equals_torch_normalize_to_the_bit(dim: int) -> None:
    x = torch.randn(4, 6, 5, generator=torch.Generator().manual_seed(0))
    x[1, 2] = 0.0  # zero vectors (along the last axis) stay zero, as in F.normalize
    assert torch.equal(l2_normalize(x, dim=dim), F.normalize(x, dim=dim))
    assert torch.equal(l2_normalize(x, dim=-1)[1, 2], torch.zeros(5))


class Normalize(torch.nn.Module):
    def __init__(self, normalize) -> None:
        super().__init__()
        self.normalize = normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(x, dim=-1)


@pytest.mark.parametrize(("normalize", "expands"), [(F.normalize, True), (l2_normalize, False)])
def test_an_exported_l2_normalize_has_no_expand(normalize, expands: bool) -> None:
    program = torch.export.export(Normalize(normalize), (torch.randn(2, 9, 8),))
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert any("expand" in target for target in targets) == expands, targets
