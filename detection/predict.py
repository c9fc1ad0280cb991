"""A raw video to its detected micro-actions (what ``mmad detect`` runs).

Keypoints (an OpenPose JSON folder, or MediaPipe through :mod:`mmad.pose` when the ``pose`` extra is
installed) -> the recognizer as clip encoder (:class:`detection.encoder.ClipEncoder`, with the
encoder settings stored in the detector's checkpoint) -> the temporal head -> soft-NMS. The result
is written as JSON, CSV and a timeline PNG:

- ``<video_id>.json``: ``{"video_id", "duration", "fps", "detections": [{"class_id", "class_name",
  "body_group", "t_start", "t_end", "score"}, ...]}``, best first;
- ``<video_id>.csv``: ``video_id,t_start,t_end,label,class_name,body_group,score``;
- ``<video_id>_timeline.png``: one row per detected class, a bar per detection over time.

Times are seconds. ``body_group`` is the MA-52 body part of the action (None for other label sets).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from detection.config import DetectionConfig
from mmad.errors import ConfigError, DataError

DETECTION_COLUMNS = ["video_id", "t_start", "t_end", "label", "class_name", "body_group", "score"]
NO_KEYPOINTS_HINT = ("no keypoints for this video: pass --keypoints DIR (its OpenPose JSON folder) or install "
                     "the pose extra (pip install -e '.[pose]') to estimate them with MediaPipe")


@dataclass
class VideoDetections:
    """Detections of one video: ``detections`` has the columns of :data:`DETECTION_COLUMNS`, best first."""

    video_id: str
    duration: float
    fps: float
    detections: pd.DataFrame

    def to_dict(self) -> dict:
        """The JSON object written by :func:`write_detections`."""
        rows = [{"class_id": int(r.label), "class_name": r.class_name,
                 "body_group": None if pd.isna(r.body_group) else r.body_group,
                 "t_start": round(float(r.t_start), 4), "t_end": round(float(r.t_end), 4),
                 "score": round(float(r.score), 6)}
                for r in self.detections.itertuples(index=False)]
        return {"video_id": self.video_id, "duration": round(float(self.duration), 4), "fps": float(self.fps),
                "detections": rows}


def label_names(num_classes: int) -> tuple[tuple[str, ...], tuple[str | None, ...]]:
    """Class names and body groups of a label set by its size (52: MA-52, 32: iMiGUE, else ``class_<i>``)."""
    from mmad.taxonomy import IMIGUE_CLASSES, MA52_ACTIONS, MA52_BODY_GROUPS, fine2coarse_table

    if num_classes == len(MA52_ACTIONS):
        groups = fine2coarse_table()
        return MA52_ACTIONS, tuple(MA52_BODY_GROUPS[g] for g in groups)
    if num_classes == len(IMIGUE_CLASSES):
        return IMIGUE_CLASSES, (None,) * num_classes
    return tuple(f"class_{i}" for i in range(num_classes)), (None,) * num_classes


def load_detector(checkpoint: str | os.PathLike, *, device: str | torch.device = "cpu", use_ema: bool = True):
    """``(TemporalDetector in eval mode, DetectionConfig)`` from a ``mmad detection train`` checkpoint."""
    from detection.task import build_detector
    from mmad.config import from_dict
    from mmad.engine import load_checkpoint, read_checkpoint

    path = Path(checkpoint)
    if not path.is_file():
        raise DataError(path, "detector checkpoint not found")
    stored = read_checkpoint(path).get("config")
    if not isinstance(stored, dict):
        raise DataError(path, "the checkpoint holds no config (write it with `mmad detection train`)")
    cfg = from_dict(DetectionConfig, stored)
    model = build_detector(cfg)
    load_checkpoint(path, model, use_ema=use_ema, map_location="cpu")
    return model.to(device).eval(), cfg


def video_keypoints(video: str | os.PathLike, keypoints: str | os.PathLike | None, *,
                    work_dir: str | os.PathLike) -> Path:
    """The OpenPose JSON folder of ``video``: ``keypoints`` when given, else MediaPipe's estimate in ``work_dir``.

    Raises :class:`DataError` with :data:`NO_KEYPOINTS_HINT` when none is given and the pose extra is
    not installed.
    """
    if keypoints is not None:
        folder = Path(keypoints)
        if not folder.is_dir():
            raise DataError(folder, "keypoint folder not found (expected an OpenPose JSON folder)")
        return folder
    from mmad.pose import PoseExtraNotInstalled, extract_pose_video, load_mediapipe_pose

    try:
        load_mediapipe_pose()
    except PoseExtraNotInstalled:
        raise DataError(video, NO_KEYPOINTS_HINT) from None
    out = Path(work_dir) / Path(video).stem
    extract_pose_video(video, out, progress=False)
    return out


def detect_video(video: str | os.PathLike, *, recognizer: str | os.PathLike, detector: str | os.PathLike,
                 keypoints: str | os.PathLike | None = None, device: str | None = None,
                 work_dir: str | os.PathLike | None = None) -> VideoDetections:
    """Detect micro-actions in one video.

    Args:
        video: the video file.
        recognizer: the recognition checkpoint the detector's features came from.
        detector: a ``mmad detection train`` checkpoint (its config gives the encoder settings and
            post-processing).
        keypoints: the video's OpenPose JSON folder; None runs MediaPipe (pose extra) into ``work_dir``.
        device: cpu, cuda, ... (default: cuda when available).

    Returns:
        :class:`VideoDetections` in seconds.
    """
    from detection.encoder import ClipEncoder
    from detection.features import checkpoint_hash
    from detection.postprocess import postprocess_detections
    from detection.timeline import Timeline
    from mmad.video import probe

    video = Path(video)
    info = probe(video)
    if keypoints is None:
        from mmad.pose import PoseExtraNotInstalled, load_mediapipe_pose

        try:
            load_mediapipe_pose()
        except PoseExtraNotInstalled:
            raise DataError(video, NO_KEYPOINTS_HINT) from None
    run_device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, cfg = load_detector(detector, device=run_device)
    if cfg.data.encoder_hash and Path(recognizer).is_file() and checkpoint_hash(recognizer) != cfg.data.encoder_hash:
        raise ConfigError(f"{detector} was trained on features of encoder {cfg.data.encoder_hash}, "
                          f"but {recognizer} hashes to {checkpoint_hash(recognizer)}")
    encoder = ClipEncoder.from_checkpoint(recognizer, encoder_cfg=cfg.encoder, device=run_device)
    if encoder.feature_dim != cfg.model.feature_dim:
        raise ConfigError(f"the recognizer gives {encoder.feature_dim} features per step but the detector expects "
                          f"{cfg.model.feature_dim} (model.feature_dim): is it the recognizer it was trained on?")
    with tempfile.TemporaryDirectory(prefix="mmad-pose-") as scratch:
        folder = video_keypoints(video, keypoints, work_dir=work_dir or scratch)
        features, times = encoder.encode_video(video, folder)
    timeline = Timeline.from_times(times, fps=info.fps, stride_frames=encoder.stride_frames, source=str(video))
    feats = torch.from_numpy(features.astype("float32")).T[None].to(run_device)  # (1, F, N)
    mask = torch.ones(1, feats.shape[-1], dtype=torch.bool, device=run_device)
    post = cfg.postprocess
    with torch.no_grad():
        output = model(feats, mask)
        table = postprocess_detections(
            output, timelines=[timeline], durations=[info.duration], video_ids=[video.stem],
            score_threshold=post.score_threshold, pre_nms_topk=post.pre_nms_topk, nms_sigma=post.nms_sigma,
            min_score=post.min_score, max_segments=post.max_segments, min_duration=post.min_duration,
            voting_iou=post.voting_iou)
    names, groups = label_names(cfg.model.num_classes)
    table = table.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    table["label"] = table["label"].astype(int)
    table["class_name"] = [names[i] for i in table["label"]]
    table["body_group"] = [groups[i] for i in table["label"]]
    return VideoDetections(video_id=video.stem, duration=info.duration, fps=info.fps,
                           detections=table[DETECTION_COLUMNS])


def plot_detection_timeline(result: VideoDetections, path: str | os.PathLike) -> Path:
    """A PNG with one row per detected class and a bar per detection (alpha = score) over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = result.detections
    classes = sorted(set(table["label"].astype(int))) if len(table) else []
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.35 * max(len(classes), 1)))
    for row, label in enumerate(classes):
        hits = table[table["label"] == label]
        for t_start, t_end, score in hits[["t_start", "t_end", "score"]].itertuples(index=False):
            ax.broken_barh([(t_start, max(t_end - t_start, 1e-3))], (row - 0.4, 0.8), color="tab:blue",
                           alpha=float(0.2 + 0.8 * min(max(score, 0.0), 1.0)))
    names = dict(zip(table["label"].astype(int), table["class_name"]))
    ax.set_yticks(range(len(classes)))
    ax.set_yticklabels([f"{c}: {names[c]}" for c in classes], fontsize=8)
    ax.set_ylim(-0.6, max(len(classes), 1) - 0.4)
    ax.set_xlim(0, result.duration)
    ax.set_xlabel("time (s)")
    ax.set_title(f"{result.video_id}: {len(table)} detections" if len(table) else f"{result.video_id}: no detections")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_detections(result: VideoDetections, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``<video_id>.json``, ``<video_id>.csv`` and ``<video_id>_timeline.png`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{result.video_id}.json"
    json_path.write_text(json.dumps(result.to_dict(), indent=2), encoding="utf-8")
    csv_path = out / f"{result.video_id}.csv"
    table = result.detections[DETECTION_COLUMNS].round({"t_start": 4, "t_end": 4, "score": 6})
    table.to_csv(csv_path, index=False)
    png_path = plot_detection_timeline(result, out / f"{result.video_id}_timeline.png")
    return {"json": json_path, "csv": csv_path, "timeline": png_path}
