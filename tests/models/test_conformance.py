"""timm's model API, checked for every registered architecture (like timm's ``tests/test_models.py``)."""

from __future__ import annotations

import math

import pytest
import timm
import torch
from timm.data import resolve_data_config
from timm.models import group_parameters
from timm.optim import create_optimizer_v2
from torch import nn

import derainzoo

from ..helpers import assert_same_weights

MODELS = derainzoo.list_models()
NETWORKS = [name for name in MODELS if not name.endswith("_routed")]
"""The single networks: a router (``*_routed``, two networks and a decision per frame) has no one
feature pyramid, stage list or layer-decay order; its API is tested in ``test_routed_derain.py``."""
INPUT = (2, 3, 21, 30)  # odd sizes, so every level pads and crops


def _model(name: str, seed: int = 0, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    return timm.create_model(name, **kwargs)


def _input(seed: int = 0) -> torch.Tensor:
    return torch.rand(*INPUT, generator=torch.Generator().manual_seed(seed))


def test_every_variant_is_listed() -> None:
    assert MODELS == sorted(MODELS) and len(MODELS) >= 4


@pytest.mark.parametrize("name", MODELS)
def test_pretrained_cfg_is_honest(name: str) -> None:
    model = _model(name)
    cfg = model.pretrained_cfg
    first_conv = model.get_submodule(cfg["first_conv"])
    assert isinstance(first_conv, nn.Conv2d) and first_conv.in_channels == cfg["input_size"][0] == 3
    assert cfg["min_input_size"] == (3, 1, 1) and not cfg["fixed_input_size"]
    # The smallest input it promises really works.
    with torch.no_grad():
        assert model.eval()(torch.rand(1, *cfg["min_input_size"])).shape == (1, 3, 1, 1)
    assert any("resize" in note for note in cfg["notes"])
    data_config = resolve_data_config({}, model=model)
    assert data_config["mean"] == (0.0, 0.0, 0.0) and data_config["std"] == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("name", NETWORKS)
def test_forward_features_and_intermediates_follow_feature_info(name: str) -> None:
    model = _model(name).eval()
    x = _input()
    with torch.no_grad():
        features = model.forward_features(x)
        final, intermediates = model.forward_intermediates(x)
        only = model.forward_intermediates(x, indices=[0, -1], intermediates_only=True)
    assert features.shape == (2, model.num_features, *x.shape[-2:])
    assert torch.equal(final, features)
    assert len(intermediates) == len(model.feature_info)
    for tensor, info in zip(intermediates, model.feature_info):
        reduction = info["reduction"]
        assert tensor.shape == (2, info["num_chs"], math.ceil(21 / reduction), math.ceil(30 / reduction))
        assert isinstance(model.get_submodule(info["module"]), nn.Module)
    assert torch.equal(only[0], intermediates[0]) and torch.equal(only[1], intermediates[-1])


@pytest.mark.parametrize("name", NETWORKS)
def test_features_only_gives_the_pyramid_and_keeps_only_the_encoder(name: str) -> None:
    full = _model(name).eval()
    extractor = _model(name, features_only=True, out_indices=(0, 1)).eval()
    # The extractor's weights are the full model's encoder: load them and compare.
    extractor.model.load_state_dict(
        {key: value for key, value in full.state_dict().items() if key in extractor.model.state_dict()}
    )
    x = _input()
    with torch.no_grad():
        expected = full.forward_intermediates(x, indices=(0, 1), intermediates_only=True)
        got = extractor(x)
    assert extractor.feature_info.channels() == [info["num_chs"] for info in full.feature_info[:2]]
    assert extractor.feature_info.reduction() == [1, 2]
    assert all(torch.equal(a, b) for a, b in zip(got, expected))
    assert sum(p.numel() for p in extractor.parameters()) < 0.5 * sum(p.numel() for p in full.parameters())
    with pytest.raises(RuntimeError, match="pruned"):
        extractor.model(x)
    extractor.model.set_grad_checkpointing()  # the pruned stages are gone, the kept ones take it
    assert all(stage.grad_checkpointing for stage in extractor.model._stages())


@pytest.mark.parametrize("name", NETWORKS)
def test_gradient_checkpointing_gives_the_same_gradients(name: str) -> None:
    model = _model(name, drop_path_rate=0.2).train()
    x = _input()

    def gradients() -> list[torch.Tensor]:
        model.zero_grad()
        torch.manual_seed(1)  # the same stochastic-depth draws in both passes
        model(x).square().mean().backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    plain = gradients()
    model.set_grad_checkpointing()
    assert all(stage.grad_checkpointing for stage in model._stages())
    checkpointed = gradients()
    assert len(plain) == len(checkpointed) > 0
    for a, b in zip(plain, checkpointed):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", NETWORKS)
def test_drop_path_rate_follows_the_linear_rule_and_only_acts_in_training(name: str) -> None:
    rate = 0.3
    model = _model(name, drop_path_rate=rate)
    blocks = [block for stage in model._stages() for block in stage.blocks]
    probabilities = [getattr(block.drop_path, "drop_prob", 0.0) for block in blocks]
    torch.testing.assert_close(torch.tensor(probabilities), torch.linspace(0, rate, len(blocks)))
    with torch.no_grad():
        # Residual scales that start at zero (NAFNet's) would hide the dropped branches.
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    reference = _model(name)  # no stochastic depth, the same weights
    reference.load_state_dict(model.state_dict())
    x = _input()
    with torch.no_grad():
        assert torch.equal(model.eval()(x), reference.eval()(x))
        model.train()
        torch.manual_seed(0)
        first = model(x)
        torch.manual_seed(1)
        assert not torch.equal(first, model(x))


@pytest.mark.parametrize("name", NETWORKS)
def test_group_matcher_orders_the_stages_for_layer_decay(name: str) -> None:
    model = _model(name)
    coarse = group_parameters(model, model.group_matcher(coarse=True))
    names = list(coarse.values())
    # stem, encoder stages, bottleneck, decoder stages, the detail stage where there is one, then
    # the convolution that outputs the image, alone.
    detail_stages = 1 if getattr(model, "stage2_body", None) is not None else 0
    assert len(names) == 1 + 2 * len(model.feature_info) - 1 + detail_stages + 1
    assert f"{model.pretrained_cfg['first_conv']}.weight" in names[0]
    output_conv = model.get_submodule(names[-1][0].rsplit(".", 1)[0])
    assert isinstance(output_conv, nn.Conv2d) and output_conv.out_channels == 3
    assert all(name.rsplit(".", 1)[0] == names[-1][0].rsplit(".", 1)[0] for name in names[-1])
    first_stage, bottleneck = (model.feature_info[index]["module"] + "." for index in (0, -1))
    assert all(name.startswith(first_stage) for name in names[1])
    assert all(name.startswith(bottleneck) for name in names[len(model.feature_info)])
    fine = group_parameters(model, model.group_matcher(coarse=False))
    assert len(fine) > len(coarse)
    optimizer = create_optimizer_v2(model, "adamw", lr=1e-3, layer_decay=0.8)
    scales = {round(group["lr_scale"], 6) for group in optimizer.param_groups}
    assert len(scales) == len(fine) and max(scales) == 1.0


@pytest.mark.parametrize("name", MODELS)
def test_derainzoo_and_timm_build_the_same_model(name: str) -> None:
    through_timm = _model(name)
    torch.manual_seed(0)
    through_derainzoo = derainzoo.create_model(name)
    assert type(through_timm) is type(through_derainzoo)
    assert_same_weights(through_derainzoo, through_timm)
