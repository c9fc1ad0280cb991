"""MA-52 recognition lists: ``{train,val,test}_list_videos.txt``, read and written.

Each line is ``<file> <action_id>``; the file lives at ``ROOT/{split}/<file>``. Labelled file
names read ``SSSS_BB_NNNN.mp4``: subject id, body-group id (always ``fine2coarse(action_id)``)
and index. The official test list hides its labels (every line says 0, files ``testNNNN.mp4``);
its records come back with ``label=None``.

A record's ``video_id`` is the file name without extension (``0003_01_0001``); the keypoint
folder of a clip is ``ROOT/keypoints/{split}/<video_id>/``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from mmad.datasets.common import ProblemSink, Records, parse_int, read_text_lines
from mmad.fileio import atomic_write_text
from mmad.taxonomy import NUM_MA52_ACTIONS, NUM_MA52_BODIES, fine2coarse
from mmad.types import ClipRecord

MA52_SPLITS: tuple[str, ...] = ("train", "val", "test")
MA52_NAME = re.compile(r"^(?P<subject>\d+)_(?P<body>\d+)_(?P<index>\d+)$")
_LIST_NAME = re.compile(r"^(?P<split>[A-Za-z0-9]+)_list_videos$")


def ma52_list_path(root: str | os.PathLike, split: str) -> Path:
    """``ROOT/{split}_list_videos.txt``."""
    return Path(root) / f"{split}_list_videos.txt"


def parse_ma52_name(file_name: str) -> tuple[str, int] | None:
    """Subject id and body-group id from ``SSSS_BB_NNNN[.ext]``; None when the name has another form."""
    match = MA52_NAME.match(Path(file_name).stem)
    if match is None:
        return None
    return match["subject"], int(match["body"])


def read_ma52_list(
    path: str | os.PathLike,
    *,
    split: str | None = None,
    root: str | os.PathLike | None = None,
    labeled: bool | None = None,
    skip_bad: bool = False,
) -> Records[ClipRecord]:
    """Read an MA-52 list file into :class:`ClipRecord` s (file order).

    Args:
        path: ``{split}_list_videos.txt``.
        split: split name; defaults to the file name's prefix (``val`` for ``val_list_videos.txt``).
        root: dataset root; defaults to the list's folder. Clip paths are ``root/split/<file>``.
        labeled: whether the list carries real labels; default: every split but "test".
        skip_bad: collect bad lines in ``.problems`` instead of raising :class:`DataError`.

    Labelled records have ``label`` and ``body_label = fine2coarse(label)``; unlabelled ones
    ``label=None`` and the body group from the file name when it has one. Raises DataError (file
    and line) for an empty file, a line without exactly two fields, a non-integer or unknown
    label, a body group in the name that disagrees with the label's, or a repeated file.
    """
    path = Path(path)
    lines = read_text_lines(path)
    if split is None:
        match = _LIST_NAME.match(path.stem)
        split = match["split"] if match else None
    if labeled is None:
        labeled = split != "test"
    root = Path(root) if root is not None else path.parent
    folder = root / split if split else root
    sink = ProblemSink(path, skip_bad=skip_bad)
    records: list[ClipRecord] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"line {lineno}"
        fields = line.split()
        if len(fields) != 2:
            sink.report(where, f"expected '<file> <label>', found {len(fields)} field(s)")
            continue
        file_name, label_text = fields
        try:
            label = parse_int(label_text)
        except ValueError:
            sink.report(where, f"label {label_text!r} is not an integer")
            continue
        if file_name in seen:
            sink.report(where, f"file {file_name} repeated (first on line {seen[file_name]})")
            continue
        parsed = parse_ma52_name(file_name)
        subject, name_body = parsed if parsed else (None, None)
        if labeled:
            if not 0 <= label < NUM_MA52_ACTIONS:
                sink.report(where, f"unknown class {label} (expected 0-{NUM_MA52_ACTIONS - 1})")
                continue
            body = fine2coarse(label)
            if name_body is not None and name_body != body:
                sink.report(where, f"body group {name_body:02d} in the name {file_name} disagrees with "
                                   f"class {label} (body group {body})")
                continue
        else:
            if name_body is not None and not 0 <= name_body < NUM_MA52_BODIES:
                sink.report(where, f"body group {name_body} in the name {file_name} out of range")
                continue
            label, body = None, name_body
        seen[file_name] = lineno
        records.append(ClipRecord(
            video_id=Path(file_name).stem, path=str(folder / file_name), label=label,
            body_label=body, subject=subject, split=split,
        ))
    return Records(records, sink.problems)


def write_ma52_list(records: Iterable[ClipRecord], path: str | os.PathLike) -> Path:
    """Write clips as an MA-52 list ``<file> <label>`` (atomically); returns the path.

    The file is the base name of ``record.path`` (``<video_id>.mp4`` when the path is empty);
    an unlabelled record is written with label 0, as in the official test list. Raises
    ValueError for a repeated file.
    """
    out = []
    seen: set[str] = set()
    for rec in records:
        file_name = Path(rec.path).name if rec.path else f"{rec.video_id}.mp4"
        if file_name in seen:
            raise ValueError(f"file {file_name} listed twice")
        seen.add(file_name)
        out.append(f"{file_name} {0 if rec.label is None else int(rec.label)}")
    if not out:
        raise ValueError(f"no records to write to {path}")
    return atomic_write_text(path, "\n".join(out) + "\n")
