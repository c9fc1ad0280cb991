"""Why detection mAP is what it is: AP by instance characteristic, false-positive profile, boundary errors.

The analysis follows DETAD (Alwassel et al., ECCV 2018), written for multi-label data where
instances of different classes overlap in time. Every number is built on the matching of
:func:`eval.detection.match_detections`, the one :func:`~eval.detection.evaluate_detection` scores
(same protocol, same tIoU, same greedy matching, same AP interpolation).

**AP by characteristic.** Each ground-truth instance gets four characteristics:

- duration ``t_end - t_start`` in seconds, binned ``< 1``, ``1-2``, ``2-4``, ``4-8``, ``>= 8`` (a bin
  holds durations ``lo <= d < hi``);
- overlap degree: how many *other* ground-truth instances of the same video (any class) share
  some time with it (intersection > 0): ``0``, ``1``, ``2+``;
- body group of its class (when a class -> group table is given, e.g. MA-52's seven groups);
- same-class overlap: whether another instance of the *same* class in the same video shares time
  with it.

AP of a bin at threshold t, as DETAD computes it: the predictions are matched against *all*
ground truth (so the matching is the official one); then only the bin's instances count as
positives (``npos`` of a class = its instances in the bin), a prediction matched to an instance
*outside* the bin is left out (it is neither a true nor a false positive), and every unmatched
prediction stays a false positive. A bin's mAP is the mean over the classes with at least one
instance in the bin; each bin is reported with its instance count. Because every bin keeps all
false positives, a bin with few instances has a low precision for that reason alone; the
normalized mAP_N (DETAD's precision ``recall * N / (recall * N + FP)`` with N the average number of
instances per class over the whole set) is reported beside it to compare bins of different size.

**False-positive profile.** All predictions are ranked by score (descending; among equal scores
the later row first, as in the AP ranking). At threshold t each prediction gets exactly one type,
the first that applies:

1. ``true_positive``: matched by the official matching;
2. ``double_detection``: tIoU >= t with an instance of its class in its video (that instance was
   already taken by a higher-scored prediction, or it would have been matched);
3. ``wrong_label``: tIoU >= t with an instance of another class (right segment, wrong class);
4. ``localization``: 0.1 <= tIoU < t with an instance of its class;
5. ``confusion``: 0.1 <= tIoU < t with an instance of another class, i.e. it fires on a moment where
   another action is present;
6. ``background``: tIoU < 0.1 with every instance of its video (or a video without ground truth).

The profile counts the types among the top ``k x G`` predictions (G ground-truth instances), for
``k = 1..top_k``, at the reference threshold (0.5 when evaluated). The mAP gain of an error type is
the average mAP (over all thresholds) after removing every prediction of that type (classified at
each threshold) minus the average mAP; removing false positives leaves the matching of the
others unchanged, so a gain is never negative.

**Boundary errors.** For each prediction matched at the reference threshold: onset error
``pred.t_start - gt.t_start`` and offset error ``pred.t_end - gt.t_end`` in seconds (positive =
late), summarized by signed mean, median, standard deviation and mean absolute value.

numpy/pandas only; matplotlib is imported when plotting.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from eval.detection import (
    DEFAULT_TIOU_THRESHOLDS,
    DetectionMatching,
    class_average_precision,
    match_detections,
    segment_tiou,
    threshold_key,
)

DURATION_EDGES: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0, 8.0, np.inf)
DURATION_BINS: tuple[str, ...] = ("<1 s", "1-2 s", "2-4 s", "4-8 s", ">=8 s")
OVERLAP_BINS: tuple[str, ...] = ("0", "1", "2+")
SAME_CLASS_BINS: tuple[str, ...] = ("no", "yes")
ERROR_TYPES: tuple[str, ...] = (
    "true_positive", "double_detection", "wrong_label", "localization", "confusion", "background",
)
FALSE_POSITIVE_TYPES: tuple[str, ...] = ERROR_TYPES[1:]
LOCALIZATION_FLOOR = 0.1  # tIoU under which a prediction does not touch an instance at all


@dataclass
class DetectionDiagnosis:
    """The diagnosis of one prediction set (see the module text for every definition).

    Attributes:
        tiou_thresholds: (T,) thresholds.
        reference_tiou: the threshold of the false-positive profile and the boundary errors.
        instances: one row per ground-truth instance: ``video_id, t_start, t_end, label,
            duration, overlap_degree, same_class_overlap`` (+ ``body_group`` when known) and the
            bin of each characteristic.
        bins: one row per (characteristic, bin): ``characteristic, bin, instances, classes,
            mAP@<t>..., mAP, mAP_N``.
        error_types: (N,) type name of each prediction row at the reference threshold.
        false_positive_profile: one row per ``k``: ``top, predictions`` and the fraction of each type.
        error_counts: one row per threshold: the count of each type among the top ``top_k x G``.
        map_gain: error type -> average-mAP gain when its predictions are removed.
        boundary_errors: one row per matched prediction at the reference threshold:
            ``video_id, label, onset_error, offset_error``.
        average_mAP: the plain average mAP (what :func:`evaluate_detection` reports).
        top_k: k of the profile.
    """

    tiou_thresholds: np.ndarray
    reference_tiou: float
    instances: pd.DataFrame
    bins: pd.DataFrame
    error_types: np.ndarray
    false_positive_profile: pd.DataFrame
    error_counts: pd.DataFrame
    map_gain: dict[str, float]
    boundary_errors: pd.DataFrame
    average_mAP: float  # noqa: N815
    top_k: int

    def boundary_summary(self) -> pd.DataFrame:
        """Rows onset, offset: ``matched, mean, median, std, mean_abs`` in seconds."""
        rows = []
        for name in ("onset", "offset"):
            err = self.boundary_errors[f"{name}_error"].to_numpy(dtype=np.float64)
            stats = (np.mean(err), np.median(err), np.std(err), np.mean(np.abs(err))) if err.size else (np.nan,) * 4
            rows.append({"boundary": name, "matched": int(err.size), **dict(zip(("mean", "median", "std", "mean_abs"),
                                                                                 map(float, stats)))})
        return pd.DataFrame(rows)

    def to_dict(self) -> dict:
        """Everything but the per-instance and per-prediction rows, as plain JSON types."""
        return {
            "tiou_thresholds": [float(t) for t in self.tiou_thresholds],
            "reference_tiou": self.reference_tiou,
            "average_mAP": self.average_mAP,
            "top_k": self.top_k,
            "bins": json.loads(self.bins.to_json(orient="records")),
            "false_positive_profile": json.loads(self.false_positive_profile.to_json(orient="records")),
            "error_counts": json.loads(self.error_counts.to_json(orient="records")),
            "map_gain": self.map_gain,
            "boundary_errors": json.loads(self.boundary_summary().to_json(orient="records")),
        }


def _overlaps(video: np.ndarray, start: np.ndarray, end: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per instance: how many other instances of its video share time with it, and whether one has its class."""
    degree = np.zeros(video.size, dtype=np.int64)
    same = np.zeros(video.size, dtype=bool)
    for v in np.unique(video):
        rows = np.flatnonzero(video == v)
        inter = np.minimum(end[rows, None], end[None, rows]) - np.maximum(start[rows, None], start[None, rows])
        touching = inter > 0
        np.fill_diagonal(touching, False)
        degree[rows] = touching.sum(axis=1)
        same[rows] = (touching & (label[rows, None] == label[None, rows])).any(axis=1)
    return degree, same


def instance_characteristics(
    ground_truth: pd.DataFrame, *, body_of_action: np.ndarray | None = None, body_names: Sequence[str] | None = None
) -> pd.DataFrame:
    """The characteristics and bins of every ground-truth instance (module text), rows in table order."""
    table = ground_truth[["video_id", "t_start", "t_end", "label"]].copy().reset_index(drop=True)
    table["video_id"] = table["video_id"].astype(str)
    start, end = table["t_start"].to_numpy(np.float64), table["t_end"].to_numpy(np.float64)
    label = table["label"].to_numpy(np.int64)
    table["duration"] = end - start
    degree, same = _overlaps(table["video_id"].to_numpy(), start, end, label)
    table["overlap_degree"] = degree
    table["same_class_overlap"] = same
    table["duration_bin"] = [DURATION_BINS[i] for i in np.searchsorted(DURATION_EDGES, table["duration"], "right") - 1]
    table["overlap_bin"] = [OVERLAP_BINS[min(d, 2)] for d in degree]
    table["same_class_bin"] = [SAME_CLASS_BINS[int(s)] for s in same]
    if body_of_action is not None:
        groups = np.asarray(body_of_action)[label]
        table["body_group"] = [body_names[g] if body_names is not None else str(g) for g in groups]
    return table


def classify_predictions(
    matching: DetectionMatching, ground_truth: pd.DataFrame, predictions: pd.DataFrame
) -> np.ndarray:
    """(T, N) index into :data:`ERROR_TYPES` of every prediction row at every threshold (module text)."""
    thresholds = matching.tiou_thresholds
    num_pred = len(predictions)
    same_best = np.zeros(num_pred)
    other_best = np.zeros(num_pred)
    gt_video = ground_truth["video_id"].astype(str).to_numpy()
    gt_seg = ground_truth[["t_start", "t_end"]].to_numpy(np.float64)
    gt_label = ground_truth["label"].to_numpy(np.int64)
    pred_video = predictions["video_id"].astype(str).to_numpy()
    pred_seg = predictions[["t_start", "t_end"]].to_numpy(np.float64)
    pred_label = predictions["label"].to_numpy(np.int64)
    for v in np.unique(pred_video):
        p_rows, g_rows = np.flatnonzero(pred_video == v), np.flatnonzero(gt_video == v)
        if g_rows.size == 0:
            continue
        tiou = segment_tiou(pred_seg[p_rows], gt_seg[g_rows], protocol=matching.protocol)  # (n, m)
        same = pred_label[p_rows, None] == gt_label[None, g_rows]
        same_best[p_rows] = np.where(same, tiou, 0.0).max(axis=1)
        other_best[p_rows] = np.where(~same, tiou, 0.0).max(axis=1)
    types = np.empty((thresholds.size, num_pred), dtype=np.int64)
    matched = matching.matched_gt
    for ti, t in enumerate(thresholds):
        conditions = [
            matched[ti] >= 0,
            same_best >= t,
            other_best >= t,
            same_best >= LOCALIZATION_FLOOR,
            other_best >= LOCALIZATION_FLOOR,
        ]
        types[ti] = np.select(conditions, np.arange(5), default=5)
    return types


def _global_rank(predictions: pd.DataFrame) -> np.ndarray:
    """Prediction rows by descending score, the later row first among equal scores."""
    rows = np.arange(len(predictions))
    return np.lexsort((-rows, -predictions["score"].to_numpy(np.float64)))


def _reference_index(thresholds: np.ndarray, reference: float) -> int:
    hits = np.flatnonzero(np.abs(thresholds - reference) < 1e-9)
    return int(hits[0]) if hits.size else int(np.argmin(np.abs(thresholds - reference)))


def _mean_over_classes(ap: np.ndarray) -> np.ndarray:
    """(T, C) AP -> (T,) mean over classes with ground truth (NaN columns left out; NaN if none)."""
    evaluated = ~np.isnan(ap).all(axis=0)
    return ap[:, evaluated].mean(axis=1) if evaluated.any() else np.full(ap.shape[0], np.nan)


def diagnose_detection(
    ground_truth: pd.DataFrame,
    predictions: pd.DataFrame,
    *,
    tiou_thresholds: Sequence[float] | np.ndarray = DEFAULT_TIOU_THRESHOLDS,
    protocol: str = "mma52",
    num_classes: int | None = None,
    body_of_action: np.ndarray | None = None,
    body_names: Sequence[str] | None = None,
    top_k: int = 10,
    reference_tiou: float = 0.5,
) -> DetectionDiagnosis:
    """Diagnose predictions against ground truth (every definition is in the module text).

    Args:
        ground_truth: table ``video_id, t_start, t_end, label`` (seconds), M rows.
        predictions: table ``video_id, t_start, t_end, label, score``, N rows.
        tiou_thresholds, protocol, num_classes: as for :func:`eval.detection.evaluate_detection`.
        body_of_action: (C,) body-group index of each class id; None leaves the body-group bins out.
        body_names: names of the body groups (default: their indices).
        top_k: the profile covers the top ``k x M`` predictions for ``k = 1..top_k``.
        reference_tiou: threshold of the profile and the boundary errors (nearest evaluated one).
    Returns:
        :class:`DetectionDiagnosis`.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    ground_truth = ground_truth.reset_index(drop=True)
    predictions = predictions.reset_index(drop=True)
    matching = match_detections(ground_truth, predictions, tiou_thresholds=tiou_thresholds, protocol=protocol,
                                num_classes=num_classes)
    thresholds = matching.tiou_thresholds
    ref = _reference_index(thresholds, reference_tiou)
    base_map = _mean_over_classes(class_average_precision(matching))
    average_map = float(base_map.mean())

    # AP by characteristic
    instances = instance_characteristics(ground_truth, body_of_action=body_of_action, body_names=body_names)
    classes_with_gt = int(np.count_nonzero(matching.num_ground_truth_per_class))
    normalized_n = len(ground_truth) / max(classes_with_gt, 1)
    characteristics = [("duration", "duration_bin", DURATION_BINS), ("overlap degree", "overlap_bin", OVERLAP_BINS),
                       ("same-class overlap", "same_class_bin", SAME_CLASS_BINS)]
    if "body_group" in instances:
        present = set(instances["body_group"])
        names = [n for n in (body_names if body_names is not None else sorted(present)) if n in present]
        characteristics.insert(2, ("body group", "body_group", tuple(names)))
    rows = []
    for characteristic, column, bins in characteristics:
        for name in bins:
            in_bin = (instances[column] == name).to_numpy()
            row = {"characteristic": characteristic, "bin": name, "instances": int(in_bin.sum()),
                   "classes": int(np.unique(instances["label"][in_bin]).size)}
            if in_bin.any():
                m = _mean_over_classes(class_average_precision(matching, counted_gt=in_bin))
                m_n = _mean_over_classes(class_average_precision(matching, counted_gt=in_bin,
                                                                 normalized_positives=normalized_n))
                row.update({f"mAP@{threshold_key(t)}": float(v) for t, v in zip(thresholds, m)})
                row["mAP"], row["mAP_N"] = float(m.mean()), float(m_n.mean())
            else:
                row.update({f"mAP@{threshold_key(t)}": np.nan for t in thresholds})
                row["mAP"] = row["mAP_N"] = np.nan
            rows.append(row)
    bins_table = pd.DataFrame(rows)

    # false-positive profile
    types = classify_predictions(matching, ground_truth, predictions)  # (T, N)
    ranked = _global_rank(predictions)
    num_gt = len(ground_truth)
    profile_rows = []
    for k in range(1, top_k + 1):
        top = types[ref, ranked[: k * num_gt]]
        counts = np.bincount(top, minlength=len(ERROR_TYPES))
        profile_rows.append({"top": f"{k}G", "predictions": int(top.size),
                             **{n: (float(c / top.size) if top.size else np.nan) for n, c in zip(ERROR_TYPES, counts)}})
    count_rows = []
    for ti, t in enumerate(thresholds):
        counts = np.bincount(types[ti, ranked[: top_k * num_gt]], minlength=len(ERROR_TYPES))
        count_rows.append({"tIoU": threshold_key(t), **{n: int(c) for n, c in zip(ERROR_TYPES, counts)}})
    gains = {}
    for code, name in enumerate(ERROR_TYPES):
        if code == 0:
            continue
        fixed = _mean_over_classes(class_average_precision(matching, dropped=types == code))
        gains[name] = float(fixed.mean() - average_map)

    # boundary errors at the reference threshold
    matched_rows = np.flatnonzero(matching.matched_gt[ref] >= 0)
    gt_rows = matching.matched_gt[ref, matched_rows]
    boundary = pd.DataFrame({
        "video_id": predictions["video_id"].astype(str).to_numpy()[matched_rows],
        "label": predictions["label"].to_numpy(np.int64)[matched_rows],
        "onset_error": predictions["t_start"].to_numpy(np.float64)[matched_rows]
        - ground_truth["t_start"].to_numpy(np.float64)[gt_rows],
        "offset_error": predictions["t_end"].to_numpy(np.float64)[matched_rows]
        - ground_truth["t_end"].to_numpy(np.float64)[gt_rows],
    })
    return DetectionDiagnosis(
        tiou_thresholds=thresholds, reference_tiou=float(thresholds[ref]), instances=instances, bins=bins_table,
        error_types=np.asarray(ERROR_TYPES)[types[ref]], false_positive_profile=pd.DataFrame(profile_rows),
        error_counts=pd.DataFrame(count_rows), map_gain=gains, boundary_errors=boundary, average_mAP=average_map,
        top_k=top_k,
    )


# ----------------------------------------------------------------------------------------- text and files


def _percent(value) -> str:
    return "-" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{100 * float(value):.2f}"


def _markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def diagnosis_markdown(diagnosis: DetectionDiagnosis) -> str:
    """The tables of a diagnosis as Markdown (numbers in percent, times in seconds)."""
    ref = threshold_key(diagnosis.reference_tiou)
    lines = [f"Average mAP {_percent(diagnosis.average_mAP)}%.", "",
             "**AP by instance characteristic** (mAP averaged over the tIoU thresholds; mAP_N: normalized precision):",
             ""]
    rows = [[r.characteristic, r.bin, r.instances, _percent(r.mAP), _percent(r.mAP_at_ref), _percent(r.mAP_N)]
            for r in diagnosis.bins.assign(mAP_at_ref=diagnosis.bins.get(f"mAP@{ref}")).itertuples()]
    lines += [_markdown_table(["characteristic", "bin", "instances", "mAP", f"mAP@{ref}", "mAP_N"], rows), ""]
    last = diagnosis.false_positive_profile.iloc[-1]
    lines += [f"**Predictions by type** (top {last['top']} = {last['predictions']} predictions at tIoU {ref}) "
              "and the average-mAP gain if that type were removed:", ""]
    rows = [[name.replace("_", " "), _percent(last[name]),
             "" if name == "true_positive" else f"+{_percent(diagnosis.map_gain[name])}"] for name in ERROR_TYPES]
    lines += [_markdown_table(["type", "share (%)", "mAP gain (points)"], rows), ""]
    summary = diagnosis.boundary_summary()
    lines += [f"**Boundary errors** of the predictions matched at tIoU {ref} (seconds, positive = late):", ""]
    def seconds(value: float, sign: str = "") -> str:
        return "-" if np.isnan(value) else f"{value:{sign}.3f}"

    rows = [[r.boundary, r.matched, seconds(r.mean, "+"), seconds(r.median, "+"), seconds(r.std), seconds(r.mean_abs)]
            for r in summary.itertuples()]
    lines += [_markdown_table(["boundary", "matched", "mean", "median", "std", "mean abs"], rows), ""]
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _pyplot()
    try:
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return path


ERROR_COLOURS = {"true_positive": "#4c9f50", "double_detection": "#8e6bbf", "wrong_label": "#e0a030",
                 "localization": "#4a86c5", "confusion": "#d4624e", "background": "#9a9a9a"}


def plot_characteristics(diagnosis: DetectionDiagnosis, path: str | os.PathLike) -> Path:
    """One panel per characteristic: mAP and mAP_N per bin, instance counts under the bars."""
    plt = _pyplot()
    groups = list(dict.fromkeys(diagnosis.bins["characteristic"]))
    sizes = [int((diagnosis.bins["characteristic"] == g).sum()) for g in groups]
    fig, axes = plt.subplots(1, len(groups), figsize=(2.2 + 0.75 * sum(sizes), 3.6),
                             gridspec_kw={"width_ratios": sizes}, squeeze=False)
    for ax, group in zip(axes[0], groups):
        table = diagnosis.bins[diagnosis.bins["characteristic"] == group]
        x = np.arange(len(table))
        # an empty bin has NaN: no bar (not a bar at 0)
        ax.bar(x - 0.2, table["mAP"] * 100, 0.4, label="mAP", color="#4a86c5")
        ax.bar(x + 0.2, table["mAP_N"] * 100, 0.4, label="mAP_N", color="#a8c8e8")
        ax.axhline(diagnosis.average_mAP * 100, color="k", ls="--", lw=0.8, label="all instances")
        ax.set_xticks(x, [f"{b}\n({n})" for b, n in zip(table["bin"], table["instances"])], fontsize=7,
                      rotation=30 if len(table) > 4 else 0)
        ax.set_ylim(0, 100)
        ax.set_title(group, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("average mAP (%)")
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.suptitle("AP by instance characteristic (instances in brackets)", fontsize=10)
    return _save(fig, Path(path))


def plot_false_positive_profile(diagnosis: DetectionDiagnosis, path: str | os.PathLike) -> Path:
    """Left: stacked shares of each type in the top 1G..kG predictions; right: mAP gain per removed type."""
    plt = _pyplot()
    profile = diagnosis.false_positive_profile
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.4), gridspec_kw={"width_ratios": [3, 2]})
    bottom = np.zeros(len(profile))
    for name in ERROR_TYPES:
        values = profile[name].fillna(0).to_numpy() * 100
        left.bar(profile["top"], values, bottom=bottom, color=ERROR_COLOURS[name], label=name.replace("_", " "))
        bottom += values
    left.set_ylabel("share of predictions (%)")
    left.set_xlabel("top predictions (G = number of ground-truth instances)")
    left.set_title(f"False-positive profile at tIoU {threshold_key(diagnosis.reference_tiou)}", fontsize=10)
    left.set_ylim(0, 100)
    left.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3)
    names = list(FALSE_POSITIVE_TYPES)
    gains = [diagnosis.map_gain[n] * 100 for n in names]
    right.barh(np.arange(len(names)), gains, color=[ERROR_COLOURS[n] for n in names])
    right.set_yticks(np.arange(len(names)), [n.replace("_", " ") for n in names], fontsize=8)
    right.invert_yaxis()
    right.set_xlabel("average-mAP gain (points)")
    right.set_title("If this error type were removed", fontsize=10)
    for i, g in enumerate(gains):
        right.text(g, i, f" +{g:.2f}", va="center", fontsize=7)
    right.grid(axis="x", alpha=0.3)
    return _save(fig, Path(path))


def plot_boundary_errors(diagnosis: DetectionDiagnosis, path: str | os.PathLike) -> Path:
    """Histograms of the onset and offset errors of the matched predictions, mean and median marked."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for ax, name in zip(axes, ("onset", "offset")):
        err = diagnosis.boundary_errors[f"{name}_error"].to_numpy(np.float64)
        if err.size:
            ax.hist(err, bins=min(40, max(5, err.size // 4)), color="#4a86c5", alpha=0.85)
            ax.axvline(np.mean(err), color="#d4624e", label=f"mean {np.mean(err):+.3f} s")
            ax.axvline(np.median(err), color="k", ls="--", label=f"median {np.median(err):+.3f} s")
            ax.legend(fontsize=7)
        ax.axvline(0, color="grey", lw=0.6)
        ax.set_xlabel(f"{name} error (s, positive = late)")
        ax.set_title(f"{name} ({err.size} matched at tIoU {threshold_key(diagnosis.reference_tiou)})", fontsize=9)
    axes[0].set_ylabel("predictions")
    return _save(fig, Path(path))


def write_diagnosis(diagnosis: DetectionDiagnosis, out: str | os.PathLike) -> dict[str, Path]:
    """Write the tables (CSV, JSON, Markdown) and the three plots into the folder ``out``.

    Files: ``diagnosis.json``, ``diagnosis.md``, ``ap_by_characteristic.csv``,
    ``false_positive_profile.csv``, ``error_counts.csv``, ``boundary_errors.csv`` and
    ``ap_by_characteristic.png``, ``false_positive_profile.png``, ``boundary_errors.png``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "json": out / "diagnosis.json", "markdown": out / "diagnosis.md",
        "bins": out / "ap_by_characteristic.csv", "profile": out / "false_positive_profile.csv",
        "counts": out / "error_counts.csv", "boundary": out / "boundary_errors.csv",
    }
    files["json"].write_text(json.dumps(diagnosis.to_dict(), indent=2) + "\n", encoding="utf-8")
    files["markdown"].write_text(diagnosis_markdown(diagnosis), encoding="utf-8")
    diagnosis.bins.to_csv(files["bins"], index=False, float_format="%.4f")
    diagnosis.false_positive_profile.to_csv(files["profile"], index=False, float_format="%.4f")
    diagnosis.error_counts.to_csv(files["counts"], index=False)
    diagnosis.boundary_errors.to_csv(files["boundary"], index=False, float_format="%.4f")
    files["characteristics_plot"] = plot_characteristics(diagnosis, out / "ap_by_characteristic.png")
    files["profile_plot"] = plot_false_positive_profile(diagnosis, out / "false_positive_profile.png")
    files["boundary_plot"] = plot_boundary_errors(diagnosis, out / "boundary_errors.png")
    return files
