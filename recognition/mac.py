"""Mutual Action Consistency (MAC) loss (Eq. 16-17) on the raw path outputs before routing.

Two granularities (Table IV, "Entity Temporal Granularity"); both use l2-normalised features,
cosine similarity over a temperature tau (0.07), and confidence weights c (Eq. 17):

* frame level (:func:`frame_level_mac`), Eq. (16) as printed: for clip b, entity i and frame t
  the positive is z^TS_{i,t} and the candidates are z^TS_{i,j} for all frames j of the same
  entity; each term is weighted by c^t_i and the sum is divided by the sum of weights.
* video level (:func:`video_level_mac`, the full model's default): each entity's path outputs
  are averaged over the T frames first (z_{b,i}), so the paths only have to agree per entity
  and clip, not at each timestamp. For (b, i) the positive is z^TS_{b,i} and the candidates are
  z^TS of every (clip, entity) pair in the batch; the weight is the entity's mean confidence
  over the clip. With one clip in the batch the other entities are the negatives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _weighted_mean(losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    weights = weights.to(losses.dtype)
    return (losses * weights).sum() / weights.sum().clamp(min=1e-6)


def frame_level_mac(
    x_st: torch.Tensor, x_ts: torch.Tensor, confidence: torch.Tensor | None = None, *, temperature: float = 0.07
) -> torch.Tensor:
    """Eq. (16-17) per frame.

    Args:
        x_st, x_ts: (B, T, K, D) raw path outputs.
        confidence: (B, T, K) entity keypoint confidence c^t_i, or None for uniform weights.

    Returns:
        scalar loss.
    """
    b, t, k, _ = x_st.shape
    z_st = F.normalize(x_st.float(), dim=-1).permute(0, 2, 1, 3)  # (B, K, T, D)
    z_ts = F.normalize(x_ts.float(), dim=-1).permute(0, 2, 1, 3)
    logits = z_st @ z_ts.transpose(-1, -2) / temperature  # (B, K, T, T): [t, j]
    target = torch.arange(t, device=x_st.device).expand(b, k, t)
    losses = F.cross_entropy(logits.reshape(-1, t), target.reshape(-1), reduction="none").view(b, k, t)
    weights = torch.ones_like(losses) if confidence is None else confidence.permute(0, 2, 1)
    return _weighted_mean(losses, weights)


def video_level_mac(
    x_st: torch.Tensor, x_ts: torch.Tensor, confidence: torch.Tensor | None = None, *, temperature: float = 0.07
) -> torch.Tensor:
    """Entity-wise consistency of clip-averaged path outputs (see module docstring).

    Args:
        x_st, x_ts: (B, T, K, D) raw path outputs.
        confidence: (B, T, K) entity keypoint confidence, or None for uniform weights.

    Returns:
        scalar loss.
    """
    b, _, k, _ = x_st.shape
    z_st = F.normalize(x_st.float().mean(dim=1), dim=-1).reshape(b * k, -1)
    z_ts = F.normalize(x_ts.float().mean(dim=1), dim=-1).reshape(b * k, -1)
    logits = z_st @ z_ts.t() / temperature
    losses = F.cross_entropy(logits, torch.arange(b * k, device=x_st.device), reduction="none")
    weights = torch.ones_like(losses) if confidence is None else confidence.mean(dim=1).reshape(-1)
    return _weighted_mean(losses, weights)


def mac_loss(
    x_st: torch.Tensor,
    x_ts: torch.Tensor,
    confidence: torch.Tensor | None = None,
    *,
    temperature: float = 0.07,
    level: str = "video",
) -> torch.Tensor:
    """Dispatch to :func:`video_level_mac` or :func:`frame_level_mac` by ``level``."""
    if level == "video":
        return video_level_mac(x_st, x_ts, confidence, temperature=temperature)
    if level == "frame":
        return frame_level_mac(x_st, x_ts, confidence, temperature=temperature)
    raise ValueError(f"unknown MAC level '{level}' (expected 'video' or 'frame')")
