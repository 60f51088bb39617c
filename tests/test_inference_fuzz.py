"""Property-based test of derain(): any size, dtype and value range in, same kind out, or a clear error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from derainzoo.inference import derain

from .helpers import tiny_model

MODEL = tiny_model()


@settings(max_examples=25, deadline=None)
@given(
    height=st.integers(1, 24),
    width=st.integers(1, 24),
    kind=st.sampled_from(["uint8", "uint16", "float32", "float64", "tensor", "tensor_uint8"]),
    low=st.floats(-0.5, 1.0),
    span=st.floats(0.0, 2.0),
    seed=st.integers(0, 2**16),
)
def test_derain_returns_the_same_kind_or_refuses_clearly(height, width, kind, low, span, seed) -> None:
    rng = np.random.default_rng(seed)
    values = low + span * rng.random((height, width, 3))
    if kind in ("uint8", "uint16"):
        image = (np.clip(values, 0, 1) * np.iinfo(kind).max).astype(kind)
    elif kind == "tensor_uint8":
        image = torch.from_numpy((np.clip(values, 0, 1) * 255).astype(np.uint8)).permute(2, 0, 1)
    elif kind == "tensor":
        image = torch.from_numpy(values.astype(np.float32)).permute(2, 0, 1)
    else:
        image = values.astype(kind)
    in_range = values.min() >= -1e-3 and values.max() <= 1 + 1e-3
    if kind in ("float32", "float64", "tensor") and not in_range:
        with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
            derain(image, MODEL)
        return
    result = derain(image, MODEL)
    assert type(result) is type(image)
    assert result.shape == image.shape and result.dtype == image.dtype
    as_float = np.asarray(result, dtype=np.float64)
    assert np.isfinite(as_float).all()
    if kind in ("float32", "float64", "tensor"):
        assert as_float.min() >= 0 and as_float.max() <= 1
