"""Generated studies for testing and demonstrating the analysis: participants in groups, their
videos, and detections with known engagement, optionally with planted group differences.

Each participant engages in an action with a probability (logit of a per-action base rate, shifted
by a planted odds ratio for one group); an engager spends a fraction of each video in that action
(a Beta draw around a per-action mean, its odds scaled by a planted intensity ratio). The time is
laid out as non-overlapping bouts, each reported by one detection plus, sometimes, a second one
overlapping it (so union and sum differ), and low-score false alarms are sprinkled in (removed by
a score threshold of 0.3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mmad.taxonomy import NUM_MA52_ACTIONS

FALSE_ALARM_MAX_SCORE = 0.25  # false alarms score below this; true detections score above 0.35


@dataclass(frozen=True)
class PlantedEffect:
    """A group difference in one action: ``group`` has ``prob_odds_ratio`` times the odds of
    engaging and ``intensity_ratio`` times the odds of the fraction of time engaged."""

    action_id: int
    group: str
    prob_odds_ratio: float = 1.0
    intensity_ratio: float = 1.0


def _logit(p):
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


def _expit(x):
    return 1.0 / (1.0 + np.exp(-x))


# The ten actions the paper's clinical study compared most often, made the most frequent here.
FREQUENT_ACTIONS: tuple[int, ...] = (30, 24, 10, 6, 29, 7, 9, 8, 5, 22)


def default_base_rates(num_actions: int = NUM_MA52_ACTIONS, *, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Per-action engagement probability (0.03-0.78, long-tailed, highest for
    :data:`FREQUENT_ACTIONS` in that order) and mean fraction of time engaged among engagers
    (0.02-0.12): two (num_actions,) arrays."""
    rng = np.random.default_rng(seed)
    ranked = 0.75 * np.exp(-np.arange(num_actions) / 12.0) + 0.03
    first = [a for a in FREQUENT_ACTIONS if a < num_actions]
    rest = [a for a in rng.permutation(num_actions) if a not in first]
    prob = np.empty(num_actions)
    prob[np.asarray(first + rest, dtype=int)] = ranked
    intensity = rng.uniform(0.02, 0.12, num_actions)
    return prob, intensity


def simulate_study(
    *,
    group_sizes: dict[str, int] | None = None,
    effects: tuple[PlantedEffect, ...] = (),
    base_prob: np.ndarray | None = None,
    base_intensity: np.ndarray | None = None,
    videos_per_participant: tuple[int, int] = (1, 2),
    duration_range_s: tuple[float, float] = (120.0, 180.0),
    intensity_concentration: float = 20.0,
    overlap_prob: float = 0.4,
    false_alarms_per_video: float = 3.0,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generate participants, their videos and detections.

    Args:
        group_sizes: participants per group; default the paper's ASD 120, PSY 46, TDC 124.
        effects: planted group differences.
        base_prob, base_intensity: (A,) per-action engagement probability and mean fraction of
            time among engagers; default :func:`default_base_rates`.
        videos_per_participant: inclusive range of videos per participant.
        duration_range_s: video durations are uniform in this range.
        intensity_concentration: Beta concentration of the fraction of time (higher = less spread).
        overlap_prob: chance that a bout is reported by a second, overlapping detection.
        false_alarms_per_video: Poisson mean of low-score detections per video.

    Returns:
        ``(detections, participants)``: ``video_id, t_start, t_end, label, score`` and
        ``video_id, participant_id, group, duration, age, sex`` (age and sex are unrelated noise).
    """
    rng = np.random.default_rng(seed)
    group_sizes = group_sizes or {"ASD": 120, "PSY": 46, "TDC": 124}
    if base_prob is None or base_intensity is None:
        default_prob, default_intensity = default_base_rates()
        base_prob = default_prob if base_prob is None else base_prob
        base_intensity = default_intensity if base_intensity is None else base_intensity
    base_prob = np.asarray(base_prob, dtype=np.float64)
    base_intensity = np.asarray(base_intensity, dtype=np.float64)
    num_actions = len(base_prob)

    people, detections = [], []
    pid = 0
    for group, size in group_sizes.items():
        prob_shift = np.zeros(num_actions)
        intensity_shift = np.zeros(num_actions)
        for e in effects:
            if e.group == group:
                prob_shift[e.action_id] += np.log(e.prob_odds_ratio)
                intensity_shift[e.action_id] += np.log(e.intensity_ratio)
        p_engage = _expit(_logit(base_prob) + prob_shift)
        mean_fraction = _expit(_logit(base_intensity) + intensity_shift)
        for _ in range(size):
            pid += 1
            participant = f"P{pid:04d}"
            age = float(rng.uniform(5, 52))
            sex = str(rng.choice(["F", "M"]))
            engaged = rng.random(num_actions) < p_engage
            fraction = rng.beta(mean_fraction * intensity_concentration,
                                (1 - mean_fraction) * intensity_concentration)
            n_videos = int(rng.integers(videos_per_participant[0], videos_per_participant[1] + 1))
            for v in range(n_videos):
                video_id = f"{participant}_v{v}"
                duration = round(float(rng.uniform(*duration_range_s)), 3)
                people.append((video_id, participant, group, duration, round(age, 1), sex))
                for action_id in np.flatnonzero(engaged):
                    detections.extend(
                        _bouts(rng, video_id, int(action_id), fraction[action_id] * duration, duration,
                               overlap_prob)
                    )
                for _ in range(rng.poisson(false_alarms_per_video)):
                    t0 = rng.uniform(0, duration - 1.0)
                    t1 = min(t0 + rng.uniform(0.3, 3.0), duration)
                    detections.append((video_id, t0, t1, int(rng.integers(num_actions)),
                                       float(rng.uniform(0.01, FALSE_ALARM_MAX_SCORE))))
    participants = pd.DataFrame(people, columns=["video_id", "participant_id", "group", "duration", "age", "sex"])
    frame = pd.DataFrame(detections, columns=["video_id", "t_start", "t_end", "label", "score"])
    return frame, participants


def _bouts(rng, video_id, action_id, engaged_s, duration, overlap_prob) -> list[tuple]:
    """Non-overlapping bouts totalling ``engaged_s`` seconds, as detections (some doubled)."""
    k = 1 + int(rng.poisson(2.0))
    lengths = rng.dirichlet(np.ones(k)) * engaged_s
    gaps = rng.dirichlet(np.ones(k + 1)) * (duration - engaged_s)
    out = []
    t = 0.0
    for length, gap in zip(lengths, gaps):
        t += gap
        out.append((video_id, t, t + length, action_id, float(rng.uniform(0.35, 1.0))))
        if rng.random() < overlap_prob and length > 0:
            a, b = np.sort(rng.uniform(t, t + length, 2))
            out.append((video_id, float(a), float(b), action_id, float(rng.uniform(0.35, 1.0))))
        t += length
    return out
