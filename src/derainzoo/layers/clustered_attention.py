"""ClusteredNonLocalWindowAttention: window attention over pixels regrouped by similarity."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn

from derainzoo.layers.norm import l2_normalize
from derainzoo.layers.validation import check_feature_map
from derainzoo.layers.window import WindowSelfAttentionBase, multi_head_attention
from derainzoo.layers.window_attention import ShiftedWindowAttention, alternating_shift

__all__ = [
    "ClusteredNonLocalWindowAttention",
    "cluster_order",
    "clustered_window_attention",
    "interleaved_non_local_mixer",
    "permute_tokens",
    "spherical_kmeans",
]


def spherical_kmeans(features: Tensor, num_clusters: int, num_iters: int = 3) -> Tensor:
    """Cluster each sample's tokens by direction (cosine similarity), deterministically.

    Initialisation is farthest-point ("maximin"): the first centroid is the token closest to
    the mean direction, each next one the token least similar to all centroids chosen so far.
    Then ``num_iters`` Lloyd steps assign each token to its most similar centroid and move
    every centroid to the normalised mean of its tokens (an empty cluster keeps its centroid).
    Ties go to the lowest index, so the result depends on the values only. The computation
    runs in float32 (float64 for float64 input), whatever the autocast state, and carries no
    gradient.

    Args:
        features: ``(B, N, D)`` tokens.
        num_clusters: ``K``, the number of clusters per sample.
        num_iters: Lloyd iterations after the initialisation.

    Returns:
        ``(B, N)`` int64 cluster index in ``[0, K)`` of every token.
    """
    with torch.no_grad(), torch.autocast(device_type=features.device.type, enabled=False):
        compute_dtype = torch.promote_types(features.dtype, torch.float32)
        directions = l2_normalize(features.detach().to(compute_dtype), dim=-1)
        batch_index = torch.arange(directions.shape[0], device=directions.device)
        mean_direction = l2_normalize(directions.mean(dim=1), dim=-1)
        first = _similarity(directions, mean_direction).argmax(dim=1)
        centroids = [directions[batch_index, first]]
        closest = _similarity(directions, centroids[0])
        for _ in range(num_clusters - 1):
            farthest = closest.argmin(dim=1)
            centroids.append(directions[batch_index, farthest])
            closest = torch.maximum(closest, _similarity(directions, centroids[-1]))
        centroid_matrix = torch.stack(centroids, dim=1)

        assignment = _assign(directions, centroid_matrix)
        for _ in range(num_iters):
            members = F.one_hot(assignment, num_clusters).to(directions.dtype)
            sums = members.transpose(1, 2) @ directions
            occupied = members.sum(dim=1).unsqueeze(-1) > 0
            centroid_matrix = torch.where(occupied, l2_normalize(sums, dim=-1), centroid_matrix)
            assignment = _assign(directions, centroid_matrix)
    return assignment


# Matrix products rather than einsum: OpenVINO decomposes an exported "bnd,bd->bn" einsum
# into a broadcast copy of the (B, N, D) tokens, a product and a sum.
def _similarity(directions: Tensor, direction: Tensor) -> Tensor:
    """``(B, N)`` dot products of ``(B, N, D)`` tokens with one ``(B, D)`` direction per sample."""
    return (directions @ direction.unsqueeze(-1)).squeeze(-1)


def _assign(directions: Tensor, centroids: Tensor) -> Tensor:
    return (directions @ centroids.transpose(1, 2)).argmax(dim=-1)


def cluster_order(assignment: Tensor) -> tuple[Tensor, Tensor]:
    """Permutation that groups tokens by cluster, keeping raster order inside a cluster.

    Args:
        assignment: ``(B, N)`` int64 cluster index of every token.

    Returns:
        ``(order, inverse)``, both ``(B, N)`` int64: ``tokens.gather(1, order)`` lists the
            tokens cluster by cluster, and gathering the result with ``inverse`` restores the
            original order exactly.
    """
    num_tokens = assignment.shape[1]
    position = torch.arange(num_tokens, device=assignment.device).expand_as(assignment)
    # Unique sort keys make the permutation independent of the sort algorithm.
    order = torch.argsort(assignment * num_tokens + position, dim=1)
    # Inverting a permutation is a scatter, O(N), where a second argsort would be O(N log N).
    inverse = torch.empty_like(order).scatter_(1, order, position)
    return order, inverse


def clustered_window_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    num_heads: int,
    window_size: int,
    num_clusters: int,
    kmeans_iters: int = 3,
    dropout_p: float = 0.0,
) -> Tensor:
    """Window attention over tokens regrouped so that similar tokens share a window.

    1. Cluster each sample's keys with
       [`spherical_kmeans`][spherical_kmeans] (no gradient).
    2. Sort the tokens by (cluster, position) with
       [`cluster_order`][cluster_order].
    3. Cut the sorted sequence into windows of ``window_size**2`` tokens and run multi-head
       ``scaled_dot_product_attention`` in each (the tail is padded and the padding masked).
    4. Put every output back at its token's position.

    Cost ``O(N w^2 C)`` for the attention plus ``O(N K C)`` for the clustering and
    ``O(N log N)`` for the sort, instead of ``O(N^2 C)`` for global attention. With
    ``num_clusters=1`` it is plain 1-D window attention in the tokens' order.

    Args:
        query: ``(B, N, C)`` queries.
        key: ``(B, N, C)`` keys; they also decide the clusters.
        value: ``(B, N, C)`` values.
        num_heads: attention heads; must divide ``C``.
        window_size: a window holds ``window_size**2`` tokens.
        num_clusters: clusters per sample ``K``.
        kmeans_iters: Lloyd iterations of the clustering.
        dropout_p: attention dropout probability.

    Returns:
        ``(B, N, C)`` attended tokens, in the input order.

    Examples:
        >>> q, k, v = torch.randn(3, 2, 50, 16).unbind(0)
        >>> clustered_window_attention(q, k, v, num_heads=2, window_size=3, num_clusters=4).shape
        torch.Size([2, 50, 16])
    """
    order, inverse = cluster_order(spherical_kmeans(key, num_clusters, kmeans_iters))
    # One row permutation of the three packed tensors is cheaper than three.
    query, key, value = permute_tokens(torch.cat([query, key, value], dim=-1), order).chunk(3, dim=-1)
    batch, num_tokens, _ = query.shape
    window_tokens = window_size**2
    padding = -num_tokens % window_tokens
    attn_mask = None
    # torch.export traces one graph for every size, so it must take the padded path even
    # where this example size needs no padding (padding by 0 and masking nothing is exact).
    if padding or torch.compiler.is_exporting():
        query, key, value = (F.pad(t, (0, 0, 0, padding)) for t in (query, key, value))
        is_padding = torch.arange(num_tokens + padding, device=query.device) >= num_tokens
        # Additive rather than boolean: an exported boolean mask becomes a Select over all the
        # attention logits, where an additive one is a broadcast Add that OpenVINO fuses.
        key_mask = torch.zeros(is_padding.shape, dtype=query.dtype, device=query.device).masked_fill(
            is_padding, float("-inf")
        )
        attn_mask = repeat(key_mask, "(n t) -> (b n) 1 1 t", b=batch, t=window_tokens)
    windows = [rearrange(t, "b (n t) c -> (b n) t c", t=window_tokens) for t in (query, key, value)]
    out = multi_head_attention(*windows, num_heads, attn_mask=attn_mask, dropout_p=dropout_p)
    out = rearrange(out, "(b n) t c -> b (n t) c", b=batch)[:, :num_tokens]
    return permute_tokens(out, inverse)


class ClusteredNonLocalWindowAttention(WindowSelfAttentionBase):
    """Window attention over pixels rearranged so that similar pixels share a window.

    The attention is the functional op
    [`clustered_window_attention`][clustered_window_attention];
    this module adds the projections around it:

    1. Project the pixels to queries, keys and values (one linear layer).
    2. Cluster each image's keys with [`spherical_kmeans`][spherical_kmeans] into ``num_clusters`` groups.
       The keys are a projection that learns through the attention itself; the assignment
       carries no gradient.
    3. Sort the pixels by (cluster, raster position) with [`cluster_order`][cluster_order].
    4. Cut the sorted sequence into windows of ``window_size**2`` tokens and run multi-head
       ``scaled_dot_product_attention`` in each (the tail is padded and the padding masked).
    5. Put every output back at its pixel and project.

    A pixel thus attends to pixels of its own cluster wherever they are in the image, at the
    cost of window attention: ``O(N w^2 C)`` for the attention plus ``O(N K C)`` for the
    clustering and ``O(N log N)`` for the sort, instead of ``O(N^2 C)`` for global attention.
    With ``num_clusters=1`` it is plain 1-D window attention in raster order.

    Args:
        dim: channels ``C``.
        num_heads: attention heads; must divide ``dim``.
        window_size: a window holds ``window_size**2`` tokens, as a square spatial window would.
        num_clusters: clusters per image ``K``.
        kmeans_iters: Lloyd iterations of the clustering.
        qkv_bias: bias in the query/key/value projection.
        attn_drop: attention dropout probability (training only).
        proj_drop: dropout after the output projection (training only).

    Shape:
        - Input: ``(B, C, H, W)``, any ``H`` and ``W``.
        - Output: ``(B, C, H, W)``.

    Examples:
        >>> attention = ClusteredNonLocalWindowAttention(dim=32, num_heads=4, window_size=4)
        >>> attention(torch.randn(2, 32, 15, 17)).shape
        torch.Size([2, 32, 15, 17])
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        window_size: int = 8,
        num_clusters: int = 8,
        kmeans_iters: int = 3,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__(dim, num_heads, qkv_bias, attn_drop, proj_drop)
        if window_size < 1 or num_clusters < 1 or kmeans_iters < 0:
            raise ValueError(
                "window_size and num_clusters must be positive and kmeans_iters non-negative, got "
                f"window_size={window_size}, num_clusters={num_clusters}, kmeans_iters={kmeans_iters}"
            )
        self.window_size = window_size
        self.num_clusters = num_clusters
        self.kmeans_iters = kmeans_iters

    def forward(self, x: Tensor) -> Tensor:
        """Attend within windows of similar pixels.

        Args:
            x: ``(B, C, H, W)`` features.

        Returns:
            ``(B, C, H, W)`` features.
        """
        check_feature_map(x, self.dim)
        height, width = x.shape[-2:]
        query, key, value = self.qkv(rearrange(x, "b c h w -> b (h w) c")).chunk(3, dim=-1)
        out = clustered_window_attention(
            query,
            key,
            value,
            self.num_heads,
            self.window_size,
            self.num_clusters,
            self.kmeans_iters,
            dropout_p=self.attn_drop if self.training else 0.0,
        )
        out = self.proj_drop(self.proj(out))
        return rearrange(out, "b (h w) c -> b c h w", h=height, w=width)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, num_heads={self.num_heads}, window_size={self.window_size}, "
            f"num_clusters={self.num_clusters}, kmeans_iters={self.kmeans_iters}"
        )


def permute_tokens(tokens: Tensor, order: Tensor) -> Tensor:
    """Reorder every sample's tokens: ``out[b, i] = tokens[b, order[b, i]]``.

    Copies whole rows with one ``index_select`` over the flattened batch, which on CPU is
    several times faster than ``gather`` with an index expanded over the channels.

    Args:
        tokens: ``(B, N, C)`` tokens.
        order: ``(B, N)`` int64 index into ``N`` for every sample (usually a permutation).

    Returns:
        ``(B, N, C)`` reordered tokens.
    """
    batch, num_tokens = order.shape
    offsets = torch.arange(batch, device=order.device).unsqueeze(1) * num_tokens
    rows = rearrange(tokens, "b n c -> (b n) c").index_select(0, (order + offsets).flatten())
    return rearrange(rows, "(b n) c -> b n c", b=batch)


def interleaved_non_local_mixer(index: int, dim: int, num_heads: int, window_size: int, num_clusters: int) -> nn.Module:
    """Token mixer ``index`` of a sequence in which local and non-local attention take turns:
    [`ShiftedWindowAttention`][ShiftedWindowAttention] for even
    ``index`` (every other one shifted by half a window) and
    [`ClusteredNonLocalWindowAttention`][ClusteredNonLocalWindowAttention]
    for odd ``index``: local texture and far-away similar pixels in alternation, as
    derainzoo's detail stage does.

    Args:
        index: position of the block in the sequence.
        dim: channels.
        num_heads: attention heads.
        window_size: window side (a clustered window holds ``window_size**2`` pixels).
        num_clusters: clusters of the clustered attention.

    Returns:
        The attention module, ``(B, dim, H, W)`` in and out.

    Examples:
        >>> [type(interleaved_non_local_mixer(i, 16, 2, 4, 4)).__name__ for i in range(2)]
        ['ShiftedWindowAttention', 'ClusteredNonLocalWindowAttention']
    """
    if index % 2:
        return ClusteredNonLocalWindowAttention(dim, num_heads, window_size, num_clusters)
    return ShiftedWindowAttention(dim, num_heads, window_size, shift_size=alternating_shift(index // 2, window_size))
