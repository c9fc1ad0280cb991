"""Training and testing Micro-DualNet with the shared engine.

:class:`RecognitionTask` is the engine's Task: clips in, ``CE + lambda * MAC`` out, and validation
metrics of the MA-52 protocol (``eval.recognition``) with ``f1_mean`` as the primary metric.
:func:`train` and :func:`test` are what ``mmad recognition train/test`` call.

Scores. A clip's score vector is the softmax of its logits; with several test views of one
record (``views=(clips, crops)``) the softmax vectors are averaged. Routing weights are averaged
over the frames of a clip and then over its views: (N, K, 2) as (alpha_ST, alpha_TS).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mmad.config import to_dict
from mmad.engine import (
    FitResult,
    build_eval_loader,
    fit,
    gather_eval_outputs,
    load_checkpoint,
    move_to_device,
    read_checkpoint,
)
from mmad.engine.precision import inference_autocast, resolve_precision
from mmad.errors import ConfigError, DataError
from mmad.types import ClipBatch
from recognition.config import RecognitionConfig
from recognition.data import ClipDataset, build_dataset, build_datasets
from recognition.model import build_model, compute_losses

log = logging.getLogger("mmad.recognition")

__all__ = [
    "Predictions",
    "RecognitionTask",
    "body_map",
    "class_names_of",
    "collect_predictions",
    "metrics_from_predictions",
    "no_decay_parameter",
    "parse_views",
    "test",
    "check_pretrained",
    "train",
]

METRIC_KEYS = {
    "top1": "action_top1",
    "top5": "action_top5",
    "body_top1": "body_top1",
    "f1_mean": "f1_mean",
    "action_f1_macro": "action_f1_macro",
    "action_f1_micro": "action_f1_micro",
    "body_f1_macro": "body_f1_macro",
    "body_f1_micro": "body_f1_micro",
    "mean_class_accuracy": "mean_class_accuracy",
}


def parse_views(text: str | tuple[int, int]) -> tuple[int, int]:
    """``"3x2"`` (temporal clips x spatial crops) -> (3, 2)."""
    if isinstance(text, tuple):
        return text
    parts = str(text).lower().replace("×", "x").split("x")
    try:
        clips, crops = (int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"views must read CLIPSxCROPS, e.g. 1x1 or 3x3, got {text!r}") from None
    if clips < 1 or crops < 1:
        raise ConfigError(f"views must be at least 1x1, got {text!r}")
    return clips, crops


def body_map(cfg: RecognitionConfig) -> np.ndarray:
    """(C,) body group of each action: MA-52's map for 52 classes, else each class its own group."""
    from eval.recognition import MA52_BODY_OF_ACTION

    if cfg.data.format == "ma52" and cfg.model.num_classes == len(MA52_BODY_OF_ACTION):
        return MA52_BODY_OF_ACTION
    return np.arange(cfg.model.num_classes)


def class_names_of(cfg: RecognitionConfig) -> list[str]:
    """Names of the model's classes (MA-52 or iMiGUE; ids when the count matches neither)."""
    from mmad.taxonomy import class_names

    dataset = "imigue" if cfg.data.format == "imigue" else "ma52"
    names = list(class_names(dataset))
    return names if len(names) == cfg.model.num_classes else [str(c) for c in range(cfg.model.num_classes)]


def no_decay_parameter(name: str, param: torch.Tensor, module: nn.Module | None) -> bool:
    """Whether weight decay skips a parameter: biases, norm weights (1-D), embeddings, routing priors."""
    leaf = name.rsplit(".", 1)[-1]
    return (param.ndim <= 1 or isinstance(module, nn.Embedding) or "embedding" in leaf
            or leaf in ("prior", "distance_bias"))


# ----------------------------------------------------------------------------- predictions


@dataclass
class Predictions:
    """Per-record outputs of a model on a dataset, in dataset order.

    Shapes: ``scores`` (N, C) mean softmax over views; ``body_scores`` (N, B) or None;
    ``labels``/``body_labels`` (N,) (-1 unknown); ``routing`` (N, K, 2) mean (alpha_ST, alpha_TS)
    or None; ``video_ids`` N str.
    """

    video_ids: list[str]
    scores: np.ndarray
    labels: np.ndarray
    body_labels: np.ndarray
    body_scores: np.ndarray | None = None
    routing: np.ndarray | None = None


def _group_views(video_ids: list[str], order_hint: dict[str, int] | None) -> tuple[list[str], np.ndarray]:
    """Unique ids (dataset order when known) and, per row, the index of its id."""
    unique: dict[str, int] = {}
    for vid in video_ids:
        unique.setdefault(vid, len(unique))
    ids = list(unique)
    if order_hint is not None:
        ids.sort(key=lambda v: order_hint.get(v, math.inf))
    position = {v: i for i, v in enumerate(ids)}
    return ids, np.array([position[v] for v in video_ids], dtype=np.int64)


def _mean_by_group(values: torch.Tensor, group: np.ndarray, num_groups: int) -> np.ndarray:
    values = values.double().numpy()
    out = np.zeros((num_groups, *values.shape[1:]), dtype=np.float64)
    np.add.at(out, group, values)
    counts = np.bincount(group, minlength=num_groups).reshape(-1, *([1] * (values.ndim - 1)))
    return out / np.maximum(counts, 1)


@torch.no_grad()
def collect_predictions(model: nn.Module, loader: Iterable[ClipBatch], *, device: torch.device,
                        distributed: bool = False, precision: str = "fp32") -> Predictions:
    """Run ``model`` over ``loader`` (this rank's shard) and gather the per-record outputs of all ranks.

    Rows of the same ``video_id`` (the views of one record) are averaged. ``precision`` is a resolved
    autocast precision (``"fp32"``, ``"bf16"``, ``"fp16"``; :mod:`mmad.engine.precision`).
    """
    parts: dict[str, list] = {"scores": [], "labels": [], "body_labels": [], "body_scores": [], "routing": []}
    video_ids: list[str] = []
    for batch in loader:
        batch = move_to_device(batch, device)
        with inference_autocast(device, precision):
            out = model(batch)
        parts["scores"].append(torch.softmax(out.logits.float(), dim=-1).cpu())
        parts["labels"].append(batch.label.cpu())
        parts["body_labels"].append(batch.body_label.cpu())
        if out.body_logits is not None:
            parts["body_scores"].append(torch.softmax(out.body_logits.float(), dim=-1).cpu())
        weights = out.aux.routing_weights
        if weights is not None:
            parts["routing"].append(weights.float().mean(dim=1).cpu())
        video_ids.extend(batch.video_id)
    outputs: dict[str, Any] = {k: torch.cat(v) for k, v in parts.items() if v}
    outputs["video_id"] = video_ids
    merged = gather_eval_outputs(outputs) if distributed else outputs  # an empty shard still joins the gather
    if "scores" not in merged:
        root = getattr(getattr(getattr(loader, "dataset", None), "info", None), "root", "dataset")
        raise DataError(root, "no clip could be loaded for evaluation")
    dataset = getattr(loader, "dataset", None)
    order_hint = ({r.video_id: i for i, r in enumerate(dataset.records)}
                  if isinstance(dataset, ClipDataset) else None)
    ids, group = _group_views(list(merged["video_id"]), order_hint)
    n = len(ids)
    first_row = np.zeros(n, dtype=np.int64)
    first_row[group[::-1]] = np.arange(len(group))[::-1]

    def mean_of(key: str) -> np.ndarray | None:
        return _mean_by_group(merged[key], group, n) if key in merged else None

    return Predictions(
        video_ids=ids,
        scores=mean_of("scores"),
        labels=merged["labels"].numpy()[first_row],
        body_labels=merged["body_labels"].numpy()[first_row],
        body_scores=mean_of("body_scores"),
        routing=mean_of("routing"),
    )


def metrics_from_predictions(pred: Predictions, cfg: RecognitionConfig):
    """:class:`eval.recognition.RecognitionResult` on the labelled records of ``pred`` (None when none is)."""
    from eval.recognition import evaluate_recognition

    labelled = pred.labels >= 0
    if not labelled.any():
        return None
    body_scores = None if pred.body_scores is None else pred.body_scores[labelled]
    return evaluate_recognition(pred.scores[labelled], pred.labels[labelled], body_scores=body_scores,
                                body_of_action=body_map(cfg))


def _metric_dict(result) -> dict[str, float]:
    out = {}
    for key, attr in METRIC_KEYS.items():
        value = getattr(result, attr)
        out[key] = float("nan") if value is None else float(value)
    return out


# ----------------------------------------------------------------------------- the task


class RecognitionTask:
    """Micro-DualNet as a :class:`mmad.engine.Task`; ``primary_metric`` is the validation F1mean."""

    primary_metric = "f1_mean"
    checkpoint_kind = "recognition"

    def __init__(self, cfg: RecognitionConfig):
        self.cfg = cfg
        self._datasets: tuple[ClipDataset, ClipDataset | None] | None = None
        self.last_predictions: Predictions | None = None

    def build_model(self) -> nn.Module:
        return build_model(self.cfg.model)

    def _data(self) -> tuple[ClipDataset, ClipDataset | None]:
        if self._datasets is None:
            self._datasets = build_datasets(self.cfg)
        return self._datasets

    def train_dataset(self) -> ClipDataset:
        return self._data()[0]

    def val_dataset(self) -> ClipDataset | None:
        return self._data()[1]

    def collate(self, samples: list) -> ClipBatch:
        return ClipBatch.collate(samples)

    def training_step(self, model: nn.Module, batch: ClipBatch) -> dict[str, torch.Tensor]:
        return compute_losses(model(batch), batch, self.cfg.model)

    def evaluate(self, model: nn.Module, loader: Any, *, device: torch.device, distributed: bool) -> dict[str, float]:
        """Top-1/5, body Top-1, the four F1 scores, F1mean and mean class accuracy (fractions)."""
        pred = collect_predictions(model, loader, device=device, distributed=distributed)
        self.last_predictions = pred
        result = metrics_from_predictions(pred, self.cfg)
        if result is None:
            raise DataError(self.cfg.data.root, "the validation split has no labels")
        return _metric_dict(result)

    def param_groups(self, model: nn.Module) -> list[dict] | None:
        """Two groups: decayed weights, and biases / norms / embeddings / priors without decay.

        None (one group, everything decays) when ``cfg.no_decay_norms_biases`` is off.
        """
        if not self.cfg.no_decay_norms_biases:
            return None
        owner = {}
        for module_name, module in model.named_modules():
            for param_name, _ in module.named_parameters(recurse=False):
                owner[f"{module_name}.{param_name}" if module_name else param_name] = module
        decay, no_decay = [], []
        for name, param in model.named_parameters():
            (no_decay if no_decay_parameter(name, param, owner.get(name)) else decay).append(param)
        return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]

    def extra_scalars(self, model: nn.Module) -> dict[str, float]:
        """Mean routing weight alpha_ST per entity over the last validation pass."""
        pred = self.last_predictions
        if pred is None or pred.routing is None:
            return {}
        alpha_st = pred.routing[..., 0].mean(axis=0)
        return {f"alpha_st/{name}": float(v) for name, v in zip(self.cfg.model.entity_names, alpha_st)}


# ----------------------------------------------------------------------------- entry points


def check_pretrained(cfg: RecognitionConfig) -> None:
    """Refuse to train the paper's ResNet-101 from random weights unless ``from_scratch`` says so.

    IV-B starts the backbone from Kinetics-400; a run without weights would silently measure
    something else. Raises ConfigError.
    """
    b = cfg.model.backbone
    if cfg.model.uses_rgb and b.arch == "resnet101" and not b.pretrained and not b.from_scratch:
        raise ConfigError("model.backbone.pretrained is not set: the paper's ResNet-101 starts from Kinetics-400 "
                          "(TSM) weights; give a local checkpoint, or --set model.backbone.from_scratch=true "
                          "to train from random initialisation on purpose")


def train(cfg: RecognitionConfig, *, resume: bool = False, device: str | None = None,
          allow_config_change: bool = False) -> FitResult:
    """Train ``cfg`` into ``cfg.out`` (see :func:`mmad.engine.fit`); returns the fit result.

    Refuses a ResNet-101 without pretrained weights (:func:`check_pretrained`).
    """
    check_pretrained(cfg)
    return fit(RecognitionTask(cfg), cfg.train, cfg.optim, cfg.out, resume=resume, device=device,
               config_dict=to_dict(cfg), allow_config_change=allow_config_change)


def predict(cfg: RecognitionConfig, checkpoint: str | Path, *, split: str | None = None,
            views: str | tuple[int, int] = (1, 1), device: str | None = None,
            use_ema: bool = True, precision: str = "auto") -> Predictions:
    """Predictions of the weights in ``checkpoint`` on ``split`` (default: the test split), under
    autocast at ``precision`` (``"auto"``: bf16 or fp16 on a GPU, fp32 on a CPU without native bf16)."""
    read_checkpoint(checkpoint, kind="recognition")  # a bad file is refused before the data is read
    dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dataset = build_dataset(cfg, split or cfg.data.test_split, train=False, views=parse_views(views))
    model = build_model(cfg.model).to(dev)
    load_checkpoint(checkpoint, model, use_ema=use_ema, map_location=dev, kind="recognition")
    model.eval()
    loader = build_eval_loader(dataset, ClipBatch.collate, batch_size=cfg.train.eval_batch_size or cfg.train.batch_size,
                               num_workers=cfg.train.num_workers, pin_memory=dev.type == "cuda")
    from mmad.progress import progress

    shown = progress(loader, desc=f"predict {split or cfg.data.test_split}", unit="batch")
    return collect_predictions(model, shown, device=dev, precision=resolve_precision(precision, dev))


@dataclass
class EvaluationReport:
    """What :func:`test` wrote: metrics (None for an unlabelled split) and file paths."""

    metrics: dict[str, float] | None
    table: str | None
    files: dict[str, Path]
    predictions: Predictions


def test(cfg: RecognitionConfig, checkpoint: str | Path, *, views: str | tuple[int, int] = (1, 1),
         submission: str | Path | None = None, split: str | None = None, out: str | Path | None = None,
         device: str | None = None, precision: str = "auto") -> EvaluationReport:
    """Score ``checkpoint`` on a split (under autocast at ``precision``, see :func:`predict`) and write
    the reports.

    Writes into ``out`` (default: the checkpoint's folder) ``metrics_{split}.json``,
    ``per_class_{split}.csv``, ``confusion_{split}.csv`` and ``confusion_{split}.png`` when the
    split has labels, and the MA-52 submission CSV (``vid`` = file name with ``.mp4``) at
    ``submission`` when given.
    """
    import pandas as pd

    from eval.io import ma52_submission_from_scores, write_confusion_csv, write_ma52_submission
    from eval.report import format_recognition_table, save_confusion_heatmap

    split = split or cfg.data.test_split
    pred = predict(cfg, checkpoint, split=split, views=views, device=device, precision=precision)
    out_dir = Path(out) if out is not None else Path(checkpoint).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    names = class_names_of(cfg)
    result = metrics_from_predictions(pred, cfg)
    metrics = table = None
    if result is not None:
        metrics = _metric_dict(result)
        clips, crops = parse_views(views)
        report = {"checkpoint": str(checkpoint), "split": split, "views": f"{clips}x{crops}", **metrics,
                  "num_samples": result.num_samples}
        files["metrics"] = out_dir / f"metrics_{split}.json"
        files["metrics"].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        counts = result.confusion.sum(axis=1)
        per_class = pd.DataFrame({"class": np.arange(len(names)), "name": names, "samples": counts,
                                  "accuracy": result.per_class_accuracy})
        files["per_class"] = out_dir / f"per_class_{split}.csv"
        per_class[per_class["samples"] > 0].to_csv(files["per_class"], index=False)
        files["confusion_csv"] = write_confusion_csv(out_dir / f"confusion_{split}.csv", result.confusion,
                                                     class_names=names)
        files["confusion_png"] = save_confusion_heatmap(out_dir / f"confusion_{split}.png", result.confusion,
                                                        class_names=names, title=f"Confusion ({split})")
        table = format_recognition_table(result)
    if submission is not None:
        if cfg.model.num_classes != 52:
            raise ConfigError("the MA-52 submission file needs a 52-class model")
        vids = [f"{v}.mp4" for v in pred.video_ids]
        sheet = ma52_submission_from_scores(vids, pred.scores, body_scores=pred.body_scores)
        files["submission"] = write_ma52_submission(submission, sheet)
    return EvaluationReport(metrics=metrics, table=table, files=files, predictions=pred)


test.__test__ = False  # a library function, not a pytest test
