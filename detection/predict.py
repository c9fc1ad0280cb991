"""A raw video to its detected micro-actions (what ``mmad detect`` runs).

The video is decoded once. Only the frames the clip encoder samples (every ``stride_frames``-th,
see :func:`detection.encoder.sampled_frame_indices`) are converted; the others are decoded and
skipped. Three stages overlap, each in its own thread: decoding, pose estimation on the sampled
frames (MediaPipe through :mod:`mmad.pose`, when no keypoints are given) and the clip encoder
(:class:`detection.encoder.ClipEncoder`, built by :func:`build_encoder` from the recognizer and the
detector's encoder settings) -> the temporal head -> soft-NMS.

What the video really holds decides where detections may go:

- the frames decoded are compared with the header (a truncated or damaged file decodes fewer):
  steps exist only for decoded frames, so no detection reaches past the last frame seen; a
  disagreement is a warning, or an error with ``strict``;
- a step whose window has no person (no keypoint of the body above zero confidence at any of its
  sampled frames) is masked out of the head, and a detection must have a person in at least half
  of its steps; a video without a person gets no detections and a "no person found" warning;
- given keypoints (an OpenPose JSON folder, a ``keypoints.npz`` track, or the folder of
  ``mmad pose extract``) must fit the video: points far outside its frame (another video's) are
  refused, and a track that covers fewer frames than were decoded is a warning (``strict``: an
  error); frames it does not cover count as having no person.

The result is written atomically as JSON, CSV and a timeline PNG (and, when pose was estimated, the
sampled keypoint track as ``<video_id>_keypoints.npz``, reusable with ``--keypoints``):

- ``<video_id>.json``: ``{"video_id", "duration", "fps", "seconds_seen", "person_fraction",
  "detections": [{"class_id", "class_name", "body_group", "t_start", "t_end", "score"}, ...]}``, best first;
- ``<video_id>.csv``: ``video_id,t_start,t_end,label,class_name,body_group,score``;
- ``<video_id>_timeline.png``: one row per detected class, a bar per detection over time.

Times are seconds. ``body_group`` is the MA-52 body part of the action (None for other label sets).
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from detection.config import DetectionConfig
from mmad.errors import ConfigError, DataError
from mmad.taxonomy import label_set

DETECTION_COLUMNS = ["video_id", "t_start", "t_end", "label", "class_name", "body_group", "score"]
NO_KEYPOINTS_HINT = ("no keypoints for this video: pass --keypoints DIR (its OpenPose JSON folder) or install "
                     "the pose extra (pip install -e '.[pose]') to estimate them with MediaPipe")
POSE_SHORT_SIDE = 480  # sampled frames go to the pose model at most this size (it works at 256 px)
MIN_PERSON_SHARE = 0.5  # a detection needs a person in at least this share of its steps
OUTSIDE_SHARE = 0.05  # given keypoints with more confident points than this outside the frame are refused


@dataclass
class DetectReport:
    """What ``detect`` saw of one video.

    ``header_frames``: frames the container announces; ``frames_decoded``: frames really decoded;
    ``decode_error``: the decoder's message when a damaged stream ended early; ``sampled``: frames
    the encoder used (one per step); ``with_person``: how many of them show a person;
    ``stage_seconds``: busy seconds per stage (decode, pose, encode, head, write; the first three
    overlap); ``wall_seconds``: the whole call; ``warnings``: one line each.
    """

    header_frames: int = 0
    frames_decoded: int = 0
    decode_error: str | None = None
    sampled: int = 0
    with_person: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def person_fraction(self) -> float:
        return self.with_person / self.sampled if self.sampled else 0.0


@dataclass
class VideoDetections:
    """Detections of one video: ``detections`` has the columns of :data:`DETECTION_COLUMNS`, best first.

    ``duration`` is the header's length of the video; ``seconds_seen`` how much of it was decoded.
    """

    video_id: str
    duration: float
    fps: float
    detections: pd.DataFrame
    seconds_seen: float | None = None
    report: DetectReport | None = None
    keypoints: object | None = None  # the estimated mmad.pose.KeypointTrack, when pose ran

    def to_dict(self) -> dict:
        """The JSON object written by :func:`write_detections`."""
        rows = [{"class_id": int(r.label), "class_name": r.class_name,
                 "body_group": None if pd.isna(r.body_group) else r.body_group,
                 "t_start": round(float(r.t_start), 4), "t_end": round(float(r.t_end), 4),
                 "score": round(float(r.score), 6)}
                for r in self.detections.itertuples(index=False)]
        out = {"video_id": self.video_id, "duration": round(float(self.duration), 4), "fps": float(self.fps)}
        if self.seconds_seen is not None:
            out["seconds_seen"] = round(float(self.seconds_seen), 4)
        if self.report is not None:
            out["person_fraction"] = round(self.report.person_fraction, 4)
        out["detections"] = rows
        return out


def load_detector(checkpoint: str | os.PathLike, *, device: str | torch.device = "cpu", use_ema: bool = True):
    """``(TemporalDetector in eval mode, DetectionConfig)`` from a ``mmad detection train`` checkpoint."""
    from detection.task import build_detector
    from mmad.config import from_dict
    from mmad.engine import load_checkpoint, read_checkpoint

    path = Path(checkpoint)
    if not path.is_file() and not path.is_dir():
        raise DataError(path, "detector checkpoint not found")
    stored = read_checkpoint(path, kind="detection").get("config")
    if not isinstance(stored, dict):
        raise DataError(path, "the checkpoint holds no config (write it with `mmad detection train`)")
    if "postprocess" not in stored and "architecture" in (stored.get("model") or {}):
        raise DataError(path, "a recognition checkpoint, not a detector (pass it as --recognizer; --detector takes "
                              "a checkpoint of `mmad detection train`)")
    try:
        cfg = from_dict(DetectionConfig, stored)
    except ConfigError as e:
        raise DataError(path, f"not a detection checkpoint ({e})") from None
    model = build_detector(cfg)
    load_checkpoint(path, model, use_ema=use_ema, map_location="cpu", kind="detection")
    return model.to(device).eval(), cfg


def build_encoder(recognizer: str | os.PathLike, cfg: DetectionConfig, *, device: torch.device,
                  detector: str | os.PathLike = "the detector"):
    """The clip encoder a detector was trained on: the recognizer checkpoint with ``cfg.encoder``'s settings.

    The one place ``detect`` builds its encoder. Checks that the recognizer is the one whose features
    trained the head (``cfg.data.encoder_hash``) and that its feature width fits ``cfg.model.feature_dim``.
    """
    from detection.dataset import expected_encoder_settings
    from detection.encoder import ClipEncoder
    from detection.features import checkpoint_hash, settings_mismatch
    from mmad.engine import read_checkpoint

    read_checkpoint(recognizer, kind="recognition")  # not a (recognition) checkpoint: said before any hash
    expected = cfg.data.encoder_hash
    if expected and checkpoint_hash(recognizer) != expected:
        fitting = [str(p) for p in sorted(Path(recognizer).resolve().parent.glob("*.pt"))[:20]
                   if checkpoint_hash(p) == expected]
        hint = (f"; {fitting[0]} beside it fits: pass --recognizer {fitting[0]}" if fitting else
                "; pass the recognizer checkpoint `mmad detection extract` used for its features")
        raise ConfigError(f"{detector} was trained on features of the recognizer checkpoint with hash {expected}, "
                          f"but {recognizer} hashes to {checkpoint_hash(recognizer)}{hint}")
    encoder = ClipEncoder.from_checkpoint(recognizer, encoder_cfg=cfg.encoder, device=device)
    differs = settings_mismatch(encoder.settings, expected_encoder_settings(cfg), found_in="for this video",
                                expected_in="in training")  # the detector records its training cache's settings
    if differs:
        raise ConfigError(f"{detector}: features would be made otherwise than in training: {differs}")
    if encoder.feature_dim != cfg.model.feature_dim:
        raise ConfigError(f"the recognizer gives {encoder.feature_dim} features per step but the detector expects "
                          f"{cfg.model.feature_dim} (model.feature_dim): is it the recognizer it was trained on?")
    return encoder


def resolve_device(device: str | None) -> torch.device:
    """``device`` as a torch device (default: cuda when available); an unavailable GPU is a ConfigError."""
    try:
        run_device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError:
        raise ConfigError(f"--device {device}: not a device name (cpu, cuda, cuda:1, mps ...)") from None
    if run_device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: no CUDA GPU is available on this machine (use --device cpu)")
        if run_device.index is not None and run_device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    elif run_device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {device}: MPS is not available on this machine (use --device cpu)")
    return run_device


def check_output_folder(out: str | os.PathLike) -> Path:
    """``out`` as a folder that can be written, checked before any work (DataError naming it otherwise)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(out, "exists and is not a folder (--out names the output folder)")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise DataError(existing, f"is a file, so the output folder {out} cannot be made")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DataError(existing, "output folder is not writable")
    return out


# ----------------------------------------------------------------------------- the overlapped stages


class _Stage:
    """Run ``source`` (an iterator) in a background thread, handing its items over a bounded queue.

    Iterating the stage yields the items in order; an exception in the thread is raised here.
    ``close()`` stops the thread at its next item (also on an interrupt of the consumer).
    """

    _END = object()

    def __init__(self, source: Iterable, name: str, *, maxsize: int = 16) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(source,), name=f"mmad-{name}", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, source: Iterable) -> None:
        try:
            for item in source:
                if not self._put(("item", item)):
                    return
        except BaseException as exc:  # handed to the consumer
            self._put(("error", exc))
            return
        finally:
            close = getattr(source, "close", None)
            if close is not None and self._stop.is_set():
                try:
                    close()
                except Exception:
                    pass
        self._put(("end", None))

    def __iter__(self) -> Iterator:
        while True:
            kind, item = self._queue.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@dataclass
class _Sampled:
    """One sampled frame on its way through the stages."""

    index: int
    frame: object  # mmad.video.DecodedFrame until converted
    rgb: np.ndarray | None = None  # (h, w, 3) at the encoder's resize_short_side (rgb recognizers)
    keypoints: np.ndarray | None = None  # (J, 3) upright native pixels


def _person_in(keypoints: np.ndarray) -> np.ndarray:
    """(..., J, 3) -> (...) bool: any BODY_25 joint found."""
    return (keypoints[..., :25, 2] > 0).any(axis=-1)


def check_keypoint_track(track, info, video: Path) -> list[str]:
    """Refuse a keypoint track of another video; return warnings about its coverage (before decoding).

    Refused (DataError): a track whose stated frame size differs from the video's, or whose
    confident points lie beyond the frame too often. Warned: a track ending well before the
    header's last frame.
    """
    size = f"{info.width}x{info.height}"
    if track.width and track.height and (track.width, track.height) != (info.width, info.height):
        raise DataError(track.source, f"keypoints of a {track.width}x{track.height} video, but {video} is {size}")
    points = track.keypoints[..., 2] > 0
    if points.any():
        x, y = track.keypoints[..., 0][points], track.keypoints[..., 1][points]
        outside = (x > info.width * 1.02) | (y > info.height * 1.02) | (x < -2) | (y < -2)
        if outside.mean() > OUTSIDE_SHARE:
            raise DataError(track.source, f"{100 * outside.mean():.0f}% of the keypoints lie outside the {size} "
                                          f"frame of {video} (reaching {x.max():.0f}x{y.max():.0f}): keypoints of "
                                          "another video?")
    warnings = []
    covered = int(track.frames[-1]) + 1 if len(track.frames) else 0
    if covered < 0.95 * info.num_frames - 2:
        warnings.append(f"{track.source}: keypoints cover frames 0-{covered - 1} of the {info.num_frames} of "
                        f"{video} (an interrupted pose extraction or another video?); frames past them count as "
                        "having no person")
    return warnings


@dataclass
class DetectionModels:
    """The temporal head, its config and the clip encoder it was trained on, loaded once for many videos."""

    model: torch.nn.Module
    cfg: DetectionConfig
    encoder: Any
    device: torch.device


def load_detection_models(recognizer: str | os.PathLike, detector: str | os.PathLike, *,
                          device: str | None = None) -> DetectionModels:
    """Load the detector and build its encoder from ``recognizer`` (checked to be the one it was trained on)."""
    run_device = resolve_device(device)
    model, cfg = load_detector(detector, device=run_device)
    encoder = build_encoder(recognizer, cfg, device=run_device, detector=detector)
    return DetectionModels(model=model, cfg=cfg, encoder=encoder, device=run_device)


def detect_video(video: str | os.PathLike, *, recognizer: str | os.PathLike | None = None,
                 detector: str | os.PathLike | None = None,
                 keypoints: str | os.PathLike | None = None, device: str | None = None,
                 score_threshold: float | None = None, max_detections: int | None = None, strict: bool = False,
                 estimator: Callable | None = None, progress: bool = False,
                 on_warning: Callable[[str], None] | None = None,
                 models: DetectionModels | None = None) -> VideoDetections:
    """Detect micro-actions in one video.

    Args:
        video: the video file.
        recognizer: the recognition checkpoint the detector's features came from.
        detector: a ``mmad detection train`` checkpoint (its config gives the encoder settings and
            post-processing).
        keypoints: the video's OpenPose JSON folder or ``.npz`` keypoint track; None estimates pose
            on the sampled frames with MediaPipe (pose extra), or with ``estimator``.
        device: cpu, cuda, ... (default: cuda when available).
        score_threshold: keep detections scoring at least this (default: the detector's
            ``postprocess.score_threshold``).
        max_detections: at most this many detections (default: ``postprocess.max_segments``).
        strict: a video that decodes fewer frames than its header says, or keypoints that cover
            fewer frames than were decoded, are errors instead of warnings.
        estimator: ``frame (H, W, 3) uint8 RGB -> (33, 4) MediaPipe landmarks or None`` (default MediaPipe).
        progress: show a progress bar with ETA on stderr.
        on_warning: called with each warning line as it arises (they are also in the report).
        models: :func:`load_detection_models` made already (then ``recognizer``, ``detector`` and
            ``device`` are not read again).

    Returns:
        :class:`VideoDetections` in seconds, with its :class:`DetectReport`.
    """
    from detection.postprocess import postprocess_detections
    from detection.timeline import Timeline
    from mmad.keypoints import get_layout
    from mmad.pose import (
        KeypointTrack,
        MediaPipePoseEstimator,
        PoseExtraNotInstalled,
        landmarks_to_openpose,
        load_mediapipe_pose,
        read_keypoint_track,
    )
    from mmad.video import DecodeReport, iter_decoded, probe

    started = time.perf_counter()
    video = Path(video)
    report = DetectReport()
    warn = report.warnings.append if on_warning is None else (lambda line: (report.warnings.append(line),
                                                                             on_warning(line)))
    if score_threshold is not None and not 0 <= score_threshold < 1:
        raise ConfigError(f"--score-threshold must be in [0, 1), got {score_threshold}")
    if max_detections is not None and max_detections < 1:
        raise ConfigError(f"--max-detections must be >= 1, got {max_detections}")
    info = probe(video)
    report.header_frames = info.num_frames
    if keypoints is None and estimator is None:
        try:
            load_mediapipe_pose()
        except PoseExtraNotInstalled:
            raise DataError(video, NO_KEYPOINTS_HINT) from None
    if models is None:
        if recognizer is None or detector is None:
            raise ConfigError("detect_video needs the recognizer and detector checkpoints (or loaded models)")
        models = load_detection_models(recognizer, detector, device=device)
    model, cfg, encoder, run_device = models.model, models.cfg, models.encoder, models.device
    layout = encoder.keypoint_layout
    num_joints = get_layout(layout).num_joints
    track = None
    if keypoints is not None:
        track = read_keypoint_track(keypoints, with_face=layout == "body25_hands_face")
        for line in check_keypoint_track(track, info, video):
            if strict:
                raise DataError(keypoints, line.split(": ", 1)[1])
            warn(line)
    stride = encoder.stride_frames
    first = stride // 2
    native = (info.width, info.height)
    pose_size = min(POSE_SHORT_SIDE, min(native))
    pose_stage = "pose" if keypoints is None else "convert"
    seconds = {"decode": 0.0, pose_stage: 0.0, "encode": 0.0}
    decoded = DecodeReport()
    estimated: list[tuple[int, np.ndarray]] = []

    def decode() -> Iterator[_Sampled]:
        frames = iter_decoded(video, stride=stride, start=first, report=decoded, threads=True)
        while True:
            tick = time.perf_counter()
            item = next(frames, None)
            seconds["decode"] += time.perf_counter() - tick
            if item is None:
                return
            yield _Sampled(index=item[0], frame=item[1])

    def convert_and_pose(items: Iterable[_Sampled], estimate) -> Iterator[_Sampled]:
        for item in items:
            tick = time.perf_counter()
            if encoder.uses_rgb:
                item.rgb = item.frame.rgb(encoder.resize_short_side)
            if estimate is not None:
                landmarks = estimate(item.frame.rgb(pose_size))
                points = landmarks_to_openpose(landmarks, info.width, info.height)
                estimated.append((item.index, points))
                item.keypoints = points
            else:
                item.keypoints = track.at([item.index], max_gap=stride // 2)[0]
            item.frame = None
            seconds[pose_stage] += time.perf_counter() - tick
            yield item

    def chunks(items: Iterable[_Sampled]):
        batch: list[_Sampled] = []
        bar = _progress_bar(-(-max(info.num_frames - first, 0) // stride), video.name, progress)
        try:
            for item in items:
                batch.append(item)
                bar.update(1)
                if len(batch) == encoder.chunk_frames:
                    yield _encoder_chunk(encoder, batch, native, num_joints)
                    batch = []
            if batch:
                yield _encoder_chunk(encoder, batch, native, num_joints)
        finally:
            bar.close()

    stages: list[_Stage] = []
    pose_model = None
    try:
        if keypoints is None:
            pose_model = estimator or MediaPipePoseEstimator()
        decoding = _Stage(decode(), "decode", maxsize=2 * encoder.chunk_frames)
        stages.append(decoding)
        posing = _Stage(convert_and_pose(decoding, pose_model), "pose", maxsize=2 * encoder.chunk_frames)
        stages.append(posing)
        person: list[bool] = []

        def counted(source):
            for chunk in source:
                person.extend(_person_in(chunk[3]).tolist())
                yield chunk[:3]

        tick = time.perf_counter()
        features = encoder.encode_chunks(counted(chunks(posing)))
        seconds["encode"] = time.perf_counter() - tick  # wall time of the consumer, waits included
    finally:
        for stage in reversed(stages):
            stage.close()
        if pose_model is not None and estimator is None:
            pose_model.close()
    report.frames_decoded = decoded.frames_decoded
    report.decode_error = decoded.error
    report.sampled = len(person)
    report.with_person = int(sum(person))
    seen = decoded.frames_decoded / info.fps
    tolerance = max(2, int(0.01 * info.num_frames))
    if decoded.error is not None or decoded.frames_decoded < info.num_frames - tolerance:
        why = f" ({decoded.error})" if decoded.error else ""
        line = (f"{video}: decoded {decoded.frames_decoded} of the {info.num_frames} frames its header announces"
                f"{why}; detections cover only the first {seen:.2f} s")
        if strict:
            raise DataError(video, line.split(": ", 1)[1])
        warn(line)
    if track is not None and len(track.frames):
        covered = int(track.frames[-1]) + 1
        if covered < decoded.frames_decoded - stride and not any("keypoints cover" in w for w in report.warnings):
            line = (f"{track.source}: keypoints cover frames 0-{covered - 1} of the {decoded.frames_decoded} decoded; "
                    "frames past them count as having no person")
            if strict:
                raise DataError(keypoints, line.split(": ", 1)[1])
            warn(line)
    if features.shape[0] == 0:
        raise DataError(video, f"too short: {decoded.frames_decoded} frame(s) decoded, a feature step needs "
                               f"{first + 1} (encoder.stride_frames = {stride})")
    names, groups = label_set(cfg.model.num_classes)
    tick = time.perf_counter()
    table = _detect_steps(model, cfg, features, np.asarray(person, dtype=bool), encoder=encoder, fps=info.fps,
                          duration=min(info.duration, seen), video=video, score_threshold=score_threshold,
                          max_detections=max_detections, timeline_cls=Timeline, postprocess=postprocess_detections,
                          device=run_device)
    seconds["head"] = time.perf_counter() - tick
    if report.with_person == 0:
        warn(f"{video}: no person found in any sampled frame; no detections")
    table["label"] = table["label"].astype(int)
    table["class_name"] = [names[i] for i in table["label"]]
    table["body_group"] = [groups[i] for i in table["label"]]
    report.stage_seconds = seconds
    report.wall_seconds = time.perf_counter() - started
    sampled_track = None
    if estimated:
        sampled_track = KeypointTrack(frames=np.asarray([i for i, _ in estimated], dtype=np.int64),
                                      keypoints=np.stack([k for _, k in estimated]), width=info.width,
                                      height=info.height, num_frames=decoded.frames_decoded, source=str(video))
    return VideoDetections(video_id=video.stem, duration=info.duration, fps=info.fps, seconds_seen=min(info.duration, seen),
                           detections=table[DETECTION_COLUMNS].reset_index(drop=True), report=report,
                           keypoints=sampled_track)


def _progress_bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame", disable=not enabled, leave=False, file=sys.stderr,
                smoothing=0.1)


def _encoder_chunk(encoder, batch: list[_Sampled], native: tuple[int, int], num_joints: int):
    """Cropped frames (or None), keypoints (n, J, 3) and boxes of sampled frames, plus their raw keypoints."""
    raw = np.stack([item.keypoints for item in batch]).astype(np.float32)
    kp = np.zeros((len(batch), num_joints, 3), dtype=np.float32)
    joints = min(num_joints, raw.shape[1])
    kp[:, :joints] = raw[:, :joints]
    x, y = kp[..., 0], kp[..., 1]
    kp[(x < 0) | (y < 0) | (x > native[0]) | (y > native[1])] = 0.0  # as the readers drop them
    boxes, conf = encoder.entity_boxes(kp, native)
    if encoder.uses_rgb:
        frames = np.stack([item.rgb for item in batch])
    else:
        scale = encoder.resize_short_side / min(native)
        frames = np.zeros((len(batch), max(1, round(native[1] * scale)), max(1, round(native[0] * scale)), 3),
                          dtype=np.uint8)
    f, k, b = encoder._crop(frames, kp, boxes, conf, native)
    return (f if encoder.uses_rgb else None), k, b, raw


def _detect_steps(model, cfg: DetectionConfig, features: torch.Tensor, person: np.ndarray, *, encoder, fps: float,
                  duration: float, video: Path, score_threshold, max_detections, timeline_cls, postprocess,
                  device) -> pd.DataFrame:
    """The head and soft-NMS on (N, F) step features; steps without a person in reach are masked out."""
    steps = features.shape[0]
    person = np.resize(person, steps) if len(person) != steps else person
    reach = int(encoder.window_offsets.abs().max())
    near = np.convolve(person.astype(np.int64), np.ones(2 * reach + 1, dtype=np.int64), mode="same") > 0
    empty = pd.DataFrame({c: pd.Series(dtype=float) for c in ("video_id", "t_start", "t_end", "label", "score")})
    if not near.any():
        return empty.astype({"label": int})
    stride = encoder.stride_frames
    times = encoder.step_times(steps, fps)  # the mean time of each window's frames
    timeline = timeline_cls.from_times(times, fps=fps, stride_frames=stride, source=str(video))
    feats = features.half().float().T[None].to(device)  # (1, F, N), rounded as the feature cache stores them
    mask = torch.from_numpy(near)[None].to(device)
    post = cfg.postprocess
    threshold = post.score_threshold if score_threshold is None else float(score_threshold)
    cap = post.max_segments if max_detections is None else int(max_detections)
    with torch.no_grad():
        output = model(feats, mask)
        table = postprocess(output, timelines=[timeline], durations=[duration], video_ids=[video.stem],
                            score_threshold=threshold, pre_nms_topk=post.pre_nms_topk, nms_sigma=post.nms_sigma,
                            min_score=post.min_score, max_segments=cap, min_duration=post.min_duration,
                            voting_iou=post.voting_iou)
    if score_threshold is not None:
        table = table[table["score"] >= threshold]
    if len(table):
        lo = np.searchsorted(times, table["t_start"].to_numpy(), side="left")
        hi = np.searchsorted(times, table["t_end"].to_numpy(), side="right")
        centre = np.clip(np.searchsorted(times, (table["t_start"].to_numpy() + table["t_end"].to_numpy()) / 2), 0,
                         steps - 1)
        cumulative = np.concatenate([[0], np.cumsum(person)])
        covered = hi - lo
        share = np.where(covered > 0, (cumulative[hi] - cumulative[lo]) / np.maximum(covered, 1), person[centre])
        table = table[share >= MIN_PERSON_SHARE]
    return table.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


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
    from mmad.fileio import atomic_path

    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
    return path


def write_detections(result: VideoDetections, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``<video_id>.json``, ``<video_id>.csv`` and ``<video_id>_timeline.png`` into ``out_dir`` atomically.

    When pose was estimated, the sampled keypoint track goes to ``<video_id>_keypoints.npz`` too.
    """
    from mmad.fileio import atomic_open, atomic_write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = atomic_write_text(out / f"{result.video_id}.json", json.dumps(result.to_dict(), indent=2))
    csv_path = out / f"{result.video_id}.csv"
    table = result.detections[DETECTION_COLUMNS].round({"t_start": 4, "t_end": 4, "score": 6})
    with atomic_open(csv_path, "w") as f:
        table.to_csv(f, index=False)
    png_path = plot_detection_timeline(result, out / f"{result.video_id}_timeline.png")
    files = {"json": json_path, "csv": csv_path, "timeline": png_path}
    if result.keypoints is not None:
        files["keypoints"] = result.keypoints.save(out / f"{result.video_id}_keypoints.npz")
    return files
