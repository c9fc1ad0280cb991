"""A trained detector in three lines.

    from detection.api import Detector
    det = Detector.from_checkpoints("runs/rec/best.pt", "runs/det/best.pt")
    det.detect("session.mp4", keypoints="session_openpose/")   # DataFrame of segments, best first

``from_checkpoints`` checks at once that the two checkpoints belong together (the detector was
trained on features of this recognizer); ``detect`` runs the same pipeline as ``mmad detect``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import torch

from detection.predict import detect_video, load_detector


class Detector:
    """A recognizer (the clip encoder) and the temporal head trained on its features.

    Attributes:
        recognizer, detector: the two checkpoint paths.
        cfg: the detector's :class:`~detection.config.DetectionConfig`.
    """

    def __init__(self, recognizer: str | os.PathLike, detector: str | os.PathLike, *, device: str | None = None):
        from detection.encoder import load_recognizer
        from detection.features import checkpoint_hash
        from mmad.errors import ConfigError

        self.recognizer, self.detector = Path(recognizer), Path(detector)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        _, self.cfg = load_detector(self.detector, device="cpu")
        load_recognizer(self.recognizer, device="cpu")  # a readable recognition checkpoint, or a DataError
        expected = self.cfg.data.encoder_hash
        if expected and checkpoint_hash(self.recognizer) != expected:
            raise ConfigError(f"{self.detector} was trained on features of encoder {expected}, but "
                              f"{self.recognizer} hashes to {checkpoint_hash(self.recognizer)}")

    @classmethod
    def from_checkpoints(cls, recognizer: str | os.PathLike, detector: str | os.PathLike, *,
                         device: str | None = None) -> Detector:
        """The recognition checkpoint (clip encoder) and the ``mmad detection train`` checkpoint."""
        return cls(recognizer, detector, device=device)

    def detect(self, video: str | os.PathLike, *, keypoints: str | os.PathLike | None = None) -> pd.DataFrame:
        """Every micro-action found in ``video``, best first.

        Args:
            video: the video file.
            keypoints: its OpenPose JSON folder; None estimates the pose with MediaPipe (pose extra).

        Returns:
            DataFrame with columns video_id, t_start, t_end (seconds), label (class id),
            class_name, body_group and score.
        """
        result = detect_video(video, recognizer=self.recognizer, detector=self.detector, keypoints=keypoints,
                              device=self.device)
        return result.detections
