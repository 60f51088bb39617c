"""Naive reference implementations of the novel attention ops, written with loops.

They compute what [`masked_channel_attention`][derainzoo.layers.rain_mask_attention.masked_channel_attention],
[`clustered_window_attention`][derainzoo.layers.clustered_attention.clustered_window_attention] and
[`spherical_kmeans`][derainzoo.layers.clustered_attention.spherical_kmeans] compute, sample by
sample, head by head and window by window, as directly as the definitions read. They are slow and
exist to be compared against (the tests do, in float64), as NATTEN keeps a reference beside its
kernels; do not use them in a network.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "reference_clustered_window_attention",
    "reference_masked_channel_attention",
    "reference_spherical_kmeans",
]


def reference_masked_channel_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    temperature: Tensor,
    num_heads: int,
    background: Tensor | None = None,
) -> Tensor:
    """[`masked_channel_attention`][derainzoo.layers.rain_mask_attention.masked_channel_attention], one head of one sample at a time.

    Args and shapes as there: ``(B, C, H, W)`` queries, keys, values; ``(num_heads, 1, 1)``
    temperature; ``(B, 1, H, W)`` background weight or ``None``.
    """
    batch, channels, height, width = query.shape
    if background is not None:
        query, key = query * background, key * background
    head_dim = channels // num_heads
    out = torch.zeros_like(value)
    for b in range(batch):
        for head in range(num_heads):
            rows = slice(head * head_dim, (head + 1) * head_dim)
            q = query[b, rows].reshape(head_dim, -1)
            k = key[b, rows].reshape(head_dim, -1)
            v = value[b, rows].reshape(head_dim, -1)
            q = q / q.norm(dim=1, keepdim=True).clamp_min(1e-12)
            k = k / k.norm(dim=1, keepdim=True).clamp_min(1e-12)
            logits = temperature.reshape(-1)[head] * (q @ k.T)
            weights = torch.exp(logits - logits.max(dim=1, keepdim=True).values)
            weights = weights / weights.sum(dim=1, keepdim=True)
            out[b, rows] = (weights @ v).reshape(head_dim, height, width)
    return out


def reference_spherical_kmeans(features: Tensor, num_clusters: int, num_iters: int) -> list[int]:
    """Maximin-initialised spherical k-means of one sample's ``(N, D)`` tokens, plainly.

    The first centroid is the token most similar to the mean direction, each next one the token
    least similar to its most similar centroid; then ``num_iters`` Lloyd steps (an empty
    cluster keeps its centroid). Ties go to the lowest index.

    Returns:
        The cluster of every token, as a list of ``N`` ints.
    """
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


def reference_clustered_window_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    num_heads: int,
    window_size: int,
    num_clusters: int,
    kmeans_iters: int = 3,
    labels: list[list[int]] | None = None,
) -> Tensor:
    """[`clustered_window_attention`][derainzoo.layers.clustered_attention.clustered_window_attention]: cluster, sort, attend window by window and head by head, write back.

    Args and shapes as there (``(B, N, C)`` tokens); ``labels`` replaces the clustering with
    given cluster indices (one list of ``N`` per sample).
    """
    batch, num_tokens, channels = query.shape
    window_tokens = window_size**2
    head_dim = channels // num_heads
    out = torch.zeros_like(value)
    for b in range(batch):
        sample_labels = reference_spherical_kmeans(key[b], num_clusters, kmeans_iters) if labels is None else labels[b]
        order = sorted(range(num_tokens), key=lambda i: (sample_labels[i], i))
        for start in range(0, num_tokens, window_tokens):
            members = order[start : start + window_tokens]
            for head in range(num_heads):
                cols = slice(head * head_dim, (head + 1) * head_dim)
                q, k, v = query[b, members, cols], key[b, members, cols], value[b, members, cols]
                weights = torch.softmax(q @ k.T / math.sqrt(head_dim), dim=1)
                out[b, members, cols] = weights @ v
    return out
