"""Geometric self-ensemble: average a model over flips and 90-degree rotations of its input."""

from __future__ import annotations

from torch import Tensor, nn

from derainzoo.dihedral import dihedral_transform, inverse_dihedral_transform

__all__ = ["SelfEnsemble", "unwrap_self_ensemble"]

# Averaging over a subgroup of the flips and rotations makes the ensemble equivariant to it:
# identity; + horizontal flip; + vertical flip and 180-degree rotation; + the transposed four.
ENSEMBLE_SIZES = (1, 2, 4, 8)


class SelfEnsemble(nn.Module):
    """Run a restoration model on transformed copies of the input and average the results.

    The "x8 self-ensemble" of image restoration: each flipped or rotated copy goes through the
    model, its output is transformed back, and the outputs are averaged. The clustering and
    windows of a deraining model are not equivariant to these transforms, so the copies' errors
    are partly independent and the mean is usually more accurate, at ``num_transforms`` times the
    cost. The copies run one after another, so peak memory is that of one forward pass.

    The result is exactly equivariant to the transforms averaged over: ``ensemble(T(x)) ==
    T(ensemble(x))`` up to rounding, for any model.

    Args:
        model: maps ``(B, C, H, W)`` to ``(B, C', H, W)`` for any ``H``, ``W`` (both orders).
        num_transforms: 1, 2 (horizontal flip), 4 (flips) or 8 (flips and 90-degree rotations).
    """

    def __init__(self, model: nn.Module, num_transforms: int = 8) -> None:
        super().__init__()
        if num_transforms not in ENSEMBLE_SIZES:
            raise ValueError(f"num_transforms must be one of {ENSEMBLE_SIZES}, got {num_transforms!r}")
        self.model = model
        self.num_transforms = num_transforms

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` -> ``(B, C', H, W)``: the mean of the back-transformed outputs (in
        float32, returned in the model output's dtype)."""
        total: Tensor | None = None
        for index in range(self.num_transforms):
            output = inverse_dihedral_transform(self.model(dihedral_transform(x, index)), index)
            total = output.float() if total is None else total + output.float()
        assert total is not None  # num_transforms >= 1
        return (total / self.num_transforms).to(output.dtype)

    def extra_repr(self) -> str:
        return f"num_transforms={self.num_transforms}"


def unwrap_self_ensemble(model: nn.Module) -> nn.Module:
    """The model a [`SelfEnsemble`][SelfEnsemble] averages, or ``model`` itself if it is none:
    what its memory, routing and graph arena are read from."""
    return model.model if isinstance(model, SelfEnsemble) else model
