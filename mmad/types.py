"""The typed records that flow between the stages (see DESIGN: "The data that flows").

Time is in seconds everywhere. Frames appear only where a file format uses them.
Tensors are ``torch.Tensor``; torch is imported lazily so that readers stay light.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass(frozen=True)
class Segment:
    """One labelled action instance: class id and its onset/offset in seconds."""

    label: int
    t_start: float
    t_end: float

    @property
    def duration(self) -> float:
        return self.t_end - self.t_start


@dataclass
class VideoRecord:
    """An untrimmed video with its (possibly empty) list of labelled segments.

    ``segments`` is empty for an unlabeled video (e.g. MMA-52 test). ``labeled`` tells the two
    cases apart from a labelled video without instances.
    """

    video_id: str
    duration: float
    fps: float
    num_frames: int
    segments: list[Segment] = field(default_factory=list)
    subset: str | None = None
    labeled: bool = True
    path: str | None = None


@dataclass
class ClipRecord:
    """A trimmed recognition sample: one video file (or a span of one) with one action label.

    ``label`` is None when the split hides its labels (MA-52 test). ``t_start``/``t_end`` are set
    when the clip is a span of a longer video (iMiGUE), in seconds.
    """

    video_id: str
    path: str
    label: int | None
    body_label: int | None = None
    subject: str | None = None
    split: str | None = None
    t_start: float | None = None
    t_end: float | None = None

    @property
    def labeled(self) -> bool:
        return self.label is not None


@dataclass
class ClipSample:
    """One model input clip.

    Shapes: ``frames`` (T, 3, H, W) float; ``keypoints`` (T, J, 3) pixel x, y, confidence in the
    transformed frame; ``boxes`` (T, K, 4) x1, y1, x2, y2 pixels; ``entity_conf`` (T, K).
    ``label``/``body_label`` are -1 when unknown.
    """

    frames: torch.Tensor
    keypoints: torch.Tensor
    boxes: torch.Tensor
    entity_conf: torch.Tensor
    label: int
    body_label: int
    video_id: str


@dataclass
class ClipBatch:
    """A batch of :class:`ClipSample` with a leading batch dimension B.

    Shapes: ``frames`` (B, T, 3, H, W); ``keypoints`` (B, T, J, 3); ``boxes`` (B, T, K, 4);
    ``entity_conf`` (B, T, K); ``label`` and ``body_label`` (B,) long; ``video_id`` list of B str.
    """

    frames: torch.Tensor
    keypoints: torch.Tensor
    boxes: torch.Tensor
    entity_conf: torch.Tensor
    label: torch.Tensor
    body_label: torch.Tensor
    video_id: list[str]

    @classmethod
    def collate(cls, samples: list[ClipSample]) -> ClipBatch:
        """Stack samples of equal shapes into a batch."""
        import torch

        return cls(
            frames=torch.stack([s.frames for s in samples]),
            keypoints=torch.stack([s.keypoints for s in samples]),
            boxes=torch.stack([s.boxes for s in samples]),
            entity_conf=torch.stack([s.entity_conf for s in samples]),
            label=torch.tensor([s.label for s in samples], dtype=torch.long),
            body_label=torch.tensor([s.body_label for s in samples], dtype=torch.long),
            video_id=[s.video_id for s in samples],
        )

    def to(self, device: Any, non_blocking: bool = False) -> ClipBatch:
        moved = {}
        for f in fields(self):
            v = getattr(self, f.name)
            moved[f.name] = v.to(device, non_blocking=non_blocking) if hasattr(v, "to") else v
        return ClipBatch(**moved)

    def __len__(self) -> int:
        return len(self.video_id)
