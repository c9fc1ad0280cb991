"""The MicroPuppet body: a seated, front-facing, articulated 2D person drawn with PIL.

A :class:`Subject` holds everything that is fixed for one person in one recording: body
proportions, colours, placement in the frame, background texture and lighting. A pose is a set of
per-frame *controls* (:class:`Controls`): head pitch/yaw/roll, a lateral torso shift, a shoulder
raise, the two wrist targets and the knee/ankle positions. :func:`skeleton` turns controls into
2D joint positions (arms by two-link inverse kinematics, elbows bending outwards);
:func:`render_frame` draws them and :func:`body25_keypoints` / :func:`hand_keypoints` read the
OpenPose keypoints off the same joints, so the keypoints lie on the drawn body.

Body coordinates are in *units* (1 unit = ``Subject.scale`` pixels) with the origin at the neck,
x to the image right and y down. The person faces the camera, so their right side is image left
(negative x), as in OpenPose.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

NOISE_MARGIN = 24  # the camera-noise field is this much larger than a frame, to shift per frame
SUPERSAMPLE = 2  # drawing happens at this multiple of the frame size, then is box-filtered down

# Rest skeleton in body units (origin at the neck).
HEAD_CENTRE = np.array([0.0, -1.2])
HEAD_RADII = (0.62, 0.76)
SHOULDER_X, SHOULDER_Y = 1.0, 0.18
HIP_X, HIP_Y = 0.55, 2.7
UPPER_ARM, FOREARM, HAND_LENGTH = 1.25, 1.1, 0.5
REST_KNEE = np.array([0.72, 3.35])
REST_ANKLE = np.array([0.68, 5.0])
REST_WRIST = np.array([0.62, 2.95])
BODY_TOP, BODY_BOTTOM = -2.05, 5.45  # head top and soles, for framing

# Face features relative to the head centre (units), before pitch/yaw/roll.
EYE_OFFSET = np.array([0.25, -0.1])
NOSE_OFFSET = np.array([0.0, 0.14])
MOUTH_OFFSET = np.array([0.0, 0.4])
EAR_OFFSET = np.array([0.63, 0.02])


@dataclass
class Subject:
    """Appearance and placement of one synthetic person (all fixed over a recording).

    ``scale`` pixels per body unit; ``origin`` (x, y) pixel position of the neck at rest;
    ``*_scale`` multiply limb lengths; colours are RGB tuples; ``background`` (SH, SW, 3) uint8 at
    ``SUPERSAMPLE`` times the frame size; ``light_gradient`` (H, W, 1) multiplicative lighting; ``noise_field``
    (H + NOISE_MARGIN, W + NOISE_MARGIN, 3) float32 camera noise, shifted per frame; ``keypoint_noise`` detector jitter in units.
    """

    subject_id: int
    height: int
    width: int
    scale: float
    origin: tuple[float, float]
    arm_scale: float
    leg_scale: float
    shoulder_scale: float
    head_scale: float
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    shirt: tuple[int, int, int]
    sleeve_skin: bool
    trousers: tuple[int, int, int]
    shoes: tuple[int, int, int]
    chair: tuple[int, int, int]
    background: np.ndarray = field(repr=False)
    light_gradient: np.ndarray = field(repr=False)
    noise_field: np.ndarray = field(repr=False, default=None)
    keypoint_noise: float = 0.04
    keypoint_dropout: float = 0.02
    flicker: float = 0.02


def _random_colour(rng: np.random.Generator, low: int, high: int) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(low, high, size=3))


def _contrasting_colour(rng: np.random.Generator, other: tuple[int, int, int], low: int, high: int,
                        min_distance: float = 90.0) -> tuple[int, int, int]:
    """A random colour at least ``min_distance`` (RGB Euclidean) from ``other``, so hands show on it."""
    colour = _random_colour(rng, low, high)
    for _ in range(20):
        if np.linalg.norm(np.subtract(colour, other)) >= min_distance:
            break
        colour = _random_colour(rng, low, high)
    return colour


def _smooth_texture(rng: np.random.Generator, height: int, width: int, cells: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 low-frequency noise in about [-1, 1]: a random grid upsampled bilinearly."""
    grid = rng.standard_normal((cells[0] + 1, cells[1] + 1)).astype(np.float32)
    img = Image.fromarray(grid, mode="F").resize((width, height), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32)


def make_subject(subject_id: int, rng: np.random.Generator, *, height: int, width: int) -> Subject:
    """Draw a random person, scene and camera for ``subject_id`` using ``rng``."""
    body_units = BODY_BOTTOM - BODY_TOP
    scale = float(height * rng.uniform(0.78, 0.92) / body_units)
    margin_x = width / 2 - 1.9 * scale
    cx = width / 2 + rng.uniform(-1, 1) * max(0.0, margin_x) * 0.5
    top_free = height - body_units * scale
    top = rng.uniform(0.25, 0.75) * top_free
    origin = (float(cx), float(top - BODY_TOP * scale))
    skin_tones = np.array([[236, 200, 170], [210, 160, 120], [170, 120, 85], [120, 80, 55], [245, 215, 190]])
    skin = skin_tones[rng.integers(len(skin_tones))] + rng.integers(-12, 13, size=3)
    wall = rng.uniform(90, 220, size=3)
    big_h, big_w = height * SUPERSAMPLE, width * SUPERSAMPLE
    texture = _smooth_texture(rng, big_h, big_w, (int(rng.integers(2, 6)), int(rng.integers(2, 6))))
    fine = _smooth_texture(rng, big_h, big_w, (height // 6, width // 6))
    background = wall[None, None, :] + 18 * texture[..., None] + 6 * fine[..., None] * rng.uniform(0.5, 1.5, 3)
    if rng.random() < 0.5:  # stripes or panels on the wall
        period = rng.uniform(8, 24) * SUPERSAMPLE
        stripes = np.sin(np.arange(big_w) * 2 * np.pi / period)[None, :, None]
        background = background + rng.uniform(4, 12) * stripes
    floor_y = int((origin[1] + rng.uniform(4.3, 4.9) * scale) * SUPERSAMPLE)
    background[floor_y:] = background[floor_y:] * rng.uniform(0.55, 0.85) + rng.uniform(-15, 15, 3)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = (np.cos(angle) * (xx / width - 0.5) + np.sin(angle) * (yy / height - 0.5))
    light = 1.0 + rng.uniform(0.1, 0.35) * ramp
    light *= rng.uniform(0.8, 1.15)
    return Subject(
        subject_id=int(subject_id),
        height=height,
        width=width,
        scale=scale,
        origin=origin,
        arm_scale=float(rng.uniform(0.92, 1.08)),
        leg_scale=float(rng.uniform(0.92, 1.06)),
        shoulder_scale=float(rng.uniform(0.88, 1.12)),
        head_scale=float(rng.uniform(0.9, 1.1)),
        skin=tuple(int(c) for c in np.clip(skin, 0, 255)),
        hair=_random_colour(rng, 10, 120) if rng.random() < 0.85 else _random_colour(rng, 150, 230),
        shirt=_contrasting_colour(rng, tuple(int(c) for c in skin), 20, 235),
        sleeve_skin=bool(rng.random() < 0.3),
        trousers=_random_colour(rng, 15, 140),
        shoes=_random_colour(rng, 5, 90),
        chair=_random_colour(rng, 40, 160),
        background=np.clip(background, 0, 255).astype(np.uint8),
        light_gradient=light[..., None].astype(np.float32),
        noise_field=rng.standard_normal((height + NOISE_MARGIN, width + NOISE_MARGIN, 3), dtype=np.float32)
        * np.float32(rng.uniform(1.5, 5.0)),
        keypoint_noise=float(rng.uniform(0.025, 0.06)),
        keypoint_dropout=float(rng.uniform(0.005, 0.03)),
        flicker=float(rng.uniform(0.005, 0.03)),
    )


@dataclass
class Controls:
    """Per-frame pose controls for T frames (body units / radians).

    ``head_pitch`` (T,) positive looks down; ``head_yaw`` (T,) positive turns to the image right;
    ``head_roll`` (T,) radians, positive tilts clockwise on screen; ``torso_dx`` (T,) lateral shift
    of the upper body; ``breath`` (T,) vertical lift of the shoulders and head; ``shoulder_raise``
    (T,); ``wrist_right``/``wrist_left`` (T, 2) wrist targets relative to the unshifted neck (the upper
    body shift is added by :func:`skeleton`); ``knee_right``,
    ``knee_left``, ``ankle_right``, ``ankle_left`` (T, 2) absolute; ``right_leg_front`` (T,) bool,
    which leg is drawn on top.
    """

    head_pitch: np.ndarray
    head_yaw: np.ndarray
    head_roll: np.ndarray
    torso_dx: np.ndarray
    breath: np.ndarray
    shoulder_raise: np.ndarray
    wrist_right: np.ndarray
    wrist_left: np.ndarray
    knee_right: np.ndarray
    knee_left: np.ndarray
    ankle_right: np.ndarray
    ankle_left: np.ndarray
    right_leg_front: np.ndarray

    @classmethod
    def rest(cls, num_frames: int) -> Controls:
        """The neutral seated pose (hands on thighs) for ``num_frames`` frames."""
        zeros = np.zeros(num_frames)

        def pair(p):
            return np.tile(np.asarray(p, dtype=np.float64), (num_frames, 1))

        return cls(
            head_pitch=zeros.copy(), head_yaw=zeros.copy(), head_roll=zeros.copy(),
            torso_dx=zeros.copy(), breath=zeros.copy(), shoulder_raise=zeros.copy(),
            wrist_right=pair(REST_WRIST * [-1, 1]), wrist_left=pair(REST_WRIST),
            knee_right=pair(REST_KNEE * [-1, 1]), knee_left=pair(REST_KNEE),
            ankle_right=pair(REST_ANKLE * [-1, 1]), ankle_left=pair(REST_ANKLE),
            right_leg_front=np.zeros(num_frames, dtype=bool),
        )


@dataclass
class Skeleton:
    """2D joint positions of one frame, in pixels; each value is an (x, y) array (or (N, 2))."""

    head_centre: np.ndarray
    head_radii: tuple[float, float]
    head_roll: float
    face_shift: np.ndarray
    nose: np.ndarray
    eyes: np.ndarray  # (2, 2): right, left
    ears: np.ndarray  # (2, 2): right, left
    ear_visible: tuple[bool, bool]
    mouth: np.ndarray
    neck: np.ndarray
    shoulders: np.ndarray  # (2, 2) right, left
    elbows: np.ndarray
    wrists: np.ndarray
    hands: np.ndarray  # (2, 21, 2) OpenPose hand points, right, left
    hips: np.ndarray  # (2, 2)
    mid_hip: np.ndarray
    knees: np.ndarray
    ankles: np.ndarray
    big_toes: np.ndarray
    small_toes: np.ndarray
    heels: np.ndarray
    right_leg_front: bool


def _rotate(vectors: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    return vectors @ rot.T


def _two_link(shoulder: np.ndarray, target: np.ndarray, a: float, b: float, outward: float) -> tuple[np.ndarray, np.ndarray]:
    """Elbow and wrist for a shoulder-elbow-wrist chain reaching for ``target``.

    The reach is clipped to what the arm can do. A near target means an arm bent towards the
    camera, which looks shorter on screen, so both segments shrink (down to 55%) as the target
    approaches the shoulder. Of the two elbow solutions the one further to the ``outward`` side
    (sign of x) and lower is taken.
    """
    delta = target - shoulder
    dist = float(np.hypot(*delta))
    foreshorten = float(np.clip(dist / (0.85 * (a + b)), 0.55, 1.0))
    a, b = a * foreshorten, b * foreshorten
    dist_c = float(np.clip(dist, abs(a - b) + 1e-3, a + b - 1e-3))
    direction = delta / dist if dist > 1e-9 else np.array([0.0, 1.0])
    wrist = shoulder + direction * dist_c
    along = (a * a - b * b + dist_c * dist_c) / (2 * dist_c)
    height = np.sqrt(max(a * a - along * along, 0.0))
    normal = np.array([-direction[1], direction[0]])
    cands = [shoulder + direction * along + normal * height, shoulder + direction * along - normal * height]
    scores = [outward * (c[0] - shoulder[0]) + 1.0 * (c[1] - shoulder[1]) for c in cands]
    return cands[int(np.argmax(scores))], wrist


def _hand_points(wrist: np.ndarray, direction: np.ndarray, length: float, thumb_side: float) -> np.ndarray:
    """(21, 2) OpenPose hand layout: wrist, then thumb, index, middle, ring, little (4 points each)."""
    direction = direction / max(float(np.hypot(*direction)), 1e-9)
    normal = np.array([-direction[1], direction[0]]) * thumb_side
    points = [wrist]
    finger_angles = (0.75, 0.3, 0.08, -0.14, -0.36)
    finger_lengths = (0.55, 0.95, 1.0, 0.93, 0.78)
    base_offsets = (0.18, 0.45, 0.5, 0.47, 0.42)
    for angle, flen, base in zip(finger_angles, finger_lengths, base_offsets):
        fdir = direction * np.cos(angle * 0.6) + normal * np.sin(angle * 0.6)
        root = wrist + direction * base * length + normal * np.sin(angle) * 0.35 * length
        for k in range(4):
            points.append(root + fdir * (k * 0.18 * flen * length))
    return np.stack(points)


def skeleton(subject: Subject, controls: Controls, t: int) -> Skeleton:
    """Joint positions in pixels of frame ``t`` of ``controls`` for ``subject``."""
    s = subject.scale
    ox, oy = subject.origin
    shift = np.array([controls.torso_dx[t], -controls.breath[t]])

    def px(p):
        return np.array([ox, oy]) + np.asarray(p) * s

    neck_u = shift.copy()
    sw = SHOULDER_X * subject.shoulder_scale
    raise_ = controls.shoulder_raise[t]
    shoulders_u = np.array([[-sw, SHOULDER_Y - raise_], [sw, SHOULDER_Y - raise_]]) + shift
    hips_u = np.array([[-HIP_X, HIP_Y], [HIP_X, HIP_Y]]) + np.array([shift[0] * 0.25, 0.0])

    # Head: roll about the neck; pitch moves the face features vertically; yaw horizontally.
    pitch, yaw, roll = controls.head_pitch[t], controls.head_yaw[t], controls.head_roll[t]
    hr = (HEAD_RADII[0] * subject.head_scale, HEAD_RADII[1] * subject.head_scale)
    centre_rel = HEAD_CENTRE * subject.head_scale + np.array([0.0, 0.12 * pitch - 0.6 * raise_])
    face_shift = np.array([0.32 * yaw * hr[0], 0.34 * pitch * hr[1]])
    features = {
        "nose": NOSE_OFFSET * subject.head_scale + face_shift * 1.15,
        "eye_r": EYE_OFFSET * [-1, 1] * subject.head_scale + face_shift,
        "eye_l": EYE_OFFSET * subject.head_scale + face_shift,
        "mouth": MOUTH_OFFSET * subject.head_scale + face_shift,
        "ear_r": EAR_OFFSET * [-1, 1] * subject.head_scale + [0.3 * max(yaw, 0) * hr[0], 0.2 * pitch * hr[1]],
        "ear_l": EAR_OFFSET * subject.head_scale + [0.3 * min(yaw, 0) * hr[0], 0.2 * pitch * hr[1]],
    }
    centre_u = neck_u + _rotate(centre_rel[None], roll)[0]
    feats_u = {k: centre_u + _rotate(np.asarray(v, dtype=np.float64)[None], roll)[0] for k, v in features.items()}

    # Arms.
    upper, fore = UPPER_ARM * subject.arm_scale, FOREARM * subject.arm_scale
    wrist_targets = [controls.wrist_right[t] + shift, controls.wrist_left[t] + shift]
    elbows, wrists, hands = [], [], []
    for side, (shoulder, target) in enumerate(zip(shoulders_u, wrist_targets)):
        outward = -1.0 if side == 0 else 1.0
        elbow, wrist = _two_link(shoulder, target, upper, fore, outward)
        elbows.append(elbow)
        wrists.append(wrist)
        hands.append(_hand_points(wrist, wrist - elbow, HAND_LENGTH * subject.arm_scale, -outward))

    # Legs: knees and ankles given directly (the thighs point at the camera, so they look short).
    leg = subject.leg_scale
    knees_u = np.stack([controls.knee_right[t], controls.knee_left[t]]) * [1, 1]
    ankles_u = np.stack([controls.ankle_right[t], controls.ankle_left[t]])
    knees_u = hips_u + (knees_u - np.array([[-HIP_X, HIP_Y], [HIP_X, HIP_Y]])) * leg
    ankles_u = knees_u + (ankles_u - np.stack([controls.knee_right[t], controls.knee_left[t]])) * leg
    outward_x = np.array([-1.0, 1.0])
    big_toes = ankles_u + np.stack([[-0.05 * o, 0.38] for o in outward_x]) * leg
    small_toes = ankles_u + np.stack([[0.2 * o, 0.34] for o in outward_x]) * leg
    heels = ankles_u + np.array([[0.0, 0.12], [0.0, 0.12]]) * leg

    return Skeleton(
        head_centre=px(centre_u),
        head_radii=(hr[0] * s, hr[1] * s),
        head_roll=float(roll),
        face_shift=face_shift * s,
        nose=px(feats_u["nose"]),
        eyes=np.stack([px(feats_u["eye_r"]), px(feats_u["eye_l"])]),
        ears=np.stack([px(feats_u["ear_r"]), px(feats_u["ear_l"])]),
        ear_visible=(bool(yaw < 0.45), bool(yaw > -0.45)),
        mouth=px(feats_u["mouth"]),
        neck=px(neck_u),
        shoulders=px(shoulders_u),
        elbows=px(np.stack(elbows)),
        wrists=px(np.stack(wrists)),
        hands=px(np.stack(hands)),
        hips=px(hips_u),
        mid_hip=px(hips_u.mean(axis=0)),
        knees=px(knees_u),
        ankles=px(ankles_u),
        big_toes=px(big_toes),
        small_toes=px(small_toes),
        heels=px(heels),
        right_leg_front=bool(controls.right_leg_front[t]),
    )


# ------------------------------------------------------------------------------ drawing



_UNIT_CIRCLES: dict[int, np.ndarray] = {}


def _ellipse_polygon(centre, radii, angle: float, n: int = 28) -> list[tuple[float, float]]:
    circle = _UNIT_CIRCLES.get(n)
    if circle is None:
        theta = np.linspace(0, 2 * np.pi, n, endpoint=False)
        circle = _UNIT_CIRCLES[n] = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    pts = circle * radii
    if angle:
        pts = _rotate(pts, angle)
    return ((pts + centre) * SUPERSAMPLE).tolist()


def _limb(draw: ImageDraw.ImageDraw, a, b, width: float, colour) -> None:
    ax, ay = float(a[0]) * SUPERSAMPLE, float(a[1]) * SUPERSAMPLE
    bx, by = float(b[0]) * SUPERSAMPLE, float(b[1]) * SUPERSAMPLE
    w = max(1, int(round(width * SUPERSAMPLE)))
    draw.line([(ax, ay), (bx, by)], fill=colour, width=w)
    r = w / 2
    for px, py in ((ax, ay), (bx, by)):
        draw.ellipse([px - r, py - r, px + r, py + r], fill=colour)


def _shade(colour, factor: float) -> tuple[int, int, int]:
    return tuple(min(255, max(0, int(c * factor))) for c in colour)


def _draw_hand(draw, sk: Skeleton, side: int, subject: Subject) -> None:
    pts = sk.hands[side]
    s = subject.scale
    palm = pts[[0, 5, 9, 13, 17]].mean(axis=0)
    r = 0.3 * s * subject.arm_scale
    draw.ellipse([(palm[0] - r) * SUPERSAMPLE, (palm[1] - r) * SUPERSAMPLE,
                  (palm[0] + r) * SUPERSAMPLE, (palm[1] + r) * SUPERSAMPLE], fill=subject.skin)
    finger_colour = _shade(subject.skin, 0.93)
    for f in range(5):
        _limb(draw, pts[1 + 4 * f], pts[4 + 4 * f], 0.09 * s, finger_colour)


def _draw_arm(draw, sk: Skeleton, side: int, subject: Subject) -> None:
    s = subject.scale
    sleeve = subject.shirt
    forearm_colour = subject.skin if subject.sleeve_skin else _shade(subject.shirt, 0.92)
    _limb(draw, sk.shoulders[side], sk.elbows[side], 0.42 * s, sleeve)
    _limb(draw, sk.elbows[side], sk.wrists[side], 0.34 * s, forearm_colour)
    _draw_hand(draw, sk, side, subject)


def _draw_head(draw, sk: Skeleton, subject: Subject) -> None:
    rx, ry = sk.head_radii
    roll = sk.head_roll
    hair_centre = sk.head_centre + _rotate(np.array([[0.0, -0.18 * ry]]), roll)[0] - sk.face_shift * [0.3, 0.5]
    draw.polygon(_ellipse_polygon(hair_centre, (rx * 1.06, ry * 0.86), roll), fill=subject.hair)
    draw.polygon(_ellipse_polygon(sk.head_centre + [0, 0.06 * ry], (rx * 0.97, ry * 0.92), roll), fill=subject.skin)
    ear_r = 0.14 * rx
    for side in (0, 1):
        if sk.ear_visible[side]:
            e = sk.ears[side]
            draw.polygon(_ellipse_polygon(e, (ear_r, ear_r * 1.6), roll), fill=_shade(subject.skin, 0.88))
    eye_r = max(0.09 * rx, 0.6)
    for e in sk.eyes:
        draw.polygon(_ellipse_polygon(e, (eye_r * 1.3, eye_r), roll, n=12), fill=(25, 20, 20))
        brow = e + _rotate(np.array([[0.0, -0.24 * ry]]), roll)[0]
        _limb(draw, brow - _rotate(np.array([[0.12 * rx, 0]]), roll)[0],
              brow + _rotate(np.array([[0.12 * rx, 0]]), roll)[0], 0.05 * rx * 2, _shade(subject.hair, 0.8))
    nose_dir = _rotate(np.array([[0.0, 0.12 * ry]]), roll)[0]
    _limb(draw, sk.nose - nose_dir, sk.nose, 0.09 * rx * 2, _shade(subject.skin, 0.72))
    half = _rotate(np.array([[0.17 * rx, 0.0]]), roll)[0]
    _limb(draw, sk.mouth - half, sk.mouth + half, 0.07 * rx * 2, (150, 45, 50))


def _draw_leg(draw, sk: Skeleton, side: int, subject: Subject) -> None:
    s = subject.scale
    _limb(draw, sk.hips[side], sk.knees[side], 0.62 * s, subject.trousers)
    _limb(draw, sk.knees[side], sk.ankles[side], 0.5 * s, _shade(subject.trousers, 0.9))
    foot = [sk.heels[side], sk.small_toes[side], sk.big_toes[side]]
    centre = np.mean(foot, axis=0)
    draw.polygon(_ellipse_polygon(centre, (0.3 * s, 0.22 * s), 0.0, n=14), fill=subject.shoes)


def render_frame(subject: Subject, sk: Skeleton, rng: np.random.Generator, *, light: float = 1.0) -> np.ndarray:
    """Draw one frame: (H, W, 3) uint8 RGB with lighting, flicker ``light`` and camera noise."""
    canvas = Image.fromarray(subject.background)
    draw = ImageDraw.Draw(canvas)
    s = subject.scale
    ox, oy = subject.origin
    ss = SUPERSAMPLE
    # Chair: back behind the torso and a seat under the hips.
    draw.rectangle([(ox - 1.5 * s) * ss, (oy - 0.4 * s) * ss, (ox + 1.5 * s) * ss, (oy + 2.9 * s) * ss],
                   fill=subject.chair)
    draw.rectangle([(ox - 1.7 * s) * ss, (oy + 2.7 * s) * ss, (ox + 1.7 * s) * ss, (oy + 3.3 * s) * ss],
                   fill=_shade(subject.chair, 0.8))
    for side in ((1, 0) if sk.right_leg_front else (0, 1)):
        _draw_leg(draw, sk, side, subject)
    torso = [sk.shoulders[0] + [-0.1 * s, -0.05 * s], sk.shoulders[1] + [0.1 * s, -0.05 * s],
             sk.hips[1] + [0.2 * s, 0.1 * s], sk.hips[0] + [-0.2 * s, 0.1 * s]]
    draw.polygon([tuple(p * ss) for p in torso], fill=subject.shirt)
    _limb(draw, sk.neck + [0, 0.15 * s], sk.head_centre + [0, 0.4 * sk.head_radii[1]], 0.45 * s,
          _shade(subject.skin, 0.9))
    collar = [sk.neck + [-0.3 * s, 0.05 * s], sk.neck + [0.3 * s, 0.05 * s], sk.neck + [0, 0.45 * s]]
    draw.polygon([tuple(p * ss) for p in collar], fill=_shade(subject.skin, 0.9))
    _draw_head(draw, sk, subject)
    for side in (0, 1):  # arms last: hands can cover the face and cross the chest
        _draw_arm(draw, sk, side, subject)
    frame = np.asarray(canvas.reduce(ss), dtype=np.float32)
    frame *= subject.light_gradient * light
    # camera noise: a random window of the subject's noise field (cheaper than fresh noise per frame)
    dy, dx = rng.integers(0, NOISE_MARGIN, size=2)
    frame += subject.noise_field[dy:dy + subject.height, dx:dx + subject.width]
    np.clip(frame, 0, 255, out=frame)
    return frame.astype(np.uint8)


# ------------------------------------------------------------------------------ keypoints


def body25_points(sk: Skeleton) -> np.ndarray:
    """(25, 2) BODY_25 pixel positions read off the skeleton (OpenPose order)."""
    r, le = 0, 1
    return np.stack([
        sk.nose, sk.neck,
        sk.shoulders[r], sk.elbows[r], sk.wrists[r],
        sk.shoulders[le], sk.elbows[le], sk.wrists[le],
        sk.mid_hip,
        sk.hips[r], sk.knees[r], sk.ankles[r],
        sk.hips[le], sk.knees[le], sk.ankles[le],
        sk.eyes[r], sk.eyes[le], sk.ears[r], sk.ears[le],
        sk.big_toes[le], sk.small_toes[le], sk.heels[le],
        sk.big_toes[r], sk.small_toes[r], sk.heels[r],
    ])


_FACE_JOINTS = (0, 15, 16, 17, 18)
_FOOT_JOINTS = (19, 20, 21, 22, 23, 24)


def detect_keypoints(
    subject: Subject, sk: Skeleton, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simulated detector output for one frame.

    Returns ``body`` (25, 3), ``hand_right`` (21, 3), ``hand_left`` (21, 3): pixel x, y with
    Gaussian jitter, a confidence, and (0, 0, 0) for dropped or hidden points. Face points get low
    confidence when a hand is over the face, ears when the head turns away.
    """
    jitter = subject.keypoint_noise * subject.scale
    body_xy = body25_points(sk)
    body = np.zeros((25, 3))
    body[:, :2] = body_xy + rng.normal(0, jitter, size=(25, 2))
    conf = rng.uniform(0.55, 0.95, size=25)
    conf[list(_FOOT_JOINTS)] *= 0.8
    hidden = rng.random(25) < subject.keypoint_dropout
    hidden[17] |= not sk.ear_visible[0]
    hidden[18] |= not sk.ear_visible[1]
    face_reach = 1.3 * max(sk.head_radii)
    hand_near_face = any(np.hypot(*(sk.hands[i][9] - sk.head_centre)) < face_reach for i in (0, 1))
    if hand_near_face:
        conf[list(_FACE_JOINTS)] *= 0.45
        hidden[list(_FACE_JOINTS)] |= rng.random(len(_FACE_JOINTS)) < 0.25
    body[:, 2] = conf
    body[hidden] = 0.0
    hands = []
    for side in (0, 1):
        hand = np.zeros((21, 3))
        if rng.random() < 0.06:  # the hand detector misses the whole hand now and then
            hands.append(hand)
            continue
        hand[:, :2] = sk.hands[side] + rng.normal(0, jitter * 0.6, size=(21, 2))
        hand[:, 2] = rng.uniform(0.3, 0.85, size=21)
        hand[rng.random(21) < 2 * subject.keypoint_dropout] = 0.0
        hands.append(hand)
    for arr in (body, *hands):
        outside = (arr[:, 0] < 0) | (arr[:, 0] >= subject.width) | (arr[:, 1] < 0) | (arr[:, 1] >= subject.height)
        arr[outside] = 0.0
    return body.astype(np.float32), hands[0].astype(np.float32), hands[1].astype(np.float32)
