"""Building blocks of derainzoo, each usable on its own in any restoration network.

Every module takes and returns channels-first feature maps ``(B, C, H, W)``.
"""

from derainzoo.layers.block import TransformerBlock, run_blocks
from derainzoo.layers.clustered_attention import (
    ClusteredNonLocalWindowAttention,
    cluster_order,
    clustered_window_attention,
    interleaved_non_local_mixer,
    permute_tokens,
    spherical_kmeans,
)
from derainzoo.layers.color import rgb_to_luma
from derainzoo.layers.conv_chunks import conv_chunks
from derainzoo.layers.ffn import GatedDConvFeedForward
from derainzoo.layers.mask_head import LearnedMaskHead, MorphologicalMaskHead
from derainzoo.layers.morphology import (
    StructuringElement,
    black_tophat,
    box_kernel,
    closing,
    dilation,
    erosion,
    line_kernel,
    opening,
    white_tophat,
)
from derainzoo.layers.naf_block import NAFBlock, background_mean, simple_gate
from derainzoo.layers.norm import LayerNorm2d, l2_normalize
from derainzoo.layers.rain_mask_attention import RainMaskAttention, masked_channel_attention, resize_mask
from derainzoo.layers.sampling import Downsample, Upsample
from derainzoo.layers.validation import check_feature_map, check_image_batch
from derainzoo.layers.window import crop_like, multi_head_attention, pad_to_multiple, window_partition, window_reverse
from derainzoo.layers.window_attention import ShiftedWindowAttention, alternating_shift

__all__ = [
    "ClusteredNonLocalWindowAttention",
    "Downsample",
    "GatedDConvFeedForward",
    "LayerNorm2d",
    "LearnedMaskHead",
    "MorphologicalMaskHead",
    "NAFBlock",
    "RainMaskAttention",
    "ShiftedWindowAttention",
    "StructuringElement",
    "TransformerBlock",
    "Upsample",
    "alternating_shift",
    "background_mean",
    "black_tophat",
    "check_feature_map",
    "check_image_batch",
    "box_kernel",
    "closing",
    "conv_chunks",
    "crop_like",
    "cluster_order",
    "clustered_window_attention",
    "dilation",
    "erosion",
    "interleaved_non_local_mixer",
    "l2_normalize",
    "line_kernel",
    "masked_channel_attention",
    "multi_head_attention",
    "opening",
    "pad_to_multiple",
    "permute_tokens",
    "resize_mask",
    "rgb_to_luma",
    "simple_gate",
    "run_blocks",
    "spherical_kmeans",
    "white_tophat",
    "window_partition",
    "window_reverse",
]
