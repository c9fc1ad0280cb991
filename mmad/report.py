"""The demo report: ``OUT/report.md`` and its PNG plots, drawn from the files a demo run left.

:func:`write_demo_report` reads only files (no model code): ``OUT/demo.json`` (the commands,
configs and stage times that ``mmad demo`` records), the engine's ``metrics.jsonl`` of both
trainings, and the CSV/JSON outputs of the test and detect stages:

- ``recognition/metrics.jsonl``, ``detection/metrics.jsonl``: one record per epoch;
- ``recognition/eval/metrics_val.json``, ``confusion_val.csv`` (rows true class, columns predicted),
  ``routing_by_class_val.csv`` (``class, name, samples, alpha_st/<entity>, alpha_ts/<entity>``);
- ``detection/eval/metrics_val.json`` (``eval.detection.DetectionResult.to_dict``),
  ``per_class_ap_val.csv`` (``class, name, ground_truth, AP@<t>..., AP``) and ``diagnosis_val/``
  (``eval.diagnose.write_diagnosis``: ``diagnosis.md`` and three plots);
- ``detect/<video>.csv`` (detections) and ``detect/<video>_ground_truth.csv``.

Plots go to ``OUT/plots``; a plot whose input is missing is left out and the report says so.
matplotlib is imported on use.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "plot_confusion",
    "plot_detection_timeline",
    "plot_per_class_ap",
    "plot_routing",
    "plot_training_curves",
    "read_metrics_log",
    "write_demo_report",
]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.tight_layout()
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)
    return path


def read_metrics_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of an engine ``metrics.jsonl`` (one per epoch); [] when the file is absent."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue  # a line cut short by an interruption
    return records


def _series(records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(r["epoch"], r[key]) for r in records if key in r and r[key] is not None and "epoch" in r]
    if not pairs:
        return np.empty(0), np.empty(0)
    x, y = zip(*pairs)
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)


def plot_training_curves(path: str | os.PathLike, runs: dict[str, list[dict[str, Any]]]) -> Path:
    """Losses (left) and validation metrics (right) per epoch, one row per run.

    Args:
        runs: run name -> its ``metrics.jsonl`` records; ``train/*`` keys are losses, ``val/*`` keys
            listed in the plot are metrics (recognition: top1, top5, f1_mean; detection: mAP, mAP@0.5).
    """
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    shown_val = ("val/top1", "val/top5", "val/f1_mean", "val/mAP", "val/mAP@0.5")
    fig, axes = plt.subplots(len(runs), 2, figsize=(10, 3.2 * len(runs)), squeeze=False)
    for row, (name, records) in enumerate(runs.items()):
        loss_ax, val_ax = axes[row]
        losses = sorted({k for r in records for k in r if k.startswith("train/") and "num_" not in k})
        for key in losses:
            x, y = _series(records, key)
            loss_ax.plot(x, y, marker="o", markersize=3, label=key.removeprefix("train/"))
        loss_ax.set_title(f"{name}: training losses")
        loss_ax.set_xlabel("epoch")
        loss_ax.grid(alpha=0.3)
        if losses:
            loss_ax.legend(fontsize=8)
        plotted = False
        for key in shown_val:
            x, y = _series(records, key)
            if x.size:
                val_ax.plot(x, y, marker="o", markersize=3, label=key.removeprefix("val/"))
                plotted = True
        val_ax.set_title(f"{name}: validation")
        val_ax.set_xlabel("epoch")
        val_ax.set_ylim(0.0, 1.02)
        for ax in (loss_ax, val_ax):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        val_ax.grid(alpha=0.3)
        if plotted:
            val_ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def plot_confusion(path: str | os.PathLike, confusion: pd.DataFrame, *, title: str = "Confusion matrix") -> Path:
    """Row-normalised confusion matrix over the classes that occur (as true or predicted), counts in the cells.

    Args:
        confusion: (C, C) counts, index true class names, columns predicted class names.
    """
    plt = _pyplot()
    counts = confusion.to_numpy(dtype=np.float64)
    used = (counts.sum(axis=1) > 0) | (counts.sum(axis=0) > 0)
    counts = counts[used][:, used]
    names = [str(n) for n, u in zip(confusion.index, used) if u]
    support = counts.sum(axis=1, keepdims=True)
    fractions = np.divide(counts, support, out=np.zeros_like(counts), where=support > 0)
    n = len(names)
    size = max(4.5, 0.42 * n + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    image = ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_xticks(np.arange(n), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(np.arange(n), names, fontsize=8)
    for i in range(n):
        for j in range(n):
            if counts[i, j]:
                ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=7,
                        color="white" if fractions[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return _save(fig, path)


def plot_routing(path: str | os.PathLike, table: pd.DataFrame, *, title: str = "Routing weight alpha_ST") -> Path:
    """Classes x entities heatmap of the mean routing weight alpha_ST (1 = spatial-temporal path).

    Args:
        table: one row per class: ``class, name`` and ``alpha_st/<entity>`` columns.
    """
    plt = _pyplot()
    columns = [c for c in table.columns if c.startswith("alpha_st/")]
    entities = [c.removeprefix("alpha_st/") for c in columns]
    values = table[columns].to_numpy(dtype=np.float64)
    labels = [f"{c} {n}" for c, n in zip(table["class"], table["name"])]
    fig, ax = plt.subplots(figsize=(1.1 * len(entities) + 4.5, 0.36 * len(labels) + 2.0))
    image = ax.imshow(values, cmap="coolwarm", vmin=0.0, vmax=1.0, aspect="auto")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="alpha_ST (alpha_TS = 1 - alpha_ST)")
    ax.set_xticks(np.arange(len(entities)), entities, rotation=30, ha="right")
    ax.set_yticks(np.arange(len(labels)), labels, fontsize=8)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=7)
    ax.set_title(title)
    return _save(fig, path)


def plot_per_class_ap(path: str | os.PathLike, table: pd.DataFrame, *, title: str = "Per-class AP") -> Path:
    """Bars per class: AP averaged over the tIoU thresholds and AP@0.5 (when present), with the instance count."""
    plt = _pyplot()
    table = table.sort_values("AP", ascending=False).reset_index(drop=True)
    x = np.arange(len(table))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(table) + 2.0), 4.2))
    has_half = "AP@0.5" in table.columns
    width = 0.4 if has_half else 0.7
    ax.bar(x - (width / 2 if has_half else 0), table["AP"], width, label="AP (mean over tIoU 0.1-0.9)")
    if has_half:
        ax.bar(x + width / 2, table["AP@0.5"], width, label="AP@0.5")
    labels = [f"{c} {n} ({g})" for c, n, g in zip(table["class"], table["name"], table["ground_truth"])]
    ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0.0, 1.05)
    ax.set_ylabel("AP")
    ax.set_title(f"{title} (ground-truth instances in brackets)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_detection_timeline(path: str | os.PathLike, detections: pd.DataFrame, truth: pd.DataFrame, *,
                            duration: float | None = None, min_score: float = 0.1, title: str = "") -> Path:
    """Ground truth against detections of one video: a row per class, truth in grey, detections in colour.

    Args:
        detections: ``t_start, t_end, label, class_name, score`` (seconds).
        truth: ``t_start, t_end, label, class_name``.
        min_score: detections below this score are not drawn.
    """
    plt = _pyplot()
    shown = detections[detections["score"] >= min_score]
    names = dict(zip(truth["label"].astype(int), truth["class_name"]))
    names.update({k: v for k, v in zip(shown["label"].astype(int), shown["class_name"]) if k not in names})
    classes = sorted(names)
    if duration is None:
        ends = [*truth["t_end"], *shown["t_end"]]
        duration = max(ends) if ends else 1.0
    fig, ax = plt.subplots(figsize=(10, 1.4 + 0.55 * max(len(classes), 1)))
    for row, label in enumerate(classes):
        for t0, t1 in truth[truth["label"] == label][["t_start", "t_end"]].itertuples(index=False):
            ax.broken_barh([(t0, t1 - t0)], (row - 0.05, 0.4), color="0.55")
        for t0, t1, score in shown[shown["label"] == label][["t_start", "t_end", "score"]].itertuples(index=False):
            ax.broken_barh([(t0, max(t1 - t0, 1e-3))], (row - 0.4, 0.33), color="tab:orange",
                           alpha=float(0.25 + 0.75 * min(max(score, 0.0), 1.0)))
    ax.set_yticks(np.arange(len(classes)), [f"{c} {names[c]}" for c in classes], fontsize=8)
    ax.set_ylim(len(classes) - 0.5, -0.6)
    ax.set_xlim(0.0, duration)
    ax.set_xlabel("time (s)")
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color="0.55", label="ground truth"),
                       Patch(color="tab:orange", label=f"detection (score >= {min_score:g}; opacity = score)")],
              fontsize=8, loc="upper right", bbox_to_anchor=(1.0, 1.0 + 0.9 / max(len(classes), 1)), ncol=2)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title, loc="left")
    return _save(fig, path)


# ----------------------------------------------------------------------------- the Markdown


def _md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _percent(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{100 * float(value):.2f}"


def _seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs:02d} s"


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _image(lines: list[str], out: Path, path: Path | None, caption: str, missing: str) -> None:
    if path is not None and path.is_file():
        lines.append(f"![{caption}]({path.relative_to(out).as_posix()})")
    else:
        lines.append(f"_{missing}_")
    lines.append("")


def _try_plot(plots: list[str], draw, *args, **kwargs) -> Path | None:
    try:
        return draw(*args, **kwargs)
    except (OSError, ValueError, KeyError) as e:
        plots.append(f"{getattr(draw, '__name__', 'plot')}: {e}")
        return None


def write_demo_report(out: str | os.PathLike) -> Path:
    """Draw the plots into ``out/plots`` and write ``out/report.md`` from the files of a demo run.

    Returns the report's path. Missing inputs leave their section with a note instead of a plot.
    """
    out = Path(out)
    manifest = _read_json(out / "demo.json") or {}
    paths = {"recognition_run": "recognition", "recognition_eval": "recognition/eval", "detection_run": "detection",
             "detection_eval": "detection/eval", "detect": "detect", "plots": "plots",
             **manifest.get("paths", {})}
    rec_run, rec_eval = out / paths["recognition_run"], out / paths["recognition_eval"]
    det_run, det_eval = out / paths["detection_run"], out / paths["detection_eval"]
    detect_dir, plots = out / paths["detect"], out / paths["plots"]
    plots.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    stages = {s["name"]: s for s in manifest.get("stages", [])}

    # plots
    runs = {name: read_metrics_log(run / "metrics.jsonl") for name, run in
            (("recognition", rec_run), ("detection", det_run))}
    runs = {k: v for k, v in runs.items() if v}
    curves = _try_plot(problems, plot_training_curves, plots / "training_curves.png", runs) if runs else None
    confusion_png = routing_png = ap_png = timeline_png = None
    if (rec_eval / "confusion_val.csv").is_file():
        confusion = pd.read_csv(rec_eval / "confusion_val.csv", index_col=0)
        confusion_png = _try_plot(problems, plot_confusion, plots / "confusion_val.png", confusion,
                                  title="Recognition confusion (val)")
    routing_table = None
    if (rec_eval / "routing_by_class_val.csv").is_file():
        routing_table = pd.read_csv(rec_eval / "routing_by_class_val.csv")
        routing_png = _try_plot(problems, plot_routing, plots / "routing_val.png", routing_table,
                                title="Mean routing weight alpha_ST per class and entity (val)")
    ap_table = None
    if (det_eval / "per_class_ap_val.csv").is_file():
        ap_table = pd.read_csv(det_eval / "per_class_ap_val.csv")
        if len(ap_table):
            ap_png = _try_plot(problems, plot_per_class_ap, plots / "per_class_ap_val.png", ap_table,
                               title="Detection AP per class (val)")
    detect_info = stages.get("detect", {}).get("details", {})
    video_id = detect_info.get("video_id")
    if video_id is None:
        found = sorted(detect_dir.glob("*_ground_truth.csv"))
        video_id = found[0].name.removesuffix("_ground_truth.csv") if found else None
    if video_id and (detect_dir / f"{video_id}.csv").is_file() and (detect_dir / f"{video_id}_ground_truth.csv").is_file():
        detections = pd.read_csv(detect_dir / f"{video_id}.csv")
        truth = pd.read_csv(detect_dir / f"{video_id}_ground_truth.csv")
        record = _read_json(detect_dir / f"{video_id}.json") or {}
        timeline_png = _try_plot(problems, plot_detection_timeline, plots / f"timeline_{video_id}.png", detections,
                                 truth, duration=record.get("duration"),
                                 title=f"{video_id}: ground truth (grey) and detections (orange)")

    # text
    mode = manifest.get("mode", "?")
    lines = [f"# mmad demo report ({mode})", ""]
    env = manifest.get("environment", {})
    total_work = sum(float(s.get("work_seconds", s.get("seconds", 0.0))) for s in stages.values())
    lines += [
        "Micro-DualNet recognition and multi-label temporal detection trained and tested on MicroPuppet, the "
        "toolkit's synthetic data, by one command:",
        "",
        "```bash",
        manifest.get("command", "mmad demo"),
        "```",
        "",
        f"Device: {manifest.get('device', '?')}; Python {env.get('python', '?')}, torch {env.get('torch', '?')}, "
        f"{env.get('threads', '?')} torch threads on {env.get('cpus', '?')} CPUs. "
        f"Stage time in total: {_seconds(total_work)}"
        + (" (stages marked *reused* were done by an earlier run in this folder)." if any(
            s.get("skipped") for s in stages.values()) else "."),
        "",
    ]
    headline = []
    rec_metrics = _read_json(rec_eval / "metrics_val.json")
    det_metrics = _read_json(det_eval / "metrics_val.json")
    if rec_metrics:
        headline.append(f"val Top-1 **{_percent(rec_metrics.get('top1'))}%**")
    if det_metrics:
        headline.append(f"val mAP@0.5 **{_percent(det_metrics.get('mAP@0.5'))}%** "
                        f"(average mAP {_percent(det_metrics.get('average_mAP'))}%)")
    if headline:
        lines += ["Result: " + ", ".join(headline) + ".", ""]

    lines += ["## Stages and commands", "",
              "Each stage is a function call inside `mmad demo`; the commands below do the same step by hand.", ""]
    rows = [[i + 1, s.get("title", name), _seconds(float(s.get("work_seconds", s.get("seconds", 0.0)))),
             "reused" if s.get("skipped") else "ran"] for i, (name, s) in enumerate(stages.items())]
    if rows:
        lines += [_md_table(["#", "stage", "time", "this run"], rows), ""]
    commands = [c for s in stages.values() for c in s.get("commands", [])]
    if commands:
        lines += ["```bash", *commands, "```", ""]

    lines += ["## Configs", ""]
    for name, info in manifest.get("configs", {}).items():
        lines += [f"**{name}**: `{info.get('path')}` with overrides "
                  + (", ".join(f"`{o}`" for o in info.get("overrides", [])) or "none"), ""]
        fields = info.get("fields", {})
        if fields:
            lines += [_md_table(["field", "value"], [[f"`{k}`", f"`{v}`"] for k, v in fields.items()]), ""]
        lines += [f"The full config of the run is `{paths[name + '_run']}/config.yaml`.", ""]

    lines += ["## Recognition (val)", ""]
    if rec_metrics:
        rows = [["Top-1", _percent(rec_metrics.get("top1"))], ["Top-5", _percent(rec_metrics.get("top5"))],
                ["F1mean", _percent(rec_metrics.get("f1_mean"))], ["Body Top-1", _percent(rec_metrics.get("body_top1"))],
                ["Mean class accuracy", _percent(rec_metrics.get("mean_class_accuracy"))]]
        lines += [_md_table(["metric (%)", "value"], rows), "",
                  f"{rec_metrics.get('num_samples', '?')} clips, checkpoint `{rec_metrics.get('checkpoint', '?')}` "
                  "(the weights after the last epoch; no checkpoint is picked on val).", ""]
    else:
        lines += ["_The recognition test has not produced `metrics_val.json`._", ""]
    _image(lines, out, curves, "training curves", "No metrics.jsonl to plot.")
    _image(lines, out, confusion_png, "confusion matrix", "No confusion matrix.")
    if routing_table is not None:
        lines += ["Routing: each entity's token mixes the spatial-temporal (ST) and temporal-spatial (TS) path "
                  "outputs with weights alpha_ST + alpha_TS = 1; the heatmap shows alpha_ST averaged over the "
                  "val clips of each class.", ""]
    _image(lines, out, routing_png, "routing weights", "No routing weights (the model does not route).")

    lines += ["## Detection (val)", ""]
    if det_metrics:
        thresholds = det_metrics.get("mAP", {})
        header = ["tIoU", *thresholds.keys(), "Average", "mAP@0.5"]
        row = ["mAP (%)", *(_percent(v) for v in thresholds.values()), _percent(det_metrics.get("average_mAP")),
               _percent(det_metrics.get("mAP@0.5"))]
        lines += [_md_table(header, [row]), "",
                  f"{det_metrics.get('num_ground_truth', '?')} ground-truth instances, "
                  f"{det_metrics.get('num_predictions', '?')} predictions "
                  "(MMA-52 protocol; the head's weights after the last epoch).", ""]
    else:
        lines += ["_The detection test has not produced `metrics_val.json`._", ""]
    _image(lines, out, ap_png, "per-class AP", "No per-class AP table.")
    if video_id:
        lines += [f"`mmad detect` on validation video `{video_id}` (files in `{paths['detect']}/`):", ""]
    _image(lines, out, timeline_png, "detection timeline", "No detection timeline.")
    if video_id and (detect_dir / f"{video_id}.html").is_file():
        lines += [f"Open `{paths['detect']}/{video_id}.html` in a browser to play the video under its timeline.", ""]

    lines += ["## Detection diagnosis (val)", ""]
    diagnosis = det_eval / "diagnosis_val"
    if (diagnosis / "diagnosis.md").is_file():
        lines += ["Why the mAP is what it is (definitions: `eval/diagnose.py`; tables and CSVs in "
                  f"`{paths['detection_eval']}/diagnosis_val/`).", "",
                  (diagnosis / "diagnosis.md").read_text(encoding="utf-8").strip(), ""]
    else:
        lines += ["_The detection test has not written a diagnosis._", ""]
    for name, caption in (("ap_by_characteristic", "AP by instance characteristic"),
                          ("false_positive_profile", "false-positive profile"),
                          ("boundary_errors", "boundary errors")):
        if (diagnosis / f"{name}.png").is_file():
            _image(lines, out, diagnosis / f"{name}.png", caption, "")

    lines += ["## TensorBoard", "",
              "The engine logged every epoch's losses, learning rate and validation metrics:", "",
              "```bash", f"tensorboard --logdir {out.as_posix()}", "```", "",
              "Runs: " + ", ".join(f"`{p}/tb`" for p in (paths["recognition_run"], paths["detection_run"])
                                   if (out / p / "tb").is_dir()) + ".", ""]
    if problems:
        lines += ["## Plots that failed", "", *(f"- {p}" for p in problems), ""]
    report = out / "report.md"
    report.write_text("\n".join(lines), encoding="utf-8")
    return report
