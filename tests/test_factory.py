"""create_model / list_models / list_pretrained."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

import derainzoo
from derainzoo._helpers import BUNDLED_WEIGHTS_DIR, save_weights

from .helpers import TINY, assert_same_weights, tiny_model


def test_list_models_names_every_variant_and_filters() -> None:
    assert derainzoo.list_models() == [
        "dual_stage_derain",
        "dual_stage_derain_base",
        "dual_stage_derain_routed",
        "dual_stage_derain_small",
        "dual_stage_derain_tiny",
        "nafnet_lite",
    ]
    assert derainzoo.list_models("*tiny") == [TINY]
    assert set(derainzoo.list_models()) <= set(timm.list_models())


def test_list_pretrained_matches_the_bundled_files() -> None:
    bundled = {path.name.removesuffix(".safetensors") for path in BUNDLED_WEIGHTS_DIR.glob("*.safetensors")}
    assert set(derainzoo.list_pretrained()) == bundled


@pytest.mark.parametrize("name", derainzoo.list_pretrained())
def test_each_pretrained_tag_loads_its_own_file(name) -> None:
    architecture, tag = name.split(".")
    tagged = derainzoo.create_model(name, pretrained=True)
    from_file = derainzoo.create_model(architecture, weights=BUNDLED_WEIGHTS_DIR / f"{name}.safetensors")
    assert tagged.pretrained_cfg["tag"] == tag
    assert_same_weights(tagged, from_file)


def test_rain_mix_is_the_default_tag_of_the_default_model() -> None:
    # timm takes the first registered tag as the default; rain100l must not take rain_mix's place.
    assert derainzoo.create_model("dual_stage_derain", pretrained=True).pretrained_cfg["tag"] == "rain_mix"
    assert timm.create_model("dual_stage_derain", pretrained=True).pretrained_cfg["tag"] == "rain_mix"


def test_every_bundled_weight_has_a_model_card_and_a_checksum() -> None:
    for weights in BUNDLED_WEIGHTS_DIR.glob("*.safetensors"):
        card = weights.with_suffix(".md")
        assert card.is_file(), f"{weights.name} has no model card"
        text = card.read_text()
        assert weights.stem in text and "## Limitations" in text and "derainzoo eval" in text
        assert weights.with_name(weights.name + ".sha256").is_file()


def test_every_model_card_is_a_page_of_the_site() -> None:
    # The site includes the packaged card rather than a copy, so the two cannot drift apart.
    repo = Path(__file__).resolve().parents[1]
    navigation = (repo / "mkdocs.yml").read_text()
    for card in BUNDLED_WEIGHTS_DIR.glob("*.md"):
        page = repo / "docs" / "cards" / card.name
        assert page.is_file(), f"{card.name} has no page: add docs/cards/{card.name} and list it in mkdocs.yml"
        assert f'--8<-- "src/derainzoo/weights/{card.name}"' in page.read_text()
        assert f"cards/{card.name}" in navigation, f"docs/cards/{card.name} is not in mkdocs.yml's nav"


def test_unknown_name_is_repeated_with_suggestions() -> None:
    with pytest.raises(
        ValueError, match=r"unknown model 'dual_stage_derain_tine'.*Did you mean 'dual_stage_derain_tiny'"
    ):
        derainzoo.create_model("dual_stage_derain_tine")
    with pytest.raises(ValueError, match="unknown model 'resnet50'"):
        derainzoo.create_model("resnet50")


def test_create_model_with_a_weights_file(tmp_path) -> None:
    source = tiny_model(seed=5)
    path = tmp_path / "w.safetensors"
    save_weights(source, path)
    model = derainzoo.create_model(TINY, weights=path).eval()
    x = torch.rand(1, 3, 20, 20)
    with torch.no_grad():
        assert torch.equal(model(x), source(x))
    with pytest.raises(ValueError, match="weights=PATH alone"):
        derainzoo.create_model(TINY, pretrained=True, weights=path)


def test_kwargs_reach_the_constructor() -> None:
    assert derainzoo.create_model(TINY, embed_dim=8).num_features == 8
