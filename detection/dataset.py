"""Cached feature sequences with their ground truth, and the padded batches the head trains on.

Each item is one video: its features (F, N) from the cache, its segments converted from seconds
to step coordinates (through :class:`~detection.timeline.Timeline`, clipped to the steps the
features cover) and its labels. In training a long sequence is cut to ``max_seq_len`` steps at a
random place, and with probability ``crop_prob`` a random shorter window (at least
``min_crop_fraction`` of the sequence) is taken; segments keep their part inside the window when
that part is at least ``min_segment_overlap`` of their length. :func:`collate_features` pads a
list of items into a :class:`FeatureBatch` with a boolean mask.

Clocks: features are timed in their video's container clock, the segments in the clock of the
annotation. When the annotation declares another fps for the same frames (MMA-52: 29 for videos
that decode at 29.97), the item's timeline is re-expressed in the annotation's clock through
frame indices (:func:`detection.timeline.annotation_clock_fps`), so that labels meet the right
steps and predictions come out in the clock of the ground truth they are scored against.

:func:`resolve_feature_source` checks a config against its feature cache before training or
testing: the cache's encoder settings fill the config's null ones (so a trained checkpoint
records them) and a setting that differs is refused, naming it. Features made elsewhere
(``data.feature_stride_frames`` set) are read without the side file.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch.utils.data import Dataset

from detection.features import ForeignFeatures, feature_paths, load_features, load_foreign_features
from detection.timeline import Timeline, annotation_clock_fps
from mmad.errors import ConfigError, DataError
from mmad.types import VideoRecord

# encoder settings a config can state (EncoderConfig fields) and a cache records
ENCODER_SETTING_NAMES = ("window", "window_dilation", "stride_frames", "image_size", "resize_short_side",
                         "entity_tokens")


@dataclass
class FeatureSequence:
    """One video's sequence. ``feats`` (F, N) float32; ``segments`` (M, 2) step coordinates;
    ``labels`` (M,) long; ``timeline`` maps step coordinates to seconds of the annotation's clock,
    whose frame rate is ``fps``; ``duration`` in seconds."""

    feats: torch.Tensor
    segments: torch.Tensor
    labels: torch.Tensor
    video_id: str
    timeline: Timeline
    duration: float
    fps: float
    stride_frames: int


@dataclass
class FeatureBatch:
    """A padded batch of B sequences.

    Shapes: ``feats`` (B, F, N) float32, zero on padding; ``mask`` (B, N) bool, True on real steps;
    ``segments`` B tensors (M_b, 2) in step coordinates; ``labels`` B tensors (M_b,) long.
    ``timelines``, ``durations`` (seconds), ``fps``, ``stride_frames`` and ``video_ids`` are per-video
    lists used to decode detections back to seconds.
    """

    feats: torch.Tensor
    mask: torch.Tensor
    segments: list[torch.Tensor]
    labels: list[torch.Tensor]
    video_ids: list[str]
    timelines: list[Timeline]
    durations: list[float]
    fps: list[float]
    stride_frames: list[int]

    def to(self, device, non_blocking: bool = False) -> FeatureBatch:
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                value = value.to(device, non_blocking=non_blocking)
            elif f.name in ("segments", "labels"):
                value = [v.to(device, non_blocking=non_blocking) for v in value]
            moved[f.name] = value
        return FeatureBatch(**moved)

    def __len__(self) -> int:
        return len(self.video_ids)


def segments_to_steps(video: VideoRecord, timeline: Timeline) -> tuple[torch.Tensor, torch.Tensor]:
    """A video's segments in step coordinates, clipped to the covered steps: (M, 2) float32 and (M,) long.

    Segments that end up empty after clipping are dropped; a video with hidden labels has none.
    """
    low, high = timeline.extent_steps
    rows, labels = [], []
    for seg in video.segments if video.labeled else []:
        onset = min(max(timeline.to_steps(seg.t_start), low), high)
        offset = min(max(timeline.to_steps(seg.t_end), low), high)
        if offset > onset:
            rows.append((onset, offset))
            labels.append(seg.label)
    return (torch.tensor(rows, dtype=torch.float32).reshape(-1, 2), torch.tensor(labels, dtype=torch.long))


def crop_sequence(item: FeatureSequence, first: int, length: int, *, min_segment_overlap: float) -> FeatureSequence:
    """The steps ``[first, first + length)`` of ``item`` with segments cut to that window.

    A segment is kept when its part inside the window is at least ``min_segment_overlap`` of its
    length (or of the window, for segments longer than the window).
    """
    low, high = first - 0.5, first + length - 0.5
    onset = item.segments[:, 0].clamp(min=low, max=high)
    offset = item.segments[:, 1].clamp(min=low, max=high)
    full = (item.segments[:, 1] - item.segments[:, 0]).clamp(max=float(length))
    keep = (offset - onset) >= min_segment_overlap * full
    keep &= offset > onset
    segments = torch.stack([onset, offset], dim=1)[keep] - first
    return FeatureSequence(feats=item.feats[:, first:first + length], segments=segments, labels=item.labels[keep],
                           video_id=item.video_id, timeline=item.timeline.cropped(first, length),
                           duration=item.duration, fps=item.fps, stride_frames=item.stride_frames)


class FeatureSequenceDataset(Dataset):
    """Videos as cached feature sequences plus ground truth.

    Args:
        feature_dir: the feature cache (see detection.features).
        videos: the videos to serve, e.g. from ``mmad.datasets.mma52.read_detection_annotations``.
        training: enables random truncation and cropping.
        max_seq_len: in training, longer sequences are cut to this many steps at a random place.
        crop_prob: probability of taking a random shorter window in training.
        min_crop_fraction: shortest window, as a fraction of the sequence.
        min_segment_overlap: fraction of a segment that must stay inside a window to keep it.
        expected_hash: encoder checkpoint hash the cache must carry (None: not checked).
        expected_settings: encoder settings the cache must have been made with (None values and
            settings a cache does not record are not checked).
        feature_dim: expected F (None: not checked).
        foreign: read ``<video_id>.npy`` made elsewhere, timed as this says (no JSON side files).

    Random windows draw from torch's global generator, which the training engine seeds per epoch
    and per loader worker, so runs (and resumed runs) repeat.
    """

    def __init__(self, feature_dir: str | os.PathLike, videos: list[VideoRecord], *, training: bool = False,
                 max_seq_len: int = 256, crop_prob: float = 0.0, min_crop_fraction: float = 0.5,
                 min_segment_overlap: float = 0.5, expected_hash: str | None = None,
                 feature_dim: int | None = None, expected_settings: dict | None = None,
                 foreign: ForeignFeatures | None = None):
        self.feature_dir = os.fspath(feature_dir)
        self.videos = list(videos)
        self.training = training
        self.max_seq_len = max_seq_len
        self.crop_prob = crop_prob
        self.min_crop_fraction = min_crop_fraction
        self.min_segment_overlap = min_segment_overlap
        self.expected_hash = expected_hash
        self.feature_dim = feature_dim
        self.expected_settings = expected_settings
        self.foreign = foreign
        kind = 0 if foreign is not None else 1  # foreign: the .npy; ours: the JSON written last
        missing = [v.video_id for v in self.videos if not feature_paths(self.feature_dir, v.video_id)[kind].is_file()]
        if missing:
            raise DataError(self.feature_dir, f"no cached features for {len(missing)} of {len(self.videos)} videos "
                            f"(first: '{missing[0]}'); run `mmad detection extract` first")

    def __len__(self) -> int:
        return len(self.videos)

    def load(self, index: int) -> FeatureSequence:
        """The whole sequence of video ``index``, without any cropping."""
        video = self.videos[index]
        npy_path, json_path = feature_paths(self.feature_dir, video.video_id)
        if self.foreign is not None:
            array, meta = load_foreign_features(self.feature_dir, video.video_id, self.foreign, fps=video.fps,
                                                duration=video.duration)
        else:
            array, meta = load_features(self.feature_dir, video.video_id, expected_hash=self.expected_hash,
                                        expected_settings=self.expected_settings)
        if self.feature_dim is not None and array.shape[1] != self.feature_dim:
            raise DataError(npy_path, f"feature dim {array.shape[1]}, the model expects {self.feature_dim}")
        if not np.isfinite(array).all():
            raise DataError(npy_path, "features contain NaN or inf")
        timeline = meta.timeline(source=os.fspath(npy_path if self.foreign is not None else json_path))
        clock = annotation_clock_fps(annotation_fps=video.fps, annotation_frames=video.num_frames,
                                     container_fps=meta.fps, container_frames=meta.num_frames)
        if clock != meta.fps:
            timeline = timeline.reclocked(from_fps=meta.fps, to_fps=clock)
        segments, labels = segments_to_steps(video, timeline)
        return FeatureSequence(feats=torch.from_numpy(array.astype(np.float32)).t().contiguous(), segments=segments,
                               labels=labels, video_id=video.video_id, timeline=timeline,
                               duration=float(video.duration or meta.duration), fps=clock,
                               stride_frames=meta.stride_frames)

    def __getitem__(self, index: int) -> FeatureSequence:
        item = self.load(index)
        if not self.training:
            return item
        return self.random_window(item)

    def random_window(self, item: FeatureSequence, *, attempts: int = 10) -> FeatureSequence:
        """A random training window of ``item`` that still holds a segment (the whole item if none does)."""
        num_steps = item.feats.shape[1]
        for _ in range(attempts):
            length = min(num_steps, self.max_seq_len)
            if self.crop_prob > 0 and float(torch.rand(())) < self.crop_prob:
                shortest = min(max(1, int(round(self.min_crop_fraction * num_steps))), length)
                length = int(torch.randint(shortest, length + 1, ()))
            if length == num_steps:
                return item
            first = int(torch.randint(0, num_steps - length + 1, ()))
            window = crop_sequence(item, first, length, min_segment_overlap=self.min_segment_overlap)
            if window.labels.numel() > 0 or item.labels.numel() == 0:
                return window
        if num_steps <= self.max_seq_len:
            return item
        return crop_sequence(item, 0, self.max_seq_len, min_segment_overlap=self.min_segment_overlap)


def foreign_features(data_cfg) -> ForeignFeatures | None:
    """The :class:`ForeignFeatures` a detection data config describes (None: this toolkit's cache)."""
    if data_cfg.feature_stride_frames is None:
        return None
    if not data_cfg.feature_window:
        raise ConfigError("data.feature_stride_frames is set (features made elsewhere) but data.feature_window is "
                          "not: give the frames each feature step covers")
    return ForeignFeatures(stride_frames=int(data_cfg.feature_stride_frames), window=int(data_cfg.feature_window),
                           fps=data_cfg.feature_fps)


def expected_encoder_settings(cfg) -> dict:
    """The encoder settings a detection config states (its null ones are not checked)."""
    return {name: getattr(cfg.encoder, name) for name in ENCODER_SETTING_NAMES}


def resolve_feature_source(cfg):
    """``cfg`` checked against its feature cache, with what the cache knows filled in.

    This toolkit's cache: the first cached video of the training (else validation, else test) subset
    gives the encoder settings and checkpoint hash; they fill the config's null ``encoder`` fields and
    ``data.encoder_hash``, so that every video is checked against them when loaded and a trained
    checkpoint records them. A stated setting that differs is a :class:`ConfigError` naming it.
    Foreign features: ``model.feature_dim`` is read from the first ``.npy`` when null.
    """
    from detection.features import read_feature_meta, settings_mismatch
    from mmad.datasets.mma52 import read_detection_annotations

    data = cfg.data
    foreign = foreign_features(data)
    for subset in (data.train_subset, data.val_subset, data.test_subset):
        if not subset:
            continue
        for video in read_detection_annotations(data.annotation_path, subset=subset):
            npy_path, json_path = feature_paths(data.feature_path, video.video_id)
            if foreign is not None:
                if not npy_path.is_file() or cfg.model.feature_dim is not None:
                    continue
                shape = np.load(npy_path, mmap_mode="r", allow_pickle=False).shape
                if len(shape) != 2:
                    raise DataError(npy_path, f"expected a (steps, features) array, got shape {shape}")
                return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, feature_dim=int(shape[1])))
            if not json_path.is_file():
                continue
            meta = read_feature_meta(data.feature_path, video.video_id)
            differs = settings_mismatch(meta.encoder_settings, expected_encoder_settings(cfg))
            if differs:
                raise ConfigError(f"the feature cache {data.feature_path} was made otherwise: {differs} (first "
                                  f"cached video {video.video_id}); re-run `mmad detection extract` or change the config")
            filled = {name: meta.encoder_settings[name] for name in ENCODER_SETTING_NAMES
                      if getattr(cfg.encoder, name) is None and name in meta.encoder_settings}
            return dataclasses.replace(
                cfg, encoder=dataclasses.replace(cfg.encoder, **filled),
                data=dataclasses.replace(data, encoder_hash=data.encoder_hash or meta.encoder_hash))
    return cfg


def with_trained_encoder(cfg, checkpoint):
    """``cfg`` with the encoder settings and checkpoint hash a trained detector recorded; a stated one
    that differs is a :class:`ConfigError` naming it (test features must be made like training ones)."""
    from detection.config import DetectionConfig
    from mmad.config import from_dict
    from mmad.engine import read_checkpoint

    stored = read_checkpoint(checkpoint, kind="detection").get("config")
    if not isinstance(stored, dict):
        return cfg
    trained = from_dict(DetectionConfig, stored)
    filled = {}
    for name in ENCODER_SETTING_NAMES:
        here, there = getattr(cfg.encoder, name), getattr(trained.encoder, name)
        if there is None:
            continue
        if here is not None and here != there:
            raise ConfigError(f"{checkpoint} was trained on features with encoder.{name}={there!r}, this config says "
                              f"{here!r}: features must be made as in training")
        filled[name] = there
    encoder_hash = cfg.data.encoder_hash or trained.data.encoder_hash
    if cfg.data.encoder_hash and trained.data.encoder_hash and cfg.data.encoder_hash != trained.data.encoder_hash:
        raise ConfigError(f"{checkpoint} was trained on features of encoder {trained.data.encoder_hash}, this config "
                          f"says data.encoder_hash={cfg.data.encoder_hash}")
    return dataclasses.replace(cfg, encoder=dataclasses.replace(cfg.encoder, **filled),
                               data=dataclasses.replace(cfg.data, encoder_hash=encoder_hash))


def collate_features(items: list[FeatureSequence], *, pad_multiple: int = 1) -> FeatureBatch:
    """Pad sequences to the longest (rounded up to ``pad_multiple``) and stack them into a :class:`FeatureBatch`."""
    longest = max(item.feats.shape[1] for item in items)
    length = -(-longest // pad_multiple) * pad_multiple
    feature_dim = items[0].feats.shape[0]
    feats = torch.zeros(len(items), feature_dim, length)
    mask = torch.zeros(len(items), length, dtype=torch.bool)
    for b, item in enumerate(items):
        n = item.feats.shape[1]
        feats[b, :, :n] = item.feats
        mask[b, :n] = True
    return FeatureBatch(feats=feats, mask=mask, segments=[i.segments for i in items], labels=[i.labels for i in items],
                        video_ids=[i.video_id for i in items], timelines=[i.timeline for i in items],
                        durations=[i.duration for i in items], fps=[i.fps for i in items],
                        stride_frames=[i.stride_frames for i in items])
