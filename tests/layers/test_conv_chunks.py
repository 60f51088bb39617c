"""conv_chunks: one pass and views in PyTorch; per-branch convolutions, the same numbers, in an export."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from derainzoo.layers.conv_chunks import conv_chunks


def chain(in_channels: int, channels: int, bias: bool, depthwise_layers: int = 1, dilation: int = 1) -> list[nn.Conv2d]:
    torch.manual_seed(0)
    convs = [nn.Conv2d(in_channels, channels, 1, bias=bias)]
    convs += [
        nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, groups=channels, bias=bias)
        for _ in range(depthwise_layers)
    ]
    return [conv.double() for conv in convs]


@pytest.mark.parametrize(
    ("chunks", "bias", "depthwise_layers", "dilation"),
    [(2, False, 1, 1), (2, True, 1, 2), (3, True, 2, 1), (4, True, 0, 1)],
)
def test_branches_computed_one_by_one_equal_the_chunked_pass(
    monkeypatch, chunks, bias, depthwise_layers, dilation
) -> None:
    convs = chain(5, 12, bias, depthwise_layers, dilation)
    x = torch.randn(2, 5, 9, 7, dtype=torch.float64)
    expected = x
    for conv in convs:
        expected = conv(expected)
    expected = expected.chunk(chunks, dim=1)
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
    branches = conv_chunks(x, convs, chunks)
    assert len(branches) == chunks
    for branch, reference in zip(branches, expected, strict=True):
        torch.testing.assert_close(branch, reference)


def test_in_pytorch_the_branches_are_views_of_one_pass() -> None:
    gate, content = conv_chunks(torch.randn(1, 4, 6, 6, dtype=torch.float64), chain(4, 8, True), 2)
    assert gate.untyped_storage().data_ptr() == content.untyped_storage().data_ptr()


def test_an_exported_program_has_no_split_and_gives_the_same_output() -> None:
    class Gated(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.expand, self.depthwise = chain(6, 16, True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            gate, content = conv_chunks(x, (self.expand, self.depthwise), 2)
            return gate * content

    module = Gated().float().eval()
    x = torch.randn(2, 6, 8, 5)
    program = torch.export.export(module, (x,))
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert not any("split" in target or "chunk" in target for target in targets), targets
    torch.testing.assert_close(program.module()(x), module(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("convs", "chunks", "message"),
    [
        ([], 2, "at least one"),
        ([nn.Conv2d(4, 8, 1)], 3, "must divide"),
        ([nn.Conv2d(4, 8, 1, groups=2)], 2, "must not be grouped"),
        ([nn.Conv2d(4, 8, 1), nn.Conv2d(8, 8, 3, padding=1)], 2, "depth-wise"),
        ([nn.Conv2d(4, 8, 1), nn.Conv2d(8, 8, 3, padding=1, groups=8, padding_mode="reflect")], 2, "padding_mode"),
    ],
)
def test_chains_it_cannot_split_are_refused(convs, chunks, message) -> None:
    with pytest.raises(ValueError, match=message):
        conv_chunks(torch.randn(1, 4, 5, 5), convs, chunks)
