"""A trained recognizer in three lines.

    from recognition.api import Recognizer
    rec = Recognizer.from_checkpoint("runs/ma52_r101/best.pt")
    rec.predict("clip.mp4", keypoints="clip_openpose/")   # DataFrame: rank, class_id, class_name, body_group, score

The checkpoint's stored config rebuilds the model and tells how clips are sampled and cropped; the
clip goes through the same test-time pipeline as ``mmad recognition test`` (the dataset code
itself, on a one-clip dataset), so a prediction here equals the one the test command makes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from mmad.errors import ConfigError, DataError
from mmad.taxonomy import label_set
from mmad.types import ClipBatch, ClipRecord
from recognition.config import RecognitionConfig
from recognition.model import build_model


def load_recognition_checkpoint(checkpoint: str | os.PathLike, *, device: str | torch.device = "cpu",
                                use_ema: bool = True) -> tuple[nn.Module, RecognitionConfig]:
    """``(model in eval mode on device, RecognitionConfig)`` from a ``mmad recognition train`` checkpoint.

    The stored config builds the model; the EMA weights are used when present and ``use_ema``.
    Raises :class:`DataError` naming the file when it is missing, unreadable, of another kind or
    holds no config.
    """
    from mmad.config import from_dict
    from mmad.engine import load_checkpoint, read_checkpoint

    path = Path(checkpoint)
    if not path.is_file() and not path.is_dir():
        raise DataError(path, "recognizer checkpoint not found")
    stored = read_checkpoint(path, kind="recognition").get("config")
    if not isinstance(stored, dict):
        raise DataError(path, "the checkpoint holds no config (write it with `mmad recognition train`)")
    cfg = from_dict(RecognitionConfig, stored)
    model = build_model(cfg.model)
    load_checkpoint(path, model, use_ema=use_ema, map_location="cpu", kind="recognition")
    return model.to(device).eval(), cfg


@dataclass
class _OneVideo:
    """The part of a dataset folder a one-clip :class:`ClipDataset` asks for: its video and keypoints."""

    video: Path
    keypoints: Path | None

    @property
    def root(self) -> Path:
        return self.video.parent

    def video_path(self, record) -> Path:
        return self.video

    def keypoint_folder(self, record) -> Path:
        if self.keypoints is None:
            raise DataError(self.video, "this model needs keypoints: pass keypoints=<OpenPose JSON folder>")
        return self.keypoints

    def pose_pickle(self, split) -> None:
        return None


class Recognizer:
    """A trained Micro-DualNet (or TSM baseline) that classifies single clips.

    Attributes:
        model: the network in eval mode.
        cfg: the :class:`RecognitionConfig` stored in the checkpoint.
        class_names: names in class-id order.
    """

    def __init__(self, model: nn.Module, cfg: RecognitionConfig, *, device: torch.device | str = "cpu"):
        from recognition.task import class_names_of

        self.model = model.eval()
        self.cfg = cfg
        self.device = torch.device(device)
        self.class_names = list(class_names_of(cfg))

    @classmethod
    def from_checkpoint(cls, checkpoint: str | os.PathLike, *, device: str | None = None,
                        use_ema: bool = True) -> Recognizer:
        """Load a ``mmad recognition train`` checkpoint (``best.pt`` / ``last.pt``)."""
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model, cfg = load_recognition_checkpoint(checkpoint, device=dev, use_ema=use_ema)
        return cls(model, cfg, device=dev)

    def clip_batch(self, video: str | os.PathLike, *, keypoints: str | os.PathLike | None = None,
                   views: tuple[int, int] = (1, 1), t_start: float | None = None,
                   t_end: float | None = None) -> ClipBatch:
        """The model input for one clip: a :class:`ClipBatch` of ``clips x crops`` views.

        Args:
            video: the clip's video file (or a long video with ``t_start``/``t_end`` in seconds).
            keypoints: its OpenPose JSON folder (needed by pose models and keypoint-guided boxes).
            views: test views (temporal clips, spatial crops), as ``mmad recognition test --views``.
        """
        from recognition.data import ClipDataset

        video = Path(video)
        if not video.is_file():
            raise DataError(video, "video not found")
        if keypoints is not None and not Path(keypoints).is_dir():
            raise DataError(keypoints, "keypoint folder not found (expected an OpenPose JSON folder)")
        data_cfg = self.cfg.data
        if data_cfg.keypoint_source != "openpose_json":
            data_cfg = replace(data_cfg, keypoint_source="openpose_json")
        model_cfg = self.cfg.model
        need_keypoints = model_cfg.uses_pose or data_cfg.entity_boxes.startswith("keypoints")
        if need_keypoints and keypoints is None:
            raise DataError(video, "this model needs the clip's keypoints: pass keypoints=<OpenPose JSON folder> "
                                   "(`mmad pose extract VIDEO --out DIR` writes one)")
        record = ClipRecord(video_id=video.stem, path=str(video), label=None, t_start=t_start, t_end=t_end)
        dataset = ClipDataset([record], cfg=data_cfg, layout=model_cfg.keypoint_layout,
                              entities=model_cfg.entity_names, train=False,
                              dataset_info=_OneVideo(video, None if keypoints is None else Path(keypoints)),
                              views=views, need_keypoints=need_keypoints, decode_frames=model_cfg.uses_rgb)
        return ClipBatch.collate([dataset[i] for i in range(len(dataset))])

    @torch.no_grad()
    def scores(self, video: str | os.PathLike, **kwargs) -> np.ndarray:
        """(C,) class probabilities of one clip, the softmax averaged over its views."""
        batch = self.clip_batch(video, **kwargs).to(self.device)
        logits = self.model(batch).logits
        return logits.float().softmax(dim=-1).mean(dim=0).cpu().numpy()

    def predict(self, video: str | os.PathLike, *, keypoints: str | os.PathLike | None = None, top_k: int = 5,
                views: tuple[int, int] = (1, 1), t_start: float | None = None,
                t_end: float | None = None) -> pd.DataFrame:
        """The ``top_k`` classes of one clip, best first.

        Returns:
            DataFrame with columns rank (1 = best), class_id, class_name, body_group (MA-52 body
            part, None for other label sets) and score (probability).
        """
        if top_k < 1:
            raise ConfigError(f"top_k must be >= 1, got {top_k}")
        probs = self.scores(video, keypoints=keypoints, views=views, t_start=t_start, t_end=t_end)
        order = np.argsort(-probs, kind="stable")[:top_k]
        groups = label_set(len(probs))[1]
        return pd.DataFrame({
            "rank": np.arange(1, len(order) + 1),
            "class_id": order.astype(int),
            "class_name": [self.class_names[i] for i in order],
            "body_group": [groups[i] for i in order],
            "score": probs[order].astype(float),
        })

