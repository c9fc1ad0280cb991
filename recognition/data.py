"""The recognition clip dataset: records in, :class:`mmad.types.ClipSample` out.

One item of :class:`ClipDataset` is made in six steps:

1. **Frame range.** The whole video (MA-52 trimmed clips) or the span ``[t_start, t_end]`` of a
   long video (iMiGUE), converted to frames with the video's own fps.
2. **Frame indices.** ``sampling="dense"``: ``num_frames`` frames ``frame_stride`` apart, at a
   random start in training (when ``temporal_jitter``) and centred in testing; a clip shorter
   than that span gets the largest stride that fits, so frames always run forward in time;
   ``sampling="segments"``: one frame per equal segment, random inside it in training and at its
   centre in testing (TSN).
3. **Decoding** of only those frames, resized on decode so the short side is
   ``resize_short_side``.
4. **Keypoints** of every frame of the range, from the OpenPose JSON folder of the clip or the
   split's pose pickle (read once per process and kept in memory).
5. **Entity boxes** (Table III's options) computed on the keypoints of the whole range (so
   Eq. 1's carry-forward sees every frame), then taken at the sampled frames; keypoints and boxes
   are rescaled from native pixels to the decoded frame size.
6. **Transforms** moving frames, keypoints and boxes together: random resized crop, horizontal
   flip (hands swap) and colour jitter in training; a centre crop (or one of several crops)
   in testing. Frames stay in ``[0, 1]``: the model applies the ImageNet normalisation.

With ``data.prepared_dir`` (a folder written by ``mmad data prepare``, see
:mod:`mmad.datasets.prepare`) steps 3 and 4 read a video's prepared copy where it is up to date:
the frames by decoding the small re-encoded video from the keyframes nearest to them and resizing
to the size the original would give, the keypoints from one array file in the original's pixels;
the frame range comes from the manifest instead of probing the original. Indices, keypoints and boxes are the same; pixels differ
by the re-encoding only. A stale or unreadable copy is skipped with a warning.

Multi-view testing: with ``views=(clips, crops)`` each record yields ``clips x crops`` items
(item ``i`` is record ``i // num_views``, view ``i % num_views``): ``clips`` temporal clips
spread evenly over the range and ``crops`` spatial crops along the frame's long side (1: centre;
3: start, centre, end). Scores of one record's views are averaged by the caller.

A bad item (missing or unreadable video, missing keypoints) raises :class:`DataError` naming
the file; the training engine skips and lists it.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from mmad.datasets.layout import DatasetInfo
from mmad.entities import center_crop_boxes, entity_boxes, fixed_region_boxes
from mmad.errors import ConfigError, DataError
from mmad.keypoints import (
    get_layout,
    openpose_frame_path,
    read_openpose_folder,
    read_openpose_frame,
    read_pose_pickle,
    select_person,
    select_person_from_tracks,
)
from mmad.transforms import (
    CenterCrop,
    ClipArrays,
    ColorJitter,
    Compose,
    HorizontalFlip,
    RandomResizedCrop,
    Resize,
    rescale_annotations,
)
from mmad.types import ClipBatch, ClipRecord, ClipSample
from mmad.video import (
    dense_indices,
    fitting_stride,
    probe,
    read_frames,
    resized_size,
    seek_frames,
    segment_indices,
)
from recognition.config import DataConfig, RecognitionConfig

log = logging.getLogger("mmad.recognition")

__all__ = [
    "ClipDataset",
    "build_dataset",
    "build_datasets",
    "clip_frame_range",
    "dense_view_indices",
    "segment_view_indices",
    "clear_pose_cache",
]

# ----------------------------------------------------------------------------- pose pickles

_POSE_CACHE: dict[str, dict[str, np.ndarray]] = {}
_POSE_LOCK = threading.Lock()


def _pose_pickle(path: Path) -> dict[str, np.ndarray]:
    """``{frame_dir: (M, T, V, 3)}`` of a pose pickle, read once per process."""
    key = str(Path(path).resolve())
    with _POSE_LOCK:
        if key not in _POSE_CACHE:
            _POSE_CACHE[key] = read_pose_pickle(path)
        return _POSE_CACHE[key]


def clear_pose_cache() -> None:
    """Forget the pose pickles held in memory."""
    with _POSE_LOCK:
        _POSE_CACHE.clear()


# ----------------------------------------------------------------------------- sampling


def clip_frame_range(record: ClipRecord, *, fps: float, num_frames: int) -> tuple[int, int]:
    """``(first, stop)`` frame indices of a record: the whole video, or its ``[t_start, t_end]`` span.

    The span covers frames whose index lies in ``[floor(t_start * fps), ceil(t_end * fps))``,
    clipped to the video and never empty. Raises DataError when the span starts past the end.
    """
    if record.t_start is None or record.t_end is None:
        return 0, int(num_frames)
    first = max(0, int(math.floor(record.t_start * fps + 1e-6)))
    stop = min(int(num_frames), int(math.ceil(record.t_end * fps - 1e-6)))
    if first >= num_frames:
        raise DataError(record.path, f"span {record.t_start:.2f}-{record.t_end:.2f} s starts after the video's "
                                     f"{num_frames} frames", where=record.video_id)
    return first, max(stop, first + 1)


def dense_view_indices(length: int, num_samples: int, stride: int, *, view: int, num_views: int) -> np.ndarray:
    """Test-time dense sampling of temporal view ``view`` of ``num_views``: (num_samples,) int64.

    The views' start frames are spread evenly from the first to the last possible start (one view:
    centred). A range shorter than the span is sampled with the largest stride that fits, in
    temporal order (:func:`mmad.video.dense_indices`); never wrapped around.
    """
    stride = fitting_stride(length, num_samples, stride)
    if num_views <= 1 or stride < 1:
        return dense_indices(length, num_samples, max(stride, 1), train=False)
    steps = np.arange(num_samples, dtype=np.int64) * stride
    span = int(steps[-1]) + 1
    start = int(round(view * (length - span) / (num_views - 1)))
    return start + steps


def segment_view_indices(length: int, num_segments: int, *, view: int, num_views: int) -> np.ndarray:
    """Test-time TSN sampling of view ``view``: inside each segment at offset ``(view + 0.5) / num_views``."""
    seg_len = length / num_segments
    offset = (view + 0.5) / max(num_views, 1)
    positions = (np.arange(num_segments) + offset) * seg_len
    return np.clip(np.floor(positions).astype(np.int64), 0, length - 1)


def _crop_along_long_side(clip: ClipArrays, size: int, *, position: float) -> ClipArrays:
    """Square ``size`` crop centred on the short side, at ``position`` in [0, 1] along the long side."""
    clip = clip.as_tensors()
    width, height = clip.frame_size
    if size > width or size > height:
        raise ValueError(f"crop {size} is larger than the frame {height}x{width}")
    if width >= height:
        x0, y0 = int(round(position * (width - size))), (height - size) // 2
    else:
        x0, y0 = (width - size) // 2, int(round(position * (height - size)))
    frames = clip.frames[:, :, y0:y0 + size, x0:x0 + size]
    keypoints, boxes, entity_conf = clip.keypoints, clip.boxes, clip.entity_conf
    if keypoints is not None:
        missing = keypoints[..., 2] <= 0
        keypoints = keypoints.clone()
        keypoints[..., 0] -= x0
        keypoints[..., 1] -= y0
        keypoints[missing] = 0.0
    if boxes is not None:
        shifted = boxes.clone()
        shifted[..., 0::2] -= x0
        shifted[..., 1::2] -= y0
        clipped = shifted.clone()
        clipped[..., 0::2] = clipped[..., 0::2].clamp(0.0, float(size))
        clipped[..., 1::2] = clipped[..., 1::2].clamp(0.0, float(size))
        if entity_conf is not None:
            gone = ((clipped[..., 2] <= clipped[..., 0]) | (clipped[..., 3] <= clipped[..., 1])) & (
                (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1]))
            entity_conf = torch.where(gone, torch.zeros_like(entity_conf), entity_conf)
        boxes = clipped
    return replace(clip, frames=frames, keypoints=keypoints, boxes=boxes, entity_conf=entity_conf)


class _CropAt:
    """A transform wrapper of :func:`_crop_along_long_side` (test-time spatial views)."""

    def __init__(self, size: int, position: float):
        self.size, self.position = size, position

    def __call__(self, clip: ClipArrays) -> ClipArrays:
        return _crop_along_long_side(clip, self.size, position=self.position)

    def __repr__(self) -> str:
        return f"CropAt({self.size}, position={self.position})"


def _resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(T, H, W, 3) uint8 frames resized to ``size`` (W, H), antialiased bilinear (torch's uint8
    kernel on channels-last memory: several times faster than converting with a scaler)."""
    if (frames.shape[2], frames.shape[1]) == tuple(size):
        return frames
    channels_first = torch.from_numpy(frames).permute(0, 3, 1, 2)  # a view: channels-last memory
    resized = F.interpolate(channels_first, size=(size[1], size[0]), mode="bilinear", antialias=True,
                            align_corners=False)
    return resized.permute(0, 2, 3, 1).numpy()


# ----------------------------------------------------------------------------- the dataset


class ClipDataset(Dataset):
    """Clips of recognition records as :class:`ClipSample` s.

    Args:
        records: the clips (MA-52 list or iMiGUE CSV records).
        cfg: sampling, keypoint source, entity boxes and augmentation settings.
        layout: skeleton layout of the keypoints the model expects (J of ``keypoints``);
            OpenPose folders are read as ``body25_hands`` (or ``body25_hands_face``) and cut to it.
        entities: entity names in model order (K of ``boxes``).
        train: random sampling and augmentation; otherwise deterministic test views.
        dataset_info: the dataset folder (keypoint folders, pose pickles).
        views: ``(temporal clips, spatial crops)`` per record at test time; ``(1, 1)`` in training.
        need_keypoints: when False and a clip has no keypoints, zero keypoints are used instead
            of raising (rgb models with fixed-region or centre-crop boxes).
        decode_frames: when False the video is only probed and ``frames`` are zeros of the same
            size (for pose-only models, which never look at pixels).

    Item ``i``: a ClipSample with ``frames`` (T, 3, S, S) float in [0, 1] (S = ``image_size``),
    ``keypoints`` (T, J, 3) pixels of the output frame, ``boxes`` (T, K, 4) pixels,
    ``entity_conf`` (T, K), ``label`` / ``body_label`` (-1 when unknown), ``video_id``.
    """

    def __init__(
        self,
        records: Sequence[ClipRecord],
        *,
        cfg: DataConfig,
        layout: str,
        entities: Sequence[str],
        train: bool,
        dataset_info: DatasetInfo,
        views: tuple[int, int] = (1, 1),
        need_keypoints: bool = True,
        decode_frames: bool = True,
    ):
        self.records = list(records)
        self.cfg = cfg
        self.layout = get_layout(layout)
        self.entities = tuple(entities)
        self.train = train
        self.info = dataset_info
        self.need_keypoints = need_keypoints
        self.decode_frames = decode_frames
        self._cache: dict[int, tuple] = {}
        self.prepared = None
        if cfg.prepared_dir:
            from mmad.datasets.prepare import PreparedData

            self.prepared = PreparedData(cfg.prepared_dir, root=dataset_info.root,
                                         min_short_side=cfg.resize_short_side)
        num_clips, num_crops = (int(v) for v in views)
        if num_clips < 1 or num_crops < 1:
            raise ConfigError(f"views must be at least 1x1, got {num_clips}x{num_crops}")
        if train and (num_clips, num_crops) != (1, 1):
            raise ConfigError("multi-view sampling is for testing only")
        self.num_clips, self.num_crops = num_clips, num_crops
        if cfg.keypoint_source == "openpose_json" and self.layout.name not in ("body25_hands", "body25",
                                                                               "body25_hands_face"):
            raise ConfigError(f"OpenPose JSON keypoints give BODY_25 layouts, not {self.layout.name!r}: "
                              "set model.keypoint_layout or data.keypoint_source=pickle")
        self._train_transform = self._build_train_transform() if train else None
        self._test_transforms = None if train else [self._build_test_transform(c) for c in range(num_crops)]

    # -- size and indexing ----------------------------------------------------------------------

    @property
    def num_views(self) -> int:
        return self.num_clips * self.num_crops

    def __len__(self) -> int:
        return len(self.records) * self.num_views

    def record_index(self, index: int) -> int:
        """The record behind item ``index``."""
        return index // self.num_views

    @property
    def labels(self) -> np.ndarray:
        """(N_records,) labels, -1 where unknown."""
        return np.array([-1 if r.label is None else r.label for r in self.records], dtype=np.int64)

    # -- transforms -----------------------------------------------------------------------------

    def _build_train_transform(self) -> Compose:
        cfg = self.cfg
        steps: list = [RandomResizedCrop(cfg.image_size, scale=tuple(cfg.crop_scale), ratio=tuple(cfg.crop_ratio))]
        if cfg.flip_prob > 0:
            steps.append(HorizontalFlip(self.layout, p=cfg.flip_prob, entities=self.entities))
        if self.decode_frames and cfg.color_jitter > 0:
            strength = cfg.color_jitter
            steps.append(ColorJitter(brightness=strength, contrast=strength, saturation=strength))
        return Compose(steps)

    def _build_test_transform(self, crop: int) -> Compose:
        cfg = self.cfg
        if self.num_crops == 1:
            return Compose([Resize(cfg.resize_short_side), CenterCrop(cfg.image_size)])
        position = crop / (self.num_crops - 1)
        return Compose([Resize(cfg.resize_short_side), _CropAt(cfg.image_size, position)])

    # -- loading --------------------------------------------------------------------------------

    def _frame_indices(self, length: int, temporal_view: int, rng: np.random.Generator) -> np.ndarray:
        cfg = self.cfg
        if cfg.sampling == "segments":
            if self.train and cfg.temporal_jitter:
                return segment_indices(length, cfg.num_frames, train=True, rng=rng)
            return segment_view_indices(length, cfg.num_frames, view=temporal_view, num_views=self.num_clips)
        if self.train and cfg.temporal_jitter:
            return dense_indices(length, cfg.num_frames, cfg.frame_stride, train=True, rng=rng)
        return dense_view_indices(length, cfg.num_frames, cfg.frame_stride, view=temporal_view,
                                  num_views=self.num_clips)

    def _openpose_keypoints(self, record: ClipRecord, first: int, stop: int, frame_size) -> np.ndarray:
        """(stop - first, J_read, 3) keypoints of the frame range from the record's JSON folder."""
        folder = self.info.keypoint_folder(record)
        with_face = self.layout.name == "body25_hands_face"
        if record.t_start is None:
            kp = read_openpose_folder(folder, with_face=with_face, frame_size=frame_size)
            length = stop - first
            if kp.shape[0] < length:
                kp = np.concatenate([kp, np.zeros((length - kp.shape[0], *kp.shape[1:]), np.float32)])
            return kp[first:stop]
        # a span of a long video: read only that span's files
        if not Path(folder).is_dir():
            raise DataError(folder, "keypoint folder not found", where=record.video_id)
        stem = Path(folder).name
        num_joints = 137 if with_face else 67
        people = []
        for index in range(first, stop):
            path = openpose_frame_path(folder, stem, index)
            if path.is_file():
                people.append(read_openpose_frame(path, with_face=with_face))
            else:
                people.append(np.zeros((0, num_joints, 3), np.float32))
        return select_person(people, num_joints=num_joints)

    def _pickle_keypoints(self, record: ClipRecord, first: int, stop: int) -> np.ndarray:
        split = record.split or self.cfg.train_split
        path = self.info.pose_pickle(split)
        if path is None:
            raise DataError(self.info.root / f"MA52_{split}.pkl", "pose pickle not found", where=record.video_id)
        poses = _pose_pickle(path)
        key = record.video_id if record.video_id in poses else Path(record.path).name
        if key not in poses:
            raise DataError(path, f"no pose annotation for clip {record.video_id}")
        kp = select_person_from_tracks(poses[key])
        length = stop - first
        if kp.shape[0] < stop:
            kp = np.concatenate([kp, np.zeros((stop - kp.shape[0], *kp.shape[1:]), np.float32)])
        return kp[first:first + length]

    def _prepared_entry(self, record: ClipRecord):
        """The up-to-date prepared copy of the record's video, or None (no prepared data, or stale)."""
        if self.prepared is None:
            return None
        return self.prepared.entry(self.info.video_path(record), self.info.keypoint_folder(record))

    def _prepared_keypoints(self, record: ClipRecord, first: int, stop: int) -> np.ndarray | None:
        """(stop - first, 67, 3) keypoints from the prepared keypoint file, or None where there is none."""
        entry = self._prepared_entry(record)
        if entry is None or entry.keypoints is None or self.layout.name == "body25_hands_face":
            return None
        try:
            return self.prepared.keypoints(entry, first, stop, span=record.t_start is not None)
        except DataError as exc:
            self.prepared.drop(self.info.video_path(record), exc)
            return None

    def _keypoints(self, record: ClipRecord, first: int, stop: int, frame_size) -> np.ndarray:
        """(stop - first, J, 3) keypoints of the range in ``self.layout`` (native pixels)."""
        try:
            if self.cfg.keypoint_source == "pickle":
                kp = self._pickle_keypoints(record, first, stop)
            else:
                kp = self._prepared_keypoints(record, first, stop)
                if kp is None:
                    kp = self._openpose_keypoints(record, first, stop, frame_size)
        except DataError:
            if self.need_keypoints:
                raise
            return np.zeros((stop - first, self.layout.num_joints, 3), np.float32)
        if kp.shape[1] > self.layout.num_joints and self.cfg.keypoint_source == "openpose_json":
            kp = kp[:, : self.layout.num_joints]
        if kp.shape[1] != self.layout.num_joints:
            raise DataError(record.path, f"keypoints have {kp.shape[1]} joints, layout {self.layout.name} "
                                         f"needs {self.layout.num_joints}", where=record.video_id)
        return kp

    def _boxes(self, keypoints: np.ndarray, frame_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(T, K, 4) boxes and (T, K) entity confidences of a keypoint track (native pixels)."""
        cfg, num_frames = self.cfg, keypoints.shape[0]
        if cfg.entity_boxes == "fixed_regions":
            return fixed_region_boxes(num_frames, frame_size, self.entities)
        if cfg.entity_boxes == "center_crop":
            return center_crop_boxes(num_frames, frame_size, len(self.entities))
        no_conf = cfg.entity_boxes == "keypoints_no_confidence"
        boxes, conf = entity_boxes(
            keypoints, self.layout, entities=self.entities,
            conf_threshold=0.0 if no_conf else cfg.confidence_threshold,
            pad=cfg.box_padding, frame_size=frame_size)
        if no_conf:
            conf = np.ones_like(conf)
        return boxes, conf

    def _annotations(self, record_index: int):
        """(native (W, H), first, stop, keypoints (L, J, 3), boxes (L, K, 4), entity_conf (L, K)) of a record."""
        if record_index in self._cache:
            return self._cache[record_index]
        record = self.records[record_index]
        # the prepared copy's manifest entry or the original's header: (upright) size, fps, frame count
        video = self._prepared_entry(record) or probe(self.info.video_path(record))
        native = (video.width, video.height)
        first, stop = clip_frame_range(record, fps=video.fps, num_frames=video.num_frames)
        keypoints = self._keypoints(record, first, stop, native)
        boxes, entity_conf = self._boxes(keypoints, native)
        result = (native, first, stop, keypoints, boxes, entity_conf)
        if self.cfg.cache_keypoints:
            self._cache[record_index] = result
        return result

    def _read_frames(self, record: ClipRecord, indices: np.ndarray, native: tuple[int, int]) -> np.ndarray:
        """(T, H, W, 3) uint8 frames at ``indices``, the shorter side ``resize_short_side`` of the
        original's aspect: from the prepared copy by seeking when there is one, else the original."""
        path = self.info.video_path(record)
        entry = self._prepared_entry(record)
        if entry is not None:
            try:
                frames = seek_frames(self.prepared.video_path(entry), indices)
                return _resize_frames(frames, resized_size(*native, self.cfg.resize_short_side))
            except DataError as exc:
                self.prepared.drop(path, exc)
        return read_frames(path, indices, size=self.cfg.resize_short_side)

    def __getitem__(self, index: int) -> ClipSample:
        if not 0 <= index < len(self):
            raise IndexError(index)
        record = self.records[self.record_index(index)]
        view = index % self.num_views
        temporal_view, crop = divmod(view, self.num_crops)
        native, first, stop, keypoints, boxes, entity_conf = self._annotations(self.record_index(index))
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ())))
        local = self._frame_indices(stop - first, temporal_view, rng)
        if self.decode_frames:
            frames = self._read_frames(record, first + local, native)
        else:
            scale = self.cfg.resize_short_side / min(native)
            size = (max(1, round(native[1] * scale)), max(1, round(native[0] * scale)))
            frames = np.zeros((len(local), *size, 3), dtype=np.uint8)
        clip = ClipArrays(frames=frames, keypoints=keypoints[local], boxes=boxes[local],
                          entity_conf=entity_conf[local])
        clip = rescale_annotations(clip, native)
        transform = self._train_transform if self.train else self._test_transforms[crop]
        clip = transform(clip)
        return ClipSample(
            frames=clip.frames.contiguous(),
            keypoints=clip.keypoints.contiguous(),
            boxes=clip.boxes.contiguous(),
            entity_conf=clip.entity_conf.contiguous(),
            label=-1 if record.label is None else int(record.label),
            body_label=-1 if record.body_label is None else int(record.body_label),
            video_id=record.video_id,
        )

    @staticmethod
    def collate(samples: list[ClipSample]) -> ClipBatch:
        """Stack samples into a :class:`ClipBatch`."""
        return ClipBatch.collate(samples)


# ----------------------------------------------------------------------------- building


def _read_records(cfg: DataConfig, info: DatasetInfo, split: str) -> list[ClipRecord]:
    if cfg.format == "imigue" and cfg.labels_file:
        from mmad.datasets import read_imigue_csv

        labels = Path(cfg.labels_file)
        labels = labels if labels.is_absolute() else info.root / labels
        return list(read_imigue_csv(labels, split=split, root=info.root))
    return list(info.read(split))


def _open_data(cfg: DataConfig) -> DatasetInfo:
    from mmad.datasets import open_dataset

    info = open_dataset(cfg.root)
    if info.layout != cfg.format:
        raise ConfigError(f"data.format is {cfg.format!r} but {cfg.root} holds a {info.layout!r} dataset")
    return info


def holdout_subjects(records: Sequence[ClipRecord], *, fraction: float, seed: int) -> list[str]:
    """The subjects of ``records`` held out for validation: ``round(fraction * #subjects)`` (at
    least one, never all), drawn with ``numpy.random.default_rng(seed)`` from the sorted subject
    ids. Raises ConfigError when a record has no subject id."""
    unknown = [r.video_id for r in records if r.subject is None]
    if unknown:
        raise ConfigError(f"data.val_holdout: clip {unknown[0]} has no subject id, so no subject-disjoint "
                          "validation split can be held out; set data.val_holdout=0 (no validation)")
    subjects = sorted({str(r.subject) for r in records}, key=lambda v: (len(v), v))
    if len(subjects) < 2:
        raise ConfigError(f"data.val_holdout: the training split has {len(subjects)} subject(s); a subject-disjoint "
                          "validation split needs at least 2 (or set data.val_holdout=0)")
    count = min(len(subjects) - 1, max(1, round(fraction * len(subjects))))
    order = np.random.default_rng(seed).permutation(len(subjects))
    return sorted((subjects[i] for i in order[:count]), key=lambda v: (len(v), v))


def _split_records(cfg: DataConfig, info: DatasetInfo, split: str) -> list[ClipRecord]:
    """Records of ``split``; without a val split in the data, val is held out of train (by subject).

    Validation never falls back to the test split.
    """
    if split in info.splits:
        records = _read_records(cfg, info, split)
        if split != cfg.train_split or cfg.val_split in info.splits or not cfg.val_split or cfg.val_holdout <= 0:
            return records
        held = set(holdout_subjects(records, fraction=cfg.val_holdout, seed=cfg.val_holdout_seed))
        return [r for r in records if str(r.subject) not in held]
    if split == cfg.val_split and cfg.train_split in info.splits:
        if cfg.val_holdout <= 0:
            raise DataError(info.root, f"no split {split!r} and data.val_holdout is 0: nothing to validate on")
        records = _read_records(cfg, info, cfg.train_split)
        held = set(holdout_subjects(records, fraction=cfg.val_holdout, seed=cfg.val_holdout_seed))
        return [r for r in records if str(r.subject) in held]
    raise DataError(info.root, f"no split {split!r} (found: {', '.join(info.splits)})")


def _write_holdout(cfg: RecognitionConfig, records: Sequence[ClipRecord]) -> None:
    """``val_holdout.txt`` in the run folder: the held-out subjects and clips (rank 0 only)."""
    import os

    from mmad.fileio import atomic_write_text

    if int(os.environ.get("RANK", "0")) != 0:
        return
    subjects = sorted({str(r.subject) for r in records}, key=lambda v: (len(v), v))
    lines = [f"# validation split held out of '{cfg.data.train_split}' (data.val_holdout={cfg.data.val_holdout}, "
             f"data.val_holdout_seed={cfg.data.val_holdout_seed}); never the test split",
             "subjects: " + " ".join(subjects), *(r.video_id for r in records)]
    atomic_write_text(Path(cfg.out) / "val_holdout.txt", "\n".join(lines) + "\n")


def build_dataset(cfg: RecognitionConfig, split: str, *, train: bool, views: tuple[int, int] = (1, 1),
                  info: DatasetInfo | None = None) -> ClipDataset:
    """The :class:`ClipDataset` of one split of ``cfg.data.root`` (val may be held out of train)."""
    info = info if info is not None else _open_data(cfg.data)
    records = _split_records(cfg.data, info, split)
    # keypoint files are required only when the model reads them or boxes made from them
    need_keypoints = cfg.model.uses_pose or (cfg.model.uses_boxes and cfg.data.entity_boxes.startswith("keypoints"))
    return ClipDataset(records, cfg=cfg.data, layout=cfg.model.keypoint_layout, entities=cfg.model.entity_names,
                       train=train, dataset_info=info, views=views, need_keypoints=need_keypoints,
                       decode_frames=cfg.model.uses_rgb)


def build_datasets(cfg: RecognitionConfig) -> tuple[ClipDataset, ClipDataset | None]:
    """(training set, validation set) of ``cfg``.

    Validation is None when ``data.val_split`` is empty, or when the data has no val split and
    ``data.val_holdout`` is 0; otherwise a dataset without a val split validates on training
    subjects held out of training (listed in ``cfg.out/val_holdout.txt``), never on test.
    """
    info = _open_data(cfg.data)
    train = build_dataset(cfg, cfg.data.train_split, train=True, info=info)
    if not cfg.data.val_split or (cfg.data.val_split not in info.splits and cfg.data.val_holdout <= 0):
        if cfg.data.val_split:
            log.info("%s has no %r split and data.val_holdout is 0: no validation, keep the last epoch",
                     info.root, cfg.data.val_split)
        return train, None
    val = build_dataset(cfg, cfg.data.val_split, train=False, info=info)
    if cfg.data.val_split not in info.splits:
        log.info("%s has no %r split: validating on %d clips of held-out training subjects", info.root,
                 cfg.data.val_split, len(val.records))
        _write_holdout(cfg, val.records)
    return train, val
