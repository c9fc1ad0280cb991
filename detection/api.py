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

from detection.predict import detect_video, load_detection_models


class Detector:
    """A recognizer (the clip encoder) and the temporal head trained on its features.

    Attributes:
        recognizer, detector: the two checkpoint paths.
        cfg: the detector's :class:`~detection.config.DetectionConfig`.
    """

    def __init__(self, recognizer: str | os.PathLike, detector: str | os.PathLike, *, device: str | None = None):
        self.recognizer, self.detector = Path(recognizer), Path(detector)
        # loaded once (the head, its config, the clip encoder), checked to belong together
        self._models = load_detection_models(self.recognizer, self.detector, device=device)
        self.cfg = self._models.cfg
        self.device = str(self._models.device)

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
        result = detect_video(video, keypoints=keypoints, models=self._models)
        return result.detections
