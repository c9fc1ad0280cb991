"""Spatial-T (Eq. 3-5) and Temporal-T (Eq. 6-8): post-LN transformer encoders.

Each layer is ``X'' = LN(X' + MHSA(X'))``, ``X^ = LN(X'' + FFN(X''))`` with a two-layer GELU FFN.
Spatial-T attends across the K entities of one frame; its Spatial Position Encoding (SPE)
encodes the anatomical hierarchy (head -> torso -> limbs) in two ways, each switchable:
an additive embedding of every entity's depth in the body tree (the ``SPE(X_t)`` of Eq. 3) and
a learned attention bias per head indexed by the tree distance between two entities.
Temporal-T attends across the T frames of one entity, with sinusoidal positions (Eq. 6).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

BODY_TREE_PARENT = {
    "head": None,
    "face": "head",
    "torso": "head",
    "left_hand": "torso",
    "right_hand": "torso",
    "lower_body": "torso",
}
"""The anatomical hierarchy head -> torso -> limbs; the face hangs off the head."""


def _path_to_root(name: str) -> list[str]:
    if name not in BODY_TREE_PARENT:
        raise ValueError(f"entity '{name}' is not in the body tree {sorted(BODY_TREE_PARENT)}")
    path = [name]
    while BODY_TREE_PARENT[path[-1]] is not None:
        path.append(BODY_TREE_PARENT[path[-1]])
    return path


def entity_tree_depths(entity_names: list[str]) -> torch.Tensor:
    """(K,) long: each entity's depth below the head in :data:`BODY_TREE_PARENT`."""
    return torch.tensor([len(_path_to_root(n)) - 1 for n in entity_names], dtype=torch.long)


def entity_tree_distances(entity_names: list[str]) -> torch.Tensor:
    """(K, K) long: number of tree edges between every pair of entities."""
    paths = [_path_to_root(n) for n in entity_names]
    k = len(entity_names)
    dist = torch.zeros(k, k, dtype=torch.long)
    for a in range(k):
        for b in range(k):
            common = next(node for node in paths[a] if node in paths[b])
            dist[a, b] = paths[a].index(common) + paths[b].index(common)
    return dist


def sinusoidal_positions(length: int, dim: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """(length, dim) sine/cosine position table (sines in even, cosines in odd channels)."""
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table.to(dtype)


class PostNormEncoderLayer(nn.Module):
    """One post-LN encoder layer with an optional additive attention bias.

    Shapes: x (N, L, D); attn_bias (N or 1, heads, L, L) float added to the attention logits,
    or a boolean (N, 1, 1, L) mask where True marks padding to ignore.
    """

    def __init__(self, dim: int, *, num_heads: int = 8, ffn_dim: int = 1024, dropout: float = 0.1) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)
        self.attn_dropout = dropout
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim)
        )
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        n, length, dim = x.shape
        q, k, v = self.qkv(x).view(n, length, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        if attn_bias is not None and attn_bias.dtype != torch.bool:
            attn_bias = attn_bias.to(q.dtype)  # q is half precision under autocast
        attn = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_bias, dropout_p=self.attn_dropout if self.training else 0.0
        )
        attn = self.out_proj(attn.transpose(1, 2).reshape(n, length, dim))
        x = self.norm1(x + self.dropout1(attn))
        return self.norm2(x + self.dropout2(self.ffn(x)))


class SpatialTransformer(nn.Module):
    """Spatial-T: attention across the K entities of each frame (Eq. 3-5).

    Input/output (N, K, D), N = B*T frames.
    """

    def __init__(
        self,
        dim: int,
        *,
        entity_names: list[str],
        num_layers: int = 3,
        num_heads: int = 8,
        ffn_dim: int = 1024,
        dropout: float = 0.1,
        depth_embedding: bool = True,
        tree_bias: bool = True,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.register_buffer("depths", entity_tree_depths(entity_names), persistent=False)
        self.register_buffer("distances", entity_tree_distances(entity_names), persistent=False)
        max_depth = int(self.depths.max()) + 1
        max_distance = int(self.distances.max()) + 1
        self.depth_embedding = nn.Embedding(max_depth, dim) if depth_embedding else None
        if self.depth_embedding is not None:
            nn.init.normal_(self.depth_embedding.weight, std=0.02)
        self.distance_bias = nn.Parameter(torch.zeros(max_distance, num_heads)) if tree_bias else None
        self.layers = nn.ModuleList(
            PostNormEncoderLayer(dim, num_heads=num_heads, ffn_dim=ffn_dim, dropout=dropout) for _ in range(num_layers)
        )

    def attention_bias(self) -> torch.Tensor | None:
        """(1, heads, K, K) learned bias of each entity pair's tree distance, or None."""
        if self.distance_bias is None:
            return None
        return self.distance_bias[self.distances].permute(2, 0, 1)[None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.depth_embedding is not None:
            x = x + self.depth_embedding(self.depths)  # Eq. (3)
        bias = self.attention_bias()
        for layer in self.layers:
            x = layer(x, bias)
        return x


class TemporalTransformer(nn.Module):
    """Temporal-T: attention across the T frames of each entity (Eq. 6-8).

    Input/output (N, T, D), N = B*K entity tracks. ``padding_mask`` (N, T) bool, True at padded
    steps, keeps them out of every attention.
    """

    def __init__(
        self, dim: int, *, num_layers: int = 3, num_heads: int = 8, ffn_dim: int = 1024, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.dim = dim
        self.layers = nn.ModuleList(
            PostNormEncoderLayer(dim, num_heads=num_heads, ffn_dim=ffn_dim, dropout=dropout) for _ in range(num_layers)
        )

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + sinusoidal_positions(x.shape[1], self.dim, device=x.device, dtype=x.dtype)  # Eq. (6)
        mask = None if padding_mask is None else ~padding_mask[:, None, None, :]
        for layer in self.layers:
            x = layer(x, mask)
        return x


def over_entities(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a (N, K, D) module to every frame of (B, T, K, D)."""
    b, t, k, d = x.shape
    return module(x.reshape(b * t, k, d)).view(b, t, k, d)


def over_time(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a (N, T, D) module to every entity track of (B, T, K, D)."""
    b, t, k, d = x.shape
    y = module(x.permute(0, 2, 1, 3).reshape(b * k, t, d))
    return y.view(b, k, t, d).permute(0, 2, 1, 3)
