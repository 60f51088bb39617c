"""NAFNetLite: a small NAFNet, the standard network derainzoo's blocks are dropped into.

Chen et al., "Simple Baselines for Image Restoration", ECCV 2022: a U-Net of activation-free
[`NAFBlock`][NAFBlock]s with 2x2 stride-2 convolutions down, 1x1
convolutions and pixel shuffle up, skips added (not concatenated), and a global residual.
``derainzoo_blocks=True`` keeps that skeleton and swaps the blocks for derainzoo's: a
[`MorphologicalMaskHead`][MorphologicalMaskHead] feeds
[`RainMaskAttention`][RainMaskAttention] blocks at every
encoder and decoder level, and the bottleneck alternates shifted-window and
[`ClusteredNonLocalWindowAttention`][derainzoo.layers.clustered_attention.ClusteredNonLocalWindowAttention]
blocks. The two are trained at equal budget in ``benchmarks/ablation.py``: what dropping the blocks
into another network gives in practice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from timm.models import generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from torch import Tensor, nn

from derainzoo.layers.block import TransformerBlock, run_blocks
from derainzoo.layers.clustered_attention import interleaved_non_local_mixer
from derainzoo.layers.mask_head import MorphologicalMaskHead
from derainzoo.layers.naf_block import NAFBlock
from derainzoo.layers.rain_mask_attention import RainMaskAttention, resize_mask
from derainzoo.layers.window import crop_like
from derainzoo.models._base import DerainzooModel
from derainzoo.models._builder import build_derainzoo_model, image_to_image_cfg
from derainzoo.models._output import DerainOutput

__all__ = ["NAFDecoderStage", "NAFEncoderStage", "NAFNetLite"]


class NAFEncoderStage(nn.Module):
    """One level on the way down: NAFNet's 2x2 stride-2 convolution (every level but the first),
    then ``blocks``.

    Args:
        in_dim: channels coming in.
        dim: channels of the level (``in_dim`` at the first level).
        blocks: the level's blocks, ``(B, dim, H, W)`` in and out.

    Shape:
        - features: ``(B, in_dim, H, W)``; mask: ``(B, 1, H', W')`` or ``None``.
        - Output: ``(B, dim, H', W')`` (``H' = H / 2`` when ``in_dim != dim`` downsamples).
    """

    def __init__(self, in_dim: int, dim: int, blocks: nn.ModuleList, downsample: bool) -> None:
        super().__init__()
        self.grad_checkpointing = False
        self.downsample = nn.Conv2d(in_dim, dim, 2, stride=2) if downsample else nn.Identity()
        self.blocks = blocks

    def forward(self, features: Tensor, mask: Tensor | None = None) -> Tensor:
        """Downsample (if configured) and run the blocks, handing them ``mask`` if given."""
        return run_blocks(self.blocks, self.downsample(features), mask, checkpointing=self.grad_checkpointing)


class NAFDecoderStage(nn.Module):
    """One level on the way up: NAFNet's 1x1 convolution to twice the channels and a pixel
    shuffle, the encoder's features of the level added, then ``blocks``.

    Args:
        in_dim: channels of the coarser level below (``2 * dim``).
        blocks: the level's blocks, ``(B, in_dim / 2, H, W)`` in and out.

    Shape:
        - features: ``(B, in_dim, H / 2, W / 2)``; skip: ``(B, in_dim / 2, H, W)``; mask:
          ``(B, 1, H, W)`` or ``None``.
        - Output: ``(B, in_dim / 2, H, W)``.
    """

    def __init__(self, in_dim: int, blocks: nn.ModuleList) -> None:
        super().__init__()
        self.grad_checkpointing = False
        self.upsample = nn.Sequential(nn.Conv2d(in_dim, 2 * in_dim, 1, bias=False), nn.PixelShuffle(2))
        self.blocks = blocks

    def forward(self, features: Tensor, skip: Tensor, mask: Tensor | None = None) -> Tensor:
        """Upsample, add ``skip`` and run the blocks, handing them ``mask`` if given."""
        return run_blocks(self.blocks, self.upsample(features) + skip, mask, checkpointing=self.grad_checkpointing)


class NAFNetLite(DerainzooModel):
    """A small NAFNet for deraining, optionally with derainzoo's blocks in place of its own.

    ``y = x + ending(decoder(encoder(intro(x))))``: a 3x3 intro convolution to ``width``
    channels, encoder levels doubling the channels and halving the resolution, a bottleneck, and
    decoder levels coming back with the skips added; the ending 3x3 convolution predicts the rain
    residual. The decoder repeats the encoder depths of its level.

    timm's model API as in [`DualStageDerain`][derainzoo.models.DualStageDerain]:
    ``feature_info`` (the encoder pyramid, the bottleneck last), ``forward_features``,
    ``forward_intermediates``, ``features_only``, gradient checkpointing, stochastic depth
    (``drop_path_rate``) and ``group_matcher``.

    Args:
        in_chans: input channels; must be 3 (RGB).
        width: channels at full resolution; level ``i`` has ``width * 2**i``.
        depths: blocks per level, from full resolution down to the bottleneck.
        num_heads: attention heads per level (``derainzoo_blocks`` only).
        derainzoo_blocks: swap NAFNet's blocks for derainzoo's (module docstring); the skeleton stays.
        window_size: window side of the bottleneck attentions (``derainzoo_blocks`` only).
        num_clusters: clusters of the clustered attention (``derainzoo_blocks`` only).
        mlp_ratio: feed-forward width of derainzoo's blocks; the default 1 makes their parameter
            count about that of the NAF blocks they replace.
        drop_path_rate: stochastic depth, growing linearly from 0 to this over the blocks in the
            order they run.
        mask_head: keyword arguments of the mask head (``derainzoo_blocks`` only).
        num_classes: must be 0 (timm passes it; there is no classifier).

    Shape:
        - Input: ``(B, 3, H, W)`` float RGB in ``[0, 1]``, any ``H`` and ``W``.
        - Output: ``(B, 3, H, W)`` derained image.

    Raises:
        ValueError: for non-RGB input channels, a classifier, mismatched ``depths`` and
            ``num_heads``, or derainzoo-block settings without ``derainzoo_blocks``.

    Examples:
        >>> model = NAFNetLite(width=8, depths=(1, 1))
        >>> model(torch.rand(1, 3, 21, 30)).shape
        torch.Size([1, 3, 21, 30])
    """

    def __init__(
        self,
        in_chans: int = 3,
        width: int = 16,
        depths: Sequence[int] = (1, 1, 1, 2),
        num_heads: Sequence[int] = (1, 2, 4, 8),
        derainzoo_blocks: bool = False,
        window_size: int = 8,
        num_clusters: int = 8,
        mlp_ratio: float = 1.0,
        drop_path_rate: float = 0.0,
        mask_head: dict[str, Any] | None = None,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        if in_chans != 3:
            raise ValueError(f"NAFNetLite derains RGB images: in_chans must be 3, got {in_chans}")
        if num_classes != 0:
            raise ValueError(f"NAFNetLite is image-to-image: num_classes must be 0, got {num_classes}")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        depths, num_heads = tuple(depths), tuple(num_heads)
        if not depths or len(num_heads) < len(depths):
            raise ValueError(f"depths {depths} must be non-empty, with one num_heads entry per level ({num_heads})")
        if mask_head and not derainzoo_blocks:
            raise ValueError("mask_head settings need derainzoo_blocks=True (NAFNet itself computes no mask)")
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.num_features = width
        self.derainzoo_blocks = derainzoo_blocks
        self.output_fmt = "NCHW"
        self.size_multiple = 2 ** (len(depths) - 1)
        dims = [width * 2**level for level in range(len(depths))]
        last = len(depths) - 1
        self.feature_info = [
            dict(
                num_chs=dims[level],
                reduction=2**level,
                module=f"encoder_stages.{level}" if level < last else "bottleneck",
            )
            for level in range(len(depths))
        ]
        rates = iter(torch.linspace(0, drop_path_rate, sum(depths) + sum(depths[:-1])).tolist())

        def blocks(level: int) -> nn.ModuleList:
            dim, heads = dims[level], num_heads[level]

            def block(index: int, rate: float) -> nn.Module:
                if not derainzoo_blocks:
                    return NAFBlock(dim, drop_path=rate)
                if level < last:
                    mixer = RainMaskAttention(dim, heads)
                else:
                    mixer = interleaved_non_local_mixer(index, dim, heads, window_size, num_clusters)
                return TransformerBlock(dim, mixer, mlp_ratio, drop_path=rate)

            return nn.ModuleList(block(index, next(rates)) for index in range(depths[level]))

        self.mask_head = MorphologicalMaskHead(**(mask_head or {})) if derainzoo_blocks else None
        self.intro = nn.Conv2d(in_chans, width, 3, padding=1)
        going_down = [
            NAFEncoderStage(dims[max(level - 1, 0)], dims[level], blocks(level), level > 0) for level in range(last + 1)
        ]
        self.encoder_stages = nn.ModuleList(going_down[:-1])
        self.bottleneck = going_down[-1]
        self.decoder_stages = nn.ModuleList(
            NAFDecoderStage(dims[level + 1], blocks(level)) for level in reversed(range(last))
        )
        self.ending = nn.Conv2d(width, in_chans, 3, padding=1)
        # A near-zero residual makes the untrained network close to the identity, as in DualStageDerain.
        nn.init.trunc_normal_(self.ending.weight, std=1e-3)
        nn.init.zeros_(self.ending.bias)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Parameters weight decay leaves alone: attention temperatures, position biases, the
        mask threshold and NAFNet's branch scales."""
        keys = ("temperature", "relative_position_bias_table", "threshold", "beta", "gamma")
        return {name for name, _ in self.named_parameters() if name.rsplit(".", 1)[-1].endswith(keys)}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Parameter groups in the order the data flows, for timm's layer-wise lr decay: the stem
        (intro, mask head), the encoder stages, the bottleneck, the decoder stages; the ending
        convolution is left to the last group."""
        stem = r"^(?:intro|mask_head)"
        if coarse:
            return dict(
                stem=stem,
                encoder=r"^encoder_stages\.(\d+)",
                bottleneck=r"^bottleneck",
                decoder=r"^decoder_stages\.(\d+)",
            )
        return dict(
            stem=stem,
            encoder=[(r"^encoder_stages\.(\d+)\.downsample", (0,)), (r"^encoder_stages\.(\d+)\.blocks\.(\d+)", None)],
            bottleneck=[(r"^bottleneck\.downsample", (0,)), (r"^bottleneck\.blocks\.(\d+)", None)],
            decoder=[(r"^decoder_stages\.(\d+)\.upsample", (0,)), (r"^decoder_stages\.(\d+)\.blocks\.(\d+)", None)],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass (same gradients, less memory)."""
        for stage in self._stages():
            stage.grad_checkpointing = enable

    def _stages(self) -> list[nn.Module]:
        """The stages that exist, in the order they run (pruning removes the later ones)."""
        stages = [*self.encoder_stages, self.bottleneck, *self.decoder_stages]
        return [stage for stage in stages if stage is not None]

    def prune_intermediate_layers(
        self, indices: int | Sequence[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop everything after the last feature stage in ``indices`` (timm's ``features_only``);
        afterwards only ``forward_intermediates(..., intermediates_only=True)`` works.

        Args:
            indices: feature stages to keep (as in ``forward_intermediates``).
            prune_norm: unused (there is no final norm); part of timm's signature.
            prune_head: drop the later stages; with ``False`` nothing is removed.

        Returns:
            The absolute indices of the kept feature stages.
        """
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        if prune_head:
            if max_index < len(self.encoder_stages):
                self.encoder_stages = self.encoder_stages[: max_index + 1]
                self.bottleneck = None
            self.decoder_stages = nn.ModuleList()
            self.ending = None
        return take_indices

    def forward_stages(self, x: Tensor) -> DerainOutput:
        """The image and the rain mask (``None`` without ``derainzoo_blocks``), for
        [`DualStageLoss`][derainzoo.losses.DualStageLoss]; there is one stage."""
        padded = self._pad(x)
        mask, outputs, masks = self._encode(padded)
        image = padded + self.ending(self._decode(outputs, masks))
        return DerainOutput(image=crop_like(image, x), stage1=None, mask=None if mask is None else crop_like(mask, x))

    def _head_features(self, padded: Tensor, outputs: list[Tensor], masks: list[Tensor | None]) -> Tensor:
        return self._decode(outputs, masks)

    def _encode(
        self, padded: Tensor, last_stage: int | None = None
    ) -> tuple[Tensor | None, list[Tensor], list[Tensor | None]]:
        """The mask, every encoder stage's output, and the mask each of them reads."""
        self._refuse_if_pruned(self.ending is None, last_stage)
        mask = None if self.mask_head is None else self.mask_head(padded)
        stages = [*self.encoder_stages, self.bottleneck]
        last_stage = len(stages) - 1 if last_stage is None else last_stage
        features, outputs, masks = self.intro(padded), [], []
        for level, stage in enumerate(stages[: last_stage + 1]):
            # The bottleneck's attentions take no mask.
            reads_mask = mask is not None and stage is not self.bottleneck
            size = (padded.shape[-2] >> level, padded.shape[-1] >> level)
            masks.append(resize_mask(mask, size) if reads_mask else None)
            features = stage(features, masks[-1])
            outputs.append(features)
        return mask, outputs, masks

    def _decode(self, outputs: list[Tensor], masks: list[Tensor | None]) -> Tensor:
        features = outputs[-1]
        for stage, skip, mask in zip(self.decoder_stages, reversed(outputs[:-1]), reversed(masks[:-1])):
            features = stage(features, skip, mask)
        return features


default_cfgs = generate_default_cfgs(
    {
        "nafnet_lite": image_to_image_cfg(
            first_conv="intro", paper_name="Simple Baselines for Image Restoration (NAFNet)"
        ),
    }
)


@register_model
def nafnet_lite(pretrained: bool = False, **kwargs: Any) -> NAFNetLite:
    """A NAFNet of about ``dual_stage_derain_tiny``'s size (width 16, four levels); pass
    ``derainzoo_blocks=True`` for the same network with derainzoo's blocks. No pretrained weights:
    the drop-in baseline of the ablation, trained by ``benchmarks/ablation.py``."""
    model_args = dict(width=16, depths=(1, 1, 1, 2), num_heads=(1, 2, 4, 8))
    model_args = dict(model_args, **kwargs)
    return build_derainzoo_model(NAFNetLite, "nafnet_lite", pretrained, len(model_args["depths"]), **model_args)
