"""The per-video feature cache written by the clip encoder and read by the detection head.

Layout, one pair of files per video in a cache folder::

    <cache>/<video_id>.npy    float16 array (N, F): one feature vector per step
    <cache>/<video_id>.json   {"video_id", "times" (N step times, seconds), "stride_frames", "fps",
                               "num_frames", "feature_dim", "encoder_hash", "duration",
                               "step_time_rule", "encoder_settings"}

The JSON is written last, so a video whose JSON exists is complete (an interrupted extraction
leaves no JSON and is redone). ``times``, ``fps``, ``num_frames`` and ``duration`` are in the
container's clock (the decoded video); each time is the mean time of the step's window
(``step_time_rule``, see :mod:`detection.timeline`); a cache without that key was made with an
older rule and is refused (and redone by extraction).

The cache's identity is everything that changes its numbers: ``encoder_hash`` (the recognizer
checkpoint) and ``encoder_settings`` (window, window_dilation, stride_frames, image_size,
resize_short_side, entity_tokens, weights). :func:`load_features` refuses a cache made by another
checkpoint or with other settings, naming what differs.

Features made elsewhere (ActionFormer/OpenTAD-style ``<video_id>.npy`` of shape (N, F), no JSON)
are read through a :class:`ForeignFeatures` description of their stride, window and fps.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from detection.timeline import STEP_TIME_RULE, Timeline, window_mean_frame
from mmad.errors import DataError
from mmad.fileio import atomic_open

_REQUIRED_KEYS = ("video_id", "times", "stride_frames", "fps", "feature_dim", "encoder_hash", "duration")
# encoder_settings key -> the config field that sets it (named in refusals)
SETTING_FIELDS = {"window": "encoder.window", "window_dilation": "encoder.window_dilation",
                  "stride_frames": "encoder.stride_frames", "image_size": "encoder.image_size",
                  "resize_short_side": "encoder.resize_short_side", "entity_tokens": "encoder.entity_tokens",
                  "weights": "the recognizer's weights (ema or model)"}


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
    num_frames: int | None = None
    encoder_settings: dict = field(default_factory=dict)

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
                  fps: float, encoder_hash: str, duration: float, num_frames: int | None = None,
                  encoder_settings: dict | None = None) -> Path:
    """Write one video's features (array or tensor, shape (N, F)) and their JSON; returns the ``.npy`` path.

    ``times`` holds the N step times in seconds (window means, container clock); ``num_frames`` the
    video's frame count; ``encoder_settings`` the settings that made the numbers (see the module
    docstring). Both files are written under temporary names and renamed into place, the JSON last.
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
                       feature_dim=int(array.shape[1]), encoder_hash=str(encoder_hash), duration=float(duration),
                       num_frames=None if num_frames is None else int(num_frames),
                       encoder_settings=dict(encoder_settings or {}))
    with atomic_open(npy_path, "wb") as f:
        np.save(f, array.astype(np.float16))
    record = asdict(meta)
    record["times"] = list(meta.times)
    record["step_time_rule"] = STEP_TIME_RULE
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
    rule = record.get("step_time_rule")
    if rule != STEP_TIME_RULE:
        made = "an older mmad that timed a step by its anchor frame" if rule is None else f"step-time rule {rule!r}"
        raise DataError(json_path, f"made by {made}, not the window mean ({STEP_TIME_RULE!r}): its times would be "
                        "off; re-run `mmad detection extract`")
    try:
        settings = record.get("encoder_settings") or {}
        if not isinstance(settings, dict):
            raise TypeError("encoder_settings is not an object")
        meta = FeatureMeta(video_id=str(record["video_id"]), times=tuple(float(t) for t in record["times"]),
                           stride_frames=int(record["stride_frames"]), fps=float(record["fps"]),
                           feature_dim=int(record["feature_dim"]), encoder_hash=str(record["encoder_hash"]),
                           duration=float(record["duration"]),
                           num_frames=None if record.get("num_frames") is None else int(record["num_frames"]),
                           encoder_settings=settings)
    except (TypeError, ValueError) as e:
        raise DataError(json_path, f"bad value ({e})") from None
    if meta.video_id != video_id:
        raise DataError(json_path, f"describes video '{meta.video_id}', expected '{video_id}'", where="key 'video_id'")
    if meta.fps <= 0 or meta.stride_frames <= 0:
        raise DataError(json_path, "fps and stride_frames must be positive")
    return meta


def settings_mismatch(found: dict, expected: dict | None, *, found_in: str = "in the cache",
                      expected_in: str = "here") -> str | None:
    """The first encoder setting where a cache (``found``) differs from ``expected``, as a phrase; None if none.

    Only the settings ``expected`` gives (not None) and the cache records are compared.
    """
    for key, want in (expected or {}).items():
        if want is None or key not in found or found[key] == want:
            continue
        name = SETTING_FIELDS.get(key, key)
        return f"{name} is {found[key]!r} {found_in} but {want!r} {expected_in}"
    return None


def has_features(cache_dir: str | os.PathLike, video_id: str, *, expected_hash: str | None = None,
                 expected_settings: dict | None = None) -> bool:
    """True when the video's cache is complete, current, and (if given) made by the encoder ``expected_hash``
    with ``expected_settings``."""
    npy_path, json_path = feature_paths(cache_dir, video_id)
    if not (npy_path.is_file() and json_path.is_file()):
        return False
    try:
        meta = read_feature_meta(cache_dir, video_id)
    except DataError:
        return False
    if expected_hash is not None and meta.encoder_hash != expected_hash:
        return False
    return settings_mismatch(meta.encoder_settings, expected_settings) is None


@dataclass(frozen=True)
class ForeignFeatures:
    """How to time ``<video_id>.npy`` features made by another toolkit (no JSON side file).

    Step ``n`` covers ``window`` consecutive frames from frame ``n * stride_frames`` (ActionFormer's
    and OpenTAD's layout), so its time is the window's mean frame / fps. ``fps`` None: the
    annotation's fps of each video.
    """

    stride_frames: int
    window: int
    fps: float | None = None

    def meta(self, video_id: str, num_steps: int, feature_dim: int, *, fps: float, duration: float) -> FeatureMeta:
        """The :class:`FeatureMeta` these features would have had (``encoder_hash`` "foreign")."""
        frames = window_mean_frame(self.stride_frames * np.arange(num_steps), window=self.window, frame_spacing=1)
        settings = {"source": "foreign", "stride_frames": self.stride_frames, "window": self.window, "fps": fps}
        return FeatureMeta(video_id=video_id, times=tuple(float(f) / fps for f in frames),
                           stride_frames=self.stride_frames, fps=float(fps), feature_dim=int(feature_dim),
                           encoder_hash="foreign", duration=float(duration), encoder_settings=settings)


def _load_array(npy_path: Path) -> np.ndarray:
    try:
        return np.load(npy_path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise DataError(npy_path, f"cannot read the feature array ({e})") from None


def load_foreign_features(cache_dir: str | os.PathLike, video_id: str, spec: ForeignFeatures, *, fps: float,
                          duration: float) -> tuple[np.ndarray, FeatureMeta]:
    """Read a foreign ``<video_id>.npy`` (N, F) and the :class:`FeatureMeta` ``spec`` gives it (``spec.fps`` or ``fps``)."""
    npy_path, _ = feature_paths(cache_dir, video_id)
    if not npy_path.is_file():
        raise DataError(npy_path, "feature array not found")
    array = _load_array(npy_path)
    if array.ndim != 2 or array.shape[0] == 0:
        raise DataError(npy_path, f"expected a (steps, features) array, got shape {array.shape}")
    return array, spec.meta(video_id, array.shape[0], array.shape[1], fps=spec.fps or fps, duration=duration)


def load_features(cache_dir: str | os.PathLike, video_id: str, *, expected_hash: str | None = None,
                  expected_settings: dict | None = None) -> tuple[np.ndarray, FeatureMeta]:
    """Read one video's features: float16 array (N, F) and its :class:`FeatureMeta`.

    With ``expected_hash`` a cache made by another encoder checkpoint is a :class:`DataError`
    (stale cache); with ``expected_settings`` so is one made with other encoder settings (the
    message names the setting). A shape that disagrees with the JSON is a :class:`DataError` too.
    """
    npy_path, json_path = feature_paths(cache_dir, video_id)
    meta = read_feature_meta(cache_dir, video_id)
    if expected_hash is not None and meta.encoder_hash != expected_hash:
        raise DataError(json_path, f"stale feature cache: made by encoder {meta.encoder_hash}, expected "
                        f"{expected_hash}; re-run `mmad detection extract` or point data.feature_dir elsewhere")
    differs = settings_mismatch(meta.encoder_settings, expected_settings)
    if differs:
        raise DataError(json_path, f"stale feature cache: {differs}; re-run `mmad detection extract` with these "
                        "settings or point data.feature_dir elsewhere")
    if not npy_path.is_file():
        raise DataError(npy_path, "feature array missing (the JSON exists)")
    array = _load_array(npy_path)
    if array.ndim != 2 or array.shape != (meta.num_steps, meta.feature_dim):
        raise DataError(npy_path, f"array shape {array.shape} disagrees with the JSON "
                        f"({meta.num_steps} steps x {meta.feature_dim} features)")
    return array, meta
