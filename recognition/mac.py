"""Mutual Action Consistency (MAC) loss (Eq. 16-17) on the raw path outputs before routing.

Two granularities (Table IV, "Entity Temporal Granularity"); both use l2-normalised features,
cosine similarity over a temperature tau (0.07), and confidence weights c (Eq. 17):

* frame level (:func:`frame_level_mac`), Eq. (16) as printed: for clip b, entity i and frame t
  the positive is z^TS_{i,t} and the candidates are z^TS_{i,j} for all frames j of the same
  entity and clip; each term is weighted by c^t_i.
* video level (:func:`video_level_mac`, the full model's default). The paper names this variant
  but does not print it; the reading taken here (an assumption, see docs/fidelity.md): each
  entity's path outputs are averaged over the T frames (z_{b,i}); for clip b and entity i the
  positive is z^TS_{b,i} and the candidates are z^TS_{b',i} of the *same entity* i in every
  clip b' of the global batch. Entities never act as each other's negatives. The weight is the
  entity's mean confidence over the clip. A global batch of one clip gives a loss of 0.

Split invariance. Under DDP each process holds a shard of the global batch. Both levels divide
their weighted sum by the weight sum of the *global* batch (all-reduced) and the video level
contrasts against the TS summaries of the global batch (all-gathered, gradients routed back to
their owners), scaled so that the engine's mean of the per-process losses, and of their
gradients, equals the loss of the undivided batch. Without a process group both are the plain
single-batch formulas.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def _world() -> tuple[int, int]:
    """(rank, world size) of the default process group, (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherRows(torch.autograd.Function):
    """All-gather of equally shaped (N, ...) tensors; the backward pass sums every process's
    gradient of the gathered tensor and returns this process's rows."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        rank, world = _world()
        ctx.rank, ctx.rows = rank, x.shape[0]
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def gather_batch(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(global rows, offset of this process's rows) of a (N, ...) tensor; gradients flow back.

    Processes may hold different N (a last, smaller batch): rows are padded to the largest N for
    the collective and the padding is removed again.
    """
    rank, world = _world()
    if world == 1:
        return x, 0
    sizes = torch.tensor([x.shape[0]], device=x.device)
    all_sizes = [torch.zeros_like(sizes) for _ in range(world)]
    dist.all_gather(all_sizes, sizes)
    counts = [int(s) for s in all_sizes]
    most = max(counts)
    padded = torch.cat([x, x.new_zeros(most - x.shape[0], *x.shape[1:])]) if x.shape[0] < most else x
    gathered = _GatherRows.apply(padded)
    rows = torch.cat([gathered[r * most:r * most + counts[r]] for r in range(world)])
    return rows, sum(counts[:rank])


def _global_weighted_mean(losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum(w * l) over this process's terms / sum(w) over all processes, times the world size.

    The mean of this value over processes is the weighted mean of the undivided batch.
    """
    weights = weights.to(losses.dtype)
    total = weights.sum().detach()
    _, world = _world()
    if world > 1:
        total = total.clone()
        dist.all_reduce(total)
    return world * (losses * weights).sum() / total.clamp(min=1e-6)


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
    return _global_weighted_mean(losses, weights)


def video_level_mac(
    x_st: torch.Tensor, x_ts: torch.Tensor, confidence: torch.Tensor | None = None, *, temperature: float = 0.07
) -> torch.Tensor:
    """Same-entity consistency of clip-averaged path outputs across the clips of the global batch.

    For clip b and entity i: ``-log softmax_{b'}(<z^ST_{b,i}, z^TS_{b',i}> / tau)[b]`` with
    z the l2-normalised mean over T, weighted by the mean of c^t_i over T (module docstring).

    Args:
        x_st, x_ts: (B, T, K, D) raw path outputs (this process's shard of the batch).
        confidence: (B, T, K) entity keypoint confidence, or None for uniform weights.

    Returns:
        scalar loss.
    """
    b, _, k, _ = x_st.shape
    z_st = F.normalize(x_st.float().mean(dim=1), dim=-1)  # (B, K, D)
    z_ts = F.normalize(x_ts.float().mean(dim=1), dim=-1)
    z_ts_all, offset = gather_batch(z_ts)  # (B_global, K, D)
    logits = torch.einsum("bkd,nkd->kbn", z_st, z_ts_all) / temperature  # (K, B, B_global)
    target = (offset + torch.arange(b, device=x_st.device)).expand(k, b)
    losses = F.cross_entropy(logits.reshape(k * b, -1), target.reshape(-1), reduction="none").view(k, b)
    weights = torch.ones_like(losses) if confidence is None else confidence.float().mean(dim=1).t()
    return _global_weighted_mean(losses, weights)


def mac_loss(
    x_st: torch.Tensor,
    x_ts: torch.Tensor,
    confidence: torch.Tensor | None = None,
    *,
    temperature: float = 0.07,
    level: str = "video",
) -> torch.Tensor:
    """Dispatch to :func:`video_level_mac` or :func:`frame_level_mac` by ``level``.

    ``confidence`` must be (B, T, K) matching the paths' first three dimensions.
    """
    if confidence is not None and tuple(confidence.shape) != tuple(x_st.shape[:3]):
        raise ValueError(f"MAC confidence has shape {tuple(confidence.shape)}, the path outputs need "
                         f"{tuple(x_st.shape[:3])} (B, T, K)")
    if level == "video":
        return video_level_mac(x_st, x_ts, confidence, temperature=temperature)
    if level == "frame":
        return frame_level_mac(x_st, x_ts, confidence, temperature=temperature)
    raise ValueError(f"unknown MAC level '{level}' (expected 'video' or 'frame')")
