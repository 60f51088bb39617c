"""ClusteredNonLocalWindowAttention and its functional op against the naive reference, and its non-local reach."""

from __future__ import annotations

import pytest
import torch

from derainzoo.layers.clustered_attention import (
    ClusteredNonLocalWindowAttention,
    cluster_order,
    clustered_window_attention,
    permute_tokens,
    spherical_kmeans,
)
from derainzoo.layers.reference import reference_clustered_window_attention, reference_spherical_kmeans


def make_attention(dim: int = 16, num_heads: int = 2, window_size: int = 3, num_clusters: int = 4, seed: int = 0):
    torch.manual_seed(seed)
    attention = ClusteredNonLocalWindowAttention(dim, num_heads, window_size=window_size, num_clusters=num_clusters)
    return attention.double().eval()


def module_reference(attention: ClusteredNonLocalWindowAttention, x: torch.Tensor, labels=None) -> torch.Tensor:
    """The module's projections written out around the naive reference op."""
    batch, channels, height, width = x.shape
    tokens = x.flatten(2).transpose(1, 2)
    query, key, value = (tokens @ attention.qkv.weight.T + attention.qkv.bias).split(channels, dim=-1)
    out = reference_clustered_window_attention(
        query,
        key,
        value,
        attention.num_heads,
        attention.window_size,
        attention.num_clusters,
        attention.kmeans_iters,
        labels,
    )
    out = out @ attention.proj.weight.T + attention.proj.bias
    return out.transpose(1, 2).reshape(batch, channels, height, width)


@pytest.mark.parametrize("exporting", [False, True])
@pytest.mark.parametrize(("tokens", "window_size", "num_clusters"), [(50, 3, 4), (64, 4, 1), (7, 3, 2), (130, 2, 6)])
def test_functional_op_equals_naive_reference(
    monkeypatch, tokens: int, window_size: int, num_clusters: int, exporting: bool
) -> None:
    # The export form pads and masks the last window even where the sequence needs no padding (64, 4).
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: exporting)
    query, key, value = torch.randn(3, 2, tokens, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    expected = reference_clustered_window_attention(query, key, value, 3, window_size, num_clusters, 2)
    torch.testing.assert_close(
        clustered_window_attention(query, key, value, 3, window_size, num_clusters, kmeans_iters=2), expected
    )


@pytest.mark.parametrize("size", [(6, 6), (7, 5), (2, 3), (11, 13)])
def test_equals_naive_reference(size: tuple[int, int]) -> None:
    attention = make_attention()
    x = torch.randn(2, 16, *size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(attention(x), module_reference(attention, x))


def test_kmeans_equals_naive_reference() -> None:
    features = torch.randn(3, 50, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    labels = spherical_kmeans(features, num_clusters=5, num_iters=4)
    for b in range(3):
        assert labels[b].tolist() == reference_spherical_kmeans(features[b], 5, 4)


def test_one_cluster_is_raster_order_window_attention() -> None:
    attention = make_attention(num_clusters=1)
    x = torch.randn(2, 16, 7, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    raster_labels = [[0] * 56, [0] * 56]
    torch.testing.assert_close(attention(x), module_reference(attention, x, labels=raster_labels))


def test_cluster_order_groups_clusters_in_raster_order_and_inverts_exactly() -> None:
    assignment = torch.randint(0, 5, (3, 97), generator=torch.Generator().manual_seed(4))
    order, inverse = cluster_order(assignment)
    for b in range(3):
        assert sorted(order[b].tolist()) == list(range(97))
        sorted_labels = assignment[b, order[b]]
        assert torch.all(sorted_labels[1:] >= sorted_labels[:-1])
        same_cluster = sorted_labels[1:] == sorted_labels[:-1]
        assert torch.all(order[b, 1:][same_cluster] > order[b, :-1][same_cluster])
    tokens = torch.randn(3, 97, 6)
    index = order[..., None].expand(-1, -1, 6)
    roundtrip = tokens.gather(1, index).gather(1, inverse[..., None].expand(-1, -1, 6))
    assert torch.equal(roundtrip, tokens)


def test_permute_tokens_matches_per_sample_indexing_and_carries_gradients() -> None:
    generator = torch.Generator().manual_seed(11)
    tokens = torch.randn(3, 40, 5, generator=generator, requires_grad=True)
    order = torch.stack([torch.randperm(40, generator=generator) for _ in range(3)])
    permuted = permute_tokens(tokens, order)
    expected = torch.stack([tokens[b, order[b]] for b in range(3)])
    assert torch.equal(permuted, expected)
    weights = torch.randn(3, 40, 5, generator=generator)
    (permuted * weights).sum().backward()
    assert torch.equal(tokens.grad, permute_tokens(weights, torch.argsort(order, dim=1)))


def test_kmeans_recovers_separated_groups_and_ignores_scale() -> None:
    generator = torch.Generator().manual_seed(5)
    centres = torch.eye(4, 8) * 5
    truth = torch.randint(0, 4, (200,), generator=generator)
    features = centres[truth] + 0.3 * torch.randn(200, 8, generator=generator)
    labels = spherical_kmeans(features[None], num_clusters=4)[0]
    # Same partition up to renaming of the clusters.
    pairs = set(zip(truth.tolist(), labels.tolist()))
    assert len(pairs) == 4 and len({t for t, _ in pairs}) == 4 and len({k for _, k in pairs}) == 4
    scales = torch.rand(200, 1, generator=generator) + 0.1
    assert torch.equal(spherical_kmeans((features * scales)[None], num_clusters=4)[0], labels)


def test_output_depends_on_a_far_pixel_of_the_same_cluster() -> None:
    """A corner pixel attends to the opposite corner when they cluster together; raster
    windows of the same size cannot connect them."""
    height = width = 12
    background = torch.randn(1, 16, 1, 1, generator=torch.Generator().manual_seed(6))
    x = background.expand(1, 16, height, width) + 0.01 * torch.randn(1, 16, height, width)
    x[..., 0, 0] = x[..., height - 1, width - 1] = x[..., 0, width - 1] = -3 * background[..., 0, 0]
    for num_clusters, expect_reach in ((2, True), (1, False)):
        attention = make_attention(window_size=3, num_clusters=num_clusters).float()
        source = x.clone().requires_grad_(True)
        attention(source)[..., 0, 0].sum().backward()
        reach = source.grad[..., height - 1, width - 1].abs().sum()
        assert (reach > 1e-6) == expect_reach, (num_clusters, reach)


@pytest.mark.parametrize("size", [(1, 1), (3, 5), (13, 17), (32, 24)])
def test_any_size(size: tuple[int, int]) -> None:
    attention = ClusteredNonLocalWindowAttention(16, 4, window_size=4, num_clusters=3)
    out = attention(torch.randn(2, 16, *size))
    assert out.shape == (2, 16, *size)
    assert torch.isfinite(out).all()


def test_eval_is_deterministic_and_batch_items_are_independent() -> None:
    attention = make_attention().float()
    x = torch.randn(3, 16, 10, 9)
    first = attention(x)
    assert torch.equal(first, attention(x))
    for index in range(3):
        torch.testing.assert_close(first[index : index + 1], attention(x[index : index + 1]))


def test_gradients_reach_every_parameter_and_the_input() -> None:
    attention = make_attention().float().train()
    x = torch.randn(2, 16, 9, 7, requires_grad=True)
    attention(x).square().mean().backward()
    for name, parameter in attention.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0


def test_bfloat16_close_to_float32() -> None:
    # Pixels drawn around two well-separated directions, so no key sits near a cluster tie:
    # there one flipped assignment would shift every later window of the sorted sequence.
    generator = torch.Generator().manual_seed(7)
    torch.manual_seed(7)
    attention = ClusteredNonLocalWindowAttention(16, 2, window_size=4, num_clusters=2)
    centres = 3 * torch.randn(2, 16, generator=generator)
    labels = torch.randint(0, 2, (16 * 16,), generator=generator)
    x = (centres[labels] + 0.1 * torch.randn(16 * 16, 16, generator=generator)).T.reshape(1, 16, 16, 16)
    reference = attention(x)
    result = attention.to(torch.bfloat16)(x.bfloat16())
    assert result.dtype == torch.bfloat16
    torch.testing.assert_close(result.float(), reference, rtol=0.05, atol=0.05 * reference.abs().max().item())


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\(B, 16, H, W\)"):
        ClusteredNonLocalWindowAttention(16, 2)(torch.randn(1, 8, 4, 4))
    with pytest.raises(ValueError, match="divisible"):
        ClusteredNonLocalWindowAttention(10, 4)
    with pytest.raises(ValueError, match="num_clusters"):
        ClusteredNonLocalWindowAttention(16, 2, num_clusters=0)


def test_repr_shows_the_configuration() -> None:
    text = repr(ClusteredNonLocalWindowAttention(32, num_heads=4, window_size=8, num_clusters=6))
    assert "dim=32, num_heads=4, window_size=8, num_clusters=6" in text
