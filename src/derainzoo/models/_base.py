"""DerainzooModel: what every derainzoo architecture shares around its own layers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from timm.models._features import feature_take_indices
from torch import Tensor, nn

from derainzoo import _helpers
from derainzoo.layers.validation import check_image_batch
from derainzoo.layers.window import crop_like, pad_to_multiple

__all__ = ["DerainzooModel"]


class DerainzooModel(nn.Module):
    """Base of derainzoo's image-to-image models.

    A subclass sets ``in_chans``, ``size_multiple`` and ``feature_info`` and implements
    ``forward_stages(x)`` (returning a [`DerainOutput`][derainzoo.models.DerainOutput]),
    ``_encode(padded, last_stage)`` (the mask, the encoder's stage outputs and the mask each stage
    read) and ``_head_features(padded, outputs, masks)`` (the features the last convolution turns
    into the residual); it gets

    * ``forward(x)``: the derained image, ``forward_stages(x).image``;
    * timm's ``forward_features`` and ``forward_intermediates``;
    * ``_pad(x)``: the input checked (a non-empty float ``(B, in_chans, H, W)`` batch) and
      reflect-padded to a multiple of ``size_multiple``;
    * ``_refuse_if_pruned(last_stage)``: the error a ``features_only`` model gives when asked for
      more than its encoder;
    * timm's ``custom_load`` hook ``load_pretrained``: every weights file a pretrained cfg names (a
      bundled file, an overlay ``file``, a ``local-dir:`` folder's or a Hub download) is read by
      [`load_weights`][_helpers.load_weights] with the class's ``pretrained_filter_fn``
      (timm's ``checkpoint_filter_fn(state_dict, model)`` as a static method; ``None`` when no older
      key layout exists).
    """

    in_chans: int
    size_multiple: int
    feature_info: list[dict[str, object]]
    pretrained_filter_fn: Callable[[dict[str, Tensor], nn.Module], dict[str, Tensor]] | None = None

    def forward(self, x: Tensor) -> Tensor:
        """Derain ``x``.

        Args:
            x: ``(B, 3, H, W)`` float RGB in ``[0, 1]``, any ``H`` and ``W``.

        Returns:
            ``(B, 3, H, W)`` derained image.
        """
        return self.forward_stages(x).image

    def forward_features(self, x: Tensor) -> Tensor:
        """The features the model's last convolution turns into the rain residual.

        Args:
            x: ``(B, 3, H, W)`` float RGB in ``[0, 1]``.

        Returns:
            ``(B, num_features, H, W)``.
        """
        padded = self._pad(x)
        _, outputs, masks = self._encode(padded)
        return crop_like(self._head_features(padded, outputs, masks), x)

    def forward_intermediates(
        self,
        x: Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """The encoder pyramid (``feature_info``), and optionally the final features.

        Args:
            x: ``(B, 3, H, W)`` float RGB in ``[0, 1]``.
            indices: which stages: ``None`` all, an int ``n`` the last ``n``, or a sequence of
                indices (negative ones count from the end).
            norm: unused (no final norm); part of timm's signature.
            stop_early: part of timm's signature; with ``intermediates_only`` the stages after
                the last one taken never run, and without it every stage must.
            output_fmt: ``"NCHW"``, the only layout.
            intermediates_only: return the intermediates only.

        Returns:
            ``intermediates``, or ``(features, intermediates)`` with ``features`` as
                ``forward_features``. Stage ``i`` is
                ``(B, feature_info[i]["num_chs"], ceil(H / r), ceil(W / r))`` with ``r`` its
                ``reduction``: the padded map cropped to the input.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW' (channels first), got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        padded = self._pad(x)
        _, outputs, masks = self._encode(padded, max_index if intermediates_only else None)
        intermediates = [crop_like(outputs[i], x, self.feature_info[i]["reduction"]) for i in take_indices]
        if intermediates_only:
            return intermediates
        return crop_like(self._head_features(padded, outputs, masks), x), intermediates

    def load_pretrained(self, checkpoint_path: str | Path) -> None:
        """Read ``checkpoint_path`` with derainzoo's checked loader (safetensors only, sha256
        compared with ``<file>.sha256`` where recorded, older keys mapped)."""
        _helpers.load_weights(self, checkpoint_path, filter_fn=type(self).pretrained_filter_fn)

    def _pad(self, x: Tensor) -> Tensor:
        check_image_batch(x, self.in_chans)
        return pad_to_multiple(x, self.size_multiple, mode="reflect")

    def _refuse_if_pruned(self, pruned: bool, last_stage: int | None) -> None:
        if pruned and last_stage is None:
            raise RuntimeError(
                "this model was pruned to its encoder by prune_intermediate_layers (features_only): only "
                "forward_intermediates(..., intermediates_only=True) works"
            )
