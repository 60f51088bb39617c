"""DualStageDerain's ablation switches: each builds what it says, trains, and bad combinations are refused."""

from __future__ import annotations

import pytest
import timm
import torch

import derainzoo
from derainzoo.layers import (
    ClusteredNonLocalWindowAttention,
    LearnedMaskHead,
    MorphologicalMaskHead,
    NAFBlock,
    RainMaskAttention,
    ShiftedWindowAttention,
)
from derainzoo.losses import DualStageLoss
from derainzoo.models.dual_stage_derain import MASK_SOURCES, STAGE1_ATTENTIONS, STAGE2_ATTENTIONS

from ..helpers import TINY, smooth_image

ABLATIONS = [
    {},
    {"stage1_attention": "channel"},
    {"stage1_attention": "window"},
    {"mask_source": "learned"},
    {"stage2_attention": "window"},
    {"stage2_depth": 0, "depths": (2, 2, 2)},
    {"stage1_attention": "naf_mask"},
    {"stage1_attention": "naf"},
]


def _mixers(module: torch.nn.Module, kind: type) -> list[torch.nn.Module]:
    return [m for m in module.modules() if isinstance(m, kind)]


@pytest.mark.parametrize("overrides", ABLATIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "full")
def test_every_ablation_builds_through_both_factories_and_learns(overrides: dict) -> None:
    torch.manual_seed(0)
    model = derainzoo.create_model(TINY, **overrides)
    torch.manual_seed(0)
    through_timm = timm.create_model(TINY, **overrides)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in through_timm.parameters())
    clean = smooth_image(32, 40)
    rainy = (clean + 0.3 * (torch.rand_like(clean) > 0.97)).clamp(0, 1)
    outputs = model.forward_stages(rainy)
    assert outputs.image.shape == rainy.shape
    loss, parts = DualStageLoss()(outputs, rainy, clean)
    loss.backward()
    assert model.stage1_embed.weight.grad.abs().sum() > 0
    assert ("stage1" in parts) == (model.num_stages == 2)
    assert ("mask" in parts) == (model.mask_head is not None)


def test_stage1_attention_switch_swaps_the_token_mixers_and_drops_the_unused_mask() -> None:
    full = derainzoo.create_model(TINY)
    assert isinstance(full.mask_head, MorphologicalMaskHead) and full.mask_source == "morphological"
    assert _mixers(full.stage1_body, RainMaskAttention) and not _mixers(full.stage1_body, ShiftedWindowAttention)

    channel = derainzoo.create_model(TINY, stage1_attention="channel")
    assert channel.mask_head is None and channel.mask_source == "none"
    assert len(_mixers(channel.stage1_body, RainMaskAttention)) == len(_mixers(full.stage1_body, RainMaskAttention))

    window = derainzoo.create_model(TINY, stage1_attention="window")
    windows = _mixers(window.stage1_body, ShiftedWindowAttention)
    assert window.mask_head is None and not _mixers(window.stage1_body, RainMaskAttention)
    assert len(windows) == len(_mixers(full.stage1_body, RainMaskAttention))
    # Consecutive blocks of a level alternate unshifted and shifted windows, as in Swin.
    bottleneck = [block.token_mixer.shift_size for block in window.stage1_body.bottleneck.blocks]
    assert bottleneck == [0, window.stage2_body.blocks[0].token_mixer.window_size // 2]


def test_naf_switches_build_naf_blocks_with_and_without_the_mask() -> None:
    full = derainzoo.create_model(TINY)
    naf_mask = derainzoo.create_model(TINY, stage1_attention="naf_mask")
    assert isinstance(naf_mask.mask_head, MorphologicalMaskHead)
    blocks = _mixers(naf_mask.stage1_body, NAFBlock)
    assert len(blocks) == len(_mixers(full.stage1_body, RainMaskAttention))
    assert not _mixers(naf_mask.stage1_body, RainMaskAttention)
    # Stage 2 keeps the clustered attention.
    assert _mixers(naf_mask.stage2_body, ClusteredNonLocalWindowAttention)
    naf = derainzoo.create_model(TINY, stage1_attention="naf")
    assert naf.mask_head is None and len(_mixers(naf.stage1_body, NAFBlock)) == len(blocks)
    # The mask reaches the blocks: a model whose mask is zero everywhere is the model without one.
    naf.load_state_dict({k: v for k, v in naf_mask.state_dict().items() if not k.startswith("mask_head")})
    x = torch.rand(1, 3, 24, 32)
    with torch.no_grad():
        naf_mask.mask_head.forward = lambda image: torch.zeros_like(image[:, :1])
        # Untrained blocks are the identity: make both models' blocks do something, alike.
        for block in [*blocks, *_mixers(naf.stage1_body, NAFBlock)]:
            block.beta.fill_(0.5)
            block.gamma.fill_(0.5)
        torch.testing.assert_close(naf_mask(x), naf(x), rtol=1e-4, atol=1e-5)


def test_channel_attention_without_a_mask_equals_the_full_model_with_a_constant_mask() -> None:
    """Why "constant mask" needs no switch of its own: a constant background weight scales every
    query and key alike and the L2 normalisation cancels it."""
    torch.manual_seed(0)
    channel = derainzoo.create_model(TINY, stage1_attention="channel").eval()
    torch.manual_seed(0)
    learned = derainzoo.create_model(TINY, mask_source="learned").eval()
    # Same weights where the modules are the same; the untrained learned head outputs 0.5 everywhere.
    missing, unexpected = learned.load_state_dict(channel.state_dict(), strict=False)
    assert all(key.startswith("mask_head.") for key in missing) and not unexpected
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        assert learned.forward_stages(x).mask.unique().tolist() == [0.5]
        torch.testing.assert_close(learned(x), channel(x), rtol=1e-4, atol=1e-5)


def test_learned_mask_source_uses_the_prior_free_head() -> None:
    model = derainzoo.create_model(TINY, mask_source="learned", mask_head={"channels": 8})
    assert isinstance(model.mask_head, LearnedMaskHead)
    assert model.mask_head.layers[0].out_channels == 8


def test_stage2_window_switch_replaces_every_clustered_block() -> None:
    full = derainzoo.create_model(TINY, stage2_depth=4)
    window = derainzoo.create_model(TINY, stage2_depth=4, stage2_attention="window")
    assert len(_mixers(full.stage2_body, ClusteredNonLocalWindowAttention)) == 2
    assert not _mixers(window.stage2_body, ClusteredNonLocalWindowAttention)
    assert [block.token_mixer.shift_size for block in window.stage2_body.blocks] == [0, 4, 0, 4]


def test_single_stage_model_has_no_stage2_and_returns_stage1() -> None:
    model = derainzoo.create_model(TINY, stage2_depth=0).eval()
    assert model.num_stages == 1
    assert model.stage2_body is model.stage2_head is model.stage2_embed is model.cross_stage_fusion is None
    assert not any(name.startswith(("stage2", "cross_stage")) for name, _ in model.named_parameters())
    x = torch.rand(2, 3, 20, 28)
    with torch.no_grad():
        outputs = model.forward_stages(x)
        assert outputs.stage1 is None
        torch.testing.assert_close(model(x), outputs.image)
        assert model.forward_features(x).shape == (2, model.num_features, 20, 28)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"stage1_attention": "mdta"}, "unknown stage1_attention 'mdta'"),
        ({"stage2_attention": "global"}, "unknown stage2_attention 'global'"),
        ({"mask_source": "oracle"}, "unknown mask_source 'oracle'"),
        ({"mask_source": "none"}, "needs a mask"),
        ({"stage1_attention": "naf_mask", "mask_source": "none"}, "or stage1_attention='naf' for the same"),
        ({"stage1_attention": "naf", "mask_source": "learned"}, "reads no mask"),
        ({"stage1_attention": "window", "mask_source": "morphological"}, "reads no mask"),
        ({"stage1_attention": "channel", "mask_head": {"threshold": 0.1}}, "without a mask head"),
        ({"stage2_depth": 0, "stage2_attention": "window"}, "single-stage"),
        ({"stage2_depth": -1}, "stage2_depth must be >= 0"),
    ],
)
def test_bad_switches_are_refused_with_the_way_out(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        derainzoo.create_model(TINY, **overrides)


def test_switch_names_are_documented_constants() -> None:
    assert STAGE1_ATTENTIONS[0] == "rain_mask" and STAGE2_ATTENTIONS[0] == "clustered"
    assert MASK_SOURCES[0] == "morphological"
