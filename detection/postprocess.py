"""From head outputs to a table of detections in seconds.

Every (point, class) pair is a candidate with score ``sigmoid(logit)``. Per video: candidates over
padding or under ``score_threshold`` are dropped, the ``pre_nms_topk`` best of each pyramid level
(as ActionFormer selects them, so the fine levels' many points cannot crowd out the coarse levels'
long segments or a rare class's tail) are decoded to segments, converted to seconds and clipped to
``[0, duration]``. Gaussian soft-NMS then runs separately for every (video, class) group
(:func:`detection.nms.soft_nms`; :func:`batched_soft_nms` is the one-pick-per-round loop it equals),
and each video keeps its ``max_segments`` best survivors, optionally with voted boundaries
(:func:`vote_boundaries`). The output is a pandas DataFrame with the columns ``video_id, t_start,
t_end, label, score``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from detection.model import DetectorOutput
from detection.nms import soft_nms
from detection.timeline import Timeline

PREDICTION_COLUMNS = ["video_id", "t_start", "t_end", "label", "score"]


def segment_iou(one: torch.Tensor, many: torch.Tensor) -> torch.Tensor:
    """IoU of segments ``one`` (..., 2) against ``many`` (..., K, 2) -> (..., K)."""
    onset = torch.maximum(one[..., None, 0], many[..., 0])
    offset = torch.minimum(one[..., None, 1], many[..., 1])
    intersection = (offset - onset).clamp(min=0)
    union = (one[..., None, 1] - one[..., None, 0]) + (many[..., 1] - many[..., 0]) - intersection
    return torch.where(union > 0, intersection / union.clamp(min=torch.finfo(union.dtype).tiny),
                       torch.zeros_like(union))


def batched_soft_nms(segments: torch.Tensor, scores: torch.Tensor, valid: torch.Tensor, *, sigma: float = 0.5,
                     min_score: float = 1e-3, max_kept: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian soft-NMS run independently in each of G groups, all groups per iteration at once.

    Within a group, repeatedly the remaining candidate with the highest score is kept, and every
    other remaining candidate's score is multiplied by ``exp(-iou**2 / sigma)``; candidates whose
    score falls under ``min_score`` are discarded. Ties go to the lower index. With ``max_kept`` a
    group stops after that many picks (kept scores only fall within a group, so a video that keeps
    its ``max_kept`` best detections needs no more from any one group).

    Args:
        segments: (G, K, 2) onset/offset; scores: (G, K); valid: (G, K) bool (False = padding).

    Returns:
        ``kept`` (G, K) bool and ``kept_scores`` (G, K): the score each kept candidate had when it
        was chosen (0 elsewhere).
    """
    scores = scores.clone()
    alive = valid & (scores >= min_score)
    kept = torch.zeros_like(alive)
    kept_scores = torch.zeros_like(scores)
    rows = torch.arange(scores.shape[0], device=scores.device)
    neg_inf = torch.tensor(float("-inf"), dtype=scores.dtype, device=scores.device)
    num_rounds = scores.shape[1] if max_kept is None else min(scores.shape[1], max_kept)
    for _ in range(num_rounds):
        running = alive.any(dim=1)
        if not bool(running.any()):
            break
        best = torch.where(alive, scores, neg_inf).argmax(dim=1)  # (G,)
        picked_rows, picked = rows[running], best[running]
        kept[picked_rows, picked] = True
        kept_scores[picked_rows, picked] = scores[picked_rows, picked]
        alive[picked_rows, picked] = False
        decay = torch.exp(-segment_iou(segments[rows, best], segments) ** 2 / sigma)  # (G, K)
        scores = torch.where(alive & running[:, None], scores * decay, scores)
        alive &= scores >= min_score
    return kept, kept_scores


def soft_nms_reference(segments: list[tuple[float, float]], scores: list[float], *, sigma: float = 0.5,
                       min_score: float = 1e-3, max_kept: int | None = None) -> list[tuple[int, float]]:
    """Plain-Python Gaussian soft-NMS of one group: ``[(index, score when kept), ...]`` in the order kept."""
    current = {i: float(s) for i, s in enumerate(scores) if s >= min_score}
    kept = []
    while current and (max_kept is None or len(kept) < max_kept):
        best = max(current, key=lambda i: (current[i], -i))
        best_score = current.pop(best)
        kept.append((best, best_score))
        b0, b1 = segments[best]
        for i in list(current):
            s0, s1 = segments[i]
            intersection = max(0.0, min(b1, s1) - max(b0, s0))
            union = (b1 - b0) + (s1 - s0) - intersection
            iou = intersection / union if union > 0 else 0.0
            current[i] *= math.exp(-iou * iou / sigma)
            if current[i] < min_score:
                del current[i]
    return kept


def pyramid_level_slices(points: torch.Tensor) -> list[tuple[int, int]]:
    """``[(first, end), ...]``: the rows of each pyramid level in a point table (P, 4) (levels are
    consecutive runs of one stride)."""
    stride = points[:, 3]
    change = torch.nonzero(stride[1:] != stride[:-1]).flatten() + 1
    bounds = [0, *change.tolist(), int(stride.numel())]
    return list(zip(bounds[:-1], bounds[1:]))


def top_candidates(scores: torch.Tensor, score_threshold: float, topk: int) -> torch.Tensor:
    """Indices of the at most ``topk`` highest ``scores`` (1-D) above ``score_threshold``, best first."""
    candidates = torch.nonzero(scores > score_threshold).flatten()
    order = torch.argsort(scores[candidates], descending=True, stable=True)[:topk]
    return candidates[order]


def vote_boundaries(kept: torch.Tensor, kept_groups: torch.Tensor, candidates: torch.Tensor,
                    candidate_scores: torch.Tensor, candidate_groups: torch.Tensor, *,
                    min_iou: float) -> torch.Tensor:
    """Boundary voting: each kept segment moves to the score-weighted mean of its group's candidates
    that overlap it with IoU >= ``min_iou`` (the kept segment is among them, so it always has a vote).

    Shapes: ``kept`` (S, 2), ``kept_groups`` (S,), ``candidates`` (Q, 2), ``candidate_scores`` (Q,),
    ``candidate_groups`` (Q,) -> (S, 2).
    """
    if kept.numel() == 0:
        return kept
    voted = kept.clone()
    for start in range(0, kept.shape[0], 256):
        part = slice(start, start + 256)
        iou = segment_iou(kept[part], candidates.expand(kept[part].shape[0], -1, -1))  # (s, Q)
        votes = (iou >= min_iou) & (kept_groups[part, None] == candidate_groups[None, :])
        weights = votes.to(candidate_scores.dtype) * candidate_scores[None, :]
        total = weights.sum(dim=1, keepdim=True)
        voted[part] = torch.where(total > 0, (weights @ candidates) / total.clamp(min=1e-12), kept[part])
    return voted


def _pack_groups(group_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Slots of Q grouped items in a padded (G, K) layout: (sort order, group row, column, K)."""
    order = torch.argsort(group_ids, stable=True)
    sorted_ids = group_ids[order]
    unique_ids, row, counts = torch.unique_consecutive(sorted_ids, return_inverse=True, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    column = torch.arange(sorted_ids.numel(), device=group_ids.device) - starts[row]
    return order, row, column, int(counts.max())


def loop_soft_nms(segments, scores, groups, *, sigma: float = 0.5, min_score: float = 1e-3,
                  max_kept: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`detection.nms.soft_nms` computed by the one-pick-per-round loop :func:`batched_soft_nms`.

    The reference the fast version is tested and benchmarked against: same arguments, same result
    (``index`` (M,) and ``kept_scores`` (M,), best first, ties by group then index).
    """
    segments, scores = torch.as_tensor(segments), torch.as_tensor(scores)
    groups = torch.as_tensor(groups).long()
    if scores.numel() == 0:
        return np.zeros(0, dtype=np.int64), scores.numpy()[:0]
    order, row, column, width = _pack_groups(groups)
    num_groups = int(row.max()) + 1
    packed_segments = segments.new_zeros(num_groups, width, 2)
    packed_scores = scores.new_zeros(num_groups, width)
    packed_valid = torch.zeros(num_groups, width, dtype=torch.bool)
    packed_segments[row, column] = segments[order].to(scores.dtype)
    packed_scores[row, column] = scores[order]
    packed_valid[row, column] = True
    kept, kept_scores = batched_soft_nms(packed_segments, packed_scores, packed_valid, sigma=sigma,
                                         min_score=min_score, max_kept=max_kept)
    survivor = kept[row, column]
    index, final_scores = order[survivor], kept_scores[row, column][survivor]
    best_first = torch.argsort(final_scores, descending=True, stable=True)[:max_kept]
    return index[best_first].numpy(), final_scores[best_first].numpy()


def postprocess_detections(output: DetectorOutput, *, timelines: Sequence[Timeline], durations: Sequence[float],
                           video_ids: Sequence[str], score_threshold: float = 1e-3, pre_nms_topk: int = 2000,
                           nms_sigma: float = 0.5, min_score: float = 1e-3, max_segments: int = 100,
                           min_duration: float = 0.01, voting_iou: float = 0.0) -> pd.DataFrame:
    """Detections of a batch in seconds.

    Args:
        output: head outputs for B videos (cls_logits (B, P, C), offsets, points, mask).
        timelines: B :class:`Timeline` mapping each video's step coordinates to seconds.
        durations: B video durations in seconds (segments are clipped to them).
        video_ids: B ids.
        score_threshold: candidates scoring at or below it are dropped before NMS.
        pre_nms_topk: at most this many candidates per video and pyramid level enter NMS.
        nms_sigma, min_score: Gaussian soft-NMS parameters (see :func:`batched_soft_nms`).
        max_segments: at most this many detections per video.
        min_duration: segments shorter than this (seconds, after clipping) are dropped.
        voting_iou: when > 0, each detection's boundaries become the score-weighted mean of the
            candidates of its video and class (before NMS) whose IoU with it is at least this
            (see :func:`vote_boundaries`); its score is unchanged.

    Returns:
        DataFrame ``video_id, t_start, t_end, label, score``, each video's rows best first.
    """
    with torch.no_grad():
        probs = output.scores()
        decoded = output.segments().float()
        num_classes = probs.shape[-1]
        seg_list, score_list, label_list, video_list = [], [], [], []
        level_slices = pyramid_level_slices(output.points)
        for b in range(probs.shape[0]):
            flat = (probs[b] * output.mask[b, :, None]).flatten()
            candidates = torch.cat([top_candidates(flat[first * num_classes:end * num_classes], score_threshold,
                                                   pre_nms_topk) + first * num_classes
                                    for first, end in level_slices])
            point, label = candidates // num_classes, candidates % num_classes
            steps = decoded[b, point, label] if output.class_aware else decoded[b, point]
            seconds = timelines[b].to_seconds(steps).clamp(min=0.0, max=float(durations[b]))
            long_enough = (seconds[:, 1] - seconds[:, 0]) >= min_duration
            seg_list.append(seconds[long_enough])
            score_list.append(flat[candidates][long_enough])
            label_list.append(label[long_enough])
            video_list.append(torch.full_like(label[long_enough], b))
        segments, scores = torch.cat(seg_list), torch.cat(score_list)
        labels, videos = torch.cat(label_list), torch.cat(video_list)
        if scores.numel() == 0:
            return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
                PREDICTION_COLUMNS, [object, float, float, int, float])})

        rows = []
        for b in range(probs.shape[0]):
            mine = torch.nonzero(videos == b).flatten()
            index, kept_scores = soft_nms(segments[mine].cpu().numpy(), scores[mine].cpu().numpy(),
                                          labels[mine].cpu().numpy(), sigma=nms_sigma, min_score=min_score,
                                          max_kept=max_segments)
            kept = mine[torch.from_numpy(index).to(mine.device)]
            voted = segments[kept]
            if voting_iou > 0:
                voted = vote_boundaries(voted, labels[kept], segments[mine], scores[mine], labels[mine],
                                        min_iou=voting_iou)
            kept_segments, kept_labels = voted.tolist(), labels[kept].tolist()
            for (t_start, t_end), label, score in zip(kept_segments, kept_labels, kept_scores.tolist()):
                rows.append((video_ids[b], t_start, t_end, label, score))
    return pd.DataFrame(rows, columns=PREDICTION_COLUMNS)
