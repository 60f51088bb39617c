"""The eight dihedral transforms: the whole group, invertible, nested subgroups."""

from __future__ import annotations

import pytest
import torch

from derainzoo.dihedral import dihedral_transform, inverse_dihedral_transform


def as_key(x: torch.Tensor) -> tuple:
    return (tuple(x.shape), tuple(x.flatten().tolist()))


def test_the_eight_are_the_rotations_and_flips_of_the_square() -> None:
    x = torch.arange(12).reshape(1, 3, 4)
    ours = {as_key(dihedral_transform(x, index)) for index in range(8)}
    rot90 = {
        as_key(torch.rot90(x, turns, dims=(-2, -1)).flip(-1) if flip else torch.rot90(x, turns, dims=(-2, -1)))
        for turns in range(4)
        for flip in (False, True)
    }
    assert len(ours) == 8 and ours == rot90


@pytest.mark.parametrize("index", range(8))
def test_inverse_undoes_the_transform(index: int) -> None:
    x = torch.rand(2, 3, 5, 7)
    transformed = dihedral_transform(x, index)
    assert transformed.shape[-2:] == ((7, 5) if index >= 4 else (5, 7))
    assert torch.equal(inverse_dihedral_transform(transformed, index), x)


@pytest.mark.parametrize("size", [1, 2, 4, 8])
def test_the_first_n_transforms_are_closed_under_composition(size: int) -> None:
    x = torch.arange(16).reshape(4, 4)
    members = {as_key(dihedral_transform(x, index)) for index in range(size)}
    for first in range(size):
        for second in range(size):
            assert as_key(dihedral_transform(dihedral_transform(x, first), second)) in members


@pytest.mark.parametrize("bad", [-1, 8])
def test_an_index_outside_the_group_is_rejected(bad: int) -> None:
    with pytest.raises(ValueError, match="0..7"):
        dihedral_transform(torch.zeros(2, 2), bad)
    with pytest.raises(ValueError, match="0..7"):
        inverse_dihedral_transform(torch.zeros(2, 2), bad)
