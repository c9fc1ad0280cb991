"""MMA-52 temporal detection annotations: the official CSV and ``mmad.json``, read and written.

Official CSV (one row per action instance, several rows per video)::

    id,video_id,start_frame,end_frame,class,total_frames,fps
    0,train0000,23,71,9,168,30.0

``mmad.json`` holds the same instances in seconds, all subsets in one object::

    {"train0000": {"subset": "train", "duration": 5.6, "actions": [[9, 0.7667, 2.3667], ...]}, ...}

The two official files relate frames and seconds by ``seconds = round(frame / fps, 4)``
(:func:`frame_to_seconds`); the inverse is ``frame = round(seconds * fps)``
(:func:`seconds_to_frame`), exact on every official row. The hidden-label test split carries one
dummy instance per video (frames 0-20, a cycling class) in both files; the readers recognise it
and return those videos with ``labeled=False`` and no segments, and the writers write the same
dummy for unlabeled videos, so a read/write round trip reproduces the official files.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from mmad.datasets.common import (
    ProblemSink,
    Records,
    parse_float,
    parse_int,
    read_text_lines,
)
from mmad.errors import DataError
from mmad.fileio import atomic_write_text
from mmad.taxonomy import NUM_MA52_ACTIONS
from mmad.types import Segment, VideoRecord

MMA52_CSV_COLUMNS: tuple[str, ...] = ("id", "video_id", "start_frame", "end_frame", "class", "total_frames", "fps")
SECONDS_DECIMALS = 4
# Frame span and class rule of the dummy instance the official files give each hidden-label video.
DUMMY_END_FRAME = 20
# Frame rates tried, in order, when a mmad.json entry does not say its fps (30000/1001: NTSC 29.97).
CANDIDATE_FPS: tuple[float, ...] = (30.0, 29.0, 30000 / 1001, 25.0, 24.0, 60.0, 50.0)
DEFAULT_FPS = 30.0


def frame_to_seconds(frame: int, fps: float) -> float:
    """Time in seconds of a frame index, as the official files write it: ``round(frame / fps, 4)``."""
    return round(frame / fps, SECONDS_DECIMALS)


def seconds_to_frame(t: float, fps: float) -> int:
    """Frame index of a time in seconds: ``round(t * fps)`` (inverse of :func:`frame_to_seconds`)."""
    return int(round(t * fps))


def _dummy_class(k: int) -> int:
    return k % (NUM_MA52_ACTIONS - 1) + 1


def _subset_from_name(path: Path) -> str | None:
    stem = path.stem.lower()
    return stem if stem in ("train", "val", "test") else None


# ----------------------------------------------------------------------------------------------
# CSV
# ----------------------------------------------------------------------------------------------


def read_mma52_csv(
    path: str | os.PathLike,
    *,
    subset: str | None = None,
    labeled: bool | None = None,
    skip_bad: bool = False,
) -> Records[VideoRecord]:
    """Read an official MMA-52 CSV into one :class:`VideoRecord` per video (first-seen order).

    Args:
        path: ``train.csv``, ``val.csv``, ``test.csv`` or a file in the same columns.
        subset: subset name stored on the records; defaults to the file's stem when that is
            train/val/test.
        labeled: force the labelled (True) or hidden-label (False) reading. None: the file is
            hidden-label when its subset is "test" and every video has exactly one row spanning the
            same frames from 0 (the official test file's dummy rows).
        skip_bad: collect bad rows in ``.problems`` instead of raising :class:`DataError`.

    Times are seconds, ``round(frame / fps, 4)``; ``num_frames``/``fps`` come from the file.
    Raises DataError (file and line) for an empty file, missing columns, a malformed or NaN field,
    an unknown class, an end frame not after the start frame, a duplicated id, or rows of one
    video that disagree on total_frames/fps.
    """
    path = Path(path)
    lines = read_text_lines(path)
    subset = subset if subset is not None else _subset_from_name(path)
    sink = ProblemSink(path, skip_bad=skip_bad)
    rows = list(csv.reader(lines))
    header = [h.strip() for h in rows[0]]
    if header and header[0] == "":
        header[0] = "id"  # pandas' unnamed index column
    missing = [c for c in MMA52_CSV_COLUMNS if c not in header]
    if missing:
        raise DataError(path, f"wrong columns: missing {', '.join(missing)}; found {', '.join(header)}", "line 1")
    col = {name: header.index(name) for name in MMA52_CSV_COLUMNS}

    videos: dict[str, VideoRecord] = {}
    frames_of: dict[str, list[tuple[int, int, int]]] = {}
    seen_ids: dict[int, int] = {}
    for lineno, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        where = f"line {lineno}"
        if len(row) != len(header):
            sink.report(where, f"expected {len(header)} fields, found {len(row)}")
            continue
        try:
            row_id = parse_int(row[col["id"]])
            video_id = row[col["video_id"]].strip()
            start = parse_int(row[col["start_frame"]])
            end = parse_int(row[col["end_frame"]])
            label = parse_int(row[col["class"]])
            total = parse_int(row[col["total_frames"]])
            fps = parse_float(row[col["fps"]])
        except ValueError as e:
            sink.report(where, f"bad field: {e}")
            continue
        problem = None
        if not video_id:
            problem = "empty video_id"
        elif row_id in seen_ids:
            problem = f"duplicated id {row_id} (first on line {seen_ids[row_id]})"
        elif not 0 <= label < NUM_MA52_ACTIONS:
            problem = f"unknown class {label} (expected 0-{NUM_MA52_ACTIONS - 1})"
        elif start < 0:
            problem = f"negative start frame {start}"
        elif end <= start:
            problem = f"end frame {end} not after start frame {start}"
        elif total <= 0:
            problem = f"total_frames {total} not positive"
        elif fps <= 0:
            problem = f"fps {fps} not positive"
        elif video_id in videos and (videos[video_id].num_frames, videos[video_id].fps) != (total, fps):
            v = videos[video_id]
            problem = (f"video {video_id!r} has total_frames={total}, fps={fps:g} here but "
                       f"{v.num_frames}, {v.fps:g} on an earlier line")
        if problem:
            sink.report(where, problem)
            continue
        seen_ids[row_id] = lineno
        if video_id not in videos:
            videos[video_id] = VideoRecord(
                video_id=video_id, duration=frame_to_seconds(total, fps), fps=fps, num_frames=total,
                segments=[], subset=subset, labeled=True,
            )
            frames_of[video_id] = []
        frames_of[video_id].append((label, start, end))

    if labeled is None:
        labeled = not (subset == "test" and _is_dummy_frames(frames_of))
    for video_id, rec in videos.items():
        rec.labeled = labeled
        if labeled:
            rec.segments = [
                Segment(label, frame_to_seconds(s, rec.fps), frame_to_seconds(e, rec.fps))
                for label, s, e in frames_of[video_id]
            ]
    return Records(videos.values(), sink.problems)


def _is_dummy_frames(frames_of: Mapping[str, list[tuple[int, int, int]]]) -> bool:
    if not frames_of:
        return False
    spans = set()
    for rows in frames_of.values():
        if len(rows) != 1 or rows[0][1] != 0:
            return False
        spans.add(rows[0][2])
    return len(spans) == 1


def write_mma52_csv(records: Iterable[VideoRecord], path: str | os.PathLike) -> Path:
    """Write videos as an official MMA-52 CSV (atomically); returns the path.

    One row per segment, frames ``round(seconds * fps)`` with each video's own fps. A video with
    ``labeled=False`` gets the official dummy row (frames 0 to min(20, num_frames), cycling
    class 1-51, fps written without decimals), so the official files round-trip byte for byte. Raises ValueError for a duplicated video id, or a labelled video without
    segments (the CSV has no way to hold it; use :func:`write_mmad_json`).
    """
    out = [",".join(MMA52_CSV_COLUMNS)]
    row_id = 0
    unlabeled_index = 0
    seen: set[str] = set()
    for rec in records:
        if rec.video_id in seen:
            raise ValueError(f"duplicated video id {rec.video_id!r}")
        seen.add(rec.video_id)
        fps_text = repr(float(rec.fps))
        if not rec.labeled:
            fps_text = f"{float(rec.fps):g}"  # the official test file writes "30", not "30.0"
            rows = [(_dummy_class(unlabeled_index), 0, min(DUMMY_END_FRAME, rec.num_frames))]
            unlabeled_index += 1
        else:
            if not rec.segments:
                raise ValueError(f"video {rec.video_id!r} is labelled but has no segments; "
                                 "the MMA-52 CSV cannot hold it")
            rows = [(s.label, seconds_to_frame(s.t_start, rec.fps), seconds_to_frame(s.t_end, rec.fps))
                    for s in rec.segments]
        for label, start, end in rows:
            out.append(f"{row_id},{rec.video_id},{start},{end},{int(label)},{int(rec.num_frames)},{fps_text}")
            row_id += 1
    return atomic_write_text(path, "\n".join(out) + "\n")


# ----------------------------------------------------------------------------------------------
# mmad.json
# ----------------------------------------------------------------------------------------------


def read_mmad_json(
    path: str | os.PathLike,
    *,
    subset: str | None = None,
    fps: float | Mapping[str, float] | None = None,
    labeled: bool | None = None,
    skip_bad: bool = False,
) -> Records[VideoRecord]:
    """Read ``mmad.json`` (``{video_id: {subset, duration, actions: [[class, t0, t1], ...]}}``).

    Args:
        subset: keep only videos of this subset (None: all).
        fps: the videos' frame rate, one number or a ``{video_id: fps}`` mapping. The file does
            not store it; when not given it is inferred per video as the first of
            :data:`CANDIDATE_FPS` on whose frame grid every time of the entry lies (this recovers
            the CSV's fps on every official video), else :data:`DEFAULT_FPS`.
        labeled: force labelled/hidden-label; None: a "test" subset whose videos each hold one
            action from 0 s spanning the same number of frames (the official dummy) is hidden-label.
        skip_bad: collect bad videos/actions in ``.problems`` instead of raising.

    An ActivityNet-style wrapper ``{"database": {...}}`` is accepted. Raises DataError naming the
    file and the video (and action) for malformed JSON, a duplicated video id, a missing key,
    NaN or non-numeric times, an unknown class, or an end not after the start.
    """
    path = Path(path)
    text = "\n".join(read_text_lines(path))
    duplicates: list[str] = []

    def _pairs(pairs):
        obj = {}
        for key, value in pairs:
            if key in obj:
                duplicates.append(key)
            obj[key] = value
        return obj

    try:
        data = json.loads(text, object_pairs_hook=_pairs, parse_constant=lambda c: float("nan"))
    except json.JSONDecodeError as e:
        raise DataError(path, f"invalid JSON: {e.msg}", f"line {e.lineno} column {e.colno}") from None
    if isinstance(data, dict) and isinstance(data.get("database"), dict):
        data = data["database"]
    if not isinstance(data, dict):
        raise DataError(path, f"expected an object of videos, found {type(data).__name__}")
    if not data:
        raise DataError(path, "no videos")
    sink = ProblemSink(path, skip_bad=skip_bad)
    for key in dict.fromkeys(duplicates):
        if key in data:
            sink.report(f"video {key!r}", "duplicated video id")
            data.pop(key)

    records: list[VideoRecord] = []
    for video_id, entry in data.items():
        where = f"video {video_id!r}"
        if not isinstance(entry, dict):
            sink.report(where, f"expected an object, found {type(entry).__name__}")
            continue
        missing = [k for k in ("subset", "duration", "actions") if k not in entry]
        if missing:
            sink.report(where, f"missing key {', '.join(missing)}")
            continue
        entry_subset = entry["subset"]
        if subset is not None and entry_subset != subset:
            continue
        duration = _finite_number(entry["duration"])
        if duration is None or duration <= 0:
            sink.report(where, f"bad duration {entry['duration']!r}")
            continue
        if not isinstance(entry["actions"], list):
            sink.report(where, "'actions' is not a list")
            continue
        segments = []
        for j, action in enumerate(entry["actions"]):
            segment = _parse_action(action, sink, f"{where} action {j}")
            if segment is not None:
                segments.append(segment)
        video_fps = _video_fps(fps, video_id, duration, segments)
        records.append(VideoRecord(
            video_id=video_id, duration=duration, fps=video_fps,
            num_frames=seconds_to_frame(duration, video_fps), segments=segments,
            subset=entry_subset, labeled=True,
        ))

    for name in {r.subset for r in records}:
        group = [r for r in records if r.subset == name]
        unlabeled = (not labeled) if labeled is not None else (name == "test" and _is_dummy_seconds(group))
        if unlabeled:
            for r in group:
                r.labeled = False
                r.segments = []
    return Records(records, sink.problems)


def _finite_number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _parse_action(action, sink: ProblemSink, where: str) -> Segment | None:
    if not isinstance(action, (list, tuple)) or len(action) != 3:
        sink.report(where, f"expected [class, t_start, t_end], found {action!r}")
        return None
    label, t0, t1 = action
    label_value = _finite_number(label)
    if label_value is None or label_value != int(label_value):
        sink.report(where, f"class {label!r} is not an integer")
        return None
    if not 0 <= label_value < NUM_MA52_ACTIONS:
        sink.report(where, f"unknown class {int(label_value)} (expected 0-{NUM_MA52_ACTIONS - 1})")
        return None
    t_start, t_end = _finite_number(t0), _finite_number(t1)
    if t_start is None or t_end is None:
        sink.report(where, f"times must be finite numbers, found {t0!r}, {t1!r}")
        return None
    if t_start < 0:
        sink.report(where, f"negative start {t_start:g} s")
        return None
    if t_end <= t_start:
        sink.report(where, f"end {t_end:g} s not after start {t_start:g} s")
        return None
    return Segment(int(label_value), t_start, t_end)


def _video_fps(fps, video_id: str, duration: float, segments: list[Segment]) -> float:
    if isinstance(fps, Mapping):
        if video_id in fps:
            return float(fps[video_id])
    elif fps is not None:
        return float(fps)
    times = [duration] + [t for s in segments for t in (s.t_start, s.t_end)]
    for candidate in CANDIDATE_FPS:
        tolerance = 0.5 * 10.0 ** -SECONDS_DECIMALS * candidate + 1e-9
        if all(abs(t * candidate - round(t * candidate)) <= tolerance for t in times):
            return candidate
    return DEFAULT_FPS


def _is_dummy_seconds(group: list[VideoRecord]) -> bool:
    spans = set()
    for r in group:
        if len(r.segments) != 1 or r.segments[0].t_start != 0:
            return False
        spans.add(seconds_to_frame(r.segments[0].t_end, r.fps))
    return len(spans) == 1


def write_mmad_json(records: Iterable[VideoRecord], path: str | os.PathLike) -> Path:
    """Write videos as ``mmad.json`` (atomically); returns the path.

    Every record needs a ``subset``. Times are rounded to 4 decimals as in the official file; a
    ``labeled=False`` video gets the official dummy action (class cycling 1-51, from 0 s to
    min(20, num_frames) frames). Raises ValueError for a duplicated video id or a missing subset.
    """
    data: dict[str, dict] = {}
    unlabeled_index = 0
    for rec in records:
        if rec.video_id in data:
            raise ValueError(f"duplicated video id {rec.video_id!r}")
        if rec.subset is None:
            raise ValueError(f"video {rec.video_id!r} has no subset; mmad.json needs one per video")
        if rec.labeled:
            actions = [[int(s.label), round(float(s.t_start), SECONDS_DECIMALS), round(float(s.t_end), SECONDS_DECIMALS)]
                       for s in rec.segments]
        else:
            end = frame_to_seconds(min(DUMMY_END_FRAME, rec.num_frames), rec.fps)
            actions = [[_dummy_class(unlabeled_index), 0.0, end]]
            unlabeled_index += 1
        data[rec.video_id] = {
            "subset": rec.subset,
            "duration": round(float(rec.duration), SECONDS_DECIMALS),
            "actions": actions,
        }
    return atomic_write_text(path, json.dumps(data, indent=4) + "\n")


def read_detection_annotations(
    path: str | os.PathLike, *, subset: str | None = None, skip_bad: bool = False
) -> Records[VideoRecord]:
    """Read MMA-52 annotations by extension: ``.csv`` (official CSV) or ``.json`` (mmad.json).

    For a CSV, ``subset`` names the records' subset; for the JSON it selects one.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_mma52_csv(path, subset=subset, skip_bad=skip_bad)
    if suffix == ".json":
        return read_mmad_json(path, subset=subset, skip_bad=skip_bad)
    raise DataError(path, f"unknown detection annotation format {suffix!r} (expected .csv or .json)")


# ----------------------------------------------------------------------------------------------
# DataFrame interop (eval/ works on tables)
# ----------------------------------------------------------------------------------------------

FRAME_COLUMNS: tuple[str, ...] = ("video_id", "t_start", "t_end", "label")


def records_to_frame(records: Iterable[VideoRecord]):
    """Ground-truth table of the labelled videos: pandas DataFrame[video_id, t_start, t_end, label].

    One row per segment, seconds; hidden-label videos contribute no rows.
    """
    import pandas as pd

    rows = [(r.video_id, s.t_start, s.t_end, s.label) for r in records if r.labeled for s in r.segments]
    frame = pd.DataFrame(rows, columns=list(FRAME_COLUMNS))
    return frame.astype({"video_id": str, "t_start": float, "t_end": float, "label": int})


def records_from_frame(
    frame,
    *,
    videos: Mapping[str, VideoRecord] | Iterable[VideoRecord] | None = None,
    fps: float = DEFAULT_FPS,
    subset: str | None = None,
) -> list[VideoRecord]:
    """Video records from a table with columns video_id, t_start, t_end, label (seconds).

    Args:
        frame: pandas DataFrame (extra columns such as ``score`` are ignored).
        videos: the videos' own records (or a ``{video_id: record}`` mapping); their duration,
            fps, frame count, subset and path are kept and only the segments come from the table.
            Videos listed here without rows come back labelled with no segments.
        fps, subset: used when ``videos`` is None: the duration is then the last segment end.

    Raises DataError when a column is missing or a table video is unknown to ``videos``.
    """
    missing = [c for c in FRAME_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(None, f"table lacks column(s) {', '.join(missing)}")
    known: dict[str, VideoRecord] | None = None
    if videos is not None:
        known = dict(videos) if isinstance(videos, Mapping) else {v.video_id: v for v in videos}
    grouped: dict[str, list[Segment]] = {}
    for video_id, t0, t1, label in frame[list(FRAME_COLUMNS)].itertuples(index=False):
        grouped.setdefault(str(video_id), []).append(Segment(int(label), float(t0), float(t1)))
    out = []
    if known is not None:
        unknown = [v for v in grouped if v not in known]
        if unknown:
            raise DataError(None, f"video id(s) not among the given videos: {', '.join(unknown[:5])}")
        for video_id, base in known.items():
            out.append(VideoRecord(
                video_id=video_id, duration=base.duration, fps=base.fps, num_frames=base.num_frames,
                segments=grouped.get(video_id, []), subset=base.subset, labeled=True, path=base.path,
            ))
        return out
    for video_id, segments in grouped.items():
        duration = max(s.t_end for s in segments)
        out.append(VideoRecord(
            video_id=video_id, duration=duration, fps=fps, num_frames=seconds_to_frame(duration, fps),
            segments=segments, subset=subset, labeled=True,
        ))
    return out
