"""The detection config tree: ``DetectionConfig(data, model, loss, train, optim, postprocess, out)``.

Input paths in ``data`` are relative to ``data.root`` unless absolute; the feature cache
``data.feature_dir`` is an output, relative to the working directory like ``out``. ``model.regression_ranges`` left
empty means ranges doubling per level from [0, 4] steps (see detection.assign).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mmad.engine.config import OptimConfig, TrainConfig


@dataclass
class DetectionDataConfig:
    """Where the annotations and cached features live, and the training crops."""

    root: str = "data/mma52"
    annotation_file: str = "mmad.json"  # mmad.json or an official CSV; relative to root
    # the cache written by `mmad detection extract`; relative to the working directory (like `out`),
    # so a read-only dataset works; an absolute path may point into the dataset
    feature_dir: str = "runs/features"
    train_subset: str = "train"
    val_subset: str | None = "val"  # null: train without validation
    test_subset: str = "test"
    encoder_hash: str | None = None  # when set, caches made by another encoder checkpoint are refused
    # Features made elsewhere (ActionFormer/OpenTAD-style <video_id>.npy of shape (N, F), no JSON side
    # file): set feature_stride_frames and feature_window; step n covers feature_window frames from
    # frame n * feature_stride_frames, at feature_fps (null: each video's annotation fps).
    feature_stride_frames: int | None = None
    feature_window: int | None = None
    feature_fps: float | None = None
    max_seq_len: int = 256  # training windows are at most this many steps
    crop_prob: float = 0.0  # probability of a random shorter training window
    min_crop_fraction: float = 0.5
    min_segment_overlap: float = 0.5  # part of a segment that must stay inside a window
    num_workers: int = 2

    def resolve(self, path: str) -> Path:
        """``path`` relative to ``root`` unless absolute."""
        return Path(path) if os.path.isabs(path) else Path(self.root) / path

    @property
    def annotation_path(self) -> Path:
        return self.resolve(self.annotation_file)

    @property
    def feature_path(self) -> Path:
        return Path(self.feature_dir)


@dataclass
class HeadConfig:
    """The temporal head (detection.model.TemporalDetector)."""

    # F of the cached features; null: read from the feature cache's side files (the encoder's
    # [global CNN feature; fused entity feature] size, e.g. 2048 + 256 for R101 with D = 256).
    feature_dim: int | None = None
    num_classes: int = 52
    embed_dim: int = 256
    num_levels: int = 5  # strides 1..16 steps: 0.27 s to 15 s at 7.5 steps/s
    num_embed_convs: int = 2
    num_stem_layers: int = 2
    num_heads: int = 4
    window_size: int = 9  # local attention window, in steps of the level
    mlp_ratio: float = 4.0
    dropout: float = 0.1
    input_dropout: float = 0.0
    head_convs: int = 2
    class_aware_regression: bool = True
    regression_ranges: list[tuple[float, float]] = field(default_factory=list)
    prior_prob: float = 0.01
    # or "none": the pyramid by max-pooling alone (TemporalMaxer); "sgp": every attention layer (stem
    # and levels) replaced by TriDet's scalable-granularity perception layer
    level_layers: str = "transformer"
    fpn_fusion: bool = False  # add each coarser level, upsampled, to the finer one
    boundary_head: str = "distance"  # or "trident": distances as expectations over num_bins + 1 candidates
    num_bins: int = 16  # trident: the longest distance, in steps of each level
    quality_head: bool = False  # predict each box's IoU; test scores = class probability x predicted IoU

    def __post_init__(self) -> None:
        if self.num_levels < 1:
            raise ValueError(f"num_levels must be >= 1, got {self.num_levels}")
        if self.level_layers not in ("transformer", "none", "sgp"):
            raise ValueError(f"level_layers must be 'transformer', 'none' or 'sgp', got {self.level_layers!r}")
        if self.boundary_head not in ("distance", "trident"):
            raise ValueError(f"boundary_head must be 'distance' or 'trident', got {self.boundary_head!r}")
        if self.regression_ranges and len(self.regression_ranges) != self.num_levels:
            raise ValueError(f"{len(self.regression_ranges)} regression_ranges for {self.num_levels} levels")


@dataclass
class LossConfig:
    """Label assignment and losses."""

    centre_radius: float = 1.5  # centre sampling, in strides of each level
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    reg_weight: float = 1.0
    quality_weight: float = 1.0  # with model.quality_head
    normaliser_momentum: float = 0.9  # EMA of the number of positives per batch
    initial_num_positives: float = 100.0


@dataclass
class PostprocessConfig:
    """Candidate selection and soft-NMS (detection.postprocess)."""

    score_threshold: float = 0.001
    pre_nms_topk: int = 2000  # candidates per video and pyramid level (ActionFormer's selection)
    nms_sigma: float = 0.5
    min_score: float = 0.001
    max_segments: int = 100
    min_duration: float = 0.01  # seconds
    voting_iou: float = 0.0  # > 0: boundaries voted by the candidates overlapping a detection this much


def _default_train() -> TrainConfig:
    return TrainConfig(epochs=40, batch_size=16, ema=0.999, amp=True, eval_every=5, num_workers=2)


def _default_optim() -> OptimConfig:
    return OptimConfig(name="adamw", lr=1e-4, weight_decay=0.05, warmup_epochs=5, warmup_start_lr=1e-6,
                       schedule="cosine", min_lr=1e-6, clip_grad_norm=1.0)


@dataclass
class EncoderConfig:
    """The clip encoder that turns a video into feature steps (detection.encoder).

    Fields left null take the recognizer checkpoint's own data settings, so windows look like the
    clips it was trained on. ``videos_dir``/``keypoints_dir`` are relative to ``data.root``.
    ``mmad detection train`` fills the null fields from the feature cache it trains on, so the
    detector checkpoint records the exact settings (``mmad detect`` builds its encoder from them).
    """

    stride_frames: int = 4  # one feature step every this many video frames
    window: int | None = None  # T, sampled frames per window; null: the recognizer's data.num_frames
    # a window takes every this-many-th sampled frame; null: the recognizer's data.frame_stride /
    # stride_frames (its training spacing); a setting whose spacing differs from it is refused
    window_dilation: int | None = None
    image_size: int | None = None  # null: the recognizer's data.image_size
    resize_short_side: int | None = None  # null: the recognizer's data.resize_short_side
    chunk_frames: int = 64  # sampled frames decoded and pushed through the backbone at once
    entity_tokens: bool = False  # also append the K per-entity tokens (mean over the window)
    videos_dir: str = "videos"
    keypoints_dir: str = "keypoints"
    device: str | None = None  # null: cuda when available
    # autocast of the recognizer: auto (bf16 on GPUs that have it, fp16 on older ones, bf16 on CPUs
    # with native bf16, else fp32), fp32, bf16 or fp16 (mmad.engine.precision)
    precision: str = "auto"
    channels_last: bool = False  # the backbone in channels-last memory format (benchmarks/extract_speed.py)


@dataclass
class DetectionConfig:
    """Everything one detection run needs; the run folder keeps it as ``config.yaml``."""

    data: DetectionDataConfig = field(default_factory=DetectionDataConfig)
    model: HeadConfig = field(default_factory=HeadConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=_default_train)
    optim: OptimConfig = field(default_factory=_default_optim)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    out: str = "runs/detection"
