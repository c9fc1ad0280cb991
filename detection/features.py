"""The per-video feature cache written by the clip encoder and read by the detection head.

Layout, one pair of files per video in a cache folder::

    <cache>/<video_id>.npy    float16 array (N, F): one feature vector per step
    <cache>/<video_id>.json   {"video_id", "times" (N step centres, seconds), "stride_frames", "fps",
                               "feature_dim", "encoder_hash", "duration"}

The JSON is written last, so a video whose JSON exists is complete (an interrupted extraction
leaves no JSON and is redone). ``encoder_hash`` identifies the recognizer checkpoint that made
the features; :func:`load_features` refuses a cache made by another checkpoint when asked to check.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from detection.timeline import Timeline
from mmad.errors import DataError
from mmad.fileio import atomic_open

_REQUIRED_KEYS = ("video_id", "times", "stride_frames", "fps", "feature_dim", "encoder_hash", "duration")


@dataclass(frozen=True)
class FeatureMeta:
    """What the JSON side file says about one cached feature sequence (times in seconds)."""

    video_id: str
    times: tuple[float, ...]
    stride_frames: int
    fps: float
    feature_dim: int
    encoder_hash: str
    duration: float

    @property
    def num_steps(self) -> int:
        return len(self.times)

    def timeline(self, source: str | None = None) -> Timeline:
        """The :class:`Timeline` of this sequence (checks that the times are evenly spaced)."""
        return Timeline.from_times(self.times, fps=self.fps, stride_frames=self.stride_frames, source=source)


def feature_paths(cache_dir: str | os.PathLike, video_id: str) -> tuple[Path, Path]:
    """Paths of the ``.npy`` array and the ``.json`` side file of one video."""
    cache = Path(cache_dir)
    return cache / f"{video_id}.npy", cache / f"{video_id}.json"


def checkpoint_hash(path: str | os.PathLike, *, length: int = 16) -> str:
    """Short SHA-256 hex digest of a file's bytes (identifies the encoder checkpoint)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


def save_features(cache_dir: str | os.PathLike, video_id: str, features, *, times, stride_frames: int,
                  fps: float, encoder_hash: str, duration: float) -> Path:
    """Write one video's features (array or tensor, shape (N, F)) and their JSON; returns the ``.npy`` path.

    ``times`` holds the N step centres in seconds. Both files are written under temporary names
    and renamed into place, the JSON last.
    """
    if hasattr(features, "detach"):
        features = features.detach().cpu().numpy()
    array = np.asarray(features)
    if array.ndim != 2:
        raise ValueError(f"features must have shape (N, F), got {array.shape}")
    times = [float(t) for t in np.asarray(times, dtype=np.float64).reshape(-1)]
    if len(times) != array.shape[0]:
        raise ValueError(f"{len(times)} step times for {array.shape[0]} feature steps")
    npy_path, json_path = feature_paths(cache_dir, video_id)
    npy_path.parent.mkdir(parents=True, exist_ok=True)
    meta = FeatureMeta(video_id=video_id, times=tuple(times), stride_frames=int(stride_frames), fps=float(fps),
                       feature_dim=int(array.shape[1]), encoder_hash=str(encoder_hash), duration=float(duration))
    with atomic_open(npy_path, "wb") as f:
        np.save(f, array.astype(np.float16))
    record = asdict(meta)
    record["times"] = list(meta.times)
    with atomic_open(json_path, "w") as f:
        json.dump(record, f)
    return npy_path


def read_feature_meta(cache_dir: str | os.PathLike, video_id: str) -> FeatureMeta:
    """Read and check one video's JSON side file."""
    _, json_path = feature_paths(cache_dir, video_id)
    if not json_path.is_file():
        raise DataError(json_path, "no cached features for this video (run `mmad detection extract`)")
    try:
        with open(json_path, encoding="utf-8") as f:
            record = json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(json_path, f"not valid JSON ({e.msg})", where=f"line {e.lineno}") from None
    if not isinstance(record, dict):
        raise DataError(json_path, "expected a JSON object")
    for key in _REQUIRED_KEYS:
        if key not in record:
            raise DataError(json_path, "missing", where=f"key '{key}'")
    try:
        meta = FeatureMeta(video_id=str(record["video_id"]), times=tuple(float(t) for t in record["times"]),
                           stride_frames=int(record["stride_frames"]), fps=float(record["fps"]),
                           feature_dim=int(record["feature_dim"]), encoder_hash=str(record["encoder_hash"]),
                           duration=float(record["duration"]))
    except (TypeError, ValueError) as e:
        raise DataError(json_path, f"bad value ({e})") from None
    if meta.video_id != video_id:
        raise DataError(json_path, f"describes video '{meta.video_id}', expected '{video_id}'", where="key 'video_id'")
    if meta.fps <= 0 or meta.stride_frames <= 0:
        raise DataError(json_path, "fps and stride_frames must be positive")
    return meta


def has_features(cache_dir: str | os.PathLike, video_id: str, *, expected_hash: str | None = None) -> bool:
    """True when the video's cache is complete (and, if given, made by the encoder ``expected_hash``)."""
    npy_path, json_path = feature_paths(cache_dir, video_id)
    if not (npy_path.is_file() and json_path.is_file()):
        return False
    try:
        meta = read_feature_meta(cache_dir, video_id)
    except DataError:
        return False
    return expected_hash is None or meta.encoder_hash == expected_hash


def load_features(cache_dir: str | os.PathLike, video_id: str, *,
                  expected_hash: str | None = None) -> tuple[np.ndarray, FeatureMeta]:
    """Read one video's features: float16 array (N, F) and its :class:`FeatureMeta`.

    With ``expected_hash`` a cache made by another encoder checkpoint is a :class:`DataError`
    (stale cache). A shape that disagrees with the JSON is a :class:`DataError` too.
    """
    npy_path, json_path = feature_paths(cache_dir, video_id)
    meta = read_feature_meta(cache_dir, video_id)
    if expected_hash is not None and meta.encoder_hash != expected_hash:
        raise DataError(json_path, f"stale feature cache: made by encoder {meta.encoder_hash}, expected "
                        f"{expected_hash}; re-run `mmad detection extract` or point data.feature_dir elsewhere")
    if not npy_path.is_file():
        raise DataError(npy_path, "feature array missing (the JSON exists)")
    try:
        array = np.load(npy_path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise DataError(npy_path, f"cannot read the feature array ({e})") from None
    if array.ndim != 2 or array.shape != (meta.num_steps, meta.feature_dim):
        raise DataError(npy_path, f"array shape {array.shape} disagrees with the JSON "
                        f"({meta.num_steps} steps x {meta.feature_dim} features)")
    return array, meta
