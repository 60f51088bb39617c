"""TransformerBlock: residual composition and context pass-through."""

from __future__ import annotations

import torch
from torch import nn

from derainzoo.layers.block import TransformerBlock, run_blocks
from derainzoo.layers.rain_mask_attention import RainMaskAttention


class Recorder(nn.Module):
    """A token mixer that returns a constant and remembers its arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []

    def forward(self, x: torch.Tensor, *context: torch.Tensor) -> torch.Tensor:
        self.calls.append((x, *context))
        return torch.ones_like(x)


def test_residual_composition_and_context_reach_the_mixer() -> None:
    mixer = Recorder()
    block = TransformerBlock(4, mixer)
    x, mask = torch.randn(1, 4, 5, 6), torch.rand(1, 1, 5, 6)
    out = block(x, mask)
    ((normed, passed_mask),) = mixer.calls
    torch.testing.assert_close(normed, block.norm1(x))
    assert passed_mask is mask
    after_mixer = x + 1
    torch.testing.assert_close(out, after_mixer + block.ffn(block.norm2(after_mixer)))


def test_rain_mask_block_trains_end_to_end() -> None:
    block = TransformerBlock(8, RainMaskAttention(8, 2))
    x = torch.randn(2, 8, 9, 9, requires_grad=True)
    block(x, torch.rand(2, 1, 9, 9)).square().mean().backward()
    for name, parameter in block.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_drop_path_drops_whole_branches_per_sample_in_training_only() -> None:
    block = TransformerBlock(4, Recorder(), drop_path=0.5)
    block.ffn = Recorder()  # both branches add exactly 1 when kept
    x = torch.randn(64, 4, 3, 3)
    with torch.no_grad():
        torch.testing.assert_close(block.eval()(x), x + 2)
        torch.manual_seed(0)
        added = block.train()(x) - x
    # Each branch is dropped (adds 0) or kept and scaled by 1 / (1 - p) (adds 2), for a whole sample.
    per_sample = added.flatten(1)
    torch.testing.assert_close(per_sample, per_sample[:, :1].expand_as(per_sample))
    assert set(per_sample[:, 0].round().tolist()) == {0.0, 2.0, 4.0}


def test_run_blocks_with_checkpointing_gives_the_same_output_and_gradients() -> None:
    torch.manual_seed(0)
    blocks = nn.ModuleList(TransformerBlock(8, RainMaskAttention(8, 2), drop_path=0.2) for _ in range(3))
    x, mask = torch.randn(2, 8, 7, 7), torch.rand(2, 1, 7, 7)

    def run(checkpointing: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        blocks.zero_grad()
        torch.manual_seed(1)
        out = run_blocks(blocks, x, mask, checkpointing=checkpointing)
        out.square().mean().backward()
        return out.detach(), [p.grad.clone() for p in blocks.parameters()]

    plain_out, plain_grads = run(False)
    checkpointed_out, checkpointed_grads = run(True)
    torch.testing.assert_close(checkpointed_out, plain_out, rtol=0, atol=0)
    for a, b in zip(plain_grads, checkpointed_grads):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)
    with torch.no_grad():  # no gradients needed: plain pass
        torch.testing.assert_close(
            run_blocks(blocks.eval(), x, mask, checkpointing=True), blocks[2](blocks[1](blocks[0](x, mask), mask), mask)
        )
