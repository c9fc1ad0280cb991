"""Entity boxes: from a keypoint track to K body-part boxes per frame (Micro-DualNet Eq. 1).

The paper pools CNN features over K anatomical entities. Each entity is a group of joints; its
box in frame t is

    B_t = BBox({k_j : j in J, c_j > theta})   if at least 2 joints of J are visible,
    B_t = B_(t-1)                             otherwise,

with theta = 0.3 and BBox the minimum enclosing rectangle padded by 10 %. This module adds what
the equation leaves open, each choice stated where it is made:

- **Padding**: each side moves out by ``pad`` times the box's own width (left/right) or
  height (top/bottom), so ``pad=0.1`` makes a box 20 % wider and taller.
- **Minimum size**: after padding, a box narrower or shorter than ``min_size`` times the body
  scale (:func:`mmad.keypoints.body_scale`, max of shoulder width and torso length) is grown
  about its centre to that size, so two nearly coincident joints never give a sliver.
- **Clipping** to ``[0, W] x [0, H]`` when the frame size is known.
- **Carry-forward**: a frame without a valid box takes the previous frame's box. Frames before
  the first valid box take the first valid box (backward fill). An entity never valid in the
  clip takes a default region: the fixed-region fractions of :data:`FIXED_REGIONS` placed in
  the box around every visible keypoint of the clip, or in the whole frame when nothing is
  visible (zeros when the frame size is unknown too).
- **Confidence**: ``entity_conf`` is the mean confidence of the joints that built the box in
  that frame, and 0 for a carried or default box (no evidence in that frame).

Entity sets (:data:`ENTITY_SETS`): ``k6`` = head, face, left hand, right hand, torso, lower
body (MA-52); ``k5`` drops the lower body (iMiGUE, seated subjects); ``k4`` is the paper's
Table III row "4 entities (no lower body)": dropping the lower body alone leaves five, so the
face is merged into the head as well (the head box already contains the face, so this loses
the least distinct region): head, left hand, right hand, torso.

Joint groups per entity (person's own sides; see :func:`entity_joint_groups`):

- head: nose, eyes, ears, neck (and any extra head joint of the layout).
- face: the 70 face landmarks when the layout has them, else nose, eyes and ears (without the
  neck, so a tighter box than the head).
- left/right hand: the wrist plus the hand points of that side when the layout has them. When
  fewer than two of those are visible but wrist and elbow are, the hand is placed past the
  wrist along the forearm: the box spans the wrist and ``wrist + 0.4 (wrist - elbow)`` (the
  hand's length is about 0.4 of the forearm's), instead of boxing the forearm.
- torso: neck, shoulders, mid hip and hips. A layout without hips (``miga_22``) sees only the
  shoulder line, so its torso box is extended down to one body scale below its top edge.
- lower body: mid hip, hips, knees, ankles and feet.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mmad.keypoints import SkeletonLayout, body_scale, get_layout

__all__ = [
    "ENTITY_NAMES",
    "ENTITY_SETS",
    "FIXED_REGIONS",
    "resolve_entities",
    "entity_joint_groups",
    "entity_boxes",
    "fixed_region_boxes",
    "center_crop_boxes",
]

ENTITY_NAMES: tuple[str, ...] = ("head", "face", "left_hand", "right_hand", "torso", "lower_body")

ENTITY_SETS: dict[str, tuple[str, ...]] = {
    "k6": ENTITY_NAMES,
    "k5": ENTITY_NAMES[:5],
    "k4": ("head", "left_hand", "right_hand", "torso"),
}

# Fixed regions as fractions (x1, y1, x2, y2) of a frame (or person box) showing one frontal,
# seated person: the person's left hand appears on the image's right.
FIXED_REGIONS: dict[str, tuple[float, float, float, float]] = {
    "head": (0.30, 0.00, 0.70, 0.30),
    "face": (0.36, 0.04, 0.64, 0.26),
    "left_hand": (0.55, 0.35, 0.95, 0.75),
    "right_hand": (0.05, 0.35, 0.45, 0.75),
    "torso": (0.25, 0.22, 0.75, 0.62),
    "lower_body": (0.15, 0.55, 0.85, 1.00),
}

_HAND_EXTENT = 0.4  # hand length / forearm length, for the wrist + elbow fallback


def resolve_entities(entities: str | Sequence[str]) -> tuple[str, ...]:
    """An entity-set name (``"k6"``, ``"k5"``, ``"k4"``) or a list of entity names -> names."""
    if isinstance(entities, str):
        if entities not in ENTITY_SETS:
            raise ValueError(f"unknown entity set {entities!r}; known: {sorted(ENTITY_SETS)}")
        return ENTITY_SETS[entities]
    names = tuple(entities)
    unknown = [n for n in names if n not in ENTITY_NAMES]
    if unknown:
        raise ValueError(f"unknown entities {unknown}; known: {list(ENTITY_NAMES)}")
    return names


def entity_joint_groups(
    layout: str | SkeletonLayout, entities: str | Sequence[str] = "k6"
) -> list[tuple[int, ...]]:
    """The keypoint indices of each entity for a layout (the J_i of Eq. 1).

    For the hands this is the primary group (wrist + hand points); the elbow fallback is
    described in the module docstring. A layout lacking an entity's joints gives ``()``.
    """
    layout = get_layout(layout)
    groups = []
    for name in resolve_entities(entities):
        if name == "head":
            group = layout.joints("nose", "eyes", "ears", "neck", "head_extra")
        elif name == "face":
            group = layout.part("face") if layout.has_face else layout.joints("nose", "eyes", "ears")
        elif name in ("left_hand", "right_hand"):
            side = name.split("_")[0]
            group = layout.joints(f"{side}_wrist", f"{side}_hand")
        elif name == "torso":
            group = layout.joints(
                "neck", "left_shoulder", "right_shoulder", "mid_hip", "left_hip", "right_hip"
            )
        else:
            group = layout.joints("mid_hip", "left_hip", "right_hip", "knees", "ankles", "feet")
        groups.append(group)
    return groups


def _masked_box(xy: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """(T, N, 2), (T, N) -> (T, 4) min/max box of the visible points (garbage where none)."""
    lo = np.where(visible[..., None], xy, np.inf).min(axis=1)
    hi = np.where(visible[..., None], xy, -np.inf).max(axis=1)
    return np.concatenate([lo, hi], axis=-1)


def _fill_from_valid(values: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward-fill invalid rows of (T, ...) from the last valid row, then back-fill leading rows.

    Returns the filled array and a (T,) mask of rows that had any valid row to copy from.
    """
    num = valid.shape[0]
    index = np.where(valid, np.arange(num), -1)
    index = np.maximum.accumulate(index)
    if valid.any():
        index[index < 0] = int(np.argmax(valid))
        return values[index], np.ones(num, dtype=bool)
    return values, np.zeros(num, dtype=bool)


def _region_in(box: np.ndarray, fractions: tuple[float, float, float, float]) -> np.ndarray:
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    f = fractions
    return np.array([x1 + f[0] * w, y1 + f[1] * h, x1 + f[2] * w, y1 + f[3] * h], dtype=np.float32)


def entity_boxes(
    keypoints: np.ndarray,
    layout: str | SkeletonLayout,
    *,
    entities: str | Sequence[str] = "k6",
    conf_threshold: float = 0.3,
    pad: float = 0.1,
    min_size: float = 0.15,
    frame_size: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Entity boxes of a keypoint track by Eq. (1) of Micro-DualNet (details: module docstring).

    Args:
        keypoints: (T, J, 3) pixel x, y, confidence in ``layout``.
        layout: a :class:`~mmad.keypoints.SkeletonLayout` or its name.
        entities: entity-set name or list of entity names (K of them).
        conf_threshold: theta; a joint is visible when its confidence is strictly above it.
        pad: padding per side as a fraction of the box's width/height.
        min_size: minimum box width and height as a fraction of the body scale.
        frame_size: (W, H) to clip boxes to the frame; None leaves them unclipped.

    Returns:
        boxes: (T, K, 4) float32 x1, y1, x2, y2 in pixels.
        entity_conf: (T, K) float32 mean confidence of the joints behind each box; 0 for
        carried-forward and default boxes.
    """
    layout = get_layout(layout)
    kp = np.asarray(keypoints, dtype=np.float32)
    if kp.ndim != 3 or kp.shape[1:] != (layout.num_joints, 3):
        raise ValueError(
            f"keypoints must be (T, {layout.num_joints}, 3) for layout {layout.name}, got {kp.shape}"
        )
    names = resolve_entities(entities)
    groups = entity_joint_groups(layout, names)
    num_frames, num_entities = kp.shape[0], len(names)
    xy, conf = kp[..., :2], kp[..., 2]
    visible_all = conf > conf_threshold

    scale = _scale_for_min_size(kp, layout, frame_size)
    has_hips = bool(layout.joints("mid_hip", "left_hip", "right_hip"))
    raw = np.zeros((num_frames, num_entities, 4), dtype=np.float32)
    valid = np.zeros((num_frames, num_entities), dtype=bool)
    entity_conf = np.zeros((num_frames, num_entities), dtype=np.float32)
    for k, (name, group) in enumerate(zip(names, groups)):
        if not group:
            continue
        idx = list(group)
        vis = visible_all[:, idx]
        count = vis.sum(axis=1)
        ok = count >= 2
        box = _masked_box(xy[:, idx], vis)
        mean_conf = np.where(vis, conf[:, idx], 0.0).sum(axis=1) / np.maximum(count, 1)
        if name in ("left_hand", "right_hand"):
            side = name.split("_")[0]
            wrist, elbow = layout.part(f"{side}_wrist"), layout.part(f"{side}_elbow")
            if wrist and elbow:
                w, e = kp[:, wrist[0]], kp[:, elbow[0]]
                fallback = ~ok & (w[:, 2] > conf_threshold) & (e[:, 2] > conf_threshold)
                tip = w[:, :2] + _HAND_EXTENT * (w[:, :2] - e[:, :2])
                fb_box = np.concatenate([np.minimum(w[:, :2], tip), np.maximum(w[:, :2], tip)], axis=1)
                box = np.where(fallback[:, None], fb_box, box)
                mean_conf = np.where(fallback, (w[:, 2] + e[:, 2]) / 2, mean_conf)
                ok = ok | fallback
        if name == "torso" and not has_hips and np.isfinite(scale).any():
            box = box.copy()
            box[:, 3] = np.maximum(box[:, 3], box[:, 1] + np.nan_to_num(scale, nan=0.0))
        raw[:, k] = np.where(ok[:, None], box, 0.0)
        valid[:, k] = ok
        entity_conf[:, k] = np.where(ok, mean_conf, 0.0)

    # Padding, then minimum size about the centre.
    wh = raw[..., 2:] - raw[..., :2]
    boxes = np.concatenate([raw[..., :2] - pad * wh, raw[..., 2:] + pad * wh], axis=-1)
    if min_size > 0 and np.isfinite(scale).any():
        min_side = (min_size * np.nan_to_num(scale, nan=0.0))[:, None, None]  # (T, 1, 1)
        centre = (boxes[..., :2] + boxes[..., 2:]) / 2
        half = np.maximum((boxes[..., 2:] - boxes[..., :2]) / 2, min_side / 2)
        boxes = np.concatenate([centre - half, centre + half], axis=-1)
    if frame_size is not None:
        boxes = _clip(boxes, frame_size)

    # Carry forward / back-fill, then defaults for entities never seen.
    default_frame = _default_person_box(kp, frame_size)
    for k, name in enumerate(names):
        filled, has_any = _fill_from_valid(boxes[:, k], valid[:, k])
        if has_any.all():
            boxes[:, k] = filled
        elif default_frame is not None:
            boxes[:, k] = _region_in(default_frame, FIXED_REGIONS[name])
        else:
            boxes[:, k] = 0.0
    if frame_size is not None:
        boxes = _clip(boxes, frame_size)
    return boxes.astype(np.float32), entity_conf


def _scale_for_min_size(
    kp: np.ndarray, layout: SkeletonLayout, frame_size: tuple[int, int] | None
) -> np.ndarray:
    """(T,) body scale; fallbacks: a third of the visible keypoints' extent, a quarter of the frame."""
    scale = body_scale(kp, layout)
    if not np.isnan(scale).all():
        return scale
    visible = kp[..., 2] > 0
    if visible.any():
        pts = kp[..., :2][visible]
        extent = float(max(np.ptp(pts[:, 0]), np.ptp(pts[:, 1])))
        if extent > 0:
            return np.full(kp.shape[0], extent / 3, dtype=np.float32)
    if frame_size is not None:
        return np.full(kp.shape[0], min(frame_size) / 4, dtype=np.float32)
    return scale


def _default_person_box(kp: np.ndarray, frame_size: tuple[int, int] | None) -> np.ndarray | None:
    """Box around every visible keypoint of the clip, else the frame, else None."""
    visible = kp[..., 2] > 0
    if visible.any():
        pts = kp[..., :2][visible]
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        if (hi > lo).all():
            return np.concatenate([lo, hi]).astype(np.float32)
    if frame_size is not None:
        return np.array([0.0, 0.0, float(frame_size[0]), float(frame_size[1])], dtype=np.float32)
    return None


def _clip(boxes: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    width, height = frame_size
    out = boxes.copy()
    out[..., 0::2] = np.clip(out[..., 0::2], 0.0, float(width))
    out[..., 1::2] = np.clip(out[..., 1::2], 0.0, float(height))
    return out


def fixed_region_boxes(
    num_frames: int, frame_size: tuple[int, int], entities: str | Sequence[str] = "k6"
) -> tuple[np.ndarray, np.ndarray]:
    """Table III "fixed body regions": every entity is a fixed fraction of the frame.

    Uses :data:`FIXED_REGIONS` (a frontal, centred, seated person); no keypoints are read.

    Returns:
        boxes (T, K, 4) float32 pixels and entity_conf (T, K) of ones.
    """
    width, height = frame_size
    frame = np.array([0.0, 0.0, float(width), float(height)], dtype=np.float32)
    names = resolve_entities(entities)
    per_entity = np.stack([_region_in(frame, FIXED_REGIONS[n]) for n in names])
    boxes = np.broadcast_to(per_entity, (num_frames, len(names), 4)).copy()
    return boxes, np.ones((num_frames, len(names)), dtype=np.float32)


def center_crop_boxes(
    num_frames: int, frame_size: tuple[int, int], num_entities: int, *, fraction: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Table III "center crop": every entity is the same central box of the frame.

    The box covers the central ``fraction`` of the frame's width and height.

    Returns:
        boxes (T, K, 4) float32 pixels and entity_conf (T, K) of ones.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    width, height = frame_size
    margin_x, margin_y = (1 - fraction) / 2 * width, (1 - fraction) / 2 * height
    box = np.array([margin_x, margin_y, width - margin_x, height - margin_y], dtype=np.float32)
    boxes = np.broadcast_to(box, (num_frames, num_entities, 4)).copy()
    return boxes, np.ones((num_frames, num_entities), dtype=np.float32)
