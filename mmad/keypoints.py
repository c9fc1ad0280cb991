"""Skeleton layouts, keypoint readers and writers, person selection and pose normalisation.

Every keypoint array here is float32 ``(T, J, 3)``: pixel x, pixel y and detector confidence
for J joints over T frames. An undetected joint is ``(0, 0, 0)``. A :class:`SkeletonLayout`
names the joints of one convention, says how a horizontal flip permutes them and which joints
make up each body part (the entity boxes of :mod:`mmad.entities` are built from these parts).

Layouts (:data:`LAYOUTS`):

- ``body25``: OpenPose BODY_25 (25 joints).
- ``body25_hands``: BODY_25, then the left hand (21 points, 25-45), then the right hand
  (21 points, 46-66); J = 67. What :func:`read_openpose_folder` returns by default.
- ``body25_hands_face``: ``body25_hands`` followed by the 70 OpenPose face points (67-136);
  J = 137. Returned by :func:`read_openpose_folder` with ``with_face=True``.
- ``ma52_28``: the MA-52 pose release: the OpenPose COCO-18 body, then five points of the
  left hand (18-22) and five of the right hand (23-27). Which five hand points are used is not
  documented by the release; they are treated as an unordered hand cloud whose i-th left point
  mirrors the i-th right point.
- ``miga_22``: the MiGA challenge skeletons (iMiGUE, arrays ``(N, 3, T, 22, 1)``). The joint
  order is not published with the arrays. Assumed, by analogy with ``ma52_28`` and because
  iMiGUE shows seated people from the waist up: the twelve upper-body OpenPose joints (0 nose,
  1 neck, 2-4 right arm, 5-7 left arm, 8 right eye, 9 left eye, 10 right ear, 11 left ear), then
  five left-hand points (12-16) and five right-hand points (17-21). There are no hips or legs,
  so the torso entity uses neck and shoulders and the lower-body entity falls back to its
  default region. Check this against real arrays before relying on per-joint meaning.

Readers raise :class:`~mmad.errors.DataError` naming the file, the frame and the problem.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmad.errors import DataError

__all__ = [
    "SkeletonLayout",
    "LAYOUTS",
    "get_layout",
    "BODY25_NAMES",
    "HAND21_NAMES",
    "FACE70_NAMES",
    "COCO18_NAMES",
    "MIGA22_NAMES",
    "write_openpose_frames",
    "openpose_frame_path",
    "read_openpose_frame",
    "read_openpose_folder",
    "read_openpose_people",
    "track_people",
    "read_pose_pickle",
    "read_miga_npy",
    "select_person",
    "select_person_from_tracks",
    "normalize_keypoints",
    "body_scale",
]


# --------------------------------------------------------------------------------------------
# Layouts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SkeletonLayout:
    """One keypoint convention.

    Attributes:
        name: the key in :data:`LAYOUTS`.
        num_joints: J.
        joint_names: J names, person's own sides ("RWrist" is the person's right wrist).
        flip_perm: (J,) int array; after a horizontal flip, joint ``j`` of the flipped skeleton is
            joint ``flip_perm[j]`` of the original (left and right swap). An involution.
        parts: named joint groups used by the entity boxes and by normalisation. Keys:
            ``nose, neck, eyes, ears, head_extra, face, left_shoulder, right_shoulder,
            left_elbow, right_elbow, left_wrist, right_wrist, left_hand, right_hand,
            left_hip, right_hip, mid_hip, knees, ankles, feet``; a part the layout lacks is ``()``.
            ``left_hand``/``right_hand`` are the finger points (without the wrist).
    """

    name: str
    num_joints: int
    joint_names: tuple[str, ...]
    flip_perm: np.ndarray
    parts: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    def part(self, key: str) -> tuple[int, ...]:
        """The joint indices of one named part (``()`` when the layout lacks it)."""
        return tuple(self.parts.get(key, ()))

    def joints(self, *keys: str) -> tuple[int, ...]:
        """The union of several parts, in order, without duplicates."""
        out: list[int] = []
        for key in keys:
            for j in self.part(key):
                if j not in out:
                    out.append(j)
        return tuple(out)

    @property
    def has_hands(self) -> bool:
        return bool(self.part("left_hand")) and bool(self.part("right_hand"))

    @property
    def has_face(self) -> bool:
        return bool(self.part("face"))


BODY25_NAMES: tuple[str, ...] = (
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "MidHip",
    "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar",
    "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
)  # fmt: skip
_BODY25_PAIRS = ((2, 5), (3, 6), (4, 7), (9, 12), (10, 13), (11, 14), (15, 16), (17, 18),
                 (19, 22), (20, 23), (21, 24))  # fmt: skip

HAND21_NAMES: tuple[str, ...] = ("Wrist",) + tuple(
    f"{finger}{k}" for finger in ("Thumb", "Index", "Middle", "Ring", "Pinky") for k in range(1, 5)
)

# OpenPose face: the 68 iBUG landmarks followed by the right and left pupils.
FACE70_NAMES: tuple[str, ...] = (
    tuple(f"Jaw{i}" for i in range(17))
    + tuple(f"RBrow{i}" for i in range(5))
    + tuple(f"LBrow{i}" for i in range(5))
    + tuple(f"NoseBridge{i}" for i in range(4))
    + tuple(f"NoseBase{i}" for i in range(5))
    + tuple(f"REye{i}" for i in range(6))
    + tuple(f"LEye{i}" for i in range(6))
    + tuple(f"MouthOuter{i}" for i in range(12))
    + tuple(f"MouthInner{i}" for i in range(8))
    + ("RPupil", "LPupil")
)
_FACE70_PAIRS = (
    tuple((i, 16 - i) for i in range(8))  # jaw line
    + tuple((17 + i, 26 - i) for i in range(5))  # brows
    + ((31, 35), (32, 34))  # nose base
    + ((36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46))  # eyes
    + ((48, 54), (49, 53), (50, 52), (55, 59), (56, 58))  # outer mouth
    + ((60, 64), (61, 63), (65, 67))  # inner mouth
    + ((68, 69),)  # pupils
)

COCO18_NAMES: tuple[str, ...] = (
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist",
    "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar",
)  # fmt: skip
_COCO18_PAIRS = ((2, 5), (3, 6), (4, 7), (8, 11), (9, 12), (10, 13), (14, 15), (16, 17))

MIGA22_NAMES: tuple[str, ...] = (
    COCO18_NAMES[:8]
    + COCO18_NAMES[14:]
    + tuple(f"LHand{i}" for i in range(5))
    + tuple(f"RHand{i}" for i in range(5))
)
_MIGA22_PAIRS = ((2, 5), (3, 6), (4, 7), (8, 9), (10, 11)) + tuple((12 + i, 17 + i) for i in range(5))


def _perm_from_pairs(num_joints: int, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    perm = np.arange(num_joints, dtype=np.int64)
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm


def _body25_parts() -> dict[str, tuple[int, ...]]:
    return {
        "nose": (0,), "neck": (1,), "eyes": (15, 16), "ears": (17, 18),
        "right_shoulder": (2,), "right_elbow": (3,), "right_wrist": (4,),
        "left_shoulder": (5,), "left_elbow": (6,), "left_wrist": (7,),
        "mid_hip": (8,), "right_hip": (9,), "left_hip": (12,),
        "knees": (10, 13), "ankles": (11, 14), "feet": (19, 20, 21, 22, 23, 24),
    }  # fmt: skip


def _make_body25(with_hands: bool, with_face: bool) -> SkeletonLayout:
    names = list(BODY25_NAMES)
    pairs = list(_BODY25_PAIRS)
    parts = _body25_parts()
    if with_hands:
        left0, right0 = 25, 46
        names += [f"L{n}" for n in HAND21_NAMES] + [f"R{n}" for n in HAND21_NAMES]
        pairs += [(left0 + i, right0 + i) for i in range(21)]
        # Finger points only; the hand-model wrist (index 0) is close to the body wrist and is
        # added by the entity code together with the body wrist.
        parts["left_hand"] = tuple(range(left0, left0 + 21))
        parts["right_hand"] = tuple(range(right0, right0 + 21))
    if with_face:
        face0 = len(names)
        names += [f"Face{n}" for n in FACE70_NAMES]
        pairs += [(face0 + a, face0 + b) for a, b in _FACE70_PAIRS]
        parts["face"] = tuple(range(face0, face0 + 70))
    name = "body25" + ("_hands" if with_hands else "") + ("_face" if with_face else "")
    return SkeletonLayout(name, len(names), tuple(names), _perm_from_pairs(len(names), pairs), parts)


def _make_ma52_28() -> SkeletonLayout:
    names = list(COCO18_NAMES) + [f"LHand{i}" for i in range(5)] + [f"RHand{i}" for i in range(5)]
    pairs = list(_COCO18_PAIRS) + [(18 + i, 23 + i) for i in range(5)]
    parts = {
        "nose": (0,), "neck": (1,), "eyes": (14, 15), "ears": (16, 17),
        "right_shoulder": (2,), "right_elbow": (3,), "right_wrist": (4,),
        "left_shoulder": (5,), "left_elbow": (6,), "left_wrist": (7,),
        "right_hip": (8,), "left_hip": (11,), "knees": (9, 12), "ankles": (10, 13),
        "left_hand": tuple(range(18, 23)), "right_hand": tuple(range(23, 28)),
    }  # fmt: skip
    return SkeletonLayout("ma52_28", 28, tuple(names), _perm_from_pairs(28, pairs), parts)


def _make_miga_22() -> SkeletonLayout:
    parts = {
        "nose": (0,), "neck": (1,), "eyes": (8, 9), "ears": (10, 11),
        "right_shoulder": (2,), "right_elbow": (3,), "right_wrist": (4,),
        "left_shoulder": (5,), "left_elbow": (6,), "left_wrist": (7,),
        "left_hand": tuple(range(12, 17)), "right_hand": tuple(range(17, 22)),
    }  # fmt: skip
    return SkeletonLayout("miga_22", 22, MIGA22_NAMES, _perm_from_pairs(22, _MIGA22_PAIRS), parts)


LAYOUTS: dict[str, SkeletonLayout] = {
    layout.name: layout
    for layout in (
        _make_body25(False, False),
        _make_body25(True, False),
        _make_body25(True, True),
        _make_ma52_28(),
        _make_miga_22(),
    )
}


def get_layout(layout: str | SkeletonLayout) -> SkeletonLayout:
    """Return the layout object for a name (or the object itself); unknown name -> ValueError."""
    if isinstance(layout, SkeletonLayout):
        return layout
    try:
        return LAYOUTS[layout]
    except KeyError:
        raise ValueError(f"unknown skeleton layout {layout!r}; known: {sorted(LAYOUTS)}") from None


# --------------------------------------------------------------------------------------------
# OpenPose JSON: writing
# --------------------------------------------------------------------------------------------

_FRAME_RE = re.compile(r"^(?P<stem>.*)_(?P<index>\d{12})_keypoints\.json$")


def openpose_frame_path(folder: str | os.PathLike, video_id: str, frame_index: int) -> Path:
    """``folder/<video_id>_<12-digit frame index>_keypoints.json``."""
    return Path(folder) / f"{video_id}_{int(frame_index):012d}_keypoints.json"


def _flat(points: np.ndarray) -> list[float]:
    """(N, 3) -> flat list, x/y rounded to 1/1000 pixel, confidence to 1e-6."""
    out: list[float] = []
    for x, y, c in points.tolist():
        out.extend((round(x, 3), round(y, 3), round(c, 6)))
    return out


def _check_stream(name: str, arr: np.ndarray | None, num_frames: int, num_points: int) -> np.ndarray | None:
    if arr is None:
        return None
    arr = np.asarray(arr, dtype=np.float64)
    if arr.shape != (num_frames, num_points, 3):
        raise ValueError(f"{name} must have shape ({num_frames}, {num_points}, 3), got {arr.shape}")
    return arr


def write_openpose_frames(
    folder: str | os.PathLike,
    video_id: str,
    body: np.ndarray,
    *,
    hand_left: np.ndarray | None = None,
    hand_right: np.ndarray | None = None,
    face: np.ndarray | None = None,
    people_mask: np.ndarray | None = None,
) -> list[Path]:
    """Write one OpenPose 1.3 JSON file per frame, as OpenPose's ``--write_json`` does.

    Args:
        folder: output folder (created if missing).
        video_id: file-name stem; frame ``t`` goes to ``<video_id>_<t:012d>_keypoints.json``.
        body: (T, 25, 3) BODY_25 pixel x, y, confidence.
        hand_left, hand_right: (T, 21, 3) hand keypoints, or None (written as empty lists,
            as OpenPose does with hands disabled).
        face: (T, 70, 3) face keypoints, or None.
        people_mask: (T,) bool; False writes ``"people": []`` for that frame. Frames whose
            keypoints all have zero confidence are also written with no people.

    Returns:
        the T written paths, in frame order.
    """
    body = np.asarray(body, dtype=np.float64)
    if body.ndim != 3 or body.shape[1:] != (25, 3):
        raise ValueError(f"body must have shape (T, 25, 3), got {body.shape}")
    num_frames = body.shape[0]
    hand_left = _check_stream("hand_left", hand_left, num_frames, 21)
    hand_right = _check_stream("hand_right", hand_right, num_frames, 21)
    face = _check_stream("face", face, num_frames, 70)
    if people_mask is None:
        present = np.ones(num_frames, dtype=bool)
    else:
        present = np.asarray(people_mask, dtype=bool).reshape(-1)
        if present.shape != (num_frames,):
            raise ValueError(f"people_mask must have shape ({num_frames},), got {present.shape}")
    streams = [s for s in (body, hand_left, hand_right, face) if s is not None]
    any_confident = np.zeros(num_frames, dtype=bool)
    for s in streams:
        any_confident |= (s[..., 2] > 0).any(axis=1)
    present = present & any_confident

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for t in range(num_frames):
        people = []
        if present[t]:
            people.append(
                {
                    "person_id": [-1],
                    "pose_keypoints_2d": _flat(body[t]),
                    "face_keypoints_2d": [] if face is None else _flat(face[t]),
                    "hand_left_keypoints_2d": [] if hand_left is None else _flat(hand_left[t]),
                    "hand_right_keypoints_2d": [] if hand_right is None else _flat(hand_right[t]),
                    "pose_keypoints_3d": [],
                    "face_keypoints_3d": [],
                    "hand_left_keypoints_3d": [],
                    "hand_right_keypoints_3d": [],
                }
            )
        path = openpose_frame_path(folder, video_id, t)
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"version": 1.3, "people": people}, f, separators=(",", ":"))
        paths.append(path)
    return paths


# --------------------------------------------------------------------------------------------
# OpenPose JSON: reading
# --------------------------------------------------------------------------------------------

_OPENPOSE_STREAMS = (
    ("pose_keypoints_2d", 25),
    ("hand_left_keypoints_2d", 21),
    ("hand_right_keypoints_2d", 21),
    ("face_keypoints_2d", 70),
)


def _points(
    path: Path, person_index: int, key: str, num_points: int, values, *, required: bool
) -> np.ndarray:
    where = f"person {person_index} '{key}'"
    if values is None or (isinstance(values, list) and len(values) == 0):
        if required:
            raise DataError(path, "missing body keypoints", where=where)
        return np.zeros((num_points, 3), dtype=np.float32)
    if not isinstance(values, list) or len(values) != num_points * 3:
        n = len(values) if isinstance(values, list) else type(values).__name__
        raise DataError(path, f"expected {num_points * 3} numbers, got {n}", where=where)
    try:
        arr = np.asarray(values, dtype=np.float64).reshape(num_points, 3)
    except (TypeError, ValueError):
        raise DataError(path, "keypoints are not numbers", where=where) from None
    if not np.isfinite(arr).all():
        bad = int(np.argwhere(~np.isfinite(arr))[0, 0])
        raise DataError(path, f"NaN or infinite value at keypoint {bad}", where=where)
    return arr.astype(np.float32)


def read_openpose_frame(path: str | os.PathLike, *, with_face: bool = False) -> np.ndarray:
    """Read every person of one OpenPose JSON frame.

    Returns:
        (P, J, 3) float32 with J = 67 (layout ``body25_hands``) or 137 with ``with_face``
        (``body25_hands_face``); P = 0 when the frame lists no people. Missing or empty hand and
        face arrays give zero-confidence points.

    Raises:
        DataError: unreadable or invalid JSON, no ``people`` key, wrong array lengths, NaN.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f, parse_constant=lambda name: float("nan"))
    except OSError as exc:
        raise DataError(path, f"cannot read ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(path, f"invalid JSON ({exc})") from None
    if not isinstance(doc, dict) or "people" not in doc:
        raise DataError(path, "no 'people' key (not an OpenPose keypoint file)")
    people = doc["people"]
    if not isinstance(people, list):
        raise DataError(path, "'people' is not a list")
    streams = _OPENPOSE_STREAMS if with_face else _OPENPOSE_STREAMS[:3]
    num_joints = sum(n for _, n in streams)
    out = np.zeros((len(people), num_joints, 3), dtype=np.float32)
    for p, person in enumerate(people):
        if not isinstance(person, dict):
            raise DataError(path, "person entry is not an object", where=f"person {p}")
        parts = [
            _points(path, p, key, n, person.get(key), required=(key == "pose_keypoints_2d"))
            for key, n in streams
        ]
        out[p] = np.concatenate(parts, axis=0)
    return out


def read_openpose_people(
    folder: str | os.PathLike, *, with_face: bool = False, num_frames: int | None = None
) -> list[np.ndarray]:
    """Every person of every frame of a folder of per-frame OpenPose JSON files, untracked.

    Files are ``<stem>_<12-digit frame index>_keypoints.json``; item t of the result holds the
    people of the file with index t. Missing indices give no people. ``with_face`` and
    ``num_frames`` as for :func:`read_openpose_folder`.

    Returns:
        T arrays (P_t, 67, 3) float32 (J = 137 with ``with_face``), P_t >= 0.

    Raises:
        DataError: missing folder, no keypoint files, duplicate frame index, a bad file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "keypoint folder not found")
    indexed: dict[int, Path] = {}
    for path in folder.iterdir():
        match = _FRAME_RE.match(path.name)
        if match is None:
            continue
        index = int(match.group("index"))
        if index in indexed:
            raise DataError(
                path, f"duplicate frame index (also {indexed[index].name})", where=f"frame {index}"
            )
        indexed[index] = path
    if not indexed:
        raise DataError(folder, "no '<name>_<12-digit frame>_keypoints.json' files")
    last = max(indexed)
    if num_frames is not None and last >= num_frames:
        raise DataError(indexed[last], f"frame index {last} beyond the video's {num_frames} frames")
    total = last + 1 if num_frames is None else int(num_frames)
    num_joints = 137 if with_face else 67
    people_per_frame = [np.zeros((0, num_joints, 3), dtype=np.float32) for _ in range(total)]
    for index, path in indexed.items():
        people_per_frame[index] = read_openpose_frame(path, with_face=with_face)
    return people_per_frame


def read_openpose_folder(
    folder: str | os.PathLike,
    *,
    with_face: bool = False,
    frame_size: tuple[int, int] | None = None,
    num_frames: int | None = None,
) -> np.ndarray:
    """Read a folder of per-frame OpenPose JSON files into one subject's keypoint track.

    Files are ``<stem>_<12-digit frame index>_keypoints.json``; frame t of the result is the
    file with index t (indices count from 0, as OpenPose numbers video frames). Missing indices
    and frames with ``"people": []`` become zero-confidence frames. When a frame holds several
    people, :func:`select_person` keeps one subject consistently.

    Args:
        folder: the folder of JSON files.
        with_face: also read the 70 face points (layout ``body25_hands_face``, J = 137).
        frame_size: (W, H); when given, points outside ``[0, W] x [0, H]`` are set to (0, 0, 0).
        num_frames: the video's frame count; pads with empty frames to this length (files with
            a larger index are an error). Default: last index + 1.

    Returns:
        (T, 67, 3) float32 (or (T, 137, 3) with ``with_face``): pixel x, y, confidence.

    Raises:
        DataError: missing folder, no keypoint files, duplicate frame index, a bad file.
    """
    people_per_frame = read_openpose_people(folder, with_face=with_face, num_frames=num_frames)
    return track_people(people_per_frame, num_joints=137 if with_face else 67, frame_size=frame_size)


def track_people(
    people_per_frame: Sequence[np.ndarray], *, num_joints: int, frame_size: tuple[int, int] | None = None
) -> np.ndarray:
    """One subject's (T, J, 3) track of T frames of untracked people ((P_t, J, 3) each): points
    outside ``frame_size`` (W, H) dropped when it is given, then :func:`select_person`."""
    if frame_size is not None:
        people_per_frame = [_drop_outside(people, frame_size) for people in people_per_frame]
    return select_person(people_per_frame, num_joints=num_joints)


def _drop_outside(keypoints: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    width, height = frame_size
    x, y = keypoints[..., 0], keypoints[..., 1]
    outside = (x < 0) | (y < 0) | (x > width) | (y > height)
    out = keypoints.copy()
    out[outside] = 0.0
    return out


# --------------------------------------------------------------------------------------------
# Pose pickles (mmaction / PYSKL) and MiGA arrays
# --------------------------------------------------------------------------------------------

# The only globals a pose pickle may name: numpy's array/scalar reconstruction, dtypes,
# and the byte codec that protocol-2 pickles use for raw buffers. Anything else (os.system,
# builtins.eval, arbitrary classes) is refused, so loading cannot run foreign code.
_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
    ("collections", "OrderedDict"),
}


class _PoseUnpickler(pickle.Unpickler):
    """An Unpickler that only rebuilds numpy arrays and plain containers."""

    def find_class(self, module: str, name: str):
        if (module, name) in _PICKLE_ALLOWED:
            return super().find_class(module, name)
        if module == "numpy" and name in {
            "float32",
            "float64",
            "float16",
            "int64",
            "int32",
            "uint8",
            "bool_",
        }:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def _load_restricted_pickle(path: Path):
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(path, f"cannot read ({exc.strerror or exc})") from None
    try:
        return _PoseUnpickler(io.BytesIO(data), encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        raise DataError(path, f"not an allowed pose pickle ({exc})") from None
    except Exception as exc:  # truncated or corrupt files raise many different types
        raise DataError(path, f"corrupt pickle ({type(exc).__name__}: {exc})") from None


def read_pose_pickle(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read an mmaction/PYSKL 2D pose pickle (the MA-52 ``MA52_{split}.pkl`` release).

    The file holds either a list of annotation dicts or ``{"annotations": [...], "split": ...}``.
    Each annotation has ``frame_dir``, ``keypoint`` (M, T, V, 2) and ``keypoint_score``
    (M, T, V); a ``keypoint`` of shape (M, T, V, 3) already carrying confidences is accepted
    without a score. Loading uses a restricted unpickler that only rebuilds numpy arrays and
    plain Python containers: a pickle naming any other global is rejected, never executed.

    Returns:
        ``{frame_dir: (M, T, V, 3) float32}`` (pixel x, y, confidence), in file order.

    Raises:
        DataError: unreadable/forbidden pickle, missing keys, inconsistent shapes, NaN.
    """
    path = Path(path)
    doc = _load_restricted_pickle(path)
    if isinstance(doc, dict) and "annotations" in doc:
        doc = doc["annotations"]
    if not isinstance(doc, list):
        raise DataError(path, "expected a list of annotations or a dict with 'annotations'")
    out: dict[str, np.ndarray] = {}
    for i, ann in enumerate(doc):
        where = f"annotation {i}"
        if not isinstance(ann, dict):
            raise DataError(path, "annotation is not a dict", where=where)
        if "frame_dir" not in ann:
            raise DataError(path, "missing 'frame_dir'", where=where)
        name = str(ann["frame_dir"])
        where = f"annotation {i} ('{name}')"
        if "keypoint" not in ann:
            raise DataError(path, "missing 'keypoint'", where=where)
        kp = np.asarray(ann["keypoint"], dtype=np.float32)
        if kp.ndim != 4 or kp.shape[-1] not in (2, 3):
            raise DataError(path, f"'keypoint' must be (M, T, V, 2), got {kp.shape}", where=where)
        if kp.shape[-1] == 2:
            if "keypoint_score" not in ann:
                raise DataError(path, "missing 'keypoint_score'", where=where)
            score = np.asarray(ann["keypoint_score"], dtype=np.float32)
            if score.shape != kp.shape[:3]:
                raise DataError(
                    path,
                    f"'keypoint_score' shape {score.shape} does not match keypoint {kp.shape[:3]}",
                    where=where,
                )
            kp = np.concatenate([kp, score[..., None]], axis=-1)
        if not np.isfinite(kp).all():
            m, t = np.argwhere(~np.isfinite(kp))[0, :2]
            raise DataError(path, f"NaN or infinite keypoint (person {m})", where=f"{where} frame {t}")
        if name in out:
            raise DataError(path, "duplicate frame_dir", where=where)
        out[name] = np.ascontiguousarray(kp)
    return out


def select_person_from_tracks(keypoints: np.ndarray) -> np.ndarray:
    """One subject from a multi-person pose array (as stored in pose pickles).

    Args:
        keypoints: (M, T, V, 3).

    Returns:
        (T, V, 3) float32: the subject chosen by :func:`select_person` frame by frame (pickle
        person slots are not guaranteed to follow one person).
    """
    keypoints = np.asarray(keypoints, dtype=np.float32)
    if keypoints.ndim != 4:
        raise ValueError(f"expected (M, T, V, 3), got {keypoints.shape}")
    if keypoints.shape[0] == 1:
        return keypoints[0].copy()
    frames = [keypoints[:, t] for t in range(keypoints.shape[1])]
    return select_person(frames, num_joints=keypoints.shape[2])


def read_miga_npy(path: str | os.PathLike) -> np.ndarray:
    """Read MiGA-style skeleton arrays.

    Args:
        path: a ``.npy`` file holding (N, C, T, 22, M): C = 3 (x, y, confidence) or C = 2
            (x, y; a point is given confidence 1 when it is not at the origin), M persons.

    Returns:
        (N, T, 22, 3) float32 in layout ``miga_22``. With M > 1 one subject per sample is kept
        by :func:`select_person`. Coordinates are returned as stored (the MiGA release may be
        normalised rather than in pixels).

    Raises:
        DataError: unreadable file, wrong shape, NaN (naming sample and frame).
    """
    path = Path(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(path, f"cannot read as a numpy array ({exc})") from None
    if arr.ndim == 4:
        arr = arr[..., None]
    if arr.ndim != 5 or arr.shape[1] not in (2, 3) or arr.shape[3] != 22:
        raise DataError(path, f"expected shape (N, 3, T, 22, M), got {arr.shape}")
    arr = np.asarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        n, _, t = np.argwhere(~np.isfinite(arr))[0, :3]
        raise DataError(path, "NaN or infinite value", where=f"sample {n} frame {t}")
    kp = np.transpose(arr, (0, 4, 2, 3, 1))  # (N, M, T, V, C)
    if kp.shape[-1] == 2:
        conf = (np.abs(kp).sum(axis=-1, keepdims=True) > 0).astype(np.float32)
        kp = np.concatenate([kp, conf], axis=-1)
    return np.stack([select_person_from_tracks(sample) for sample in kp]).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Person selection
# --------------------------------------------------------------------------------------------


def _person_stats(people: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P, J, 3) -> centre (P, 2), size (P,), mean confidence (P,); size 0 for empty people.

    centre = confidence-weighted mean of the visible joints; size = diagonal of their box.
    """
    conf = people[..., 2]
    visible = conf > 0
    count = visible.sum(axis=1)
    weight = np.where(visible, conf, 0.0)
    centre = (people[..., :2] * weight[..., None]).sum(axis=1) / np.maximum(weight.sum(axis=1), 1e-12)[
        :, None
    ]
    xy = people[..., :2]
    lo = np.where(visible[..., None], xy, np.inf).min(axis=1)
    hi = np.where(visible[..., None], xy, -np.inf).max(axis=1)
    extent = np.where(count[:, None] > 0, hi - lo, 0.0)
    size = np.hypot(extent[:, 0], extent[:, 1])
    mean_conf = weight.sum(axis=1) / np.maximum(count, 1)
    return centre, size, mean_conf


def select_person(
    people_per_frame: Sequence[np.ndarray],
    *,
    num_joints: int | None = None,
    warmup_frames: int = 5,
    size_weight: float = 0.5,
) -> np.ndarray:
    """Keep one subject consistently across frames of untracked multi-person detections.

    The subject is first chosen in the first ``warmup_frames`` frames that have anyone: the
    person with the largest ``size x mean confidence`` over those frames (size = diagonal of
    the box around the visible joints), which anchors the track. From the anchor the track runs
    forwards and backwards: in each frame the chosen person minimises

        distance(centre, previous centre) / previous size
        + |log(size / previous size)|
        - size_weight * (size x confidence) / (best size x confidence in the frame)

    so the nearest person of similar size wins and a clearly better detection breaks near
    ties. Frames without anyone give zeros and do not reset the previous selection.

    Args:
        people_per_frame: T arrays (P_t, J, 3) (P_t may be 0).
        num_joints: J, needed only when no frame has anyone.

    Returns:
        (T, J, 3) float32.
    """
    num_frames = len(people_per_frame)
    frames = [np.asarray(p, dtype=np.float32) for p in people_per_frame]
    if num_joints is None:
        shapes = [p.shape[1] for p in frames if p.ndim == 3]
        if not shapes:
            raise ValueError("cannot infer the number of joints: pass num_joints")
        num_joints = shapes[0]
    out = np.zeros((num_frames, num_joints, 3), dtype=np.float32)
    stats: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None] = []
    for t, people in enumerate(frames):
        if people.ndim != 3 or people.shape[1:] != (num_joints, 3):
            if people.size == 0:
                stats.append(None)
                continue
            raise ValueError(f"frame {t}: expected (P, {num_joints}, 3), got {people.shape}")
        centre, size, conf = _person_stats(people)
        keep = size > 0
        stats.append((centre, size, conf) if keep.any() else None)
    occupied = [t for t in range(num_frames) if stats[t] is not None]
    if not occupied:
        return out

    # Anchor: best size x confidence among the first few occupied frames.
    best_score, anchor_t, anchor_p = -1.0, occupied[0], 0
    for t in occupied[:warmup_frames]:
        centre, size, conf = stats[t]
        score = size * conf
        p = int(np.argmax(score))
        if score[p] > best_score:
            best_score, anchor_t, anchor_p = float(score[p]), t, p
    out[anchor_t] = frames[anchor_t][anchor_p]

    def track(order: Sequence[int]) -> None:
        centre_prev = stats[anchor_t][0][anchor_p]
        size_prev = stats[anchor_t][1][anchor_p]
        for t in order:
            if stats[t] is None:
                continue
            centre, size, conf = stats[t]
            quality = size * conf
            quality = quality / max(float(quality.max()), 1e-12)
            with np.errstate(divide="ignore"):
                cost = (
                    np.linalg.norm(centre - centre_prev, axis=1) / max(float(size_prev), 1e-6)
                    + np.abs(np.log(np.maximum(size, 1e-6) / max(float(size_prev), 1e-6)))
                    - size_weight * quality
                )
            cost = np.where(size > 0, cost, np.inf)
            p = int(np.argmin(cost))
            out[t] = frames[t][p]
            centre_prev, size_prev = centre[p], size[p]

    track(range(anchor_t + 1, num_frames))
    track(range(anchor_t - 1, -1, -1))
    return out


# --------------------------------------------------------------------------------------------
# Body scale and normalisation
# --------------------------------------------------------------------------------------------


def _joint_mean(
    keypoints: np.ndarray, joints: Sequence[int], conf_threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Mean position of the confident joints of a group: (T, 2) and a (T,) validity mask.

    Requires every joint of the group to be confident (a half-seen pair is not its midpoint).
    """
    if not joints:
        t = keypoints.shape[0]
        return np.zeros((t, 2), dtype=np.float32), np.zeros(t, dtype=bool)
    sel = keypoints[:, list(joints)]
    ok = (sel[..., 2] > conf_threshold).all(axis=1)
    return sel[..., :2].mean(axis=1), ok


def body_scale(
    keypoints: np.ndarray, layout: str | SkeletonLayout, *, conf_threshold: float = 0.1
) -> np.ndarray:
    """Per-frame body scale in pixels: max(shoulder width, torso length).

    Torso length is neck to mid-hip (or to the midpoint of the two hips); shoulder width is the
    distance between the shoulders. Frames where neither is measurable take the clip's median
    of the measurable frames.

    Args:
        keypoints: (T, J, 3).

    Returns:
        (T,) float32; all NaN when no frame of the clip is measurable.
    """
    layout = get_layout(layout)
    kp = np.asarray(keypoints, dtype=np.float32)
    left, ok_l = _joint_mean(kp, layout.part("left_shoulder"), conf_threshold)
    right, ok_r = _joint_mean(kp, layout.part("right_shoulder"), conf_threshold)
    shoulder = np.where(ok_l & ok_r, np.linalg.norm(left - right, axis=1), np.nan)
    neck, ok_n = _joint_mean(kp, layout.part("neck"), conf_threshold)
    hip, ok_h = _joint_mean(kp, layout.part("mid_hip"), conf_threshold)
    hips, ok_hs = _joint_mean(kp, layout.joints("left_hip", "right_hip"), conf_threshold)
    hip = np.where(ok_h[:, None], hip, hips)
    torso = np.where(ok_n & (ok_h | ok_hs), np.linalg.norm(neck - hip, axis=1), np.nan)
    both = np.stack([shoulder, torso])
    with np.errstate(invalid="ignore"):
        scale = np.where(np.isnan(both).all(axis=0), np.nan, np.nanmax(np.nan_to_num(both, nan=-1.0), axis=0))
    scale = np.where(scale > 0, scale, np.nan)
    valid = ~np.isnan(scale)
    if valid.any() and not valid.all():
        scale[~valid] = np.median(scale[valid])
    return scale.astype(np.float32)


def normalize_keypoints(
    keypoints: np.ndarray,
    layout: str | SkeletonLayout,
    *,
    center: str = "neck",
    per_frame: bool = False,
    conf_threshold: float = 0.1,
) -> np.ndarray:
    """Translate and scale a keypoint track into body units for pose features.

    x, y are centred on the neck (``center="neck"``) or the mid-hip (``"mid_hip"``, the hip
    midpoint when the layout has no MidHip joint) and divided by the clip's median
    :func:`body_scale`. With ``per_frame=False`` the centre is the clip's mean centre, so body
    motion is kept; with ``per_frame=True`` each frame is centred on itself. Frames where the
    centre joint is unseen use the clip's mean centre. Undetected joints stay (0, 0, 0) and
    confidences are unchanged. When nothing is measurable the bounding box of all visible
    points sets centre and scale.

    Args:
        keypoints: (T, J, 3) pixel coordinates.

    Returns:
        (T, J, 3) float32.
    """
    layout = get_layout(layout)
    kp = np.asarray(keypoints, dtype=np.float32)
    if kp.ndim != 3 or kp.shape[2] != 3:
        raise ValueError(f"expected (T, J, 3), got {kp.shape}")
    if center == "neck":
        ctr, ok = _joint_mean(kp, layout.part("neck"), conf_threshold)
    elif center == "mid_hip":
        ctr, ok = _joint_mean(kp, layout.part("mid_hip"), conf_threshold)
        hips, ok_hs = _joint_mean(kp, layout.joints("left_hip", "right_hip"), conf_threshold)
        ctr = np.where(ok[:, None], ctr, hips)
        ok = ok | ok_hs
    else:
        raise ValueError(f"center must be 'neck' or 'mid_hip', got {center!r}")
    visible = kp[..., 2] > 0
    scale_t = body_scale(kp, layout, conf_threshold=conf_threshold)
    if ok.any():
        clip_centre = ctr[ok].mean(axis=0)
    elif visible.any():
        pts = kp[..., :2][visible]
        clip_centre = (pts.min(axis=0) + pts.max(axis=0)) / 2
    else:
        return kp.copy()
    if np.isnan(scale_t).all():
        pts = kp[..., :2][visible]
        scale = float(max(np.ptp(pts[:, 0]), np.ptp(pts[:, 1]), 1e-6)) / 2
    else:
        scale = float(np.median(scale_t))
    centres = (
        np.where(ok[:, None], ctr, clip_centre) if per_frame else np.broadcast_to(clip_centre, ctr.shape)
    )
    out = kp.copy()
    out[..., :2] = (kp[..., :2] - centres[:, None, :]) / max(scale, 1e-6)
    out[~visible] = 0.0
    return out.astype(np.float32)
