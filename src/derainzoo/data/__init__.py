"""Data: paired rainy/clean folders, paired augmentations, synthetic rain."""

from derainzoo.data.paired import PairedImageFolder, image_to_tensor
from derainzoo.data.synthetic import synthesize_rain
from derainzoo.data.transforms import paired_augment, paired_random_crop

__all__ = ["PairedImageFolder", "image_to_tensor", "paired_augment", "paired_random_crop", "synthesize_rain"]
