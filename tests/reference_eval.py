"""Plain per-prediction loop references for the detection metrics.

``reference_detection_ap`` follows the official MMA-52 evaluation (ActivityNet's
``compute_average_precision_detection``) statement by statement: per class, sort the predictions by
``argsort()[::-1]``, for each prediction look up its video's ground truth, sort that by tIoU with
``argsort()[::-1]``, take the first unlocked segment at or above the threshold, then cumulative
sums and VOC-2011 interpolation with an explicit loop. Sorts use ``kind="stable"`` so the order of
ties is reproducible (see ``eval.detection`` for why). It is slow on purpose: it is the yardstick
that the vectorised ``eval.detection.evaluate_detection`` must equal.

``official_style_map`` keeps the official script's pandas shape (a DataFrame per class,
``groupby('video-id').get_group``, ``iterrows``) for small inputs such as the real validation set
with a few thousand predictions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def reference_segment_iou(target_segment, candidate_segments, union_epsilon):
    """tIoU of one segment with N candidates, in the official order of operations."""
    tt1 = np.maximum(target_segment[0], candidate_segments[:, 0])
    tt2 = np.minimum(target_segment[1], candidate_segments[:, 1])
    intersection = (tt2 - tt1).clip(0)
    union = (candidate_segments[:, 1] - candidate_segments[:, 0]) + (
        target_segment[1] - target_segment[0]
    ) - intersection
    if union_epsilon is None:
        out = np.zeros_like(intersection, dtype=float)
        nonzero = union > 0
        out[nonzero] = intersection[nonzero].astype(float) / union[nonzero]
        return out
    return intersection.astype(float) / (union + union_epsilon)


def reference_interpolated_ap(prec, rec):
    """VOC 2011 all-point AP with the explicit right-to-left maximum loop."""
    mprec = np.hstack([[0], prec, [0]])
    mrec = np.hstack([[0], rec, [1]])
    for i in range(len(mprec) - 1)[::-1]:
        mprec[i] = max(mprec[i], mprec[i + 1])
    idx = np.where(mrec[1::] != mrec[0:-1])[0] + 1
    return np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx])


def _class_ap(gt_by_video, npos, pred_video, pred_seg, pred_score, thresholds, union_epsilon):
    sort_idx = pred_score.argsort(kind="stable")[::-1]
    tp = np.zeros((len(thresholds), len(sort_idx)))
    fp = np.zeros((len(thresholds), len(sort_idx)))
    lock = {}  # (threshold index, video, gt position) -> prediction index
    for idx, p in enumerate(sort_idx):
        this_gt = gt_by_video.get(pred_video[p])
        if this_gt is None:
            fp[:, idx] = 1
            continue
        tiou_arr = reference_segment_iou(pred_seg[p], this_gt, union_epsilon)
        tiou_sorted_idx = tiou_arr.argsort(kind="stable")[::-1]
        for tidx, tiou_thr in enumerate(thresholds):
            for jdx in tiou_sorted_idx:
                if tiou_arr[jdx] < tiou_thr:
                    fp[tidx, idx] = 1
                    break
                if (tidx, pred_video[p], jdx) in lock:
                    continue
                tp[tidx, idx] = 1
                lock[(tidx, pred_video[p], jdx)] = idx
                break
            if fp[tidx, idx] == 0 and tp[tidx, idx] == 0:
                fp[tidx, idx] = 1
    ap = np.zeros(len(thresholds))
    for tidx in range(len(thresholds)):
        this_tp = np.cumsum(tp[tidx, :]).astype(np.float64)
        this_fp = np.cumsum(fp[tidx, :]).astype(np.float64)
        rec = this_tp / npos
        prec = this_tp / (this_tp + this_fp)
        ap[tidx] = reference_interpolated_ap(prec, rec)
    return ap


def reference_detection_ap(ground_truth, predictions, *, tiou_thresholds, classes, protocol="mma52"):
    """(T, C) AP by the official per-prediction loop; NaN columns for classes without ground truth.

    ``ground_truth``: DataFrame video_id, t_start, t_end, label; ``predictions`` adds score.
    """
    union_epsilon = 1e-4 if protocol == "mma52" else None
    thresholds = np.asarray(tiou_thresholds, dtype=float)
    ap = np.full((len(thresholds), len(classes)), np.nan)
    gt_video = ground_truth["video_id"].astype(str).to_numpy()
    gt_seg = ground_truth[["t_start", "t_end"]].to_numpy(dtype=float)
    gt_label = ground_truth["label"].to_numpy()
    pred_video = predictions["video_id"].astype(str).to_numpy()
    pred_seg = predictions[["t_start", "t_end"]].to_numpy(dtype=float)
    pred_label = predictions["label"].to_numpy()
    pred_score = predictions["score"].to_numpy(dtype=float)
    for ci, c in enumerate(classes):
        gt_rows = np.flatnonzero(gt_label == c)
        if gt_rows.size == 0:
            continue
        gt_by_video = {}
        for r in gt_rows:
            gt_by_video.setdefault(gt_video[r], []).append(gt_seg[r])
        gt_by_video = {v: np.array(s) for v, s in gt_by_video.items()}
        rows = np.flatnonzero(pred_label == c)
        ap[:, ci] = _class_ap(
            gt_by_video, float(gt_rows.size), pred_video[rows], pred_seg[rows], pred_score[rows],
            thresholds, union_epsilon,
        )
    return ap


def official_style_map(gt_df, pred_df, *, num_classes=52, tiou_thresholds=None):
    """The official MMA-52 script's data flow (``protocol="mma52"``): returns (T, C) AP.

    ``gt_df`` columns ``video-id, label, t-start, t-end``; ``pred_df`` adds ``score``.
    """
    if tiou_thresholds is None:
        tiou_thresholds = np.arange(0.1, 1.0, 0.1)
    ap = np.zeros((len(tiou_thresholds), num_classes))
    for cidx in range(num_classes):
        gt = gt_df.loc[gt_df["label"] == cidx].reset_index(drop=True)
        pred = pred_df.loc[pred_df["label"] == cidx].reset_index(drop=True)
        ap[:, cidx] = _official_style_class(gt, pred, tiou_thresholds)
    return ap


def _official_style_class(ground_truth, prediction, tiou_thresholds):
    npos = float(len(ground_truth))
    lock_gt = np.ones((len(tiou_thresholds), len(ground_truth))) * -1
    sort_idx = prediction["score"].values.argsort(kind="stable")[::-1]
    prediction = prediction.loc[sort_idx].reset_index(drop=True)
    tp = np.zeros((len(tiou_thresholds), len(prediction)))
    fp = np.zeros((len(tiou_thresholds), len(prediction)))
    ground_truth_gbvn = ground_truth.groupby("video-id")
    for idx, this_pred in prediction.iterrows():
        try:
            ground_truth_videoid = ground_truth_gbvn.get_group(this_pred["video-id"])
        except KeyError:
            fp[:, idx] = 1
            continue
        this_gt = ground_truth_videoid.reset_index()
        tiou_arr = reference_segment_iou(
            this_pred[["t-start", "t-end"]].values.astype(float),
            this_gt[["t-start", "t-end"]].values.astype(float),
            1e-4,
        )
        tiou_sorted_idx = tiou_arr.argsort(kind="stable")[::-1]
        for tidx, tiou_thr in enumerate(tiou_thresholds):
            for jdx in tiou_sorted_idx:
                if tiou_arr[jdx] < tiou_thr:
                    fp[tidx, idx] = 1
                    break
                if lock_gt[tidx, this_gt.loc[jdx]["index"]] >= 0:
                    continue
                tp[tidx, idx] = 1
                lock_gt[tidx, this_gt.loc[jdx]["index"]] = idx
                break
            if fp[tidx, idx] == 0 and tp[tidx, idx] == 0:
                fp[tidx, idx] = 1
    ap = np.zeros(len(tiou_thresholds))
    for tidx in range(len(tiou_thresholds)):
        this_tp = np.cumsum(tp[tidx, :]).astype(np.float64)
        this_fp = np.cumsum(fp[tidx, :]).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            rec = this_tp / npos
            prec = this_tp / (this_tp + this_fp)
        ap[tidx] = reference_interpolated_ap(prec, rec)
    return ap


def to_official_frames(ground_truth: pd.DataFrame, predictions: pd.DataFrame):
    """Rename the toolkit's columns to the official script's (``video-id``, ``t-start``, ...)."""
    names = {"video_id": "video-id", "t_start": "t-start", "t_end": "t-end"}
    return ground_truth.rename(columns=names), predictions.rename(columns=names)
