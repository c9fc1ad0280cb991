"""Frame-mAP: multi-label per-frame average precision on a fixed time grid.

The dense-labelling metric of MultiTHUMOS and Charades: every video is sampled at ``rate``
frames per second, frame ``i`` sitting at time ``i / rate`` for ``i = 0 .. ceil(duration * rate) - 1``.
A frame is a positive of class c when a ground-truth segment of class c covers it
(``t_start <= t < t_end``). Frame scores come either from detections (each frame takes, per
class, the highest score of the predicted segments covering it, 0 when none does) or from dense
per-frame scores given directly. Per class, frames of all videos are pooled and ranked by
descending score (stable: equal scores keep video order, then frame order) and AP is the mean of
the precision at each positive frame (non-interpolated, as in the Charades and MultiTHUMOS
scripts). Classes without a positive frame are left out of the mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from eval.errors import EvalInputError


def frame_times(duration: float, *, rate: float) -> np.ndarray:
    """(F,) times in seconds of the grid frames of a video: ``i / rate``, F = ceil(duration * rate)."""
    if rate <= 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    return np.arange(int(np.ceil(duration * rate - 1e-9))) / rate


def segments_to_frame_labels(
    segments: pd.DataFrame, times: np.ndarray, *, num_classes: int
) -> np.ndarray:
    """(F, C) bool: frame f is a positive of class c if a segment of class c covers ``times[f]``.

    Args:
        segments: rows ``t_start, t_end, label`` of one video.
        times: (F,) frame times in seconds.
    """
    labels = np.zeros((times.size, num_classes), dtype=bool)
    for t_start, t_end, label in segments[["t_start", "t_end", "label"]].itertuples(index=False):
        labels[(times >= t_start) & (times < t_end), int(label)] = True
    return labels


def detections_to_frame_scores(
    detections: pd.DataFrame, times: np.ndarray, *, num_classes: int
) -> np.ndarray:
    """(F, C) float: per class, the best score of the detections covering each frame (0 if none).

    Args:
        detections: rows ``t_start, t_end, label, score`` of one video, N rows.
        times: (F,) frame times in seconds.
    """
    scores = np.zeros((times.size, num_classes), dtype=np.float64)
    if len(detections) == 0:
        return scores
    start = detections["t_start"].to_numpy(dtype=np.float64)
    end = detections["t_end"].to_numpy(dtype=np.float64)
    label = detections["label"].to_numpy(dtype=np.int64)
    score = detections["score"].to_numpy(dtype=np.float64)
    covers = (times[None, :] >= start[:, None]) & (times[None, :] < end[:, None])  # (N, F)
    weighted = np.where(covers, score[:, None], 0.0)
    for c in np.unique(label):
        scores[:, c] = weighted[label == c].max(axis=0)
    return scores


def frame_average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """Non-interpolated AP of one class: mean precision at the ranks of the positive frames.

    Args:
        scores: (F,) scores.
        positives: (F,) bool ground truth.
    Returns:
        AP, or NaN when there is no positive frame.
    """
    positives = np.asarray(positives, dtype=bool)
    num_pos = int(positives.sum())
    if num_pos == 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    hits = positives[order]
    tp_cum = np.cumsum(hits)
    precision = tp_cum / np.arange(1, hits.size + 1)
    return float(precision[hits].sum() / num_pos)


@dataclass
class FrameMapResult:
    """Frame-level AP per class and its mean.

    Attributes:
        ap: (C,) AP per class, NaN for classes without positive frames.
        mAP: mean AP over classes with positive frames.
        num_frames: frames evaluated (all videos).
    """

    ap: np.ndarray
    mAP: float  # noqa: N815 - the metric's established name
    num_frames: int

    @property
    def classes_without_positives(self) -> list[int]:
        return [int(c) for c in np.flatnonzero(np.isnan(self.ap))]

    def to_dict(self) -> dict:
        return {
            "frame_mAP": self.mAP,
            "per_class_AP": {str(c): float(a) for c, a in enumerate(self.ap) if not np.isnan(a)},
            "classes_without_positives": self.classes_without_positives,
            "num_frames": self.num_frames,
        }


def frame_map(scores: np.ndarray, positives: np.ndarray) -> FrameMapResult:
    """Frame-mAP from dense scores.

    Args:
        scores: (F, C) per-frame class scores, frames of all videos stacked.
        positives: (F, C) bool per-frame ground truth.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    if scores.shape != positives.shape or scores.ndim != 2:
        raise EvalInputError(None, f"frame scores {scores.shape} and labels {positives.shape} must both be (F, C)")
    if not np.all(np.isfinite(scores)):
        raise EvalInputError(None, "frame scores contain NaN or infinity")
    ap = np.array([frame_average_precision(scores[:, c], positives[:, c]) for c in range(scores.shape[1])])
    valid = ~np.isnan(ap)
    return FrameMapResult(ap=ap, mAP=float(ap[valid].mean()) if valid.any() else float("nan"),
                          num_frames=int(scores.shape[0]))


def frame_map_from_detections(
    ground_truth: pd.DataFrame,
    predictions: pd.DataFrame,
    durations: Mapping[str, float],
    *,
    num_classes: int,
    rate: float = 4.0,
) -> FrameMapResult:
    """Frame-mAP of segment detections on the ``rate`` Hz grid of every video in ``durations``.

    Args:
        ground_truth: ``video_id, t_start, t_end, label`` (seconds).
        predictions: ``video_id, t_start, t_end, label, score``; videos not in ``durations``
            are ignored.
        durations: video id -> duration in seconds; defines the evaluated videos.
        num_classes: C.
        rate: grid frames per second.
    """
    return frame_map_from_dense(
        ground_truth,
        {
            vid: detections_to_frame_scores(group, frame_times(durations[vid], rate=rate), num_classes=num_classes)
            for vid, group in predictions.groupby(predictions["video_id"].astype(str))
            if vid in durations
        },
        durations,
        num_classes=num_classes,
        rate=rate,
    )


def frame_map_from_dense(
    ground_truth: pd.DataFrame,
    frame_scores: Mapping[str, np.ndarray],
    durations: Mapping[str, float],
    *,
    num_classes: int,
    rate: float = 4.0,
    video_ids: Sequence[str] | None = None,
) -> FrameMapResult:
    """Frame-mAP of dense per-frame scores.

    Args:
        ground_truth: ``video_id, t_start, t_end, label`` (seconds).
        frame_scores: video id -> (F_v, C) scores on that video's ``rate`` grid; a missing video
            scores 0 everywhere.
        durations: video id -> duration in seconds.
        num_classes: C.
        rate: grid frames per second.
        video_ids: videos to evaluate (default: all of ``durations``, sorted).
    """
    gt_by_video = {vid: g for vid, g in ground_truth.groupby(ground_truth["video_id"].astype(str))}
    all_scores, all_labels = [], []
    for vid in sorted(durations) if video_ids is None else video_ids:
        times = frame_times(durations[vid], rate=rate)
        segments = gt_by_video.get(vid, ground_truth.iloc[:0])
        all_labels.append(segments_to_frame_labels(segments, times, num_classes=num_classes))
        scores = frame_scores.get(vid)
        if scores is None:
            scores = np.zeros((times.size, num_classes))
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (times.size, num_classes):
            raise EvalInputError(
                None, f"frame scores of shape {scores.shape}, expected {(times.size, num_classes)}", f"video {vid!r}"
            )
        all_scores.append(scores)
    if not all_scores:
        raise EvalInputError(None, "no videos to evaluate")
    return frame_map(np.concatenate(all_scores), np.concatenate(all_labels))
