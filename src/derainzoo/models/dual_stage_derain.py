"""DualStageDerain: rain-streak suppression with a mask, then non-local detail reconstruction.

Hou et al., "Dual-stage deraining network based on mask and non-local attention",
J. Zhejiang Univ. (Eng. Sci.) 60(4), 2026. The paper gives the idea; the layout below is
derainzoo's design of it, in the shape of timm's hierarchical models
(``timm/models/swin_transformer.py``): stage modules, ``feature_info``, ``forward_features``,
``forward_intermediates``, gradient checkpointing, stochastic depth and ``group_matcher``.

The variants are registered with timm: after ``import derainzoo``,
``timm.create_model("dual_stage_derain")`` builds the default model.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import torch
from timm.models import generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from torch import Tensor, nn

from derainzoo.layers.block import TransformerBlock, run_blocks
from derainzoo.layers.clustered_attention import interleaved_non_local_mixer
from derainzoo.layers.mask_head import LearnedMaskHead, MorphologicalMaskHead
from derainzoo.layers.naf_block import NAFBlock
from derainzoo.layers.rain_mask_attention import RainMaskAttention, resize_mask
from derainzoo.layers.sampling import Downsample, Upsample
from derainzoo.layers.window import crop_like
from derainzoo.layers.window_attention import ShiftedWindowAttention, alternating_shift
from derainzoo.models._base import DerainzooModel
from derainzoo.models._builder import (
    BUNDLED_WEIGHTS_DIR,
    build_derainzoo_model,
    image_to_image_cfg,
)
from derainzoo.models._output import DerainOutput
from derainzoo.models.routed_derain import DEFAULT_ROUTING_BAND, RoutedDerain

__all__ = [
    "MASK_SOURCES",
    "STAGE1_ATTENTIONS",
    "STAGE2_ATTENTIONS",
    "DerainOutput",
    "DetailReconstruction",
    "DualStageDerain",
    "RainMaskDecoderStage",
    "RainMaskEncoderStage",
    "RainSuppressionUNet",
    "checkpoint_filter_fn",
]


def _num_unet_blocks(depths: Sequence[int]) -> int:
    """Transformer blocks of a U-Net with these ``depths``: every level on the way down, and every
    level but the bottleneck again on the way up."""
    return sum(depths) + sum(depths[:-1])


STAGE1_ATTENTIONS = ("rain_mask", "channel", "window", "naf_mask", "naf")
"""Token mixers of stage 1: ``"rain_mask"``
([`RainMaskAttention`][RainMaskAttention] fed the rain mask,
the paper's design), ``"channel"`` (the same transposed attention with no mask, which is also what
any constant mask gives), ``"window"``
([`ShiftedWindowAttention`][ShiftedWindowAttention], shifted in
every other block), ``"naf_mask"`` ([`NAFBlock`][NAFBlock]s in place of the transformer blocks,
their channel attention pooling over the background of the rain mask: the paper's mask in
NAFNet's cheaper block) and ``"naf"`` (the same blocks without the mask)."""

_MASKLESS_ATTENTION = {"rain_mask": "channel", "naf_mask": "naf"}
"""Each stage-1 attention that reads the rain mask, and its form without one."""

STAGE2_ATTENTIONS = ("clustered", "window")
"""Token mixers of stage 2: ``"clustered"`` (shifted-window and
[`ClusteredNonLocalWindowAttention`][derainzoo.layers.clustered_attention.ClusteredNonLocalWindowAttention]
blocks taking turns, the paper's design) or ``"window"`` (shifted-window attention in every block)."""

MASK_SOURCES = ("morphological", "learned", "none")
"""Where the stage-1 rain mask comes from: ``"morphological"``
([`MorphologicalMaskHead`][MorphologicalMaskHead], the paper's design),
``"learned"`` ([`LearnedMaskHead`][LearnedMaskHead], convolutions without
the morphological prior) or ``"none"`` (no mask at all, for attentions that take none)."""


def _stage1_blocks(
    dim: int, num_heads: int, mlp_ratio: float, drop_path: Sequence[float], attention: str, window_size: int
) -> nn.ModuleList:
    if attention in ("naf_mask", "naf"):
        return nn.ModuleList(NAFBlock(dim, drop_path=rate) for rate in drop_path)

    def token_mixer(index: int) -> nn.Module:
        if attention == "window":
            return ShiftedWindowAttention(dim, num_heads, window_size, alternating_shift(index, window_size))
        return RainMaskAttention(dim, num_heads)

    return nn.ModuleList(
        TransformerBlock(dim, token_mixer(index), mlp_ratio, drop_path=rate) for index, rate in enumerate(drop_path)
    )


class RainMaskEncoderStage(nn.Module):
    """One U-Net level on the way down: an optional 2x downsample, then
    [`RainMaskAttention`][RainMaskAttention] transformer blocks
    that all see the rain mask at the level's resolution (or, for ablations, blocks of another
    attention in [`STAGE1_ATTENTIONS`][STAGE1_ATTENTIONS]).

    Args:
        in_dim: channels coming in (equal to ``dim`` without downsampling).
        dim: channels of the level.
        num_heads: attention heads.
        mlp_ratio: feed-forward width multiple.
        drop_path: stochastic-depth rate of each block; its length is the number of blocks.
        downsample: halve the resolution first (every level but the first).
        attention: the blocks' token mixer, a name in ``STAGE1_ATTENTIONS``.
        window_size: window side of ``"window"`` attention.

    Shape:
        - features: ``(B, in_dim, H, W)`` (``H``, ``W`` even when downsampling).
        - mask: ``(B, 1, H', W')``, the mask at the output resolution, or ``None`` (no mask).
        - Output: ``(B, dim, H', W')`` with ``H' = H / 2`` when downsampling, else ``H``.
    """

    def __init__(
        self,
        in_dim: int,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        drop_path: Sequence[float],
        downsample: bool,
        attention: str = "rain_mask",
        window_size: int = 8,
    ) -> None:
        super().__init__()
        if not downsample and in_dim != dim:
            raise ValueError(f"without downsampling in_dim ({in_dim}) must equal dim ({dim})")
        self.grad_checkpointing = False
        self.downsample = Downsample(in_dim, dim) if downsample else nn.Identity()
        self.blocks = _stage1_blocks(dim, num_heads, mlp_ratio, drop_path, attention, window_size)

    def forward(self, features: Tensor, mask: Tensor | None) -> Tensor:
        """Downsample (if configured) and run the blocks with ``mask``."""
        return run_blocks(self.blocks, self.downsample(features), mask, checkpointing=self.grad_checkpointing)


class RainMaskDecoderStage(nn.Module):
    """One U-Net level on the way up: 2x upsample, a 1x1 fusion with the encoder's features of
    the level (the skip connection), then RainMaskAttention transformer blocks (or another
    attention of ``STAGE1_ATTENTIONS``).

    Args:
        in_dim: channels of the coarser level below.
        dim: channels of this level (and of the skip).
        num_heads: attention heads.
        mlp_ratio: feed-forward width multiple.
        drop_path: stochastic-depth rate of each block; its length is the number of blocks.
        attention: the blocks' token mixer, a name in ``STAGE1_ATTENTIONS``.
        window_size: window side of ``"window"`` attention.

    Shape:
        - features: ``(B, in_dim, H / 2, W / 2)``.
        - skip: ``(B, dim, H, W)``.
        - mask: ``(B, 1, H, W)``, or ``None`` (no mask).
        - Output: ``(B, dim, H, W)``.
    """

    def __init__(
        self,
        in_dim: int,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        drop_path: Sequence[float],
        attention: str = "rain_mask",
        window_size: int = 8,
    ) -> None:
        super().__init__()
        self.grad_checkpointing = False
        self.upsample = Upsample(in_dim, dim)
        self.fusion = nn.Conv2d(2 * dim, dim, 1, bias=False)
        self.blocks = _stage1_blocks(dim, num_heads, mlp_ratio, drop_path, attention, window_size)

    def forward(self, features: Tensor, skip: Tensor, mask: Tensor | None) -> Tensor:
        """Upsample, fuse with ``skip`` and run the blocks with ``mask``."""
        features = self.fusion(torch.cat([self.upsample(features), skip], dim=1))
        return run_blocks(self.blocks, features, mask, checkpointing=self.grad_checkpointing)


class RainSuppressionUNet(nn.Module):
    """Stage 1: a U-Net of [`RainMaskAttention`][RainMaskAttention] stages.

    ``encoder_stages`` (levels ``0 .. L-2``) and the ``bottleneck`` (level ``L-1``) go down,
    ``decoder_stages`` come back up in the order they run (the first one works at level
    ``L-2``). The mask is resized to each level once and serves both of its stages.

    Args:
        embed_dim: channels at full resolution; level ``i`` has ``embed_dim * 2**i``.
        depths: blocks per level, from full resolution down to the bottleneck; the decoder
            repeats the encoder depths on the way up.
        num_heads: attention heads per level.
        mlp_ratio: feed-forward width multiple.
        drop_path: stochastic-depth rate of every block in the order they run (encoder,
            bottleneck, decoder): ``sum(depths) + sum(depths[:-1])`` values.
        attention: every block's token mixer, a name in
            [`STAGE1_ATTENTIONS`][STAGE1_ATTENTIONS].
        window_size: window side of ``"window"`` attention.

    Shape:
        - features: ``(B, embed_dim, H, W)`` with ``H`` and ``W`` divisible by
          ``2 ** (len(depths) - 1)``.
        - mask: ``(B, 1, H, W)``, or ``None`` (no mask).
        - Output: ``(B, embed_dim, H, W)`` decoder features.
    """

    def __init__(
        self,
        embed_dim: int,
        depths: Sequence[int],
        num_heads: Sequence[int],
        mlp_ratio: float,
        drop_path: Sequence[float],
        attention: str = "rain_mask",
        window_size: int = 8,
    ) -> None:
        super().__init__()
        if len(depths) != len(num_heads) or not depths:
            raise ValueError(f"depths {depths} and num_heads {num_heads} must be non-empty and of equal length")
        if len(drop_path) != _num_unet_blocks(depths):
            raise ValueError(f"drop_path needs one rate per block ({_num_unet_blocks(depths)}), got {len(drop_path)}")
        dims = [embed_dim * 2**level for level in range(len(depths))]
        rates = iter(drop_path)

        def take(count: int) -> list[float]:
            return [next(rates) for _ in range(count)]

        going_down = [
            RainMaskEncoderStage(
                dims[max(level - 1, 0)],
                dims[level],
                num_heads[level],
                mlp_ratio,
                take(depths[level]),
                level > 0,
                attention,
                window_size,
            )
            for level in range(len(depths))
        ]
        self.encoder_stages = nn.ModuleList(going_down[:-1])
        self.bottleneck = going_down[-1]
        last = len(depths) - 1
        self.decoder_stages = nn.ModuleList(
            RainMaskDecoderStage(
                dims[level + 1], dims[level], num_heads[level], mlp_ratio, take(depths[level]), attention, window_size
            )
            for level in reversed(range(last))
        )

    def forward_encoder(
        self, features: Tensor, mask: Tensor | None, last_stage: int | None = None
    ) -> tuple[list[Tensor], list[Tensor | None]]:
        """Run the encoder stages and the bottleneck.

        Args:
            features: ``(B, embed_dim, H, W)``.
            mask: ``(B, 1, H, W)``, or ``None`` (no mask).
            last_stage: stop after this stage (the bottleneck is stage ``L-1``); default: all.

        Returns:
            Two lists, ``outputs`` and ``level_masks``. ``outputs[i]`` is the output of stage
                ``i``, of shape ``(B, embed_dim * 2**i, H / 2**i, W / 2**i)``, for every stage run;
                ``level_masks[i]`` is the mask at its resolution (``None`` without a mask).
        """
        stages = [*self.encoder_stages, self.bottleneck]
        last_stage = len(stages) - 1 if last_stage is None else last_stage
        height, width = features.shape[-2:]
        outputs, level_masks = [], []
        for level, stage in enumerate(stages[: last_stage + 1]):
            level_masks.append(None if mask is None else resize_mask(mask, (height >> level, width >> level)))
            features = stage(features, level_masks[-1])
            outputs.append(features)
        return outputs, level_masks

    def forward_decoder(self, encoder_outputs: list[Tensor], level_masks: list[Tensor | None]) -> Tensor:
        """Run the decoder stages on the outputs of [`forward_encoder`][RainSuppressionUNet.forward_encoder] (all stages).

        Returns:
            ``(B, embed_dim, H, W)`` decoder features.
        """
        features = encoder_outputs[-1]
        for stage, skip, mask in zip(self.decoder_stages, reversed(encoder_outputs[:-1]), reversed(level_masks[:-1])):
            features = stage(features, skip, mask)
        return features

    def forward(self, features: Tensor, mask: Tensor | None) -> Tensor:
        """Encoder, bottleneck and decoder; every level sees the mask at its own resolution."""
        return self.forward_decoder(*self.forward_encoder(features, mask))


class DetailReconstruction(nn.Module):
    """Stage 2: alternating shifted-window and clustered non-local attention at half resolution.

    Block ``i`` uses [`ShiftedWindowAttention`][ShiftedWindowAttention] when ``i`` is even (shifted by half a
    window every other time) and [`ClusteredNonLocalWindowAttention`][derainzoo.layers.clustered_attention.ClusteredNonLocalWindowAttention] when ``i`` is odd, so
    local texture and far-away similar pixels take turns. With ``attention="window"`` (the
    ablation) every block is a shifted-window one, shifted in every odd block.

    Args:
        in_dim: channels of the full-resolution input features.
        dim: channels at half resolution.
        num_heads: attention heads.
        window_size: window side (a clustered window holds ``window_size**2`` pixels).
        num_clusters: clusters of the clustered attention.
        mlp_ratio: feed-forward width multiple.
        drop_path: stochastic-depth rate of each block; its length is the number of blocks.
        attention: a name in [`STAGE2_ATTENTIONS`][STAGE2_ATTENTIONS].

    Shape:
        - Input: ``(B, in_dim, H, W)`` with even ``H`` and ``W``.
        - Output: ``(B, in_dim, H, W)``.
    """

    def __init__(
        self,
        in_dim: int,
        dim: int,
        num_heads: int,
        window_size: int,
        num_clusters: int,
        mlp_ratio: float,
        drop_path: Sequence[float],
        attention: str = "clustered",
    ) -> None:
        super().__init__()
        self.grad_checkpointing = False
        self.to_half_resolution = nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(4 * in_dim, dim, 1, bias=False))

        def token_mixer(index: int) -> nn.Module:
            if attention == "window":
                return ShiftedWindowAttention(dim, num_heads, window_size, alternating_shift(index, window_size))
            return interleaved_non_local_mixer(index, dim, num_heads, window_size, num_clusters)

        self.blocks = nn.ModuleList(
            TransformerBlock(dim, token_mixer(index), mlp_ratio, drop_path=rate) for index, rate in enumerate(drop_path)
        )
        self.to_full_resolution = nn.Sequential(nn.Conv2d(dim, 4 * in_dim, 1, bias=False), nn.PixelShuffle(2))

    def forward(self, features: Tensor) -> Tensor:
        """Refine at half resolution and add the result back to the full-resolution features."""
        half = run_blocks(self.blocks, self.to_half_resolution(features), checkpointing=self.grad_checkpointing)
        return features + self.to_full_resolution(half)


_PRE_STAGE_KEY = re.compile(r"^stage1_body\.(encoders|downsamples|bottleneck|upsamples|fusions|decoders)\.(\d+)\.(.*)$")


def checkpoint_filter_fn(state_dict: dict[str, Tensor], model: DualStageDerain) -> dict[str, Tensor]:
    """Map the keys of weights saved before the stage-module layout (derainzoo 0.1, parallel
    lists indexed by level) to today's; other keys pass through unchanged.

    ``stage1_body.encoders.L.i`` becomes ``stage1_body.encoder_stages.L.blocks.i``,
    ``downsamples.L`` the ``downsample`` of the stage of level ``L + 1`` (the bottleneck's for the
    last), ``bottleneck.i`` ``bottleneck.blocks.i``, and ``upsamples`` / ``fusions`` / ``decoders``
    of level ``L`` the ``upsample`` / ``fusion`` / ``blocks`` of the decoder stage that runs at
    that level (``decoder_stages`` count in the order they run, deepest first).

    Args:
        state_dict: the weights as saved.
        model: the model they are for (its number of levels places the keys).

    Returns:
        A new state dict in the model's layout.
    """
    num_encoder_stages = len(model.stage1_body.encoder_stages)

    def rename(key: str) -> str:
        match = _PRE_STAGE_KEY.match(key)
        if match is None:
            return key
        kind, level, rest = match.group(1), int(match.group(2)), match.group(3)
        if kind == "encoders":
            return f"stage1_body.encoder_stages.{level}.blocks.{rest}"
        if kind == "downsamples":
            owner = f"encoder_stages.{level + 1}" if level + 1 < num_encoder_stages else "bottleneck"
            return f"stage1_body.{owner}.downsample.{rest}"
        if kind == "bottleneck":
            return f"stage1_body.bottleneck.blocks.{level}.{rest}"
        part = {"upsamples": "upsample", "fusions": "fusion", "decoders": "blocks"}[kind]
        return f"stage1_body.decoder_stages.{num_encoder_stages - 1 - level}.{part}.{rest}"

    return {rename(key): value for key, value in state_dict.items()}


class DualStageDerain(DerainzooModel):
    """The dual-stage deraining network.

    * **Stage 1, rain-streak suppression.** A [`MorphologicalMaskHead`][MorphologicalMaskHead] predicts the rain
      mask ``m``; a U-Net of [`RainMaskAttention`][RainMaskAttention] stages, whose attention weights see
      background pixels only, predicts a residual: ``B1 = x + head1(U-Net(embed(x), m))``.
    * **Stage 2, detail reconstruction.** The rainy image and ``B1`` are embedded and fused with
      the stage-1 decoder features (cross-stage fusion), pixel-unshuffled to half resolution and
      refined by blocks alternating [`ShiftedWindowAttention`][ShiftedWindowAttention] and
      [`ClusteredNonLocalWindowAttention`][derainzoo.layers.clustered_attention.ClusteredNonLocalWindowAttention]: ``B2 = B1 + head2(...)``.

    Inputs of any size are reflect-padded to a multiple of `size_multiple` inside and the
    outputs cropped back.

    **Ablation switches.** ``stage1_attention``, ``mask_source`` and ``stage2_attention`` swap
    each of the paper's mechanisms for a plain alternative, and ``stage2_depth=0`` leaves a
    single stage (``B1`` is the output), so any variant of the ablation table is
    ``create_model(name, **overrides)``, through timm too. Every switch is validated, and
    combinations that would leave a part unused are refused. What each mechanism buys at equal
    CPU budget: ``benchmarks/results/ablation_*`` and the "What each block contributes" page.

    timm's model API: [`forward_features`][DerainzooModel.forward_features] returns the ``num_features``
    (``embed_dim``) channels that ``head2`` turns into the residual;
    [`forward_intermediates`][DerainzooModel.forward_intermediates] and ``features_only=True`` give the
    stage-1 encoder pyramid described by ``feature_info`` (one entry per U-Net level, the
    bottleneck last); [`set_grad_checkpointing`][DualStageDerain.set_grad_checkpointing],
    ``drop_path_rate`` and [`group_matcher`][DualStageDerain.group_matcher] work as in timm's models.

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
        mlp_ratio: feed-forward width multiple of every transformer block (NAF blocks keep
            NAFNet's widths).
        drop_path_rate: stochastic depth: the drop probability grows linearly from 0 at the
            first block to this at the last, in the order the blocks run (timm's rule).
        mask_head: keyword arguments of the mask head (the
            [`MorphologicalMaskHead`][MorphologicalMaskHead], or the
            [`LearnedMaskHead`][LearnedMaskHead] with
            ``mask_source="learned"``).
        num_classes: must be 0 (timm records and passes it; there is no classifier).
        stage1_attention: stage-1 token mixer, a name in
            [`STAGE1_ATTENTIONS`][STAGE1_ATTENTIONS];
            ``"rain_mask"`` and ``"naf_mask"`` read a mask.
        mask_source: a name in [`MASK_SOURCES`][MASK_SOURCES];
            ``None`` picks ``"morphological"`` for an attention that reads a mask and ``"none"``
            otherwise.
        stage2_attention: stage-2 token mixers, a name in
            [`STAGE2_ATTENTIONS`][STAGE2_ATTENTIONS].
            ``stage2_depth=0`` removes stage 2 altogether (a single-stage model).

    Raises:
        ValueError: for an unknown switch value, or a combination that leaves a part unused
            (a mask that no attention reads, an attention that reads one without a mask, stage-2
            settings on a single-stage model).

    Shape:
        - Input: ``(B, 3, H, W)`` float RGB in ``[0, 1]``, any ``H`` and ``W``.
        - Output: ``(B, 3, H, W)`` derained image (not clamped; clamp to ``[0, 1]`` for display).

    Examples:
        >>> model = DualStageDerain(embed_dim=8, depths=(1, 1), num_heads=(1, 1), stage2_dim=16,
        ...                         stage2_depth=2, stage2_heads=2)
        >>> model(torch.rand(1, 3, 37, 50)).shape
        torch.Size([1, 3, 37, 50])
        >>> [(info["num_chs"], info["reduction"]) for info in model.feature_info]
        [(8, 1), (16, 2)]
    """

    # Weights files of the pre-stage layout (derainzoo 0.1) load through timm's custom_load hook.
    pretrained_filter_fn = staticmethod(checkpoint_filter_fn)

    def __init__(
        self,
        in_chans: int = 3,
        embed_dim: int = 24,
        depths: Sequence[int] = (2, 2, 4),
        num_heads: Sequence[int] = (1, 2, 4),
        stage2_dim: int = 48,
        stage2_depth: int = 4,
        stage2_heads: int = 4,
        window_size: int = 8,
        num_clusters: int = 8,
        mlp_ratio: float = 2.66,
        drop_path_rate: float = 0.0,
        mask_head: dict[str, Any] | None = None,
        num_classes: int = 0,
        stage1_attention: str = "rain_mask",
        mask_source: str | None = None,
        stage2_attention: str = "clustered",
    ) -> None:
        super().__init__()
        if in_chans != 3:
            raise ValueError(f"DualStageDerain derains RGB images: in_chans must be 3, got {in_chans}")
        if num_classes != 0:
            raise ValueError(
                f"DualStageDerain is image-to-image and has no classifier: num_classes must be 0, got {num_classes}"
            )
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        mask_source = _check_ablation_switches(stage1_attention, mask_source, stage2_attention, stage2_depth, mask_head)
        depths, num_heads = tuple(depths), tuple(num_heads)
        self.stage1_attention = stage1_attention
        self.mask_source = mask_source
        self.stage2_attention = stage2_attention
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.num_features = embed_dim
        self.embed_dim = embed_dim
        self.output_fmt = "NCHW"
        self.size_multiple = math.lcm(2 ** (len(depths) - 1), 2)
        self.feature_info = [
            dict(
                num_chs=embed_dim * 2**level,
                reduction=2**level,
                module=f"stage1_body.encoder_stages.{level}" if level < len(depths) - 1 else "stage1_body.bottleneck",
            )
            for level in range(len(depths))
        ]

        stage1_blocks = _num_unet_blocks(depths)
        rates = torch.linspace(0, drop_path_rate, stage1_blocks + stage2_depth).tolist()
        mask_heads = {"morphological": MorphologicalMaskHead, "learned": LearnedMaskHead}
        self.mask_head = mask_heads[mask_source](**(mask_head or {})) if mask_source in mask_heads else None
        self.stage1_embed = nn.Conv2d(in_chans, embed_dim, 3, padding=1, bias=False)
        self.stage1_body = RainSuppressionUNet(
            embed_dim, depths, num_heads, mlp_ratio, rates[:stage1_blocks], stage1_attention, window_size
        )
        self.stage1_head = nn.Conv2d(embed_dim, in_chans, 3, padding=1, bias=False)

        self.stage2_embed = self.cross_stage_fusion = self.stage2_body = self.stage2_head = None
        if stage2_depth:
            self.stage2_embed = nn.Conv2d(2 * in_chans, embed_dim, 3, padding=1, bias=False)
            self.cross_stage_fusion = nn.Conv2d(2 * embed_dim, embed_dim, 1, bias=False)
            self.stage2_body = DetailReconstruction(
                embed_dim,
                stage2_dim,
                stage2_heads,
                window_size,
                num_clusters,
                mlp_ratio,
                rates[stage1_blocks:],
                stage2_attention,
            )
            self.stage2_head = nn.Conv2d(embed_dim, in_chans, 3, padding=1, bias=False)
        # Both stages predict residuals; starting them near zero makes the untrained network
        # close to the identity (the rainy input scores ~27 dB on Rain100L, a random residual ~15 dB),
        # while still letting gradients reach every layer from the first step.
        for head in (self.stage1_head, self.stage2_head):
            if head is not None:
                nn.init.trunc_normal_(head.weight, std=1e-3)

    @property
    def num_stages(self) -> int:
        """1 for the single-stage ablation (``stage2_depth=0``), else 2."""
        return 2 if self.stage2_body is not None else 1

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

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Parameter groups in the order the data flows, for timm's layer-wise lr decay
        (``create_optimizer_v2(model, layer_decay=...)``).

        Args:
            coarse: one group per stage; otherwise one per block (a stage's resampling joins
                its first block).

        Returns:
            timm's matcher dict: ``stem`` (mask head, stage-1 embedding), the encoder stages, the
                bottleneck, the decoder stages, then stage 2 (with the stage-1 head and the
                cross-stage fusion that feed it); ``stage2_head`` is left to the last group.
        """
        stage2_entry = r"^(?:stage1_head|stage2_embed|cross_stage_fusion|stage2_body\.to_half_resolution)"
        if coarse:
            return dict(
                stem=r"^(?:mask_head|stage1_embed)",
                encoder=r"^stage1_body\.encoder_stages\.(\d+)",
                bottleneck=r"^stage1_body\.bottleneck",
                decoder=r"^stage1_body\.decoder_stages\.(\d+)",
                detail=rf"{stage2_entry}|^stage2_body",
            )
        return dict(
            stem=r"^(?:mask_head|stage1_embed)",
            encoder=[
                (r"^stage1_body\.encoder_stages\.(\d+)\.downsample", (0,)),
                (r"^stage1_body\.encoder_stages\.(\d+)\.blocks\.(\d+)", None),
            ],
            bottleneck=[
                (r"^stage1_body\.bottleneck\.downsample", (0,)),
                (r"^stage1_body\.bottleneck\.blocks\.(\d+)", None),
            ],
            decoder=[
                (r"^stage1_body\.decoder_stages\.(\d+)\.(?:upsample|fusion)", (0,)),
                (r"^stage1_body\.decoder_stages\.(\d+)\.blocks\.(\d+)", None),
            ],
            detail=[
                (stage2_entry, (0,)),
                (r"^stage2_body\.blocks\.(\d+)", None),
                (r"^stage2_body\.to_full_resolution", (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass instead of keeping them
        (less memory, about a third more compute); the gradients stay the same."""
        for stage in self._stages():
            stage.grad_checkpointing = enable

    def _stages(self) -> list[nn.Module]:
        """The stages that exist, in the order they run (pruning removes the later ones)."""
        body = self.stage1_body
        stages = [*body.encoder_stages, body.bottleneck, *body.decoder_stages, self.stage2_body]
        return [stage for stage in stages if stage is not None]

    def prune_intermediate_layers(
        self, indices: int | Sequence[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop everything after the last feature stage in ``indices`` (what timm's
        ``features_only`` wrapper calls, so a feature extractor keeps only the encoder it needs).

        Afterwards only [`forward_intermediates`][DerainzooModel.forward_intermediates] with
        ``intermediates_only=True`` works.

        Args:
            indices: feature stages to keep (as in ``forward_intermediates``).
            prune_norm: unused (there is no final norm); part of timm's signature.
            prune_head: drop the later stages; with ``False`` nothing is removed, since
                the decoder and stage 2 are the head of this model.

        Returns:
            The absolute indices of the kept feature stages.
        """
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        if not prune_head:
            return take_indices
        body = self.stage1_body
        if max_index < len(body.encoder_stages):
            body.encoder_stages = body.encoder_stages[: max_index + 1]
            body.bottleneck = None
        body.decoder_stages = nn.ModuleList()
        self.stage1_head = self.stage2_embed = self.cross_stage_fusion = None
        self.stage2_body = self.stage2_head = None
        return take_indices

    def forward_stages(self, x: Tensor) -> DerainOutput:
        """Run both stages and return the final image, the stage-1 image and the mask.

        Use this for training losses (e.g. Charbonnier on both images, a mask loss).

        Args:
            x: ``(B, 3, H, W)`` float RGB in ``[0, 1]``.

        Returns:
            [`DerainOutput`][derainzoo.models.DerainOutput] with ``image``, ``stage1`` and ``mask``, each cropped to
                ``(H, W)``; ``stage1`` is ``None`` for a single-stage model and ``mask`` for a model
                without a mask (``mask_source="none"``).
        """
        padded = self._pad(x)
        mask, encoder_outputs, level_masks = self._encode(padded)
        stage1, detail = self._reconstruct(padded, encoder_outputs, level_masks)
        cropped_mask = None if mask is None else crop_like(mask, x)
        if self.stage2_head is None:
            return DerainOutput(image=crop_like(stage1, x), stage1=None, mask=cropped_mask)
        image = stage1 + self.stage2_head(detail)
        return DerainOutput(image=crop_like(image, x), stage1=crop_like(stage1, x), mask=cropped_mask)

    def _head_features(self, padded: Tensor, encoder_outputs: list[Tensor], level_masks: list[Tensor | None]) -> Tensor:
        return self._reconstruct(padded, encoder_outputs, level_masks)[1]

    def _encode(
        self, padded: Tensor, last_stage: int | None = None
    ) -> tuple[Tensor | None, list[Tensor], list[Tensor | None]]:
        """Mask, stage-1 encoder outputs and the mask at each level (``None`` without a mask head)."""
        self._refuse_if_pruned(self.stage1_head is None, last_stage)
        mask = None if self.mask_head is None else self.mask_head(padded)
        encoder_outputs, level_masks = self.stage1_body.forward_encoder(self.stage1_embed(padded), mask, last_stage)
        return mask, encoder_outputs, level_masks

    def _reconstruct(
        self, padded: Tensor, encoder_outputs: list[Tensor], level_masks: list[Tensor | None]
    ) -> tuple[Tensor, Tensor]:
        """Stage-1 image and the features of the last head (stage 2's, or stage 1's decoder
        features in a single-stage model), from the encoder's outputs."""
        stage1_features = self.stage1_body.forward_decoder(encoder_outputs, level_masks)
        stage1 = padded + self.stage1_head(stage1_features)
        if self.stage2_body is None:
            return stage1, stage1_features
        shallow = self.stage2_embed(torch.cat([padded, stage1], dim=1))
        fused = self.cross_stage_fusion(torch.cat([shallow, stage1_features], dim=1))
        return stage1, self.stage2_body(fused)


def _check_ablation_switches(
    stage1_attention: str,
    mask_source: str | None,
    stage2_attention: str,
    stage2_depth: int,
    mask_head: dict[str, Any] | None,
) -> str:
    """Validate the ablation switches of [`DualStageDerain`][derainzoo.models.DualStageDerain]
    and return the mask source, ``None`` resolved."""
    for name, value, choices in (
        ("stage1_attention", stage1_attention, STAGE1_ATTENTIONS),
        ("stage2_attention", stage2_attention, STAGE2_ATTENTIONS),
        ("mask_source", mask_source, (*MASK_SOURCES, None)),
    ):
        if value not in choices:
            raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(map(repr, choices))}")
    reads_mask = stage1_attention in _MASKLESS_ATTENTION
    if mask_source is None:
        mask_source = "morphological" if reads_mask else "none"
    if reads_mask and mask_source == "none":
        raise ValueError(
            f"stage1_attention={stage1_attention!r} needs a mask: choose mask_source 'morphological' or 'learned', "
            f"or stage1_attention={_MASKLESS_ATTENTION[stage1_attention]!r} for the same attention without one"
        )
    if not reads_mask and mask_source != "none":
        raise ValueError(
            f"stage1_attention={stage1_attention!r} reads no mask, so mask_source={mask_source!r} would compute one "
            "for nothing: leave mask_source unset (or 'none')"
        )
    if mask_source == "none" and mask_head:
        raise ValueError(f"mask_head settings {mask_head} given to a model without a mask head (mask_source='none')")
    if stage2_depth < 0:
        raise ValueError(f"stage2_depth must be >= 0 (0: a single-stage model), got {stage2_depth}")
    if stage2_depth == 0 and stage2_attention != "clustered":
        raise ValueError(f"stage2_attention={stage2_attention!r} given to a single-stage model (stage2_depth=0)")
    return mask_source


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return image_to_image_cfg(
        **{
            "first_conv": "stage1_embed",
            "paper_name": "Dual-stage deraining network based on mask and non-local attention",
            **kwargs,
        }
    )


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
                "Trained on Rain100L train pairs mixed with rain rendered over their clean images, light to heavy; "
                "for real photos. See dual_stage_derain.rain_mix.md."
            ),
        ),
        "dual_stage_derain.rain100l": _cfg(
            file=str(BUNDLED_WEIGHTS_DIR / "dual_stage_derain.rain100l.safetensors"),
            description=(
                "The rain_mix weights fine-tuned on Rain100L train only (190 pairs, 10 held out): the Rain100L "
                "benchmark model. See dual_stage_derain.rain100l.md."
            ),
        ),
        "dual_stage_derain_base": _cfg(),
        "dual_stage_derain_routed.rain_mix": _cfg(
            first_conv="light.stage1_embed",
            file=str(BUNDLED_WEIGHTS_DIR / "dual_stage_derain_routed.rain_mix.safetensors"),
            description=(
                "dual_stage_derain.rain_mix as the light expert and a heavy-rain expert trained from it on heavy "
                "rendered rain only, routed by frame (band 15-35 levels). See dual_stage_derain_routed.rain_mix.md."
            ),
        ),
    }
)


def _create_dual_stage_derain(variant: str, pretrained: bool = False, **kwargs: Any) -> DualStageDerain:
    return build_derainzoo_model(DualStageDerain, variant, pretrained, len(kwargs["depths"]), **kwargs)


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


@register_model
def dual_stage_derain_routed(
    pretrained: bool = False, band: tuple[float, float] = DEFAULT_ROUTING_BAND, **kwargs: Any
) -> RoutedDerain:
    """Two ``dual_stage_derain`` networks routed by frame: a light-rain and a heavy-rain expert,
    the heavy one taking over frames from which the light one removes more than ``band[0]``
    levels of rain ([`RoutedDerain`][derainzoo.models.RoutedDerain]). ``band`` is the routing
    band in levels of 255; other keyword arguments build both experts."""
    if kwargs.get("features_only"):
        raise ValueError(
            "dual_stage_derain_routed has two encoders, not one feature pyramid: take features from "
            "model.light or model.heavy, or create dual_stage_derain with features_only=True"
        )
    timm_args = {
        key: kwargs.pop(key) for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir") if key in kwargs
    }
    light, heavy = (dual_stage_derain(**kwargs) for _ in range(2))
    return build_derainzoo_model(
        RoutedDerain,
        "dual_stage_derain_routed",
        pretrained,
        0,
        light=light,
        heavy=heavy,
        band=band,
        kwargs_filter=("in_chans", "num_classes"),  # what timm adds from the cfg is for the experts
        **timm_args,
    )
