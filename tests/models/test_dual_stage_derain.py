"""DualStageDerain: every variant through timm, any size, stages, input errors."""

from __future__ import annotations

import pytest
import timm
import torch
from timm.optim import create_optimizer_v2

import derainzoo
from derainzoo._helpers import PretrainedWeightsUnavailableError, save_weights
from derainzoo.models import DerainOutput, DualStageDerain
from derainzoo.models.dual_stage_derain import checkpoint_filter_fn

from ..helpers import TINY, tiny_model

VARIANTS = ["dual_stage_derain_tiny", "dual_stage_derain_small", "dual_stage_derain", "dual_stage_derain_base"]


@pytest.mark.parametrize("name", VARIANTS)
def test_every_variant_builds_through_timm_and_trains(name: str) -> None:
    torch.manual_seed(0)
    model = timm.create_model(name)
    assert isinstance(model, DualStageDerain)
    x = torch.rand(2, 3, 24, 40)
    out = model(x)
    assert out.shape == x.shape
    out.sum().backward()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    without_grad = [n for n, p in model.named_parameters() if p.grad is None]
    # The mask head's refinement ends in a zero-initialised layer, which blocks gradients to the
    # layers before it at initialisation only; everything else learns from the first step.
    assert all(n.startswith("mask_head.refine.") for n in without_grad), without_grad
    assert len(trainable) > len(without_grad)


def test_variants_grow_in_size() -> None:
    counts = [sum(p.numel() for p in timm.create_model(name).parameters()) for name in VARIANTS]
    assert counts == sorted(counts) and len(set(counts)) == 4


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (33, 47), (64, 16)])
def test_any_size_comes_back_the_same_size(size: tuple[int, int]) -> None:
    model = tiny_model()
    with torch.no_grad():
        out = model(torch.rand(1, 3, *size))
    assert out.shape == (1, 3, *size)
    assert torch.isfinite(out).all()


def test_forward_stages_returns_mask_stage1_and_final_image() -> None:
    model = tiny_model()
    x = torch.rand(2, 3, 30, 22)
    with torch.no_grad():
        stages = model.forward_stages(x)
        final = model(x)
    assert isinstance(stages, DerainOutput)
    assert stages.image.shape == stages.stage1.shape == x.shape
    assert stages.mask.shape == (2, 1, 30, 22)
    assert torch.all((stages.mask >= 0) & (stages.mask <= 1))
    assert torch.equal(stages.image, final)
    assert not torch.equal(stages.stage1, stages.image)


def test_eval_is_deterministic_and_batch_items_are_independent() -> None:
    model = tiny_model()
    x = torch.rand(3, 3, 20, 28)
    with torch.no_grad():
        batched = model(x)
        assert torch.equal(batched, model(x))
        for index in range(3):
            torch.testing.assert_close(batched[index : index + 1], model(x[index : index + 1]), rtol=1e-4, atol=1e-5)


def test_timm_conventions_for_an_image_to_image_model() -> None:
    model = timm.create_model(TINY)
    cfg = model.pretrained_cfg
    assert cfg["architecture"] == TINY
    assert cfg["mean"] == (0.0, 0.0, 0.0) and cfg["std"] == (1.0, 1.0, 1.0)
    assert cfg.get("num_classes") is None and cfg.get("classifier") is None
    assert model.num_classes == 0 and model.num_features == 16
    decay_free = model.no_weight_decay()
    assert decay_free and all(
        name.endswith(("temperature", "relative_position_bias_table", "threshold")) for name in decay_free
    )
    assert "mask_head.threshold" in decay_free
    # timm's optimizer factory must accept the model.
    create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05)


def test_constructor_arguments_override_the_variant() -> None:
    model = timm.create_model(TINY, num_clusters=3, window_size=4)
    clustered = [m for m in model.modules() if isinstance(m, derainzoo.layers.ClusteredNonLocalWindowAttention)]
    assert clustered and all(m.num_clusters == 3 and m.window_size == 4 for m in clustered)


@pytest.mark.parametrize(
    ("x", "error", "message"),
    [
        (torch.rand(3, 16, 16), ValueError, r"\(B, 3, H, W\)"),
        (torch.rand(1, 1, 16, 16), ValueError, r"\(B, 3, H, W\)"),
        (torch.rand(1, 4, 16, 16), ValueError, r"\(B, 3, H, W\)"),
        (torch.zeros(1, 3, 16, 16, dtype=torch.uint8), TypeError, "floating-point"),
        (torch.rand(0, 3, 16, 16), ValueError, "empty"),
        ([[0.5]], TypeError, "torch.Tensor"),
    ],
)
def test_bad_input_is_refused(x, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        tiny_model()(x)


def test_only_rgb_is_supported() -> None:
    with pytest.raises(ValueError, match="in_chans must be 3"):
        timm.create_model(TINY, in_chans=1)


def test_pretrained_without_weights_says_so() -> None:
    with pytest.raises(
        PretrainedWeightsUnavailableError,
        match="no pretrained weights are available for dual_stage_derain_small.*pretrained_cfg_overlay",
    ):
        timm.create_model("dual_stage_derain_small", pretrained=True)


def test_bundled_weights_load_by_name_and_by_tag() -> None:
    by_name = timm.create_model(TINY, pretrained=True).eval()
    by_tag = derainzoo.create_model(TINY + ".rain100l", pretrained=True).eval()
    assert by_name.pretrained_cfg["tag"] == "rain100l"
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        assert torch.equal(by_name(x), by_tag(x))
        assert not torch.equal(by_name(x), tiny_model()(x))


def test_timm_pretrained_cfg_overlay_file_uses_the_checked_loader(tmp_path) -> None:
    source = tiny_model(seed=3)
    path = tmp_path / "tiny.safetensors"
    save_weights(source, path)
    loaded = timm.create_model(TINY, pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))
    path.with_name(path.name + ".sha256").write_text("0" * 64 + "  tiny.safetensors\n")
    with pytest.raises(ValueError, match="sha256"):
        timm.create_model(TINY, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))


# Where each parameter of the tiny variant (depths (1, 1, 2)) lived before the stage modules:
# today's prefix -> the prefix in weights saved by derainzoo 0.1.
PRE_STAGE_PREFIXES = {
    "stage1_body.encoder_stages.0.blocks.": "stage1_body.encoders.0.",
    "stage1_body.encoder_stages.1.downsample.": "stage1_body.downsamples.0.",
    "stage1_body.encoder_stages.1.blocks.": "stage1_body.encoders.1.",
    "stage1_body.bottleneck.downsample.": "stage1_body.downsamples.1.",
    "stage1_body.bottleneck.blocks.": "stage1_body.bottleneck.",
    "stage1_body.decoder_stages.0.upsample.": "stage1_body.upsamples.1.",
    "stage1_body.decoder_stages.0.fusion.": "stage1_body.fusions.1.",
    "stage1_body.decoder_stages.0.blocks.": "stage1_body.decoders.1.",
    "stage1_body.decoder_stages.1.upsample.": "stage1_body.upsamples.0.",
    "stage1_body.decoder_stages.1.fusion.": "stage1_body.fusions.0.",
    "stage1_body.decoder_stages.1.blocks.": "stage1_body.decoders.0.",
}


def _pre_stage_key(key: str) -> str:
    for new, old in PRE_STAGE_PREFIXES.items():
        if key.startswith(new):
            return old + key[len(new) :]
    return key


def test_weights_of_the_pre_stage_layout_load_into_the_stage_modules(tmp_path) -> None:
    source = tiny_model(seed=5)
    old_layout = {_pre_stage_key(key): value for key, value in source.state_dict().items()}
    assert sum(key != _pre_stage_key(key) for key in source.state_dict()) > 20
    path = tmp_path / "old.safetensors"
    save_weights(old_layout, path)
    x = torch.rand(1, 3, 20, 20)
    for loaded in (
        derainzoo.create_model(TINY, weights=path),
        timm.create_model(TINY, pretrained=True, pretrained_cfg_overlay=dict(file=str(path))),
        timm.create_model(TINY, pretrained=True, pretrained_cfg_overlay=dict(file=None, state_dict=old_layout)),
    ):
        with torch.no_grad():
            assert torch.equal(loaded.eval()(x), source(x))
    # Current keys pass through untouched.
    assert checkpoint_filter_fn(source.state_dict(), source).keys() == source.state_dict().keys()


@pytest.fixture(scope="module")
def pretrained_tiny():
    return timm.create_model(TINY, pretrained=True).eval()


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_black_and_white_images_stay_black_and_white(pretrained_tiny, value: float) -> None:
    with torch.no_grad():
        out = pretrained_tiny(torch.full((1, 3, 40, 40), value))
    assert torch.isfinite(out).all()
    assert (out - value).abs().max() < 0.02


def test_bfloat16_autocast_close_to_float32(pretrained_tiny) -> None:
    from derainzoo.data import synthesize_rain

    from ..helpers import smooth_image

    rainy, _ = synthesize_rain(smooth_image(48, 64), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = pretrained_tiny(rainy)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low_precision = pretrained_tiny(rainy)
    assert (low_precision.float() - reference).abs().mean() < 2e-3


def test_memory_layout_does_not_change_the_output(pretrained_tiny) -> None:
    x = torch.rand(1, 3, 30, 44)
    with torch.no_grad():
        reference = pretrained_tiny(x)
        channels_last = pretrained_tiny(x.contiguous(memory_format=torch.channels_last))
        transposed = pretrained_tiny(x.transpose(-1, -2).contiguous().transpose(-1, -2))
    torch.testing.assert_close(channels_last, reference, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(transposed, reference, rtol=1e-4, atol=1e-5)


def test_torch_compile_captures_the_whole_model_in_one_graph(pretrained_tiny) -> None:
    # fullgraph=True raises on any graph break; the "eager" backend runs the captured graph as is,
    # so the output must be bit-identical.
    torch._dynamo.reset()
    compiled = torch.compile(pretrained_tiny, backend="eager", fullgraph=True)
    x = torch.rand(2, 3, 37, 53, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(compiled(x), pretrained_tiny(x))


@pytest.mark.slow
def test_torch_compile_with_inductor_matches_eager(pretrained_tiny) -> None:
    torch._dynamo.reset()
    compiled = torch.compile(pretrained_tiny, dynamic=True)
    generator = torch.Generator().manual_seed(0)
    for size in [(64, 96), (37, 53)]:
        x = torch.rand(2, 3, *size, generator=generator)
        with torch.no_grad():
            torch.testing.assert_close(compiled(x), pretrained_tiny(x), rtol=0, atol=1e-3)
