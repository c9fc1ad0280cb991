"""What the routing learned, and which classes each path serves (the paper's Fig. 5).

- :func:`routing_by_class`: for every class and entity the mean routing weights (alpha_ST,
  alpha_TS) over the clips of that class, from :class:`recognition.task.Predictions`.
- :func:`per_class_comparison`: per-class accuracy of several models (e.g. ST-only, TS-only and
  dual) side by side.
- :func:`group_accuracy`: accuracy over named groups of classes (e.g. MicroPuppet's position- and
  motion-defined classes).
- :func:`interpret`: all of it for a checkpoint (and the ones to compare with), written as CSV
  and PNG files; ``mmad recognition interpret`` calls it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from recognition.config import RecognitionConfig
from recognition.task import Predictions, class_names_of, predict

__all__ = [
    "InterpretResult",
    "checkpoint_config",
    "group_accuracy",
    "interpret",
    "per_class_comparison",
    "routing_by_class",
    "save_comparison_plot",
    "save_routing_heatmap",
]


def routing_by_class(pred: Predictions, *, entity_names: Sequence[str], class_names: Sequence[str]) -> pd.DataFrame:
    """Mean routing weights per true class and entity.

    Args:
        pred: predictions with ``routing`` (N, K, 2) and ``labels`` (N,).
        entity_names: the K entity names.
        class_names: name of every class id.

    Returns:
        One row per class with labelled clips: ``class, name, samples`` and, per entity e,
        ``alpha_st/e`` and ``alpha_ts/e``.

    Raises:
        ValueError: the model has no routing weights (a single path or averaged paths).
    """
    if pred.routing is None:
        raise ValueError("these predictions carry no routing weights (the model does not route)")
    labelled = pred.labels >= 0
    labels, routing = pred.labels[labelled], pred.routing[labelled]
    rows = []
    for c in np.unique(labels):
        weights = routing[labels == c].mean(axis=0)  # (K, 2)
        row = {"class": int(c), "name": class_names[int(c)], "samples": int((labels == c).sum())}
        row.update({f"alpha_st/{e}": float(weights[k, 0]) for k, e in enumerate(entity_names)})
        row.update({f"alpha_ts/{e}": float(weights[k, 1]) for k, e in enumerate(entity_names)})
        rows.append(row)
    return pd.DataFrame(rows)


def _class_accuracy(pred: Predictions, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(C,) accuracy (NaN without samples) and (C,) sample counts over the labelled clips."""
    labelled = pred.labels >= 0
    labels = pred.labels[labelled]
    hits = pred.scores[labelled].argmax(axis=1) == labels
    counts = np.bincount(labels, minlength=num_classes)
    correct = np.bincount(labels, weights=hits.astype(np.float64), minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, correct / np.maximum(counts, 1), np.nan), counts


def per_class_comparison(predictions: Mapping[str, Predictions], *, class_names: Sequence[str]) -> pd.DataFrame:
    """Per-class Top-1 accuracy of several models on the same clips.

    Returns:
        One row per class with labelled clips: ``class, name, samples`` and one column per model.
    """
    num_classes = len(class_names)
    columns, counts = {}, None
    for model_name, pred in predictions.items():
        accuracy, n = _class_accuracy(pred, num_classes)
        columns[model_name] = accuracy
        counts = n if counts is None else counts
    table = pd.DataFrame({"class": np.arange(num_classes), "name": list(class_names), "samples": counts, **columns})
    return table[table["samples"] > 0].reset_index(drop=True)


def group_accuracy(pred: Predictions, groups: Mapping[str, Sequence[int]]) -> dict[str, float]:
    """Top-1 accuracy over the labelled clips whose class is in each group (NaN for an empty group)."""
    labelled = pred.labels >= 0
    labels = pred.labels[labelled]
    hits = pred.scores[labelled].argmax(axis=1) == labels
    out = {}
    for name, classes in groups.items():
        member = np.isin(labels, np.asarray(list(classes), dtype=np.int64))
        out[name] = float(hits[member].mean()) if member.any() else float("nan")
    out["all"] = float(hits.mean()) if hits.size else float("nan")
    return out


def save_routing_heatmap(path: str | Path, table: pd.DataFrame, *, entity_names: Sequence[str],
                         title: str = "Mean routing weight alpha_ST") -> Path:
    """Classes x entities heatmap of alpha_ST (alpha_TS = 1 - alpha_ST), values written in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = table[[f"alpha_st/{e}" for e in entity_names]].to_numpy(dtype=np.float64)
    labels = [f"{c} {n}" for c, n in zip(table["class"], table["name"])]
    fig, ax = plt.subplots(figsize=(1.2 * len(entity_names) + 4.0, 0.32 * len(labels) + 1.8))
    try:
        image = ax.imshow(values, cmap="coolwarm", vmin=0.0, vmax=1.0, aspect="auto")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="alpha_ST (1 = ST path)")
        ax.set_xticks(np.arange(len(entity_names)), list(entity_names), rotation=45, ha="right")
        ax.set_yticks(np.arange(len(labels)), labels, fontsize=7)
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=6)
        ax.set_title(title)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)
    return path


def save_comparison_plot(path: str | Path, table: pd.DataFrame, *, models: Sequence[str],
                         title: str = "Per-class accuracy") -> Path:
    """Grouped bars: one group per class, one bar per model (the paper's Fig. 5)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(table)
    width = 0.8 / max(len(models), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * n * max(len(models), 1) / 2 + 2.0), 4.0))
    try:
        x = np.arange(n)
        for i, model_name in enumerate(models):
            ax.bar(x + (i - (len(models) - 1) / 2) * width, table[model_name].to_numpy(dtype=np.float64),
                   width, label=model_name)
        ax.set_xticks(x, [f"{c} {name}" for c, name in zip(table["class"], table["name"])], rotation=70,
                      ha="right", fontsize=7)
        ax.set_ylim(0.0, 1.05)
        ax.set_ylabel("Top-1 accuracy")
        ax.set_title(title)
        ax.legend()
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)
    return path


def checkpoint_config(checkpoint: str | Path, base: RecognitionConfig) -> RecognitionConfig:
    """The config a checkpoint was trained with, reading data as ``base`` does.

    The model part comes from the checkpoint (so an ST-only checkpoint builds an ST-only model);
    data, train and output settings from ``base``. Without a stored config, ``base`` itself.
    """
    from mmad.config import from_dict
    from mmad.engine import read_checkpoint

    stored = read_checkpoint(checkpoint, kind="recognition").get("config")
    if not stored or "model" not in stored:
        return base
    cfg = copy.deepcopy(base)
    cfg.model = from_dict(RecognitionConfig, {"model": stored["model"]}).model
    return cfg


@dataclass
class InterpretResult:
    """Tables computed by :func:`interpret`, the files written and a text summary."""

    routing: pd.DataFrame | None
    comparison: pd.DataFrame
    groups: dict[str, dict[str, float]]
    files: dict[str, Path] = field(default_factory=dict)
    summary: str = ""


def interpret(cfg: RecognitionConfig, checkpoint: str | Path, *, compare: Mapping[str, str | Path] | None = None,
              name: str = "dual", split: str | None = None, views: str | tuple[int, int] = (1, 1),
              out: str | Path | None = None, device: str | None = None,
              class_groups: Mapping[str, Sequence[int]] | None = None) -> InterpretResult:
    """Routing weights per class and entity, and per-class accuracy beside other checkpoints.

    Args:
        cfg: the config of ``checkpoint`` (its data settings are used for every model).
        checkpoint: the main (routing) model.
        compare: other checkpoints by name, e.g. ``{"st": ..., "ts": ...}``; each builds the model
            stored in its checkpoint.
        name: the main model's column name.
        split: split to analyse (default ``cfg.data.val_split``).
        out: folder for the files (default ``<checkpoint folder>/interpret``).
        class_groups: named class sets whose accuracy is reported per model (default: MicroPuppet's
            position- and motion-defined classes when the data is MicroPuppet, else none).

    Writes ``routing_by_class_{split}.csv/.png`` (when the model routes),
    ``per_class_comparison_{split}.csv/.png`` and ``group_accuracy_{split}.csv``.
    """
    split = split or cfg.data.val_split
    out_dir = Path(out) if out is not None else Path(checkpoint).parent / "interpret"
    out_dir.mkdir(parents=True, exist_ok=True)
    names = class_names_of(cfg)
    predictions = {name: predict(cfg, checkpoint, split=split, views=views, device=device)}
    for other, path in (compare or {}).items():
        predictions[other] = predict(checkpoint_config(path, cfg), path, split=split, views=views, device=device)
    if class_groups is None:
        class_groups = _default_groups(cfg)

    files: dict[str, Path] = {}
    lines = []
    routing = None
    main = predictions[name]
    if main.routing is not None and (main.labels >= 0).any():
        routing = routing_by_class(main, entity_names=cfg.model.entity_names, class_names=names)
        files["routing_csv"] = out_dir / f"routing_by_class_{split}.csv"
        routing.to_csv(files["routing_csv"], index=False, float_format="%.4f")
        files["routing_png"] = save_routing_heatmap(out_dir / f"routing_by_class_{split}.png", routing,
                                                    entity_names=cfg.model.entity_names,
                                                    title=f"Mean alpha_ST per class and entity ({split})")
        overall = main.routing.mean(axis=0)[:, 0]
        lines.append("mean alpha_ST per entity: " + ", ".join(
            f"{e} {v:.3f}" for e, v in zip(cfg.model.entity_names, overall)))
    else:
        lines.append("the main model has no routing weights")
    comparison = per_class_comparison(predictions, class_names=names)
    files["comparison_csv"] = out_dir / f"per_class_comparison_{split}.csv"
    comparison.to_csv(files["comparison_csv"], index=False, float_format="%.4f")
    files["comparison_png"] = save_comparison_plot(out_dir / f"per_class_comparison_{split}.png", comparison,
                                                   models=list(predictions), title=f"Per-class accuracy ({split})")
    groups = {model_name: group_accuracy(pred, class_groups) for model_name, pred in predictions.items()}
    group_table = pd.DataFrame(groups).T.rename_axis("model").reset_index()
    files["groups_csv"] = out_dir / f"group_accuracy_{split}.csv"
    group_table.to_csv(files["groups_csv"], index=False, float_format="%.4f")
    lines.append("Top-1 by class group:")
    lines.append(group_table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return InterpretResult(routing=routing, comparison=comparison, groups=groups, files=files,
                           summary="\n".join(lines))


def _default_groups(cfg: RecognitionConfig) -> dict[str, list[int]]:
    """MicroPuppet's position/motion classes when ``cfg.data.root`` holds MicroPuppet data."""
    root = Path(cfg.data.root)
    if not (root / "micropuppet.json").is_file():
        return {}
    from mmad.synth import MOTION_CLASSES, POSITION_CLASSES

    return {"position": list(POSITION_CLASSES), "motion": list(MOTION_CLASSES)}
