"""The ST and TS paths (Eq. 9-12) and Table IV's per-entity temporal alternatives.

ST:  X_spatial = Spatial-T(X) + MLP_s(X)   (9)      X_ST = Temporal-T(X_spatial)   (10)
TS:  X_temporal = Temporal-T(X) + MLP_t(X) (11)     X_TS = Spatial-T(X_temporal)   (12)

Each path owns its transformers. "3-layer transformers" of IV-B is read as three layers in each
Spatial-T and each Temporal-T.
"""

from __future__ import annotations

import torch
from torch import nn

from recognition.transformers import SpatialTransformer, TemporalTransformer, over_entities, over_time


def residual_mlp(dim: int) -> nn.Sequential:
    """MLP_s / MLP_t of Eq. (9, 11): Linear-GELU-Linear keeping the entity's own information."""
    return nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))


class SpatialTemporalPath(nn.Module):
    """ST path: spatial first, then temporal. (B, T, K, D) -> (B, T, K, D)."""

    def __init__(self, spatial: SpatialTransformer, temporal: TemporalTransformer, dim: int) -> None:
        super().__init__()
        self.spatial, self.temporal, self.mlp = spatial, temporal, residual_mlp(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_spatial = over_entities(self.spatial, x) + self.mlp(x)
        return over_time(self.temporal, x_spatial)


class TemporalSpatialPath(nn.Module):
    """TS path: temporal first, then spatial. (B, T, K, D) -> (B, T, K, D)."""

    def __init__(self, spatial: SpatialTransformer, temporal: TemporalTransformer, dim: int) -> None:
        super().__init__()
        self.spatial, self.temporal, self.mlp = spatial, temporal, residual_mlp(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_temporal = over_time(self.temporal, x) + self.mlp(x)
        return over_entities(self.spatial, x_temporal)


class EntityLSTM(nn.Module):
    """Table IV "LSTM": one LSTM shared by all entities, each entity's track run on its own.

    (B, T, K, D) -> (B, T, K, D).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return over_time(lambda tracks: self.lstm(tracks)[0], x)


class EntityTemporalTransformer(nn.Module):
    """Table IV "Temporal Transformer": Temporal-T on each entity, no spatial modelling."""

    def __init__(self, temporal: TemporalTransformer) -> None:
        super().__init__()
        self.temporal = temporal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return over_time(self.temporal, x)
