"""MicroPuppet's micro-actions: which MA-52 classes it performs and how each moves the puppet.

Fourteen MA-52 classes, two from every body group, half defined by a held position and half by a
periodic motion. Each action touches a set of body *parts* (``head``, ``arms``, ``legs``,
``torso``); two actions may overlap in time only when their parts are disjoint.

:func:`animate` turns a list of :class:`ActionInstance` (class, onset, offset in seconds, plus
random amplitude, speed, phase and side) into per-frame :class:`~mmad.synth.puppet.Controls`,
on top of idle motion (breathing, sway, small head and hand drift) that is always present, so
that "no action" is never perfectly still.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmad.synth.puppet import REST_ANKLE, REST_KNEE, REST_WRIST, Controls
from mmad.taxonomy import MA52_ACTIONS, fine2coarse


@dataclass(frozen=True)
class ActionSpec:
    """One synthetic class: its MA-52 id, whether it is a held ``"position"`` or a periodic
    ``"motion"``, the body parts it uses, its amplitude range (units or radians) and, for motions,
    its frequency range in Hz."""

    label: int
    kind: str
    parts: frozenset[str]
    amplitude: tuple[float, float]
    frequency: tuple[float, float] = (0.0, 0.0)

    @property
    def name(self) -> str:
        return MA52_ACTIONS[self.label]

    @property
    def body_label(self) -> int:
        return fine2coarse(self.label)


def _spec(label, kind, parts, amplitude, frequency=(0.0, 0.0)) -> ActionSpec:
    return ActionSpec(label, kind, frozenset(parts), amplitude, frequency)


ACTION_SPECS: dict[int, ActionSpec] = {
    s.label: s
    for s in (
        _spec(0, "motion", {"torso"}, (0.22, 0.4), (1.2, 2.4)),  # shaking body
        _spec(6, "position", {"head"}, (0.75, 1.0)),  # head up
        _spec(7, "position", {"head"}, (0.28, 0.45)),  # tilting head
        _spec(9, "motion", {"head"}, (0.6, 1.0), (1.2, 2.2)),  # nodding
        _spec(10, "motion", {"head"}, (0.6, 1.0), (1.2, 2.2)),  # shaking head
        _spec(14, "motion", {"arms"}, (0.12, 0.22), (2.0, 3.5)),  # rubbing hands
        _spec(19, "motion", {"arms"}, (0.25, 0.45), (1.5, 3.0)),  # waving
        _spec(24, "motion", {"legs"}, (0.2, 0.34), (3.0, 5.0)),  # shaking legs
        _spec(28, "position", {"legs"}, (0.85, 1.0)),  # crossing legs
        _spec(36, "position", {"arms"}, (0.9, 1.0)),  # arms akimbo
        _spec(37, "position", {"arms"}, (0.9, 1.0)),  # crossing arms
        _spec(43, "position", {"arms", "head"}, (0.9, 1.0)),  # touching nose
        _spec(45, "position", {"arms", "head"}, (0.9, 1.0)),  # covering face
        _spec(48, "motion", {"arms", "legs"}, (0.3, 0.5), (1.5, 2.6)),  # patting legs
    )
}

CLASSES: list[int] = sorted(ACTION_SPECS)
"""MA-52 ids of the classes MicroPuppet performs."""
POSITION_CLASSES: list[int] = [c for c in CLASSES if ACTION_SPECS[c].kind == "position"]
"""Classes recognisable from a single frame (a held position of head, hands or legs)."""
MOTION_CLASSES: list[int] = [c for c in CLASSES if ACTION_SPECS[c].kind == "motion"]
"""Classes defined by a periodic movement (need several frames)."""


@dataclass(frozen=True)
class ActionInstance:
    """One performed action: MA-52 ``label``, onset ``t_start`` and offset ``t_end`` in seconds,
    ``amplitude`` (units or radians), ``frequency`` in Hz (0 for positions), ``phase`` in radians,
    ``side`` (-1 the person's right, +1 left, 0 both) and ``ramp`` seconds to reach the pose."""

    label: int
    t_start: float
    t_end: float
    amplitude: float
    frequency: float
    phase: float
    side: int
    ramp: float


def sample_instance(label: int, t_start: float, t_end: float, rng: np.random.Generator) -> ActionInstance:
    """Random amplitude, speed, phase, side and ramp for class ``label`` over [t_start, t_end] s."""
    spec = ACTION_SPECS[label]
    amplitude = float(rng.uniform(*spec.amplitude))
    frequency = float(rng.uniform(*spec.frequency)) if spec.kind == "motion" else 0.0
    side = int(rng.choice([-1, 1]))
    if label in (24, 48) and rng.random() < 0.5:
        side = 0
    return ActionInstance(
        label=int(label), t_start=float(t_start), t_end=float(t_end), amplitude=amplitude,
        frequency=frequency, phase=float(rng.uniform(0, 2 * np.pi)), side=side,
        ramp=float(rng.uniform(0.15, 0.35)),
    )


def envelope(t: np.ndarray, inst: ActionInstance) -> np.ndarray:
    """(T,) weight in [0, 1]: smooth rise after ``t_start``, hold, smooth fall before ``t_end``."""
    ramp = min(inst.ramp, max((inst.t_end - inst.t_start) / 3, 1e-3))
    up = np.clip((t - inst.t_start) / ramp, 0, 1)
    down = np.clip((inst.t_end - t) / ramp, 0, 1)
    w = np.minimum(up, down)
    return w * w * (3 - 2 * w)


def _drift(t: np.ndarray, rng: np.random.Generator, amplitude: float, dims: int = 1) -> np.ndarray:
    """(T,) or (T, dims) slow smooth random motion: a sum of three low-frequency sinusoids."""
    out = np.zeros((len(t), dims))
    for _ in range(3):
        freq = rng.uniform(0.08, 0.6, size=dims)
        phase = rng.uniform(0, 2 * np.pi, size=dims)
        out += rng.uniform(0.3, 1.0, size=dims) * np.sin(2 * np.pi * freq * t[:, None] + phase)
    out *= amplitude / 2.0
    return out[:, 0] if dims == 1 else out


def _blend(current: np.ndarray, target: np.ndarray, w: np.ndarray) -> np.ndarray:
    return current * (1 - w[:, None]) + target * w[:, None]


def animate(instances: list[ActionInstance], num_frames: int, fps: float, rng: np.random.Generator) -> Controls:
    """Per-frame controls for ``num_frames`` frames at ``fps`` performing ``instances`` over idle motion."""
    t = np.arange(num_frames) / fps
    c = Controls.rest(num_frames)
    # Idle: a per-recording rest posture, breathing, sway and slow drift of head, hands and legs.
    rest_spread = rng.uniform(-0.25, 0.08)
    rest_wrist = REST_WRIST + [rest_spread, rng.uniform(-0.15, 0.15)]
    c.wrist_right = np.tile(rest_wrist * [-1, 1], (num_frames, 1)) + _drift(t, rng, 0.05, 2)
    c.wrist_left = np.tile(rest_wrist, (num_frames, 1)) + _drift(t, rng, 0.05, 2)
    knee_spread = rng.uniform(-0.12, 0.12)
    for name, base in (("knee_right", REST_KNEE * [-1, 1]), ("knee_left", REST_KNEE),
                       ("ankle_right", REST_ANKLE * [-1, 1]), ("ankle_left", REST_ANKLE)):
        outward = np.sign(base[0]) * knee_spread
        setattr(c, name, np.tile(base + [outward, 0.0], (num_frames, 1)) + _drift(t, rng, 0.02, 2))
    c.breath = 0.05 * np.sin(2 * np.pi * rng.uniform(0.2, 0.35) * t + rng.uniform(0, 2 * np.pi))
    c.torso_dx = _drift(t, rng, 0.06)
    c.head_pitch = _drift(t, rng, 0.08)
    c.head_yaw = _drift(t, rng, 0.1)
    c.head_roll = _drift(t, rng, 0.04)

    for inst in instances:
        w = envelope(t, inst)
        tau = t - inst.t_start
        osc = np.sin(2 * np.pi * inst.frequency * tau + inst.phase)
        a = inst.amplitude
        label = inst.label
        if label == 0:
            c.torso_dx = c.torso_dx + w * a * osc
            c.head_roll = c.head_roll - w * 0.1 * osc
        elif label == 6:
            c.head_pitch = c.head_pitch - w * a
        elif label == 7:
            c.head_roll = c.head_roll + w * a * (inst.side or 1)
        elif label == 9:
            c.head_pitch = c.head_pitch + w * a * (0.5 - 0.5 * np.cos(2 * np.pi * inst.frequency * tau))
        elif label == 10:
            c.head_yaw = c.head_yaw + w * a * np.sin(2 * np.pi * inst.frequency * tau)
        elif label == 14:
            rub = a * np.stack([osc, 0.5 * np.cos(2 * np.pi * inst.frequency * tau + inst.phase)], axis=1)
            c.wrist_right = _blend(c.wrist_right, np.array([-0.14, 1.95]) + rub, w)
            c.wrist_left = _blend(c.wrist_left, np.array([0.14, 1.95]) - rub, w)
        elif label == 19:
            wave = np.array([inst.side * 1.25, -0.7]) + np.stack([a * osc, 0.1 * a * osc ** 2], axis=1)
            if inst.side < 0:
                c.wrist_right = _blend(c.wrist_right, wave, w)
            else:
                c.wrist_left = _blend(c.wrist_left, wave, w)
        elif label == 24:
            bounce = a * (0.5 + 0.5 * osc)
            sides = ("right", "left") if inst.side == 0 else (("right",) if inst.side < 0 else ("left",))
            for s in sides:
                knee, ankle = getattr(c, f"knee_{s}"), getattr(c, f"ankle_{s}")
                setattr(c, f"knee_{s}", knee - np.stack([0 * bounce, w * bounce], axis=1))
                setattr(c, f"ankle_{s}", ankle - np.stack([0 * bounce, 0.7 * w * bounce], axis=1))
        elif label == 28:
            cross, other = ("right", "left") if inst.side < 0 else ("left", "right")
            other_knee = getattr(c, f"knee_{other}")
            knee_target = np.stack([other_knee[:, 0] * 0.35, np.full(num_frames, 3.05)], axis=1)
            ankle_target = np.stack([other_knee[:, 0] * 1.15, np.full(num_frames, 4.25 - 0.2 * a)], axis=1)
            setattr(c, f"knee_{cross}", _blend(getattr(c, f"knee_{cross}"), knee_target, w))
            setattr(c, f"ankle_{cross}", _blend(getattr(c, f"ankle_{cross}"), ankle_target, w))
            c.right_leg_front = np.where(w > 0.3, cross == "right", c.right_leg_front)
        elif label == 36:
            c.wrist_right = _blend(c.wrist_right, np.array([-1.08, 2.3]), w)
            c.wrist_left = _blend(c.wrist_left, np.array([1.08, 2.3]), w)
        elif label == 37:
            top = inst.side  # which forearm lies on top changes the look a little
            c.wrist_right = _blend(c.wrist_right, np.array([0.72, 1.05 + 0.08 * top]), w)
            c.wrist_left = _blend(c.wrist_left, np.array([-0.72, 1.05 - 0.08 * top]), w)
        elif label == 43:
            head_follow = np.stack([0.3 * c.head_yaw, 0.25 * c.head_pitch], axis=1)
            target = np.array([inst.side * 0.1, -0.72]) + head_follow
            if inst.side < 0:
                c.wrist_right = _blend(c.wrist_right, target, w)
            else:
                c.wrist_left = _blend(c.wrist_left, target, w)
        elif label == 45:
            head_follow = np.stack([0.3 * c.head_yaw, 0.25 * c.head_pitch], axis=1)
            c.wrist_right = _blend(c.wrist_right, np.array([-0.22, -0.88]) + head_follow, w)
            c.wrist_left = _blend(c.wrist_left, np.array([0.22, -0.88]) + head_follow, w)
            c.head_pitch = c.head_pitch + 0.25 * w
        elif label == 48:
            lift_r = a * np.maximum(0.0, osc)
            lift_l = a * np.maximum(0.0, np.sin(2 * np.pi * inst.frequency * tau + inst.phase + np.pi * (inst.side == 0)))
            if inst.side <= 0:
                c.wrist_right = c.wrist_right - np.stack([0 * lift_r, w * lift_r], axis=1)
            if inst.side >= 0:
                c.wrist_left = c.wrist_left - np.stack([0 * lift_l, w * lift_l], axis=1)
        else:  # pragma: no cover - ACTION_SPECS and this table are kept in step by the tests
            raise ValueError(f"no motion defined for class {label}")
    return c
