"""RoutedDerain: the routing rule (band semantics, per-frame blend), the heavy expert run only on
routed frames, one decision per frame however the passes are tiled or self-ensembled, the
registered model and its weights file."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import Tensor, nn

import derainzoo
from derainzoo._helpers import save_weights
from derainzoo.models import DualStageDerain, RoutedDerain
from derainzoo.models.routed_derain import DEFAULT_ROUTING_BAND, blend_frames, removed_rain, routing_weight
from derainzoo.self_ensemble import SelfEnsemble
from derainzoo.tiling import TilePlan, estimate_inference_memory, run_tiled

from ..helpers import assert_same_weights


class _Scale(nn.Module):
    """A stand-in expert: multiplies the image by ``factor`` (so it removes more from brighter
    pixels) and records the batches it is given."""

    def __init__(self, factor: float, bytes_per_pixel: int = 100) -> None:
        super().__init__()
        self.factor = factor
        self.inference_bytes_per_pixel = bytes_per_pixel
        self.seen: list[tuple[int, ...]] = []

    def forward(self, x: Tensor) -> Tensor:
        self.seen.append(tuple(x.shape))
        return x * self.factor


def test_the_weight_is_zero_below_the_band_one_above_and_linear_inside() -> None:
    removed = torch.tensor([0.0, 40.0, 45.0, 50.0, 60.0, 90.0])
    torch.testing.assert_close(routing_weight(removed, 40.0, 60.0), torch.tensor([0.0, 0.0, 0.25, 0.5, 1.0, 1.0]))


def test_removed_rain_is_the_mean_change_in_levels_of_the_clamped_output() -> None:
    rainy = _frames(100, 200)
    output = torch.stack([rainy[0] - 10 / 255, torch.full_like(rainy[1], 1.5)])  # the second overshoots white
    torch.testing.assert_close(removed_rain(rainy, output), torch.tensor([10.0, 55.0]))


def test_an_empty_band_is_a_hard_switch() -> None:
    torch.testing.assert_close(
        routing_weight(torch.tensor([39.9, 40.0, 40.1]), 40.0, 40.0), torch.tensor([0.0, 0.0, 1.0])
    )


@pytest.mark.parametrize("band", [(-1.0, 10.0), (50.0, 40.0)])
def test_a_band_out_of_order_is_refused(band: tuple[float, float]) -> None:
    with pytest.raises(ValueError, match="0 <= low <= high"):
        routing_weight(torch.zeros(1), *band)
    with pytest.raises(ValueError, match="0 <= low <= high"):
        RoutedDerain(_Scale(1.0), _Scale(1.0), band)


def test_a_band_that_is_not_two_numbers_is_refused() -> None:
    with pytest.raises(ValueError, match="two numbers"):
        RoutedDerain(_Scale(1.0), _Scale(1.0), (40.0,))  # type: ignore[arg-type]


def test_each_frame_is_blended_by_its_own_weight() -> None:
    light, heavy = torch.zeros(3, 3, 4, 5), torch.ones(3, 3, 4, 5)
    out = blend_frames(light, heavy, torch.tensor([0.0, 0.25, 1.0]))
    torch.testing.assert_close(out[0], light[0])  # a light frame is the light expert's output, exactly
    torch.testing.assert_close(out[1], torch.full((3, 4, 5), 0.25))
    torch.testing.assert_close(out[2], heavy[2])


def _frames(*levels: float, height: int = 12, width: int = 16) -> Tensor:
    """``(B, 3, H, W)`` flat frames, one grey level of 255 each."""
    return torch.stack([torch.full((3, height, width), level / 255) for level in levels])


def test_light_frames_are_the_light_output_and_only_heavy_frames_meet_the_heavy_expert() -> None:
    # x 0.9 removes 10 levels from a frame at 100, 20 at 200, 25 at 250: with the band at 15-25
    # the first frame stays light, the second is blended half-way, the third is the heavy output.
    light, heavy = _Scale(0.9), _Scale(0.5)
    router = RoutedDerain(light, heavy, band=(15.0, 25.0))
    x = _frames(100, 200, 250)
    out = router(x)
    torch.testing.assert_close(out[0], x[0] * 0.9)
    torch.testing.assert_close(out[1], x[1] * 0.7)  # (0.9 + 0.5) / 2
    torch.testing.assert_close(out[2], x[2] * 0.5)
    assert light.seen == [(3, 3, 12, 16)] and heavy.seen == [(2, 3, 12, 16)]
    torch.testing.assert_close(router.frame_weights(x, light(x)), torch.tensor([0.0, 0.5, 1.0]))


def test_a_batch_without_heavy_frames_never_runs_the_heavy_expert() -> None:
    heavy = _Scale(0.5)
    out = RoutedDerain(_Scale(0.9), heavy, band=(25.0, 45.0))(_frames(100, 200))  # 10 and 20 levels removed
    assert heavy.seen == []
    torch.testing.assert_close(out, _frames(100, 200) * 0.9)


def _half_bright_frame() -> Tensor:
    """One frame, dark (20) on the left, bright (250) on the right: x 0.9 removes 2 levels from the
    dark half and 25 from the bright one, 13.5 over the frame."""
    frame = _frames(20, height=32, width=64)
    frame[..., 32:] = 250 / 255
    return frame


def test_tiles_take_their_frame_s_route_not_their_own() -> None:
    # A band at 20 routes the bright half's tiles on their own (25 removed) but not the frame (13.5).
    light, heavy = _Scale(0.9), _Scale(0.5)
    router = RoutedDerain(light, heavy, band=(20.0, 20.0))
    x = _half_bright_frame()
    out = run_tiled(router, x, TilePlan(16, 4))
    assert heavy.seen == []
    torch.testing.assert_close(out, x * 0.9)
    # And a frame that is routed is routed whole: every tile's output is the heavy expert's.
    routed = run_tiled(RoutedDerain(_Scale(0.9), _Scale(0.5), band=(10.0, 10.0)), x, TilePlan(16, 4))
    torch.testing.assert_close(routed, x * 0.5)


def test_a_self_ensembled_router_routes_once_with_self_ensembled_experts() -> None:
    router = RoutedDerain(_Scale(0.9), _Scale(0.5), band=(10.0, 20.0))
    x = torch.cat([_half_bright_frame(), _frames(250, height=32, width=64)])
    expected = router.route_frames(x, lambda expert, frames: SelfEnsemble(expert, 4)(frames))
    torch.testing.assert_close(run_tiled(SelfEnsemble(router, 4), x, TilePlan(0, 0)), expected)
    light_calls = len(router.light.seen)
    run_tiled(SelfEnsemble(router, 4), x, TilePlan(0, 0))
    assert len(router.light.seen) - light_calls == 4  # one light pass per transform, not one per frame


def test_the_router_plans_tiles_with_its_larger_expert_s_memory() -> None:
    router = RoutedDerain(_Scale(0.9, bytes_per_pixel=300), _Scale(0.5, bytes_per_pixel=700))
    assert estimate_inference_memory(router, 10, 20, batch_size=2) == 700 * 2 * 10 * 20
    assert estimate_inference_memory(SelfEnsemble(router), 10, 20) == 700 * 10 * 20


def test_derain_routes_whole_frames() -> None:
    router = RoutedDerain(_Scale(0.9), _Scale(0.5), band=(10.0, 10.0))
    x = _half_bright_frame()
    torch.testing.assert_close(derainzoo.derain(x, router, tile_size=16, scale=1), x * 0.5)


def test_a_routed_photo_is_blended_into_the_light_pass_s_buffer_and_the_input_is_left_alone() -> None:
    router = RoutedDerain(_Scale(0.9), _Scale(0.5), band=(10.0, 30.0))
    x = _frames(250)  # 25 levels removed: weight 0.75
    passes: list[Tensor] = []

    def run_expert(expert: nn.Module, frames: Tensor) -> Tensor:
        passes.append(expert(frames))
        return passes[-1]

    out = router.route_frames(x, run_expert)
    assert out.data_ptr() == passes[0].data_ptr()  # no copy of the frame
    torch.testing.assert_close(out, x * (0.25 * 0.9 + 0.75 * 0.5))
    # A light expert that hands back its input is not blended into: the caller's frame is kept.
    # (Above white, the input differs from its clamped self: the frame is routed.)
    overexposed = _frames(400)
    keep = overexposed.clone()
    out = RoutedDerain(nn.Identity(), _Scale(0.0), band=(0.0, 0.0)).route_frames(keep, lambda e, f: e(f))
    torch.testing.assert_close(keep, overexposed)
    torch.testing.assert_close(out, torch.zeros_like(x))


class _Arena(_Scale):
    """A stand-in for a graph runtime: records when its arena is handed back."""

    def __init__(self, factor: float, events: list[str], name: str) -> None:
        super().__init__(factor)
        self.events, self.name = events, name

    def forward(self, x: Tensor) -> Tensor:
        self.events.append(f"{self.name} runs")
        return super().forward(x)

    def release_memory(self) -> None:
        self.events.append(f"{self.name} releases")


def test_a_tiled_expert_hands_back_its_arena_before_the_other_runs() -> None:
    events: list[str] = []
    router = RoutedDerain(_Arena(0.9, events, "light"), _Arena(0.5, events, "heavy"), band=(10.0, 10.0))
    run_tiled(router, _half_bright_frame(), TilePlan(32, 8))
    first_heavy = events.index("heavy runs")
    assert events[first_heavy - 1] == "light releases" and events[-1] == "heavy releases"
    events.clear()
    run_tiled(router, _half_bright_frame(), TilePlan(0, 0))  # whole frames keep their arena for the next call
    assert events == ["light runs", "heavy runs"]


def test_derain_plans_a_router_s_tiles_with_the_light_output_held(monkeypatch) -> None:
    budgets = []
    real_plan_tiles = derainzoo.inference.plan_tiles

    def recording_plan_tiles(model, height, width, tile_size, tile_overlap, memory_budget, **kwargs):
        budgets.append(memory_budget)
        return real_plan_tiles(model, height, width, tile_size, tile_overlap, memory_budget, **kwargs)

    monkeypatch.setattr(derainzoo.inference, "plan_tiles", recording_plan_tiles)
    x = _half_bright_frame()
    light = _Scale(0.9)
    router = RoutedDerain(light, _Scale(0.5))
    for model in (light, router, SelfEnsemble(router, 2)):
        derainzoo.derain(x, model, scale=1, memory_budget=2**30)
    assert budgets[0] - budgets[1] == x.numel() * 4  # one frame of float32 less for the router's passes
    assert budgets[2] == budgets[1]  # a self-ensembled router holds the same


def test_the_registered_model_routes_two_default_networks() -> None:
    model = derainzoo.create_model("dual_stage_derain_routed", band=(30, 50))
    assert isinstance(model, RoutedDerain) and model.band == (30.0, 50.0)
    assert all(isinstance(expert, DualStageDerain) for expert in model.experts)
    reference = derainzoo.create_model("dual_stage_derain")
    assert {k: v.shape for k, v in model.light.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()
    }
    assert isinstance(timm.create_model("dual_stage_derain_routed"), RoutedDerain)
    assert derainzoo.create_model("dual_stage_derain_routed").band == DEFAULT_ROUTING_BAND


def test_the_registered_model_refuses_what_it_cannot_be() -> None:
    with pytest.raises(ValueError, match="two encoders"):
        derainzoo.create_model("dual_stage_derain_routed", features_only=True)
    with pytest.raises(ValueError, match="0 <= low <= high"):
        derainzoo.create_model("dual_stage_derain_routed", band=(60, 40))


def test_both_experts_travel_in_one_weights_file(tmp_path) -> None:
    torch.manual_seed(0)
    model = derainzoo.create_model("dual_stage_derain_routed")
    path = tmp_path / "routed.safetensors"
    save_weights(model, path)
    loaded = derainzoo.create_model("dual_stage_derain_routed", weights=path)
    assert_same_weights(loaded, model)
    assert not torch.equal(model.light.stage1_embed.weight, model.heavy.stage1_embed.weight)
    with pytest.raises(Exception, match="light"):  # one expert's file is not a router's
        derainzoo.create_model("dual_stage_derain_routed", weights=_save(model.light, tmp_path / "light.safetensors"))


def _save(module: nn.Module, path) -> str:
    save_weights(module, path)
    return str(path)


def test_a_routed_model_saved_in_the_hub_layout_comes_back_with_its_band(tmp_path) -> None:
    from derainzoo.hub import save_pretrained

    torch.manual_seed(1)
    model = derainzoo.create_model("dual_stage_derain_routed", band=(30.0, 50.0))
    save_pretrained(model, tmp_path / "routed", model_args={"band": model.band})
    loaded = derainzoo.create_model(f"local-dir:{tmp_path / 'routed'}")
    assert isinstance(loaded, RoutedDerain) and loaded.band == (30.0, 50.0)
    assert_same_weights(loaded, model)


def test_the_bundled_router_s_light_expert_is_the_bundled_rain_mix() -> None:
    # The routed file carries a copy of rain_mix: re-exporting one without the other must fail here.
    routed = derainzoo.create_model("dual_stage_derain_routed.rain_mix", pretrained=True)
    rain_mix = derainzoo.create_model("dual_stage_derain.rain_mix", pretrained=True)
    assert_same_weights(routed.light, rain_mix)
    assert routed.band == DEFAULT_ROUTING_BAND
    assert not torch.equal(routed.heavy.stage1_embed.weight, rain_mix.stage1_embed.weight)
