"""DualStageDerain: rain-streak suppression with a mask, then non-local detail reconstruction.

Hou et al., "Dual-stage deraining network based on mask and non-local attention",
J. Zhejiang Univ. (Eng. Sci.) 60(4), 2026. The paper gives the idea; the layout below is
derainzoo's design of it.

The variants are registered with timm: after ``import derainzoo``,
``timm.create_model("dual_stage_derain")`` builds the default model.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import Tensor, nn

from derainzoo.hub import BUNDLED_WEIGHTS_DIR, load_pretrained_weights
from derainzoo.layers.block import TransformerBlock
from derainzoo.layers.clustered_attention import ClusteredNonLocalWindowAttention
from derainzoo.layers.mask_head import MorphologicalMaskHead
from derainzoo.layers.rain_mask_attention import RainMaskAttention, resize_mask
from derainzoo.layers.sampling import Downsample, Upsample
from derainzoo.layers.validation import check_feature_map
from derainzoo.layers.window import pad_to_multiple
from derainzoo.layers.window_attention import ShiftedWindowAttention

__all__ = ["DualStageDerain", "DerainOutput"]


class DerainOutput(NamedTuple):
    """Everything [`DualStageDerain.forward_stages`][derainzoo.models.dual_stage_derain.DualStageDerain.forward_stages] computes, each cropped to the input size.

    Attributes:
        image: ``(B, 3, H, W)`` final derained image ``B2``.
        stage1: ``(B, 3, H, W)`` stage-1 (rain-streak suppression) image ``B1``.
        mask: ``(B, 1, H, W)`` rain mask in ``[0, 1]`` (1 is rain).
    """

    image: Tensor
    stage1: Tensor
    mask: Tensor


class RainSuppressionUNet(nn.Module):
    """Stage 1: a U-Net of [`RainMaskAttention`][derainzoo.layers.rain_mask_attention.RainMaskAttention] transformer blocks.

    Every level resizes the rain mask to its resolution once and hands it to its blocks.

    Args:
        embed_dim: channels at full resolution; level ``i`` has ``embed_dim * 2**i``.
        depths: blocks per level, from full resolution down to the bottleneck; the decoder
            repeats the encoder depths on the way up.
        num_heads: attention heads per level.
        ffn_expansion: feed-forward width multiple.

    Shape:
        - features: ``(B, embed_dim, H, W)`` with ``H`` and ``W`` divisible by
          ``2 ** (len(depths) - 1)``.
        - mask: ``(B, 1, H, W)``.
        - Output: ``(B, embed_dim, H, W)`` decoder features.
    """

    def __init__(
        self, embed_dim: int, depths: tuple[int, ...], num_heads: tuple[int, ...], ffn_expansion: float
    ) -> None:
        super().__init__()
        if len(depths) != len(num_heads) or not depths:
            raise ValueError(f"depths {depths} and num_heads {num_heads} must be non-empty and of equal length")
        dims = [embed_dim * 2**level for level in range(len(depths))]

        def blocks(level: int) -> nn.ModuleList:
            return nn.ModuleList(
                TransformerBlock(dims[level], RainMaskAttention(dims[level], num_heads[level]), ffn_expansion)
                for _ in range(depths[level])
            )

        self.encoders = nn.ModuleList(blocks(level) for level in range(len(depths) - 1))
        self.downsamples = nn.ModuleList(Downsample(dims[level], dims[level + 1]) for level in range(len(depths) - 1))
        self.bottleneck = blocks(len(depths) - 1)
        self.upsamples = nn.ModuleList(Upsample(dims[level + 1], dims[level]) for level in range(len(depths) - 1))
        self.fusions = nn.ModuleList(
            nn.Conv2d(2 * dims[level], dims[level], 1, bias=False) for level in range(len(depths) - 1)
        )
        self.decoders = nn.ModuleList(blocks(level) for level in range(len(depths) - 1))

    def forward(self, features: Tensor, mask: Tensor) -> Tensor:
        """Encoder, bottleneck and decoder; every level sees the mask at its own resolution."""
        skips, level_masks = [], []
        for encoder, downsample in zip(self.encoders, self.downsamples):
            level_masks.append(resize_mask(mask, features.shape[-2:]))
            features = _run_blocks(encoder, features, level_masks[-1])
            skips.append(features)
            features = downsample(features)
        features = _run_blocks(self.bottleneck, features, resize_mask(mask, features.shape[-2:]))
        # The decoder reuses the encoder's mask of each level rather than resizing it again.
        for level in reversed(range(len(skips))):
            features = self.fusions[level](torch.cat([self.upsamples[level](features), skips[level]], dim=1))
            features = _run_blocks(self.decoders[level], features, level_masks[level])
        return features


class DetailReconstruction(nn.Module):
    """Stage 2: alternating shifted-window and clustered non-local attention at half resolution.

    Block ``i`` uses [`ShiftedWindowAttention`][derainzoo.layers.window_attention.ShiftedWindowAttention] when ``i`` is even (shifted by half a
    window every other time) and [`ClusteredNonLocalWindowAttention`][derainzoo.layers.clustered_attention.ClusteredNonLocalWindowAttention] when ``i`` is odd, so
    local texture and far-away similar pixels take turns.

    Args:
        in_dim: channels of the full-resolution input features.
        dim: channels at half resolution.
        depth: number of blocks.
        num_heads: attention heads.
        window_size: window side (a clustered window holds ``window_size**2`` pixels).
        num_clusters: clusters of the clustered attention.
        ffn_expansion: feed-forward width multiple.

    Shape:
        - Input: ``(B, in_dim, H, W)`` with even ``H`` and ``W``.
        - Output: ``(B, in_dim, H, W)``.
    """

    def __init__(
        self,
        in_dim: int,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        num_clusters: int,
        ffn_expansion: float,
    ) -> None:
        super().__init__()
        self.to_half_resolution = nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(4 * in_dim, dim, 1, bias=False))

        def token_mixer(index: int) -> nn.Module:
            if index % 2:
                return ClusteredNonLocalWindowAttention(dim, num_heads, window_size, num_clusters)
            shift = window_size // 2 if index % 4 == 2 else 0
            return ShiftedWindowAttention(dim, num_heads, window_size, shift_size=shift)

        self.blocks = nn.ModuleList(TransformerBlock(dim, token_mixer(index), ffn_expansion) for index in range(depth))
        self.to_full_resolution = nn.Sequential(nn.Conv2d(dim, 4 * in_dim, 1, bias=False), nn.PixelShuffle(2))

    def forward(self, features: Tensor) -> Tensor:
        """Refine at half resolution and add the result back to the full-resolution features."""
        half = self.to_half_resolution(features)
        return features + self.to_full_resolution(_run_blocks(self.blocks, half))


def _run_blocks(blocks: nn.ModuleList, features: Tensor, *context: Tensor) -> Tensor:
    for block in blocks:
        features = block(features, *context)
    return features


class DualStageDerain(nn.Module):
    """The dual-stage deraining network.

    * **Stage 1, rain-streak suppression.** A [`MorphologicalMaskHead`][derainzoo.layers.mask_head.MorphologicalMaskHead] predicts the rain
      mask ``m``; a U-Net of [`RainMaskAttention`][derainzoo.layers.rain_mask_attention.RainMaskAttention] blocks, whose attention weights see
      background pixels only, predicts a residual: ``B1 = x + head1(U-Net(embed(x), m))``.
    * **Stage 2, detail reconstruction.** The rainy image and ``B1`` are embedded and fused with
      the stage-1 decoder features (cross-stage fusion), pixel-unshuffled to half resolution and
      refined by blocks alternating [`ShiftedWindowAttention`][derainzoo.layers.window_attention.ShiftedWindowAttention] and
      [`ClusteredNonLocalWindowAttention`][derainzoo.layers.clustered_attention.ClusteredNonLocalWindowAttention]: ``B2 = B1 + head2(...)``.

    Inputs of any size are reflect-padded to a multiple of `size_multiple` inside and the
    outputs cropped back.

    Args:
        in_chans: input channels; must be 3 (RGB). timm passes it to every model.
        embed_dim: stage-1 channels at full resolution (doubling at every U-Net level).
        depths: stage-1 blocks per U-Net level, from full resolution to the bottleneck.
        num_heads: stage-1 attention heads per level.
        stage2_dim: stage-2 channels at half resolution.
        stage2_depth: stage-2 blocks (alternating window and clustered attention).
        stage2_heads: stage-2 attention heads.
        window_size: stage-2 window side.
        num_clusters: clusters of the stage-2 clustered attention.
        ffn_expansion: feed-forward width multiple of every block.
        mask_head: keyword arguments of the [`MorphologicalMaskHead`][derainzoo.layers.mask_head.MorphologicalMaskHead].
        num_classes: must be 0 (timm records and passes it; there is no classifier).

    Shape:
        - Input: ``(B, 3, H, W)`` float RGB in ``[0, 1]``, any ``H`` and ``W``.
        - Output: ``(B, 3, H, W)`` derained image (not clamped; clamp to ``[0, 1]`` for display).

    Examples:
        >>> model = DualStageDerain(embed_dim=8, depths=(1, 1), num_heads=(1, 1), stage2_dim=16,
        ...                         stage2_depth=2, stage2_heads=2)
        >>> model(torch.rand(1, 3, 37, 50)).shape
        torch.Size([1, 3, 37, 50])
    """

    def __init__(
        self,
        in_chans: int = 3,
        embed_dim: int = 24,
        depths: tuple[int, ...] = (2, 2, 4),
        num_heads: tuple[int, ...] = (1, 2, 4),
        stage2_dim: int = 48,
        stage2_depth: int = 4,
        stage2_heads: int = 4,
        window_size: int = 8,
        num_clusters: int = 8,
        ffn_expansion: float = 2.66,
        mask_head: dict[str, Any] | None = None,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        if in_chans != 3:
            raise ValueError(f"DualStageDerain derains RGB images: in_chans must be 3, got {in_chans}")
        if num_classes != 0:
            raise ValueError(
                f"DualStageDerain is image-to-image and has no classifier: num_classes must be 0, got {num_classes}"
            )
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.num_features = embed_dim
        self.embed_dim = embed_dim
        self.size_multiple = math.lcm(2 ** (len(depths) - 1), 2)

        self.mask_head = MorphologicalMaskHead(**(mask_head or {}))
        self.stage1_embed = nn.Conv2d(in_chans, embed_dim, 3, padding=1, bias=False)
        self.stage1_body = RainSuppressionUNet(embed_dim, tuple(depths), tuple(num_heads), ffn_expansion)
        self.stage1_head = nn.Conv2d(embed_dim, in_chans, 3, padding=1, bias=False)

        self.stage2_embed = nn.Conv2d(2 * in_chans, embed_dim, 3, padding=1, bias=False)
        self.cross_stage_fusion = nn.Conv2d(2 * embed_dim, embed_dim, 1, bias=False)
        self.stage2_body = DetailReconstruction(
            embed_dim, stage2_dim, stage2_depth, stage2_heads, window_size, num_clusters, ffn_expansion
        )
        self.stage2_head = nn.Conv2d(embed_dim, in_chans, 3, padding=1, bias=False)
        # Both stages predict residuals; starting them near zero makes the untrained network
        # close to the identity (the rainy input scores ~27 dB on Rain100L, a random residual ~15 dB),
        # while still letting gradients reach every layer from the first step.
        for head in (self.stage1_head, self.stage2_head):
            nn.init.trunc_normal_(head.weight, std=1e-3)

    @property
    def inference_bytes_per_pixel(self) -> int:
        """Estimated peak memory of an fp32 inference pass per input pixel, which
        [`derainzoo.derain`][derainzoo.inference.derain] reads to decide when to tile. Full-resolution activations
        dominate, so it grows with ``embed_dim``: measured on the CPU at 512x512, 92 bytes per
        channel for the tiny variant and 84 for the default one (72 at 1024x1024)."""
        return 96 * self.embed_dim

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Names of parameters that weight decay should leave alone (timm's optimizer factory
        reads this): attention temperatures, relative position biases and the mask threshold."""
        keys = ("temperature", "relative_position_bias_table", "threshold")
        return {name for name, _ in self.named_parameters() if name.rsplit(".", 1)[-1].endswith(keys)}

    def forward_stages(self, x: Tensor) -> DerainOutput:
        """Run both stages and return the final image, the stage-1 image and the mask.

        Use this for training losses (e.g. Charbonnier on both images, a mask loss).

        Args:
            x: ``(B, 3, H, W)`` float RGB in ``[0, 1]``.

        Returns:
            [`DerainOutput`][derainzoo.models.dual_stage_derain.DerainOutput] with ``image``, ``stage1`` and ``mask``, each cropped to
            ``(H, W)``.
        """
        self._check_input(x)
        height, width = x.shape[-2:]
        padded = pad_to_multiple(x, self.size_multiple, mode="reflect")

        mask = self.mask_head(padded)
        stage1_features = self.stage1_body(self.stage1_embed(padded), mask)
        stage1 = padded + self.stage1_head(stage1_features)

        shallow = self.stage2_embed(torch.cat([padded, stage1], dim=1))
        fused = self.cross_stage_fusion(torch.cat([shallow, stage1_features], dim=1))
        image = stage1 + self.stage2_head(self.stage2_body(fused))

        def crop(t: Tensor) -> Tensor:
            return t[..., :height, :width]

        return DerainOutput(image=crop(image), stage1=crop(stage1), mask=crop(mask))

    def forward(self, x: Tensor) -> Tensor:
        """Derain ``x``.

        Args:
            x: ``(B, 3, H, W)`` float RGB in ``[0, 1]``, any ``H`` and ``W``.

        Returns:
            ``(B, 3, H, W)`` derained image.
        """
        return self.forward_stages(x).image

    def _check_input(self, x: Tensor) -> None:
        check_feature_map(x, self.in_chans, "input")
        if x.shape[0] == 0 or x.shape[-1] == 0 or x.shape[-2] == 0:
            raise ValueError(f"input must not be empty, got shape {tuple(x.shape)}")


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "num_classes": None,
        "input_size": (3, 256, 256),
        "fixed_input_size": False,
        "mean": (0.0, 0.0, 0.0),
        "std": (1.0, 1.0, 1.0),
        "crop_pct": 1.0,
        "first_conv": None,
        "classifier": None,
        "license": "apache-2.0",
        "paper_name": "Dual-stage deraining network based on mask and non-local attention",
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {
        "dual_stage_derain_tiny.rain100l": _cfg(
            file=str(BUNDLED_WEIGHTS_DIR / "dual_stage_derain_tiny.rain100l.safetensors"),
            description="Trained on Rain100L train (190 pairs, 10 held out for validation) on a 2-core CPU.",
        ),
        "dual_stage_derain_small": _cfg(),
        "dual_stage_derain.rain_mix": _cfg(
            file=str(BUNDLED_WEIGHTS_DIR / "dual_stage_derain.rain_mix.safetensors"),
            description=(
                "Trained on Rain100L train pairs mixed with rain rendered over their clean images, light to heavy "
                "(first CPU phase); for real photos. See dual_stage_derain.rain_mix.md."
            ),
        ),
        "dual_stage_derain_base": _cfg(),
    }
)


def _create_dual_stage_derain(variant: str, pretrained: bool = False, **kwargs: Any) -> DualStageDerain:
    # timm resolves the configuration (tags, pretrained_cfg_overlay); the weights are then read by
    # derainzoo's own loader, which accepts safetensors only and checks recorded sha256 sums.
    model = build_model_with_cfg(DualStageDerain, variant, pretrained=False, **kwargs)
    if pretrained:
        load_pretrained_weights(model, model.pretrained_cfg)
    return model


@register_model
def dual_stage_derain_tiny(pretrained: bool = False, **kwargs: Any) -> DualStageDerain:
    """Smallest variant, for CPU inference and quick experiments."""
    model_args = dict(
        embed_dim=16, depths=(1, 1, 2), num_heads=(1, 2, 4), stage2_dim=32, stage2_depth=2, stage2_heads=2
    )
    return _create_dual_stage_derain("dual_stage_derain_tiny", pretrained, **dict(model_args, **kwargs))


@register_model
def dual_stage_derain_small(pretrained: bool = False, **kwargs: Any) -> DualStageDerain:
    """Small variant."""
    model_args = dict(
        embed_dim=24, depths=(1, 2, 2), num_heads=(1, 2, 4), stage2_dim=48, stage2_depth=2, stage2_heads=4
    )
    return _create_dual_stage_derain("dual_stage_derain_small", pretrained, **dict(model_args, **kwargs))


@register_model
def dual_stage_derain(pretrained: bool = False, **kwargs: Any) -> DualStageDerain:
    """The recommended default: the best quality per cost of the variants."""
    model_args = dict(
        embed_dim=32, depths=(2, 2, 4), num_heads=(1, 2, 4), stage2_dim=64, stage2_depth=4, stage2_heads=4
    )
    return _create_dual_stage_derain("dual_stage_derain", pretrained, **dict(model_args, **kwargs))


@register_model
def dual_stage_derain_base(pretrained: bool = False, **kwargs: Any) -> DualStageDerain:
    """Largest variant, for the best quality on a GPU."""
    model_args = dict(
        embed_dim=48, depths=(2, 3, 3, 4), num_heads=(1, 2, 4, 8), stage2_dim=96, stage2_depth=6, stage2_heads=6
    )
    return _create_dual_stage_derain("dual_stage_derain_base", pretrained, **dict(model_args, **kwargs))
