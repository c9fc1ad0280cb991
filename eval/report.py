"""Report tables (plain text) and plots (confusion heatmap PNG; matplotlib imported on use)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from eval.detection import DetectionResult, threshold_key
from eval.recognition import RecognitionResult


def _grid(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_detection_table(result: DetectionResult) -> str:
    """mAP (percent) per threshold, the average and mAP@0.5, plus the counts, as text."""
    header = ["tIoU"] + [threshold_key(t) for t in result.tiou_thresholds] + ["Average"]
    values = ["mAP"] + [f"{100 * m:.2f}" for m in result.mAP] + [f"{100 * result.average_mAP:.2f}"]
    lines = [f"Detection ({result.protocol} protocol)", _grid([header, values])]
    at_half = result.mAP_at(0.5)
    if at_half is not None:
        lines.append(f"mAP@0.5: {100 * at_half:.2f}")
    lines.append(
        f"predictions: {result.num_predictions}  ground truth: {result.num_ground_truth}  "
        f"classes evaluated: {len(result.per_class_ap)}"
    )
    if result.num_predictions_unknown_video:
        lines.append(
            f"predictions for videos absent from the ground truth (counted as false positives): "
            f"{result.num_predictions_unknown_video}"
        )
    if result.classes_without_ground_truth:
        lines.append(
            "classes without ground truth (left out of the mean): "
            + ", ".join(map(str, result.classes_without_ground_truth))
        )
    return "\n".join(lines)


def format_recognition_table(result: RecognitionResult) -> str:
    """The MA-52 metrics (percent) as text."""
    rows = [
        ["metric", "value"],
        ["Action Top-1", f"{100 * result.action_top1:.2f}"],
        ["Action Top-5", "-" if result.action_top5 is None else f"{100 * result.action_top5:.2f}"],
        ["Body Top-1", f"{100 * result.body_top1:.2f}"],
        ["Action F1 macro", f"{100 * result.action_f1_macro:.2f}"],
        ["Action F1 micro", f"{100 * result.action_f1_micro:.2f}"],
        ["Body F1 macro", f"{100 * result.body_f1_macro:.2f}"],
        ["Body F1 micro", f"{100 * result.body_f1_micro:.2f}"],
        ["F1mean", f"{100 * result.f1_mean:.2f}"],
        ["Mean class accuracy", f"{100 * result.mean_class_accuracy:.2f}"],
    ]
    return f"Recognition ({result.num_samples} samples)\n" + _grid(rows)


def save_confusion_heatmap(
    path: str | os.PathLike,
    confusion: np.ndarray,
    *,
    class_names: Sequence[str] | None = None,
    normalize: bool = True,
    title: str = "Confusion matrix",
) -> Path:
    """Draw a (C, C) confusion matrix (rows true, columns predicted) to a PNG file.

    Args:
        normalize: show each row as fractions of its class (rows without samples stay 0).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    confusion = np.asarray(confusion, dtype=np.float64)
    if normalize:
        support = confusion.sum(axis=1, keepdims=True)
        confusion = np.divide(confusion, support, out=np.zeros_like(confusion), where=support > 0)
    num_classes = confusion.shape[0]
    size = max(4.0, 0.18 * num_classes + 2.0)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    try:
        image = ax.imshow(confusion, interpolation="nearest", cmap="viridis")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        ticks = np.arange(num_classes)
        labels = list(class_names) if class_names is not None else [str(c) for c in ticks]
        font = 8 if num_classes <= 20 else 5
        ax.set_xticks(ticks, labels, rotation=90, fontsize=font)
        ax.set_yticks(ticks, labels, fontsize=font)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)
    return path
