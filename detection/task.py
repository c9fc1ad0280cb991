"""Training and testing the temporal head with the shared engine.

:class:`DetectionTask` is the engine's Task for the head: cached feature sequences in, losses out,
and validation mAP (MMA-52 protocol, tIoU 0.1 ... 0.9) from post-processed detections.
:func:`train_detection` and :func:`predict_subset` are what the ``mmad detection train/test``
commands call.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from detection.assign import assign_targets
from detection.config import DetectionConfig
from detection.dataset import (
    FeatureBatch,
    FeatureSequenceDataset,
    collate_features,
    expected_encoder_settings,
    foreign_features,
    resolve_feature_source,
    with_trained_encoder,
)
from detection.losses import detection_loss
from detection.model import TemporalDetector
from detection.postprocess import PREDICTION_COLUMNS, postprocess_detections
from mmad.config import to_dict
from mmad.engine import (
    build_eval_loader,
    fit,
    gather_eval_outputs,
    load_checkpoint,
    move_to_device,
    read_checkpoint,
    unwrap_model,
)
from mmad.errors import ConfigError
from mmad.types import VideoRecord


def build_detector(cfg: DetectionConfig) -> TemporalDetector:
    """A freshly initialised :class:`TemporalDetector` from ``cfg.model`` (and the loss normaliser's start)."""
    m = cfg.model
    return TemporalDetector(
        m.feature_dim, m.num_classes, embed_dim=m.embed_dim, num_levels=m.num_levels,
        num_embed_convs=m.num_embed_convs, num_stem_layers=m.num_stem_layers, num_heads=m.num_heads,
        window_size=m.window_size, mlp_ratio=m.mlp_ratio, dropout=m.dropout, input_dropout=m.input_dropout,
        head_convs=m.head_convs, class_aware_regression=m.class_aware_regression,
        regression_ranges=list(m.regression_ranges) or None, prior_prob=m.prior_prob,
        initial_num_positives=cfg.loss.initial_num_positives, level_layers=m.level_layers, fpn_fusion=m.fpn_fusion,
        boundary_head=m.boundary_head, num_bins=m.num_bins, quality_head=m.quality_head)


def ground_truth_table(videos: list[VideoRecord]) -> pd.DataFrame:
    """Ground truth of the labelled videos: ``video_id, t_start, t_end, label`` (seconds)."""
    rows = [(v.video_id, s.t_start, s.t_end, s.label) for v in videos if v.labeled for s in v.segments]
    return pd.DataFrame(rows, columns=["video_id", "t_start", "t_end", "label"])


def resolve_feature_dim(cfg: DetectionConfig) -> DetectionConfig:
    """``cfg`` with ``model.feature_dim`` filled in from the feature cache when it is null.

    The size is read from the side file of the first cached video of the training (else validation,
    else test) subset; without any cached features this is a ConfigError that says to extract first.
    """
    if cfg.model.feature_dim is not None:
        return cfg
    from detection.features import has_features, read_feature_meta
    from mmad.datasets.mma52 import read_detection_annotations

    data = cfg.data
    for subset in (data.train_subset, data.val_subset, data.test_subset):
        if not subset:
            continue
        for video in read_detection_annotations(data.annotation_path, subset=subset):
            if has_features(data.feature_path, video.video_id):
                dim = read_feature_meta(data.feature_path, video.video_id).feature_dim
                return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, feature_dim=dim))
    raise ConfigError(f"model.feature_dim is not set and no cached features were found in {data.feature_path}: "
                      "run `mmad detection extract` first (or set model.feature_dim)")


class DetectionTask:
    """The temporal head as a :class:`mmad.engine.Task`; ``primary_metric`` is the average mAP over tIoU 0.1-0.9."""

    primary_metric = "mAP"
    checkpoint_kind = "detection"

    def __init__(self, cfg: DetectionConfig):
        self.cfg = resolve_feature_dim(resolve_feature_source(cfg))
        self._videos: dict[str, list[VideoRecord]] = {}

    def videos(self, subset: str) -> list[VideoRecord]:
        """The annotated videos of ``subset`` (read once)."""
        if subset not in self._videos:
            from mmad.datasets.mma52 import read_detection_annotations

            self._videos[subset] = list(read_detection_annotations(self.cfg.data.annotation_path, subset=subset))
        return self._videos[subset]

    def dataset(self, subset: str, *, training: bool) -> FeatureSequenceDataset:
        data = self.cfg.data
        videos = self.videos(subset)
        if not videos:
            raise ConfigError(f"data.annotation_file {data.annotation_path} has no videos in subset '{subset}'")
        return FeatureSequenceDataset(
            data.feature_path, videos, training=training, max_seq_len=data.max_seq_len,
            crop_prob=data.crop_prob, min_crop_fraction=data.min_crop_fraction,
            min_segment_overlap=data.min_segment_overlap, expected_hash=data.encoder_hash,
            feature_dim=self.cfg.model.feature_dim, expected_settings=expected_encoder_settings(self.cfg),
            foreign=foreign_features(data))

    # -- the Task protocol ------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        return build_detector(self.cfg)

    def train_dataset(self) -> FeatureSequenceDataset:
        return self.dataset(self.cfg.data.train_subset, training=True)

    def val_dataset(self) -> FeatureSequenceDataset | None:
        subset = self.cfg.data.val_subset
        return self.dataset(subset, training=False) if subset else None

    def collate(self, samples: list) -> FeatureBatch:
        return collate_features(samples, pad_multiple=2 ** (self.cfg.model.num_levels - 1))

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """No weight decay on biases, norms and the per-level regression scales."""
        decay, no_decay = [], []
        for name, param in unwrap_model(model).named_parameters():
            if not param.requires_grad:
                continue
            (no_decay if param.ndim <= 1 or name.endswith(".bias") else decay).append(param)
        return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]

    def training_step(self, model: nn.Module, batch: FeatureBatch) -> dict[str, torch.Tensor]:
        core = unwrap_model(model)
        output = model(batch.feats, batch.mask)
        targets = assign_targets(output.points, batch.segments, batch.labels, output.mask,
                                 num_classes=self.cfg.model.num_classes, centre_radius=self.cfg.loss.centre_radius,
                                 class_aware=self.cfg.model.class_aware_regression)
        loss = self.cfg.loss
        return detection_loss(output, targets, positive_ema=core.num_positives_ema, update_ema=core.training,
                              ema_momentum=loss.normaliser_momentum, focal_alpha=loss.focal_alpha,
                              focal_gamma=loss.focal_gamma, reg_weight=loss.reg_weight,
                              quality_weight=loss.quality_weight)

    def predict(self, model: nn.Module, loader, *, device: torch.device) -> pd.DataFrame:
        """Detections (``video_id, t_start, t_end, label, score``, seconds) for every batch of ``loader``."""
        post = self.cfg.postprocess
        tables = []
        with torch.no_grad():
            for batch in loader:
                batch = move_to_device(batch, device)
                output = model(batch.feats, batch.mask)
                tables.append(postprocess_detections(
                    output, timelines=batch.timelines, durations=batch.durations, video_ids=batch.video_ids,
                    score_threshold=post.score_threshold, pre_nms_topk=post.pre_nms_topk,
                    nms_sigma=post.nms_sigma, min_score=post.min_score, max_segments=post.max_segments,
                    min_duration=post.min_duration, voting_iou=post.voting_iou))
        tables = [t for t in tables if not t.empty]
        return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=PREDICTION_COLUMNS)

    def evaluate(self, model: nn.Module, loader, *, device: torch.device, distributed: bool) -> dict[str, float]:
        from eval.detection import evaluate_detection, threshold_key

        local = self.predict(model, loader, device=device)
        rows = list(local.itertuples(index=False, name=None))
        gathered = gather_eval_outputs({"rows": rows})["rows"] if distributed else rows
        predictions = pd.DataFrame(gathered, columns=PREDICTION_COLUMNS)
        subset = self.cfg.data.val_subset
        truth = ground_truth_table(self.videos(subset)) if subset else ground_truth_table([])
        if truth.empty:
            return {"mAP": 0.0, "num_predictions": float(len(predictions))}
        result = evaluate_detection(truth, predictions, num_classes=self.cfg.model.num_classes)
        metrics = {"mAP": result.average_mAP, "num_predictions": float(len(predictions))}
        for threshold, value in zip(result.tiou_thresholds, result.mAP):
            metrics[f"mAP@{threshold_key(threshold)}"] = float(value)
        return metrics


def write_test_metrics(result, out_dir: str | os.PathLike, *, subset: str, num_classes: int) -> tuple[Path, Path]:
    """Write ``metrics_<subset>.json`` (``DetectionResult.to_dict``) and ``per_class_ap_<subset>.csv``.

    The CSV has one row per class with ground truth: ``class, name, ground_truth, AP@0.1 ... AP@0.9,
    AP`` (AP averaged over the thresholds). Both files are written atomically. Returns their paths.
    """
    import json

    from eval.detection import threshold_key
    from mmad.fileio import atomic_open, atomic_write_text
    from mmad.taxonomy import label_set

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = atomic_write_text(out_dir / f"metrics_{subset}.json", json.dumps(result.to_dict(), indent=2) + "\n")
    names, _ = label_set(num_classes)
    rows = []
    for j, c in enumerate(result.classes):
        if result.num_ground_truth_per_class[j] == 0:
            continue
        row = {"class": int(c), "name": names[int(c)], "ground_truth": int(result.num_ground_truth_per_class[j])}
        row.update({f"AP@{threshold_key(t)}": float(result.ap[i, j]) for i, t in enumerate(result.tiou_thresholds)})
        row["AP"] = float(result.ap[:, j].mean())
        rows.append(row)
    csv_path = out_dir / f"per_class_ap_{subset}.csv"
    with atomic_open(csv_path, "w", newline="") as handle:
        pd.DataFrame(rows).to_csv(handle, index=False, float_format="%.4f")
    return json_path, csv_path


def train_detection(cfg: DetectionConfig, *, resume: bool = False, device: str | None = None,
                    allow_config_change: bool = False):
    """Train the head as ``cfg`` says; the run folder is ``cfg.out``. Returns the engine's FitResult."""
    task = DetectionTask(cfg)
    return fit(task, task.cfg.train, task.cfg.optim, task.cfg.out, resume=resume, device=device,
               config_dict=to_dict(task.cfg), allow_config_change=allow_config_change)


def predict_subset(cfg: DetectionConfig, checkpoint: str | os.PathLike, *, subset: str | None = None,
                   predictions_path: str | os.PathLike | None = None, device: str | None = None,
                   use_ema: bool = True, batch_size: int = 8):
    """Detect on ``subset`` (default ``cfg.data.test_subset``) with a trained head and score it.

    Writes the MMA-52 challenge CSV to ``predictions_path`` (default
    ``cfg.out/predictions_<subset>.csv``). Returns ``(predictions, result)`` where ``result`` is an
    ``eval.detection.DetectionResult``, or None when the subset's labels are hidden.
    """
    from eval.detection import evaluate_detection
    from eval.io import write_detection_predictions

    subset = subset or cfg.data.test_subset
    cfg = with_trained_encoder(cfg, checkpoint)
    run_device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    read_checkpoint(checkpoint, kind="detection")  # a bad file is refused before the data is read
    task = DetectionTask(cfg)
    model = task.build_model().to(run_device)
    load_checkpoint(checkpoint, model, use_ema=use_ema, map_location=run_device, kind="detection")
    model.eval()
    loader = build_eval_loader(task.dataset(subset, training=False), task.collate, batch_size=batch_size,
                               num_workers=cfg.data.num_workers)
    from mmad.progress import progress

    shown = progress(loader, desc=f"detect {subset}", unit="batch")
    predictions = task.predict(model, shown, device=run_device)
    out_path = Path(predictions_path) if predictions_path else Path(cfg.out) / f"predictions_{subset}.csv"
    write_detection_predictions(out_path, predictions)
    truth = ground_truth_table(task.videos(subset))
    result = None
    if not truth.empty:
        result = evaluate_detection(truth, predictions, num_classes=cfg.model.num_classes)
    return predictions, result
