"""iMiGUE micro-gesture labels CSV (``labels_20200831.csv``) with the cross-subject split.

Columns used: ``video_id, label_id, start_time, end_time, class, subject_id`` (the file also has
frames and subject metadata). Every row is one gesture span of a long interview video; the clip
record's ``video_id`` is ``<video_id>_<label_id>`` (unique per row), its ``path`` the source video
``ROOT/videos/<video_id>.mp4`` and ``t_start``/``t_end`` the span in seconds. Raw class ids 1-31
and 99 map to 0-based indices by :func:`mmad.taxonomy.imigue_index`.

Cross-subject protocol: the subjects in :data:`IMIGUE_TRAIN_SUBJECTS` train, all others test
(13,935 / 4,563 rows of the official file).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from mmad.datasets.common import ProblemSink, Records, parse_float, parse_int, read_text_lines
from mmad.errors import DataError
from mmad.taxonomy import imigue_index
from mmad.types import ClipRecord

IMIGUE_TRAIN_SUBJECTS: frozenset[int] = frozenset({
    2, 4, 5, 6, 9, 10, 12, 13, 14, 15, 17, 18, 20, 21, 22, 23, 25, 28, 29, 30, 31, 35, 36, 38, 39,
    41, 42, 43, 44, 46, 47, 48, 52, 53, 59, 61, 62,
})
IMIGUE_REQUIRED_COLUMNS: tuple[str, ...] = ("video_id", "label_id", "start_time", "end_time", "class", "subject_id")
IMIGUE_SPLITS: tuple[str, ...] = ("train", "test")


def imigue_split_of(subject_id: int) -> str:
    """"train" or "test" for a subject under the cross-subject protocol."""
    return "train" if int(subject_id) in IMIGUE_TRAIN_SUBJECTS else "test"


def imigue_source_video(record: ClipRecord) -> str:
    """The id of the long video a clip record is cut from (the stem of its path)."""
    return Path(record.path).stem


def read_imigue_csv(
    path: str | os.PathLike,
    *,
    split: str | None = None,
    root: str | os.PathLike | None = None,
    skip_bad: bool = False,
) -> Records[ClipRecord]:
    """Read the iMiGUE labels CSV into :class:`ClipRecord` s (file order).

    Args:
        path: the labels CSV.
        split: "train" or "test" keeps that side of the cross-subject split; None keeps every
            row (each record's ``split`` still says its side).
        root: dataset root; defaults to the CSV's folder. Paths are ``root/videos/<video_id>.mp4``.
        skip_bad: collect bad rows in ``.problems`` instead of raising :class:`DataError`.

    Records: ``label`` 0-31, ``body_label`` None, ``subject`` the subject id as text.
    Raises DataError (file and line) for an empty file, missing columns, a malformed or NaN
    field, an unknown class id, an end time not after the start, or a repeated
    (video_id, label_id).
    """
    if split not in (None, *IMIGUE_SPLITS):
        raise ValueError(f"split must be None, 'train' or 'test', not {split!r}")
    path = Path(path)
    lines = read_text_lines(path)
    root = Path(root) if root is not None else path.parent
    rows = list(csv.reader(lines))
    header = [h.strip() for h in rows[0]]
    missing = [c for c in IMIGUE_REQUIRED_COLUMNS if c not in header]
    if missing:
        raise DataError(path, f"wrong columns: missing {', '.join(missing)}; found {', '.join(header)}", "line 1")
    col = {name: header.index(name) for name in IMIGUE_REQUIRED_COLUMNS}
    sink = ProblemSink(path, skip_bad=skip_bad)
    records: list[ClipRecord] = []
    seen: dict[tuple[str, int], int] = {}
    for lineno, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        where = f"line {lineno}"
        if len(row) != len(header):
            sink.report(where, f"expected {len(header)} fields, found {len(row)}")
            continue
        video_id = row[col["video_id"]].strip()
        try:
            label_id = parse_int(row[col["label_id"]])
            t_start = parse_float(row[col["start_time"]])
            t_end = parse_float(row[col["end_time"]])
            raw_class = parse_int(row[col["class"]])
            subject = parse_int(row[col["subject_id"]])
        except ValueError as e:
            sink.report(where, f"bad field: {e}")
            continue
        try:
            label = imigue_index(raw_class)
        except DataError as e:
            sink.report(where, e.problem)
            continue
        key = (video_id, label_id)
        if not video_id:
            problem = "empty video_id"
        elif key in seen:
            problem = f"repeated video_id {video_id} label_id {label_id} (first on line {seen[key]})"
        elif t_start < 0:
            problem = f"negative start time {t_start:g}"
        elif t_end <= t_start:
            problem = f"end time {t_end:g} not after start time {t_start:g}"
        else:
            problem = None
        if problem:
            sink.report(where, problem)
            continue
        seen[key] = lineno
        side = imigue_split_of(subject)
        if split is not None and side != split:
            continue
        records.append(ClipRecord(
            video_id=f"{video_id}_{label_id}", path=str(root / "videos" / f"{video_id}.mp4"), label=label,
            body_label=None, subject=str(subject), split=side, t_start=t_start, t_end=t_end,
        ))
    return Records(records, sink.problems)
