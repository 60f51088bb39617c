"""NAFNetLite: the drop-in baseline, as NAFNet and with derainzoo's blocks swapped in."""

from __future__ import annotations

import pytest
import torch

import derainzoo
from derainzoo._helpers import PretrainedWeightsUnavailableError
from derainzoo.layers import (
    ClusteredNonLocalWindowAttention,
    MorphologicalMaskHead,
    NAFBlock,
    RainMaskAttention,
    ShiftedWindowAttention,
)
from derainzoo.losses import DualStageLoss
from derainzoo.models import NAFNetLite

from ..helpers import smooth_image


def _count(model: torch.nn.Module, kind: type) -> int:
    return sum(isinstance(module, kind) for module in model.modules())


def test_plain_nafnet_has_only_naf_blocks_and_no_mask() -> None:
    model = derainzoo.create_model("nafnet_lite")
    assert isinstance(model, NAFNetLite) and model.mask_head is None
    # (1, 1, 1) down, 2 in the bottleneck, (1, 1, 1) up.
    assert _count(model, NAFBlock) == 8 and _count(model, RainMaskAttention) == 0
    outputs = model.forward_stages(torch.rand(1, 3, 20, 24))
    assert outputs.stage1 is None and outputs.mask is None


def test_derainzoo_blocks_replace_every_naf_block_at_about_the_same_size() -> None:
    plain = derainzoo.create_model("nafnet_lite")
    swapped = derainzoo.create_model("nafnet_lite", derainzoo_blocks=True)
    assert _count(swapped, NAFBlock) == 0 and isinstance(swapped.mask_head, MorphologicalMaskHead)
    assert _count(swapped, RainMaskAttention) == 6  # every encoder and decoder block
    assert _count(swapped, ShiftedWindowAttention) == _count(swapped, ClusteredNonLocalWindowAttention) == 1
    # The skeleton is the same module for module outside the blocks.
    skeleton = ("intro.", "ending.", "encoder_stages.1.downsample.", "decoder_stages.0.upsample.")
    for prefix in skeleton:
        assert {k: v.shape for k, v in plain.state_dict().items() if k.startswith(prefix)} == {
            k: v.shape for k, v in swapped.state_dict().items() if k.startswith(prefix)
        }
    sizes = [sum(p.numel() for p in m.parameters()) for m in (plain, swapped)]
    assert abs(sizes[1] / sizes[0] - 1) < 0.05, sizes


def test_the_mask_reaches_the_encoder_attention() -> None:
    torch.manual_seed(0)
    model = derainzoo.create_model("nafnet_lite", derainzoo_blocks=True).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        unmasked = model(x)
        model.mask_head.threshold.fill_(-1.0)  # every pixel is rain now
        assert model.forward_stages(x).mask.min() > 0.99
        assert not torch.allclose(model(x), unmasked)


@pytest.mark.parametrize("derainzoo_blocks", [False, True])
def test_both_variants_learn(derainzoo_blocks: bool) -> None:
    torch.manual_seed(0)
    model = derainzoo.create_model("nafnet_lite", derainzoo_blocks=derainzoo_blocks).train()
    clean = smooth_image(32, 32).repeat(2, 1, 1, 1)
    rainy = (clean + 0.4 * (torch.rand_like(clean[:, :1]) > 0.95)).clamp(0, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    criterion = DualStageLoss()
    losses = []
    for _ in range(60):
        loss, parts = criterion(model.forward_stages(rainy), rainy, clean)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(parts["final"].item())
    assert losses[-1] < 0.8 * losses[0]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"in_chans": 1}, "RGB"),
        ({"num_classes": 10}, "num_classes must be 0"),
        ({"mask_head": {"threshold": 0.1}}, "derainzoo_blocks=True"),
        ({"depths": (1, 1), "num_heads": (1,)}, "one num_heads entry per level"),
        ({"drop_path_rate": 1.0}, "drop_path_rate"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NAFNetLite(**kwargs)


def test_no_pretrained_weights_says_so() -> None:
    with pytest.raises(PretrainedWeightsUnavailableError, match="no pretrained weights"):
        derainzoo.create_model("nafnet_lite", pretrained=True)
