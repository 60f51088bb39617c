"""Data: paired rainy/clean folders, paired augmentations, the rain renderer and mixed real/rendered rain."""

from derainzoo.data.mixed import RAIN_PARAMS_FILE, MixedRainDataset, write_rendered_pairs
from derainzoo.data.paired import PairedImageFolder, image_to_tensor
from derainzoo.data.rain_renderer import (
    FIRST_RELEASE_STYLES,
    RAIN_PRESETS,
    RAIN_STYLES,
    RainParams,
    RainPreset,
    RainStyle,
    RenderedRain,
    StreakLayer,
    render_rain,
    render_rain_per_image,
    sample_rain_params,
    style_min_strengths,
    style_probabilities,
)
from derainzoo.data.synthetic import synthesize_rain
from derainzoo.data.transforms import paired_augment, paired_random_crop, paired_tone_change

__all__ = [
    "FIRST_RELEASE_STYLES",
    "RAIN_PARAMS_FILE",
    "RAIN_PRESETS",
    "RAIN_STYLES",
    "MixedRainDataset",
    "PairedImageFolder",
    "RainParams",
    "RainPreset",
    "RainStyle",
    "RenderedRain",
    "StreakLayer",
    "image_to_tensor",
    "paired_augment",
    "paired_random_crop",
    "paired_tone_change",
    "render_rain",
    "render_rain_per_image",
    "sample_rain_params",
    "style_min_strengths",
    "style_probabilities",
    "synthesize_rain",
    "write_rendered_pairs",
]
