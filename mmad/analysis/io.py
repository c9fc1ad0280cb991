"""Readers for the inputs of ``mmad analyze``: detections, participants and video durations.

Detections (seconds) are read from any of:

- the MMA-52 challenge CSV: ``,video_id,t_start,t_end,class,score``;
- the ``mmad detect`` CSV: ``video_id,t_start,t_end,label,score`` (label: action id or name);
- the ``mmad detect`` JSON: a list of ``{class_id, class_name, body_group, t_start, t_end, score}``
  (the video id is then the file's stem), or ``{"video_id", "duration", "detections": [...]}``,
  a list of such objects, or ``{video_id: [...] | {"duration", "detections"}}``;
- ActivityNet-style JSON: ``{"results": {video_id: [{"segment": [t0, t1], "label", "score"}]}}``;
- a folder holding any of these (``*.csv`` and ``*.json``, not recursive).

Every reader returns plain pandas tables and raises :class:`DataError` naming the file, the row
and the problem.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mmad.errors import DataError
from mmad.taxonomy import MA52_ACTIONS

DETECTION_COLUMNS = ("video_id", "t_start", "t_end", "label", "score")


def _label_id(value, name_to_id: dict[str, int], num_classes: int, path, where) -> int:
    """An action id from an int-like value or a class name."""
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            value = int(text)
        elif text.lower() in name_to_id:
            return name_to_id[text.lower()]
        else:
            raise DataError(path, f"unknown class {value!r}", where)
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise DataError(path, f"class {value!r} is not an id or a name", where) from None
    if not math.isfinite(as_float) or as_float != int(as_float):
        raise DataError(path, f"class {value!r} is not an integer id", where)
    label = int(as_float)
    if not 0 <= label < num_classes:
        raise DataError(path, f"class id {label} outside 0..{num_classes - 1}", where)
    return label


def _check_rows(frame: pd.DataFrame, path, row_names: Sequence[str]) -> None:
    """Finite times and scores, t_end >= t_start >= 0 - otherwise a DataError naming the row."""
    for col in ("t_start", "t_end", "score"):
        bad = ~np.isfinite(frame[col].to_numpy(np.float64))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(path, f"{col} is missing or not a number", row_names[i])
    bad = frame["t_end"].to_numpy() < frame["t_start"].to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(path, f"t_end {frame['t_end'].iloc[i]} is before t_start {frame['t_start'].iloc[i]}",
                        row_names[i])
    bad = frame["t_start"].to_numpy() < 0
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(path, f"negative t_start {frame['t_start'].iloc[i]}", row_names[i])


def _read_detection_csv(path: Path, name_to_id, num_classes) -> pd.DataFrame:
    try:
        raw = pd.read_csv(path, dtype={"video_id": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(path, f"not a readable CSV ({e.__class__.__name__})") from None
    raw.columns = [str(c).strip() for c in raw.columns]
    label_col = next((c for c in ("class", "label", "class_id", "class_name") if c in raw.columns), None)
    missing = [c for c in ("video_id", "t_start", "t_end", "score") if c not in raw.columns]
    if label_col is None:
        missing.append("class (or label)")
    if missing:
        raise DataError(path, f"missing column(s) {', '.join(missing)}; expected "
                        "',video_id,t_start,t_end,class,score' or 'video_id,t_start,t_end,label,score'")
    row_names = [f"row {i + 2}" for i in range(len(raw))]  # header is line 1
    frame = pd.DataFrame({"video_id": raw["video_id"].astype(str)})
    for col in ("t_start", "t_end", "score"):
        frame[col] = pd.to_numeric(raw[col], errors="coerce")
    frame["label"] = [
        _label_id(v, name_to_id, num_classes, path, row_names[i]) for i, v in enumerate(raw[label_col])
    ]
    _check_rows(frame, path, row_names)
    return frame


def _json_detection_rows(items, video_id, path, where, name_to_id, num_classes) -> list[dict]:
    if not isinstance(items, list):
        raise DataError(path, "detections must be a list of objects", where)
    rows = []
    for i, det in enumerate(items):
        at = f"{where}[{i}]" if where else f"item {i}"
        if not isinstance(det, dict):
            raise DataError(path, "a detection must be an object", at)
        if "segment" in det:
            seg = det["segment"]
            if not isinstance(seg, (list, tuple)) or len(seg) != 2:
                raise DataError(path, "segment must be [t_start, t_end]", at)
            t_start, t_end = seg
        elif "t_start" in det and "t_end" in det:
            t_start, t_end = det["t_start"], det["t_end"]
        else:
            raise DataError(path, "needs t_start and t_end (or segment)", at)
        label_key = next((k for k in ("class_id", "label", "class", "class_name") if k in det), None)
        if label_key is None:
            raise DataError(path, "needs class_id (or label)", at)
        if "score" not in det:
            raise DataError(path, "needs score", at)
        vid = det.get("video_id", video_id)
        if vid is None:
            raise DataError(path, "no video_id for this detection", at)
        try:
            times = (float(t_start), float(t_end), float(det["score"]))
        except (TypeError, ValueError):
            raise DataError(path, "t_start, t_end and score must be numbers", at) from None
        rows.append(
            {
                "video_id": str(vid),
                "t_start": times[0],
                "t_end": times[1],
                "label": _label_id(det[label_key], name_to_id, num_classes, path, at),
                "score": times[2],
                "_where": at,
            }
        )
    return rows


def _read_detection_json(path: Path, name_to_id, num_classes) -> tuple[pd.DataFrame, dict[str, float]]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(path, f"not valid JSON ({e})") from None
    durations: dict[str, float] = {}
    rows: list[dict] = []

    def add_video(entry, default_id, where):
        if isinstance(entry, list):
            rows.extend(_json_detection_rows(entry, default_id, path, where, name_to_id, num_classes))
            return
        if not isinstance(entry, dict) or "detections" not in entry:
            raise DataError(path, "expected a list of detections or an object with 'detections'", where)
        vid = str(entry.get("video_id", default_id)) if entry.get("video_id", default_id) is not None else None
        if "duration" in entry and vid is not None:
            try:
                durations[vid] = float(entry["duration"])
            except (TypeError, ValueError):
                raise DataError(path, "duration must be a number", where) from None
        sub = f"{where}.detections" if where else "detections"
        rows.extend(_json_detection_rows(entry["detections"], vid, path, sub, name_to_id, num_classes))

    if isinstance(data, dict) and "results" in data and isinstance(data["results"], dict):
        for vid, items in data["results"].items():
            add_video(items, str(vid), f"results.{vid}")
    elif isinstance(data, dict) and "detections" in data:
        add_video(data, path.stem, "")
    elif isinstance(data, dict):
        for vid, entry in data.items():
            add_video(entry, str(vid), f"key {vid!r}")
    elif isinstance(data, list) and all(isinstance(d, dict) and "detections" in d for d in data) and data:
        for i, entry in enumerate(data):
            add_video(entry, None, f"item {i}")
    elif isinstance(data, list):
        add_video(data, path.stem, "")
    else:
        raise DataError(path, "unrecognised detections JSON layout")
    frame = pd.DataFrame(rows, columns=[*DETECTION_COLUMNS, "_where"])
    frame = frame.astype({"t_start": float, "t_end": float, "score": float, "label": int})
    _check_rows(frame, path, list(frame["_where"]))
    return frame.drop(columns="_where"), durations


def _expand_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in (".csv", ".json") and q.is_file())
            if not found:
                raise DataError(p, "folder holds no .csv or .json detections")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(2, "No such file or directory", str(p))
    return files


def read_detections(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    action_names: Sequence[str] = MA52_ACTIONS,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Read detections from one or more files or folders (formats in the module docstring).

    Args:
        paths: a file, a folder, or a list of them.
        action_names: class names indexed by id; names in the files are matched case-insensitively.

    Returns:
        ``(detections, durations)``: a DataFrame ``video_id, t_start, t_end, label, score``
        (seconds, label = action id) and the video durations found in JSON metadata
        (``{video_id: seconds}``, possibly empty).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    name_to_id = {name.lower(): i for i, name in enumerate(action_names)}
    frames, durations = [], {}
    for path in _expand_paths(paths):
        if path.suffix.lower() == ".json":
            frame, found = _read_detection_json(path, name_to_id, len(action_names))
            durations.update(found)
        else:
            frame = _read_detection_csv(path, name_to_id, len(action_names))
        frames.append(frame)
    detections = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=DETECTION_COLUMNS)
    return detections[list(DETECTION_COLUMNS)].reset_index(drop=True), durations


def read_participants(path: str | os.PathLike) -> pd.DataFrame:
    """Read the participants table: one row per video.

    Required columns: ``video_id, participant_id, group``; optional ``duration`` (seconds) and any
    covariates (e.g. ``age``, ``sex``). Ids are read as strings.

    Returns:
        DataFrame in file order, ids and group as ``str``.
    """
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype={"video_id": str, "participant_id": str, "group": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(path, f"not a readable CSV ({e.__class__.__name__})") from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in ("video_id", "participant_id", "group") if c not in table.columns]
    if missing:
        raise DataError(path, f"missing column(s) {', '.join(missing)}; needs video_id, participant_id, group")
    for col in ("video_id", "participant_id", "group"):
        empty = table[col].isna() | (table[col].astype(str).str.strip() == "")
        if empty.any():
            raise DataError(path, f"empty {col}", f"row {int(np.flatnonzero(empty)[0]) + 2}")
        table[col] = table[col].astype(str).str.strip()
    dup = table["video_id"].duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise DataError(path, f"video {table['video_id'].iloc[i]!r} is listed twice", f"row {i + 2}")
    if "duration" in table.columns:
        table["duration"] = pd.to_numeric(table["duration"], errors="coerce")
    return table


def read_durations(path: str | os.PathLike) -> dict[str, float]:
    """Video durations in seconds from a CSV (``video_id,duration``) or a JSON object
    (``{video_id: seconds}`` or the MMA-52 ``mmad.json`` layout ``{video_id: {"duration": ...}}``)."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(path, f"not valid JSON ({e})") from None
        if isinstance(data, dict) and isinstance(data.get("database"), dict):
            data = data["database"]
        if not isinstance(data, dict):
            raise DataError(path, "expected an object {video_id: duration}")
        out = {}
        for vid, value in data.items():
            if isinstance(value, dict):
                value = value.get("duration")
            try:
                out[str(vid)] = float(value)
            except (TypeError, ValueError):
                raise DataError(path, f"no numeric duration ({value!r})", f"key {vid!r}") from None
        return out
    try:
        table = pd.read_csv(path, dtype={"video_id": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(path, f"not a readable CSV ({e.__class__.__name__})") from None
    if "video_id" not in table.columns or "duration" not in table.columns:
        raise DataError(path, "needs columns video_id, duration")
    values = pd.to_numeric(table["duration"], errors="coerce")
    return dict(zip(table["video_id"].astype(str), values.astype(float)))
