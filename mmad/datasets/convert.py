"""Annotation files of the toolkits researchers come from, read and written.

Detection (MMA-52 ⇄ ActivityNet-style JSON, as ActionFormer and OpenTAD read it)::

    {"database": {"<video_id>": {"subset": "training", "duration": 10.3, "fps": 30.0,
                                 "annotations": [{"segment": [0.77, 2.37], "label": "nodding",
                                                  "label_id": 9, ...}, ...]}, ...}}

- ``actionformer`` writes ``fps``, ``segment(frames)`` and ``label_id`` with each annotation.
- ``opentad`` writes ``frame`` (the video's frame count) and no ids; the class ids live in a
  class map, one name per line in id order (``category_idx.txt``), written beside the JSON.

Subsets are written ``training`` / ``validation`` / ``testing`` (set those names in the other
toolkit's config); on reading, any of ``train``/``training``, ``val``/``validation``,
``test``/``testing`` in any case is accepted. An annotation's class is its ``label_id`` when
present, else its ``label`` looked up in the class map (given, or MA-52's names by default).
Frame indices travel with the times (``segment(frames)``, ``frame``) so that an MMA-52 CSV
survives CSV → JSON → CSV unchanged.

Recognition (MA-52 lists ⇄ mmaction2 video lists): an MA-52 list names ``<clip>.mp4 <label>``
relative to ``root/<split>/``; an mmaction2 ``VideoDataset`` list names ``<path> <label>``
relative to its ``data_prefix``. Converting adds or strips a path prefix (default ``<split>/``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from mmad.datasets.common import ProblemSink, Records, parse_int, read_text_lines
from mmad.datasets.ma52 import parse_ma52_name, read_ma52_list, write_ma52_list
from mmad.datasets.mma52 import (
    DEFAULT_FPS,
    SECONDS_DECIMALS,
    _video_fps,
    frame_to_seconds,
    read_detection_annotations,
    seconds_to_frame,
    write_mma52_csv,
    write_mmad_json,
)
from mmad.errors import DataError
from mmad.fileio import atomic_write_text
from mmad.taxonomy import MA52_ACTIONS, fine2coarse
from mmad.types import ClipRecord, Segment, VideoRecord

DETECTION_FORMATS = ("mma52-csv", "mmad-json", "actionformer", "opentad")
RECOGNITION_FORMATS = ("ma52", "mmaction2")
FORMATS = DETECTION_FORMATS + RECOGNITION_FORMATS

_SUBSET_OUT = {"train": "training", "val": "validation", "test": "testing"}
_SUBSET_IN = {"train": "train", "training": "train", "val": "val", "validation": "val",
              "test": "test", "testing": "test"}


# ----------------------------------------------------------------------------------------------
# class maps
# ----------------------------------------------------------------------------------------------


def read_class_map(path: str | os.PathLike) -> tuple[str, ...]:
    """Class names in id order from a class map file: one name per line (OpenTAD's
    ``category_idx.txt``), or ``<id><TAB or space><name>`` lines (MA-52's ``label_name.txt``)."""
    names: dict[int, str] = {}
    plain: list[str] = []
    for lineno, line in enumerate(read_text_lines(path), start=1):
        text = line.strip()
        if not text:
            continue
        head, _, rest = text.partition("\t") if "\t" in text else text.partition(" ")
        if head.isdigit() and rest.strip():
            names[int(head)] = rest.strip()
        else:
            plain.append(text)
        if names and plain:
            raise DataError(path, "mixes '<id> <name>' lines with plain names", f"line {lineno}")
    if plain:
        return tuple(plain)
    if sorted(names) != list(range(len(names))):
        raise DataError(path, f"class ids are not 0..{len(names) - 1}")
    return tuple(names[i] for i in range(len(names)))


def write_class_map(names: Sequence[str], path: str | os.PathLike) -> Path:
    """Write one class name per line in id order (OpenTAD's ``category_idx.txt``)."""
    return atomic_write_text(path, "\n".join(names) + "\n")


# ----------------------------------------------------------------------------------------------
# ActivityNet-style JSON (ActionFormer, OpenTAD)
# ----------------------------------------------------------------------------------------------


def is_activitynet_json(data) -> bool:
    """True for ``{"database": {video: {"annotations": [...]}}}`` or the same without the wrapper."""
    if not isinstance(data, dict):
        return False
    videos = data.get("database", data)
    first = next(iter(videos.values()), None) if isinstance(videos, dict) else None
    return isinstance(first, dict) and "annotations" in first


def read_activitynet_json(
    path: str | os.PathLike,
    *,
    class_names: Sequence[str] = MA52_ACTIONS,
    subset: str | None = None,
    default_fps: float = DEFAULT_FPS,
    skip_bad: bool = False,
) -> Records[VideoRecord]:
    """Read an ActionFormer/OpenTAD annotation JSON into :class:`VideoRecord` s.

    Args:
        class_names: names in id order, to resolve annotations that carry only a ``label``.
        subset: keep only this subset (``train``, ``val``, ``test``; long forms accepted).
        default_fps: used when a video has neither ``fps`` nor ``frame``.
        skip_bad: collect bad videos/annotations in ``.problems`` instead of raising.

    A video's fps is its ``fps``; without one (OpenTAD), the common rate on whose frame grid its
    times lie when that agrees with ``frame``, else ``frame / duration``, else ``default_fps``. Its
    frame count is ``frame``, else ``round(duration * fps)``. A ``testing`` video without annotations
    comes back with ``labeled=False``. Raises :class:`DataError` naming the video for a missing
    duration, an unknown label, a segment that is not two increasing numbers, or a label id out
    of range.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(path, f"not a readable JSON file ({type(e).__name__})") from None
    if not is_activitynet_json(data):
        raise DataError(path, "not an ActivityNet-style annotation file (no 'database' of videos)")
    videos = data.get("database", data)
    want = None if subset is None else _SUBSET_IN.get(subset.lower(), subset.lower())
    index = {name: i for i, name in enumerate(class_names)}
    sink = ProblemSink(path, skip_bad=skip_bad)
    records: list[VideoRecord] = []
    for video_id, info in videos.items():
        where = f"video {video_id}"
        if not isinstance(info, dict):
            sink.report(where, "entry is not an object")
            continue
        raw_subset = str(info.get("subset", "")).lower()
        video_subset = _SUBSET_IN.get(raw_subset, raw_subset or None)
        if want is not None and video_subset != want:
            continue
        try:
            duration = float(info["duration"])
        except (KeyError, TypeError, ValueError):
            sink.report(where, "missing or non-numeric 'duration'")
            continue
        frames = info.get("frame", info.get("num_frames"))
        fps = float(info["fps"]) if info.get("fps") else None
        segments, bad = [], None
        for k, ann in enumerate(info.get("annotations") or []):
            try:
                label = _annotation_label(ann, index, len(class_names))
                t0, t1 = _annotation_times(ann, fps)
            except (TypeError, ValueError) as e:
                bad = f"annotation {k}: {e}"
                break
            segments.append(Segment(label, t0, t1))
        if bad:
            sink.report(where, bad)
            continue
        if fps is None:  # OpenTAD: the rate on whose frame grid the times lie, if it fits the frame count
            fps = _video_fps(None, str(video_id), duration, segments)
            if frames and seconds_to_frame(duration, fps) != int(frames) and duration > 0:
                fps = float(frames) / duration
            elif not frames and fps == DEFAULT_FPS:
                fps = float(default_fps)
        num_frames = int(frames) if frames else seconds_to_frame(duration, fps)
        labeled = bool(segments) or video_subset != "test"
        records.append(VideoRecord(
            video_id=str(video_id), duration=duration, fps=fps, num_frames=num_frames,
            segments=segments, subset=video_subset, labeled=labeled,
        ))
    return Records(records, sink.problems)


def _annotation_label(ann: dict, index: dict[str, int], num_classes: int) -> int:
    if "label_id" in ann:
        label = int(ann["label_id"])
    elif "label" in ann:
        if ann["label"] not in index:
            raise ValueError(f"unknown label {ann['label']!r} (give the class map with --class-map)")
        label = index[ann["label"]]
    else:
        raise ValueError("neither 'label_id' nor 'label'")
    if not 0 <= label < num_classes:
        raise ValueError(f"label id {label} outside 0-{num_classes - 1}")
    return label


def _annotation_times(ann: dict, fps: float | None) -> tuple[float, float]:
    frames = ann.get("segment(frames)")
    if fps and frames is not None and len(frames) == 2:
        t0, t1 = frame_to_seconds(round(float(frames[0])), fps), frame_to_seconds(round(float(frames[1])), fps)
    else:
        seg = ann.get("segment")
        if not isinstance(seg, (list, tuple)) or len(seg) != 2:
            raise ValueError("'segment' is not [start, end]")
        t0, t1 = float(seg[0]), float(seg[1])
    if not t1 > t0 >= 0:
        raise ValueError(f"segment [{t0}, {t1}] is not 0 <= start < end")
    return t0, t1


def write_activitynet_json(
    records: Iterable[VideoRecord],
    path: str | os.PathLike,
    *,
    style: str = "actionformer",
    class_names: Sequence[str] = MA52_ACTIONS,
) -> Path:
    """Write videos as an ActionFormer (``style="actionformer"``) or OpenTAD (``"opentad"``) JSON.

    Both carry ``subset``, ``duration`` and ``annotations`` with ``segment`` and ``label`` (the
    class name); ActionFormer's also ``fps``, ``segment(frames)`` and ``label_id``, OpenTAD's the
    frame count ``frame``. Unlabelled videos get an empty annotation list. Returns the path.
    """
    if style not in ("actionformer", "opentad"):
        raise ValueError(f"unknown style {style!r}; expected actionformer or opentad")
    database: dict[str, dict] = {}
    for rec in records:
        if rec.video_id in database:
            raise ValueError(f"duplicated video id {rec.video_id!r}")
        entry: dict = {"subset": _SUBSET_OUT.get(rec.subset or "", rec.subset or "training"),
                       "duration": round(float(rec.duration), SECONDS_DECIMALS)}
        if style == "actionformer":
            entry["fps"] = float(rec.fps)
        else:
            entry["frame"] = int(rec.num_frames)
        annotations = []
        for s in rec.segments if rec.labeled else ():
            ann = {"segment": [round(float(s.t_start), SECONDS_DECIMALS), round(float(s.t_end), SECONDS_DECIMALS)],
                   "label": class_names[s.label]}
            if style == "actionformer":
                ann["segment(frames)"] = [seconds_to_frame(s.t_start, rec.fps), seconds_to_frame(s.t_end, rec.fps)]
                ann["label_id"] = int(s.label)
            annotations.append(ann)
        entry["annotations"] = annotations
        database[rec.video_id] = entry
    return atomic_write_text(path, json.dumps({"version": "mmad", "database": database}, indent=2) + "\n")


# ----------------------------------------------------------------------------------------------
# mmaction2 video lists
# ----------------------------------------------------------------------------------------------


def read_mmaction2_list(
    path: str | os.PathLike, *, split: str | None = None, skip_bad: bool = False
) -> Records[ClipRecord]:
    """Read an mmaction2 ``VideoDataset`` list (``<path> <label>`` per line) into clip records.

    The clip's id is its file stem; subject and body group come from an MA-52 style name when it
    has one. Raises DataError (file and line) for a line without two fields, a non-integer or
    unknown label, a repeated file, or several labels (multi-label lists are not MA-52).
    """
    from mmad.taxonomy import NUM_MA52_ACTIONS

    sink = ProblemSink(path, skip_bad=skip_bad)
    records: list[ClipRecord] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(read_text_lines(path), start=1):
        if not line.strip():
            continue
        where = f"line {lineno}"
        fields = line.split()
        if len(fields) != 2:
            sink.report(where, f"expected '<path> <label>', found {len(fields)} field(s)")
            continue
        rel, label_text = fields
        try:
            label = parse_int(label_text)
        except ValueError:
            sink.report(where, f"label {label_text!r} is not an integer")
            continue
        if not 0 <= label < NUM_MA52_ACTIONS:
            sink.report(where, f"unknown class {label} (expected 0-{NUM_MA52_ACTIONS - 1})")
            continue
        name = Path(rel).name
        if name in seen:
            sink.report(where, f"file {name} repeated (first on line {seen[name]})")
            continue
        seen[name] = lineno
        parsed = parse_ma52_name(name)
        subject = parsed[0] if parsed else None
        if parsed and parsed[1] != fine2coarse(label):
            sink.report(where, f"body group {parsed[1]:02d} in the name {name} disagrees with class {label}")
            continue
        records.append(ClipRecord(video_id=Path(name).stem, path=rel, label=label,
                                  body_label=fine2coarse(label), subject=subject, split=split))
    return Records(records, sink.problems)


def write_mmaction2_list(records: Iterable[ClipRecord], path: str | os.PathLike, *, prefix: str = "") -> Path:
    """Write ``<prefix><file> <label>`` lines (an mmaction2 ``VideoDataset`` list); returns the path.

    Unlabelled clips are written with label 0, as MA-52's own test list does.
    """
    lines = [f"{prefix}{Path(r.path).name if r.path else r.video_id + '.mp4'} {0 if r.label is None else int(r.label)}"
             for r in records]
    if not lines:
        raise ValueError(f"no records to write to {path}")
    return atomic_write_text(path, "\n".join(lines) + "\n")


# ----------------------------------------------------------------------------------------------
# one entry point
# ----------------------------------------------------------------------------------------------


def detect_format(path: str | os.PathLike) -> str:
    """Guess a file's format from its suffix and content: one of :data:`FORMATS`.

    ``.csv`` → mma52-csv; ``.json`` → actionformer when it is ActivityNet-style (OpenTAD's has the
    same shape), else mmad-json; ``.txt`` → mmaction2 when a line names a path with a folder,
    else ma52.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "mma52-csv"
    if suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(path, f"not a readable JSON file ({type(e).__name__})") from None
        return "actionformer" if is_activitynet_json(data) else "mmad-json"
    if suffix == ".txt":
        names = [line.split()[0] for line in read_text_lines(path) if line.strip()]
        return "mmaction2" if any("/" in n for n in names) else "ma52"
    raise DataError(path, f"cannot tell the format of a {suffix or 'suffix-less'} file; name it with --from")


def convert_annotations(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    to: str,
    source_format: str | None = None,
    subset: str | None = None,
    class_map: str | os.PathLike | None = None,
    prefix: str | None = None,
) -> list[Path]:
    """Convert one annotation file into another format; returns the files written.

    Args:
        to: the output format, one of :data:`FORMATS`.
        source_format: the input's format (default: :func:`detect_format`).
        subset: detection: only this subset (mmad.json / JSON) or the subset a CSV's videos get;
            recognition: the split, whose name is the default mmaction2 path prefix.
        class_map: class names in id order for label-name lookups and for writing (default MA-52).
        prefix: mmaction2 path prefix (default ``<split>/`` when the split is known, else none).

    Writing ``opentad`` also writes ``category_idx.txt`` beside the JSON.
    """
    if to not in FORMATS:
        raise DataError(None, f"unknown output format {to!r}; choose one of {', '.join(FORMATS)}")
    source_format = source_format or detect_format(src)
    if source_format not in FORMATS:
        raise DataError(src, f"unknown input format {source_format!r}; choose one of {', '.join(FORMATS)}")
    detection_in = source_format in DETECTION_FORMATS
    if detection_in != (to in DETECTION_FORMATS):
        raise DataError(src, f"cannot convert {source_format} ({'detection' if detection_in else 'recognition'}) "
                             f"to {to}")
    names = read_class_map(class_map) if class_map else MA52_ACTIONS
    dst = Path(dst)
    if detection_in:
        if source_format in ("actionformer", "opentad"):
            records = read_activitynet_json(src, class_names=names, subset=subset)
        else:
            records = read_detection_annotations(src, subset=subset)
        if not records:
            raise DataError(src, "no videos to convert" + (f" in subset {subset!r}" if subset else ""))
        if to == "mma52-csv":
            return [write_mma52_csv(records, dst)]
        if to == "mmad-json":
            if any(r.subset is None for r in records):
                raise DataError(src, "videos without a subset; name it with --split for mmad.json")
            return [write_mmad_json(records, dst)]
        written = [write_activitynet_json(records, dst, style=to, class_names=names)]
        if to == "opentad":
            written.append(write_class_map(names, dst.with_name("category_idx.txt")))
        return written
    if source_format == "ma52":
        clips = read_ma52_list(src, split=subset)
    else:
        clips = read_mmaction2_list(src, split=subset)
    split = subset or next((c.split for c in clips if c.split), None)
    if to == "mmaction2":
        return [write_mmaction2_list(clips, dst, prefix=prefix if prefix is not None else (f"{split}/" if split else ""))]
    try:
        return [write_ma52_list(clips, dst)]
    except ValueError as e:  # two paths with the same file name
        raise DataError(src, str(e)) from None
