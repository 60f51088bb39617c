"""ClusteredNonLocalWindowAttention against a naive reference, and its non-local reach."""

from __future__ import annotations

import math

import pytest
import torch

from derainzoo.layers.clustered_attention import (
    ClusteredNonLocalWindowAttention,
    cluster_order,
    permute_tokens,
    spherical_kmeans,
)


def make_attention(dim: int = 16, num_heads: int = 2, window_size: int = 3, num_clusters: int = 4, seed: int = 0):
    torch.manual_seed(seed)
    attention = ClusteredNonLocalWindowAttention(dim, num_heads, window_size=window_size, num_clusters=num_clusters)
    return attention.double().eval()


def reference_kmeans(features: torch.Tensor, num_clusters: int, num_iters: int) -> list[int]:
    """Maximin-initialised spherical k-means on one sample's ``(N, D)`` tokens, plainly."""
    directions = [row / max(row.norm().item(), 1e-12) for row in features]
    mean = sum(directions) / len(directions)
    mean = mean / max(mean.norm().item(), 1e-12)
    centroids = [directions[max(range(len(directions)), key=lambda i: (directions[i] @ mean).item())]]
    while len(centroids) < num_clusters:
        closest = [max((d @ c).item() for c in centroids) for d in directions]
        centroids.append(directions[min(range(len(directions)), key=lambda i: closest[i])])

    def assign() -> list[int]:
        return [max(range(num_clusters), key=lambda k: (d @ centroids[k]).item()) for d in directions]

    labels = assign()
    for _ in range(num_iters):
        for k in range(num_clusters):
            members = [d for d, label in zip(directions, labels) if label == k]
            if members:
                total = sum(members)
                centroids[k] = total / max(total.norm().item(), 1e-12)
        labels = assign()
    return labels


def reference_attention(attention: ClusteredNonLocalWindowAttention, x: torch.Tensor, labels=None) -> torch.Tensor:
    """Cluster, sort, attend window by window and head by head, and write back, with loops.

    ``labels`` overrides the clustering (one list of cluster indices per sample).
    """
    batch, channels, height, width = x.shape
    window_tokens = attention.window_size**2
    head_dim = channels // attention.num_heads
    out = torch.zeros(batch, height * width, channels, dtype=x.dtype)
    for b in range(batch):
        tokens = x[b].reshape(channels, -1).T
        query, key, value = (tokens @ attention.qkv.weight.T + attention.qkv.bias).split(channels, dim=1)
        if labels is None:
            sample_labels = reference_kmeans(key, attention.num_clusters, attention.kmeans_iters)
        else:
            sample_labels = labels[b]
        order = sorted(range(height * width), key=lambda i: (sample_labels[i], i))
        for start in range(0, len(order), window_tokens):
            members = order[start : start + window_tokens]
            for head in range(attention.num_heads):
                cols = slice(head * head_dim, (head + 1) * head_dim)
                q, k, v = query[members, cols], key[members, cols], value[members, cols]
                weights = torch.softmax(q @ k.T / math.sqrt(head_dim), dim=1)
                out[b, members, cols] = weights @ v
    out = out @ attention.proj.weight.T + attention.proj.bias
    return out.transpose(1, 2).reshape(batch, channels, height, width)


@pytest.mark.parametrize("size", [(6, 6), (7, 5), (2, 3), (11, 13)])
def test_equals_naive_reference(size: tuple[int, int]) -> None:
    attention = make_attention()
    x = torch.randn(2, 16, *size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(attention(x), reference_attention(attention, x))


def test_kmeans_equals_naive_reference() -> None:
    features = torch.randn(3, 50, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    labels = spherical_kmeans(features, num_clusters=5, num_iters=4)
    for b in range(3):
        assert labels[b].tolist() == reference_kmeans(features[b], 5, 4)


def test_one_cluster_is_raster_order_window_attention() -> None:
    attention = make_attention(num_clusters=1)
    x = torch.randn(2, 16, 7, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    raster_labels = [[0] * 56, [0] * 56]
    torch.testing.assert_close(attention(x), reference_attention(attention, x, labels=raster_labels))


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
