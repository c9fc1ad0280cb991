"""Per-participant engagement in each micro-action, from detected segments.

For one participant and one action:

- ``engaged``: at least one detection with score >= the threshold;
- ``engaged_s``: the length of the union of those detections' segments (overlapping detections are
  counted once), summed over the participant's videos;
- ``percent_time``: ``100 * engaged_s / duration_s`` where ``duration_s`` sums the durations of the
  participant's videos;
- ``bouts``: the number of disjoint segments left after merging overlapping (or touching, or closer
  than ``merge_gap_s``) detections, summed over videos;
- ``mean_bout_s``: ``engaged_s / bouts`` (NaN with no bout).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from mmad.taxonomy import MA52_ACTIONS, MA52_BODY_GROUPS, fine2coarse

ENGAGEMENT_COLUMNS = (
    "participant_id",
    "group",
    "action_id",
    "action",
    "body_group",
    "n_videos",
    "duration_s",
    "n_detections",
    "engaged",
    "engaged_s",
    "percent_time",
    "bouts",
    "mean_bout_s",
)


def merge_segments(starts, ends, *, merge_gap_s: float = 0.0) -> np.ndarray:
    """Merge overlapping intervals into disjoint bouts.

    Args:
        starts, ends: (N,) segment onsets and offsets in seconds (``ends >= starts``).
        merge_gap_s: segments separated by a gap of at most this many seconds join one bout
            (0 joins overlapping and touching segments only).

    Returns:
        (M, 2) float array of disjoint bouts sorted by onset, M <= N. Zero-length segments
        survive as zero-length bouts when nothing covers them.
    """
    starts = np.asarray(starts, dtype=np.float64).reshape(-1)
    ends = np.asarray(ends, dtype=np.float64).reshape(-1)
    if starts.shape != ends.shape:
        raise ValueError(f"starts and ends differ in length: {starts.shape} vs {ends.shape}")
    if starts.size == 0:
        return np.zeros((0, 2))
    if np.any(ends < starts):
        raise ValueError("a segment ends before it starts")
    order = np.lexsort((ends, starts))
    starts, ends = starts[order], ends[order]
    merged = []
    cur_start, cur_end = starts[0], ends[0]
    for s, e in zip(starts[1:], ends[1:]):
        if s <= cur_end + merge_gap_s:
            cur_end = max(cur_end, e)
        else:
            merged.append((cur_start, cur_end))
            cur_start, cur_end = s, e
    merged.append((cur_start, cur_end))
    return np.asarray(merged, dtype=np.float64)


def union_length(starts, ends) -> float:
    """Total length in seconds covered by the union of the (N,) intervals ``[starts, ends]``."""
    bouts = merge_segments(starts, ends)
    return float((bouts[:, 1] - bouts[:, 0]).sum()) if len(bouts) else 0.0


def video_engagement(
    detections: pd.DataFrame,
    durations: dict[str, float],
    *,
    threshold: float = 0.0,
    merge_gap_s: float = 0.0,
) -> pd.DataFrame:
    """Engagement per video and action, for the actions that have detections.

    Args:
        detections: table ``video_id, t_start, t_end, label, score`` (seconds; label = action id).
        durations: seconds per video; segments are clipped to ``[0, duration]``.
        threshold: detections with ``score >= threshold`` count.
        merge_gap_s: see :func:`merge_segments`.

    Returns:
        DataFrame ``video_id, action_id, n_detections, engaged_s, bouts`` with one row per
        (video, action) that has at least one detection at or above the threshold.
    """
    kept = detections[detections["score"] >= threshold]
    rows = []
    for (video_id, label), seg in kept.groupby(["video_id", "label"], sort=True):
        duration = float(durations[video_id])
        starts = np.clip(seg["t_start"].to_numpy(np.float64), 0.0, duration)
        ends = np.clip(seg["t_end"].to_numpy(np.float64), 0.0, duration)
        bouts = merge_segments(starts, ends, merge_gap_s=merge_gap_s)
        rows.append(
            {
                "video_id": video_id,
                "action_id": int(label),
                "n_detections": len(seg),
                # the union of the raw segments: a merge gap joins bouts but adds no engaged time
                "engaged_s": union_length(starts, ends),
                "bouts": len(bouts),
            }
        )
    return pd.DataFrame(rows, columns=["video_id", "action_id", "n_detections", "engaged_s", "bouts"])


def engagement_table(
    detections: pd.DataFrame,
    participants: pd.DataFrame,
    *,
    threshold: float = 0.0,
    merge_gap_s: float = 0.0,
    action_names: Sequence[str] = MA52_ACTIONS,
    body_groups: bool = True,
) -> pd.DataFrame:
    """Tidy per-participant, per-action engagement table.

    Args:
        detections: ``video_id, t_start, t_end, label, score`` for the videos of ``participants``
            (rows of other videos are ignored; filter and report them before calling).
        participants: one row per video: ``video_id, participant_id, group, duration`` (seconds).
            A participant may own several videos; the group of their first row is used.
        threshold: detections with ``score >= threshold`` count.
        merge_gap_s: see :func:`merge_segments`.
        action_names: class names indexed by action id; every action gets a row per participant.
        body_groups: add the MA-52 body group of each action (needs MA-52 ids).

    Returns:
        DataFrame with :data:`ENGAGEMENT_COLUMNS`, one row per participant and action, sorted by
        participant then action id. ``percent_time`` is in percent (0-100).
    """
    durations = dict(zip(participants["video_id"].astype(str), participants["duration"].astype(float)))
    known = detections["video_id"].isin(durations.keys())
    per_video = video_engagement(
        detections[known], durations, threshold=threshold, merge_gap_s=merge_gap_s
    )
    video_owner = participants[["video_id", "participant_id"]]
    per_video = per_video.merge(video_owner, on="video_id", how="left")
    summed = per_video.groupby(["participant_id", "action_id"], sort=False)[
        ["n_detections", "engaged_s", "bouts"]
    ].sum()

    people = participants.groupby("participant_id", sort=True).agg(
        group=("group", "first"), n_videos=("video_id", "size"), duration_s=("duration", "sum")
    )
    n_actions = len(action_names)
    index = pd.MultiIndex.from_product([people.index, range(n_actions)], names=["participant_id", "action_id"])
    table = summed.reindex(index, fill_value=0).reset_index()
    table = table.merge(people, left_on="participant_id", right_index=True, how="left")
    table["action"] = [action_names[i] for i in table["action_id"]]
    if body_groups:
        table["body_group"] = [MA52_BODY_GROUPS[fine2coarse(int(i))] for i in table["action_id"]]
    else:
        table["body_group"] = ""
    table["n_detections"] = table["n_detections"].astype(int)
    table["bouts"] = table["bouts"].astype(int)
    table["engaged_s"] = table["engaged_s"].astype(float)
    table["engaged"] = (table["n_detections"] > 0).astype(int)
    table["percent_time"] = 100.0 * table["engaged_s"] / table["duration_s"].astype(float)
    bouts = table["bouts"].to_numpy(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        table["mean_bout_s"] = np.where(bouts > 0, table["engaged_s"].to_numpy() / bouts, np.nan)
    return table[list(ENGAGEMENT_COLUMNS)].reset_index(drop=True)


def top_actions(table: pd.DataFrame, n: int) -> list[int]:
    """The ``n`` most frequent actions of an engagement table: most participants engaged first,
    ties broken by total engaged time, then by id. Actions nobody engaged in are never returned."""
    stats = table.groupby("action_id").agg(engagers=("engaged", "sum"), seconds=("engaged_s", "sum"))
    stats = stats[stats["engagers"] > 0]
    stats = stats.reset_index().sort_values(
        ["engagers", "seconds", "action_id"], ascending=[False, False, True]
    )
    return [int(a) for a in stats["action_id"].head(n)]
