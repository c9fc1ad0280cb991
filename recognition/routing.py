"""Entity-level adaptive routing (Eq. 13-15).

For entity i at time t:

    r_{i,t} = R_i([X^ST_{i,t}; X^TS_{i,t}]) + b_i                                     (13)
    [a^ST_{i,t}, a^TS_{i,t}] = softmax(r_{i,t} / tau_r)                               (14)
    X^fused_{i,t} = a^ST_{i,t} X^ST_{i,t} + a^TS_{i,t} X^TS_{i,t}                       (15)

R_i = Linear(2D -> D/2) - LayerNorm - ReLU - Dropout - Linear(D/2 -> 2), one per entity; the
prior b_i starts at zero. Parameters: K * (2D*h + h + 2h + 2h + 2 + 2) with h = D/2, i.e.
397,080 for K = 6 and D = 256 (the paper rounds this to "about 0.5M").
"""

from __future__ import annotations

import torch
from torch import nn


def entity_router(dim: int, *, hidden_dim: int | None = None, dropout: float = 0.1) -> nn.Sequential:
    """R_i: (..., 2D) -> (..., 2) routing scores."""
    hidden = hidden_dim or dim // 2
    return nn.Sequential(
        nn.Linear(2 * dim, hidden), nn.LayerNorm(hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, 2)
    )


def routing_parameter_count(num_entities: int, dim: int) -> int:
    """Closed form of :class:`EntityRouting`'s parameter count (hidden D/2)."""
    h = dim // 2
    return num_entities * (2 * dim * h + h + 2 * h + 2 * h + 2 + 2)


class EntityRouting(nn.Module):
    """Blend the ST and TS outputs per entity with learned, input-dependent weights."""

    def __init__(self, num_entities: int, dim: int, *, temperature: float = 1.0, dropout: float = 0.1) -> None:
        super().__init__()
        self.temperature = temperature
        self.routers = nn.ModuleList(entity_router(dim, dropout=dropout) for _ in range(num_entities))
        self.prior = nn.Parameter(torch.zeros(num_entities, 2))  # b_i

    def forward(self, x_st: torch.Tensor, x_ts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fuse the paths.

        Args:
            x_st, x_ts: (B, T, K, D) raw path outputs.

        Returns:
            fused (B, T, K, D) and routing weights (B, T, K, 2) = (a_ST, a_TS), summing to 1.
        """
        paired = torch.cat([x_st, x_ts], dim=-1)
        scores = torch.stack([self.routers[i](paired[:, :, i]) for i in range(len(self.routers))], dim=2)
        weights = torch.softmax((scores + self.prior) / self.temperature, dim=-1)
        fused = weights[..., :1] * x_st + weights[..., 1:] * x_ts
        return fused, weights
