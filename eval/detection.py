"""Temporal detection AP at tIoU thresholds, as the MMA-52 / ActivityNet scripts compute it.

Inputs are plain tables (pandas DataFrames), times in seconds:

- ground truth: ``video_id, t_start, t_end, label``
- predictions: ``video_id, t_start, t_end, label, score``

The protocol, decision by decision (each one is what the official MMA-52 script, which is
ActivityNet's ``compute_average_precision_detection``, does):

- **Per class.** Predictions of one class are pooled over all videos. ``npos`` is the number of
  ground-truth segments of that class in the evaluated set.
- **Visiting order.** The official code sorts a class's predictions with
  ``scores.argsort()[::-1]``: descending score, and among equal scores the *later* row of the
  prediction table first (the reverse of an ascending sort that keeps ties in row order). Here the
  order is computed with a stable sort, so it is deterministic on every machine; it equals the
  official order whenever numpy's default (unstable) sort keeps equal scores in row order, and
  always when no two predictions of a class share a score.
- **Matching.** A prediction is compared with the ground truth of its own video and class. Among
  the segments not yet matched at this threshold whose tIoU reaches the threshold (``>=``), it
  takes the one with the highest tIoU; among equal tIoUs the official loop (``argsort()[::-1]``
  over that video's segments) takes the later segment of the ground-truth table first, and so
  does this code. Matched: true positive; otherwise (no overlap, duplicate of a matched segment,
  a video without ground truth of the class, a video absent from the ground truth altogether)
  false positive. Each threshold is matched independently.
- **tIoU.** ``protocol="mma52"``: intersection / (union + 1e-4), exactly the official script;
  ``protocol="activitynet"``: intersection / union (0 when the union is 0).
- **AP.** Cumulative true and false positives give precision and recall; precision is made
  monotone from the right and integrated over every point where recall changes (VOC 2011,
  ActivityNet's ``interpolated_prec_rec``). A class with ground truth and no prediction has AP 0.
- **Mean.** mAP at a threshold is the mean over classes. A class without ground truth (the
  official script would produce NaN for it and for the mean) is left out and listed in
  :attr:`DetectionResult.classes_without_ground_truth`.
- **Thresholds.** The default is ``np.arange(0.1, 1.0, 0.1)``, the official values (so the third
  is 0.30000000000000004, as there).

The matching is vectorised: every (class, video) block is independent, so predictions are
processed in rounds of "k-th prediction of its block", all blocks and thresholds at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from eval.errors import EvalInputError

DEFAULT_TIOU_THRESHOLDS: np.ndarray = np.arange(0.1, 1.0, 0.1)
PROTOCOLS: tuple[str, ...] = ("mma52", "activitynet")
MMA52_UNION_EPSILON = 1e-4

GROUND_TRUTH_COLUMNS = ("video_id", "t_start", "t_end", "label")
PREDICTION_COLUMNS = ("video_id", "t_start", "t_end", "label", "score")


def threshold_key(threshold: float) -> str:
    """Short text of a threshold for tables and JSON keys: 0.30000000000000004 -> "0.3"."""
    text = f"{float(threshold):.4f}".rstrip("0").rstrip(".")
    return text or "0"


def parse_tiou_range(text: str) -> np.ndarray:
    """Thresholds from ``"start:stop:step"`` (stop included) or a comma list ``"0.3,0.5,0.7"``.

    ``"0.1:0.9:0.1"`` gives ``start + i * step``, the same floats as ``np.arange(0.1, 1.0, 0.1)``.
    Returns a (T,) float64 array; raises ValueError on bad text or values outside [0, 1].
    """
    text = text.strip()
    if ":" in text:
        parts = text.split(":")
        if len(parts) != 3:
            raise ValueError(f"tIoU range {text!r}: expected start:stop:step")
        start, stop, step = (float(p) for p in parts)
        if step <= 0 or stop < start:
            raise ValueError(f"tIoU range {text!r}: need step > 0 and stop >= start")
        count = int(np.floor((stop - start) / step + 1e-9)) + 1
        values = start + np.arange(count) * step
    else:
        values = np.array([float(p) for p in text.split(",") if p.strip()], dtype=np.float64)
    if values.size == 0 or not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 1:
        raise ValueError(f"tIoU thresholds {text!r}: need one or more values in [0, 1]")
    return values.astype(np.float64)


def segment_tiou(
    pred_segments: np.ndarray, gt_segments: np.ndarray, *, protocol: str = "mma52"
) -> np.ndarray:
    """Temporal IoU of every prediction with every ground-truth segment.

    Args:
        pred_segments: (N, 2) start, end in seconds.
        gt_segments: (M, 2) start, end in seconds.
        protocol: "mma52" (intersection / (union + 1e-4)) or "activitynet" (plain IoU).
    Returns:
        (N, M) float64 tIoU.
    """
    pred = np.asarray(pred_segments, dtype=np.float64).reshape(-1, 2)
    gt = np.asarray(gt_segments, dtype=np.float64).reshape(-1, 2)
    return _tiou(pred[:, None, 0], pred[:, None, 1], gt[None, :, 0], gt[None, :, 1], protocol)


def _tiou(p_start, p_end, g_start, g_end, protocol: str) -> np.ndarray:
    """Elementwise tIoU with broadcasting, in the official script's order of operations."""
    intersection = (np.minimum(p_end, g_end) - np.maximum(p_start, g_start)).clip(0)
    union = (g_end - g_start) + (p_end - p_start) - intersection
    if protocol == "mma52":
        return intersection / (union + MMA52_UNION_EPSILON)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, intersection / np.where(union > 0, union, 1.0), 0.0)


def interpolated_average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """All-point interpolated AP (VOC 2011): monotone precision integrated over recall steps.

    Args:
        precision: (N,) precision after each ranked prediction.
        recall: (N,) recall after each ranked prediction (non-decreasing).
    Returns:
        AP in [0, 1]; 0 for N == 0.
    """
    mprec = np.hstack([[0.0], np.asarray(precision, dtype=np.float64), [0.0]])
    mrec = np.hstack([[0.0], np.asarray(recall, dtype=np.float64), [1.0]])
    mprec = np.maximum.accumulate(mprec[::-1])[::-1]
    idx = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


@dataclass
class DetectionResult:
    """Per-class AP at each tIoU threshold and the summaries built from it.

    Attributes:
        tiou_thresholds: (T,) thresholds.
        classes: (C,) class ids, ascending.
        ap: (T, C) AP; NaN for a class without ground truth.
        num_ground_truth_per_class: (C,) ground-truth segments of each class.
        num_predictions: prediction rows evaluated.
        num_ground_truth: ground-truth segments.
        num_predictions_unknown_video: predictions whose video has no ground truth at all
            (all counted as false positives).
        protocol: "mma52" or "activitynet".
    """

    tiou_thresholds: np.ndarray
    classes: np.ndarray
    ap: np.ndarray
    num_ground_truth_per_class: np.ndarray
    num_predictions: int
    num_ground_truth: int
    num_predictions_unknown_video: int
    protocol: str

    @property
    def matched_gt(self) -> np.ndarray:
        """(T, N) ground-truth row matched by each prediction row (table order), -1 where none."""
        matched = np.empty_like(self.ranked_matched_gt)
        matched[:, self.pred_order] = self.ranked_matched_gt
        return matched
    _evaluated: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        self._evaluated = self.num_ground_truth_per_class > 0

    @property
    def classes_without_ground_truth(self) -> list[int]:
        """Class ids left out of every mean because they have no ground truth."""
        return [int(c) for c in self.classes[~self._evaluated]]

    @property
    def mAP(self) -> np.ndarray:  # noqa: N802 - the established name of the metric
        """(T,) mean AP over classes with ground truth, per threshold."""
        # a C-ordered (T, C') copy, so the sum runs in the same order as the official ap.mean(axis=1)
        return np.ascontiguousarray(self.ap[:, self._evaluated]).mean(axis=1)

    @property
    def average_mAP(self) -> float:  # noqa: N802
        """mAP averaged over the thresholds (the MMA-52 headline number)."""
        return float(self.mAP.mean())

    def mAP_at(self, threshold: float) -> float | None:  # noqa: N802
        """mAP at one of the evaluated thresholds (compared to 1e-9), or None if not evaluated."""
        hits = np.flatnonzero(np.abs(self.tiou_thresholds - threshold) < 1e-9)
        return float(self.mAP[hits[0]]) if hits.size else None

    @property
    def per_class_ap(self) -> dict[int, float]:
        """Class id -> AP averaged over thresholds, for classes with ground truth."""
        mean_ap = self.ap.mean(axis=0)
        return {int(c): float(a) for c, a, ok in zip(self.classes, mean_ap, self._evaluated) if ok}

    def to_dict(self) -> dict:
        """The JSON report: mAP per threshold, average, mAP@0.5, per-class AP and counts."""
        return {
            "protocol": self.protocol,
            "mAP": {threshold_key(t): float(m) for t, m in zip(self.tiou_thresholds, self.mAP)},
            "average_mAP": self.average_mAP,
            "mAP@0.5": self.mAP_at(0.5),
            "per_class_AP": {str(c): a for c, a in self.per_class_ap.items()},
            "per_class_AP_at_threshold": {
                threshold_key(t): {
                    str(int(c)): float(a) for c, a, ok in zip(self.classes, row, self._evaluated) if ok
                }
                for t, row in zip(self.tiou_thresholds, self.ap)
            },
            "classes_without_ground_truth": self.classes_without_ground_truth,
            "num_predictions": self.num_predictions,
            "num_ground_truth": self.num_ground_truth,
            "num_predictions_unknown_video": self.num_predictions_unknown_video,
        }


def _table_columns(table: pd.DataFrame, columns: Sequence[str], what: str) -> dict[str, np.ndarray]:
    """Check and convert the columns of a ground-truth or prediction table to plain arrays."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise EvalInputError(None, f"{what} table lacks column(s) {', '.join(missing)}")
    out = {"video_id": table["video_id"].astype(str).to_numpy()}
    for name in columns:
        if name == "video_id":
            continue
        values = pd.to_numeric(table[name], errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise EvalInputError(None, f"{what} {name!r} is missing or not a finite number", f"row {bad[0]}")
        out[name] = values
    bad = np.flatnonzero(out["t_end"] < out["t_start"])
    if bad.size:
        raise EvalInputError(None, f"{what} segment ends before it starts", f"row {bad[0]}")
    label = out["label"]
    bad = np.flatnonzero((label != np.round(label)) | (label < 0))
    if bad.size:
        raise EvalInputError(None, f"{what} label must be a non-negative integer", f"row {bad[0]}")
    out["label"] = label.astype(np.int64)
    if "score" in out:
        bad = np.flatnonzero(out["score"] < 0)
        if bad.size:
            raise EvalInputError(None, f"{what} score is negative", f"row {bad[0]}")
    return out


def evaluate_detection(
    ground_truth: pd.DataFrame,
    predictions: pd.DataFrame,
    *,
    tiou_thresholds: Sequence[float] | np.ndarray = DEFAULT_TIOU_THRESHOLDS,
    protocol: str = "mma52",
    num_classes: int | None = None,
) -> DetectionResult:
    """Per-class detection AP at each tIoU threshold (see the module text for every rule).

    Args:
        ground_truth: table ``video_id, t_start, t_end, label`` (seconds), N_gt rows.
        predictions: table ``video_id, t_start, t_end, label, score`` (seconds), N rows; row
            order only matters for equal scores.
        tiou_thresholds: (T,) thresholds in [0, 1].
        protocol: "mma52" or "activitynet".
        num_classes: evaluate classes 0..num_classes-1 (labels outside are an error); None
            evaluates the union of labels present.
    Returns:
        :class:`DetectionResult` with ``ap`` of shape (T, C).
    """
    matching = match_detections(
        ground_truth, predictions, tiou_thresholds=tiou_thresholds, protocol=protocol, num_classes=num_classes
    )
    return DetectionResult(
        tiou_thresholds=matching.tiou_thresholds,
        classes=matching.classes,
        ap=class_average_precision(matching),
        num_ground_truth_per_class=matching.num_ground_truth_per_class,
        num_predictions=int(matching.pred_class.size),
        num_ground_truth=int(matching.gt_class.size),
        num_predictions_unknown_video=matching.num_predictions_unknown_video,
        protocol=protocol,
    )


@dataclass
class DetectionMatching:
    """Which ground-truth segment each prediction matched, at each threshold (rows in table order).

    Attributes:
        tiou_thresholds: (T,) thresholds.
        classes: (C,) class ids, ascending.
        pred_class: (N,) position in ``classes`` of each prediction row.
        pred_order: (N,) prediction rows in visiting order: class-major, then the official rank.
        ranked_matched_gt: (T, N) ground-truth row matched by the k-th prediction in visiting
            order, -1 where none (a false positive at that threshold); :attr:`matched_gt` has
            the same in prediction-row order.
        gt_class: (M,) position in ``classes`` of each ground-truth row.
        num_ground_truth_per_class: (C,) ground-truth segments of each class.
        num_predictions_unknown_video: predictions whose video has no ground truth at all.
        protocol: "mma52" or "activitynet".
    """

    tiou_thresholds: np.ndarray
    classes: np.ndarray
    pred_class: np.ndarray
    pred_order: np.ndarray
    ranked_matched_gt: np.ndarray
    gt_class: np.ndarray
    num_ground_truth_per_class: np.ndarray
    num_predictions_unknown_video: int
    protocol: str

    @property
    def matched_gt(self) -> np.ndarray:
        """(T, N) ground-truth row matched by each prediction row (table order), -1 where none."""
        matched = np.empty_like(self.ranked_matched_gt)
        matched[:, self.pred_order] = self.ranked_matched_gt
        return matched


def match_detections(
    ground_truth: pd.DataFrame,
    predictions: pd.DataFrame,
    *,
    tiou_thresholds: Sequence[float] | np.ndarray = DEFAULT_TIOU_THRESHOLDS,
    protocol: str = "mma52",
    num_classes: int | None = None,
) -> DetectionMatching:
    """The matching :func:`evaluate_detection` scores (same arguments, same rules).

    Returns:
        :class:`DetectionMatching`; ``class_average_precision(matching)`` is ``evaluate_detection(...).ap``.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    thresholds = np.asarray(tiou_thresholds, dtype=np.float64).reshape(-1)
    if thresholds.size == 0 or not np.all((thresholds >= 0) & (thresholds <= 1)):
        raise ValueError("tiou_thresholds must be one or more values in [0, 1]")
    gt = _table_columns(ground_truth, GROUND_TRUTH_COLUMNS, "ground-truth")
    pred = _table_columns(predictions, PREDICTION_COLUMNS, "prediction")
    return _match(gt, pred, _classes(gt, pred, num_classes), thresholds, protocol)


def _classes(gt: dict, pred: dict, num_classes: int | None) -> np.ndarray:
    """Class ids evaluated: 0..num_classes-1 (labels outside are an error), or the labels present."""
    if num_classes is None:
        return np.union1d(gt["label"], pred["label"]).astype(np.int64)
    for what, table in (("ground-truth", gt), ("prediction", pred)):
        bad = np.flatnonzero(table["label"] >= num_classes)
        if bad.size:
            raise EvalInputError(
                None, f"{what} label {table['label'][bad[0]]} outside 0..{num_classes - 1}", f"row {bad[0]}"
            )
    return np.arange(num_classes, dtype=np.int64)


def _match(gt: dict, pred: dict, classes: np.ndarray, thresholds: np.ndarray, protocol: str) -> DetectionMatching:
    """Greedy matching of checked tables (``_table_columns`` output) at every threshold."""
    num_pred = pred["label"].size
    # integer codes: videos shared by both tables, classes as positions in `classes`
    video_codes, _ = pd.factorize(np.concatenate([gt["video_id"], pred["video_id"]]))
    gt_video, pred_video = video_codes[: gt["label"].size], video_codes[gt["label"].size :]
    num_videos = int(video_codes.max()) + 1 if video_codes.size else 1
    gt_class = np.searchsorted(classes, gt["label"])
    pred_class = np.searchsorted(classes, pred["label"])
    num_gt_per_class = np.bincount(gt_class, minlength=classes.size)
    unknown_video = int(np.count_nonzero(~np.isin(pred_video, gt_video)))

    # ground truth grouped by (class, video), table order kept inside a group
    gt_order = np.lexsort((gt_video, gt_class))
    gt_block = gt_class[gt_order] * num_videos + gt_video[gt_order]
    gt_start, gt_end = gt["t_start"][gt_order], gt["t_end"][gt_order]

    # predictions: class-major, descending score, later row first among equal scores
    rows = np.arange(num_pred)
    pred_order = np.lexsort((-rows, -pred["score"], pred_class))
    p_block = pred_class[pred_order] * num_videos + pred_video[pred_order]
    matched_slot = _greedy_match(
        p_block, pred["t_start"][pred_order], pred["t_end"][pred_order], gt_block, gt_start, gt_end,
        thresholds, protocol,
    )
    return DetectionMatching(
        tiou_thresholds=thresholds, classes=classes, pred_class=pred_class, pred_order=pred_order,
        ranked_matched_gt=np.where(matched_slot >= 0, gt_order[np.maximum(matched_slot, 0)], -1), gt_class=gt_class, num_ground_truth_per_class=num_gt_per_class,
        num_predictions_unknown_video=unknown_video, protocol=protocol,
    )


def class_average_precision(
    matching: DetectionMatching,
    *,
    dropped: np.ndarray | None = None,
    counted_gt: np.ndarray | None = None,
    normalized_positives: float | None = None,
) -> np.ndarray:
    """AP per threshold and class from a matching, optionally on part of the data.

    Args:
        matching: from :func:`match_detections`.
        dropped: (T, N) or (N,) bool; predictions left out (at that threshold). Leaving out false
            positives does not change the matching of the others, so AP is exact for them.
        counted_gt: (M,) bool; only these ground-truth rows are positives (``npos`` counts them),
            and predictions matched to the other rows are left out (neither true nor false positives).
        normalized_positives: N for the normalized precision ``recall * N / (recall * N + FP)``
            (Alwassel et al., ECCV 2018), which makes sets with different numbers of positives
            comparable; None uses the ordinary precision ``TP / (TP + FP)``.
    Returns:
        (T, C) AP; NaN for a class without (counted) ground truth.
    """
    thresholds, classes, order = matching.tiou_thresholds, matching.classes, matching.pred_order
    matched = matching.ranked_matched_gt
    ranked_tp = matched >= 0
    ranked_fp = ~ranked_tp
    npos_per_class = matching.num_ground_truth_per_class
    # left-out predictions count as neither: the cumulative counts repeat the previous point there,
    # which changes no recall step, so the AP equals that of the list without them
    if dropped is not None or counted_gt is not None:
        keep = np.ones(matched.shape, dtype=bool)
        if dropped is not None:
            keep &= ~np.broadcast_to(np.asarray(dropped, dtype=bool), matched.shape)[:, order]
        if counted_gt is not None:
            counted_gt = np.asarray(counted_gt, dtype=bool)
            npos_per_class = np.bincount(matching.gt_class[counted_gt], minlength=classes.size)
            keep &= ~ranked_tp | counted_gt[np.maximum(matched, 0)]
        ranked_tp, ranked_fp = ranked_tp & keep, ranked_fp & keep
    class_bounds = np.searchsorted(matching.pred_class[order], np.arange(classes.size + 1))
    ap = np.full((thresholds.size, classes.size), np.nan)
    for ci in range(classes.size):
        npos = float(npos_per_class[ci])
        if npos == 0:
            continue
        lo, hi = class_bounds[ci], class_bounds[ci + 1]
        tp_cum = np.cumsum(ranked_tp[:, lo:hi], axis=1).astype(np.float64)
        fp_cum = np.cumsum(ranked_fp[:, lo:hi], axis=1).astype(np.float64)
        recall = tp_cum / npos
        positives = tp_cum if normalized_positives is None else recall * normalized_positives
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(positives + fp_cum > 0, positives / (positives + fp_cum), 0.0)
        for ti in range(thresholds.size):
            ap[ti, ci] = interpolated_average_precision(precision[ti], recall[ti])
    return ap


def _greedy_match(
    p_block: np.ndarray,
    p_start: np.ndarray,
    p_end: np.ndarray,
    gt_block: np.ndarray,
    gt_start: np.ndarray,
    gt_end: np.ndarray,
    thresholds: np.ndarray,
    protocol: str,
) -> np.ndarray:
    """Greedy matching of ranked predictions to ground truth at every threshold.

    Args:
        p_block: (N,) block id (class * V + video) of each prediction, predictions in visiting
            order within each block.
        p_start, p_end: (N,) prediction segments.
        gt_block: (M,) block id of each ground-truth segment, sorted ascending.
        gt_start, gt_end: (M,) ground-truth segments in the same order.
        thresholds: (T,) tIoU thresholds.
    Returns:
        (T, N) int: the position (in the ground-truth arrays) of the segment each prediction
        matched at that threshold, -1 where it is a false positive.
    """
    num_thresholds, num_pred = thresholds.size, p_block.size
    matched_slot = np.full((num_thresholds, num_pred), -1, dtype=np.int64)
    first = np.searchsorted(gt_block, p_block, side="left")
    count = np.searchsorted(gt_block, p_block, side="right") - first
    candidates = np.flatnonzero(count > 0)
    if candidates.size == 0:
        return matched_slot

    # rank of each candidate prediction within its block (blocks keep visiting order)
    by_block = candidates[np.argsort(p_block[candidates], kind="stable")]
    sorted_blocks = p_block[by_block]
    run_start = np.flatnonzero(np.r_[True, sorted_blocks[1:] != sorted_blocks[:-1]])
    run_length = np.diff(np.r_[run_start, sorted_blocks.size])
    rank_in_block = np.arange(sorted_blocks.size) - np.repeat(run_start, run_length)

    # (candidate, slot) padded view of each prediction's ground truth; -inf marks empty slots
    max_gt = int(count[candidates].max())
    slots = np.arange(max_gt)
    gt_index = first[by_block, None] + slots
    present = slots < count[by_block, None]
    gt_index = np.where(present, gt_index, 0)
    tiou = _tiou(
        p_start[by_block, None], p_end[by_block, None], gt_start[gt_index], gt_end[gt_index], protocol
    )
    tiou = np.where(present, tiou, -np.inf)

    locked = np.zeros((num_thresholds, gt_block.size), dtype=bool)
    round_order = np.argsort(rank_in_block, kind="stable")
    round_bounds = np.searchsorted(rank_in_block[round_order], np.arange(rank_in_block.max() + 2))
    thr = thresholds[:, None, None]
    for r in range(round_bounds.size - 1):
        members = round_order[round_bounds[r] : round_bounds[r + 1]]  # one per block
        idx = gt_index[members]  # (k, G)
        tiou_r = tiou[members]  # (k, G)
        eligible = ~locked[:, idx] & (tiou_r[None] >= thr)  # (T, k, G)
        best = np.where(eligible, tiou_r[None], -np.inf)
        # highest tIoU; among equal tIoUs the later ground-truth slot
        slot = max_gt - 1 - np.argmax(best[:, :, ::-1], axis=2)  # (T, k)
        matched = eligible.any(axis=2)  # (T, k)
        t_hit, k_hit = np.nonzero(matched)
        hit_gt = idx[k_hit, slot[t_hit, k_hit]]
        matched_slot[t_hit, by_block[members][k_hit]] = hit_gt
        locked[t_hit, hit_gt] = True
    return matched_slot
