"""Dataset folders and annotation files: find out which benchmark format they hold and read them.

Folder layouts (see the common on-disk contract):

- ``ma52``: ``ROOT/{train,val,test}_list_videos.txt``, clips ``ROOT/{split}/<file>``, keypoints
  ``ROOT/keypoints/{split}/<stem>/`` or pose pickles ``ROOT/MA52_{split}.pkl``.
- ``mma52``: ``ROOT/{train,val,test}.csv`` and/or ``ROOT/mmad.json``, videos
  ``ROOT/videos/<video_id>.mp4``, keypoints ``ROOT/keypoints/<video_id>/``.
- ``imigue``: a labels CSV (``labels_*.csv`` or any CSV with the iMiGUE columns), videos
  ``ROOT/videos/<video_id>.mp4``, keypoints ``ROOT/keypoints/<video_id>/``.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from mmad.datasets.common import Records, read_text_lines
from mmad.datasets.imigue import IMIGUE_REQUIRED_COLUMNS, IMIGUE_SPLITS, read_imigue_csv
from mmad.datasets.ma52 import MA52_SPLITS, ma52_list_path, read_ma52_list
from mmad.datasets.mma52 import MMA52_CSV_COLUMNS, read_mma52_csv, read_mmad_json
from mmad.errors import DataError
from mmad.types import ClipRecord, VideoRecord

LAYOUTS: tuple[str, ...] = ("ma52", "mma52", "imigue")
MMA52_SUBSETS: tuple[str, ...] = ("train", "val", "test")


def _csv_header(path: Path) -> list[str]:
    first = read_text_lines(path)[0]
    header = [h.strip() for h in next(csv.reader([first]))]
    if header and header[0] == "":
        header[0] = "id"
    return header


def annotation_kind(path: str | os.PathLike) -> str:
    """Which format an annotation file is in: "ma52" (list .txt), "mma52" (.csv or .json), "imigue".

    CSVs are told apart by their header. Raises DataError for a file of none of these forms.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return "ma52"
    if suffix == ".json":
        return "mma52"
    if suffix == ".csv":
        header = _csv_header(path)
        if all(c in header for c in MMA52_CSV_COLUMNS):
            return "mma52"
        if all(c in header for c in IMIGUE_REQUIRED_COLUMNS):
            return "imigue"
        raise DataError(path, f"wrong columns: neither the MMA-52 columns ({','.join(MMA52_CSV_COLUMNS)}) nor "
                              f"the iMiGUE ones ({','.join(IMIGUE_REQUIRED_COLUMNS)}); found {','.join(header)}",
                        "line 1")
    raise DataError(path, f"unknown annotation file type {suffix or '(no suffix)'!r} (expected .txt, .csv or .json)")


def read_annotation_file(
    path: str | os.PathLike,
    *,
    subset: str | None = None,
    split: str | None = None,
    skip_bad: bool = False,
) -> Records[ClipRecord] | Records[VideoRecord]:
    """Read any supported annotation file, detected by :func:`annotation_kind`.

    ``subset`` selects a subset of ``mmad.json`` (or names a CSV's subset); ``split`` is the
    MA-52 list's split name or the iMiGUE cross-subject side ("train"/"test").
    """
    kind = annotation_kind(path)
    if kind == "ma52":
        return read_ma52_list(path, split=split, skip_bad=skip_bad)
    if kind == "imigue":
        return read_imigue_csv(path, split=split, skip_bad=skip_bad)
    if Path(path).suffix.lower() == ".json":
        return read_mmad_json(path, subset=subset, skip_bad=skip_bad)
    return read_mma52_csv(path, subset=subset, skip_bad=skip_bad)


@dataclass
class DatasetInfo:
    """A dataset folder whose layout is known.

    Attributes:
        layout: "ma52", "mma52" or "imigue".
        root: the folder.
        annotation_files: split name -> the file holding it (one file may hold several splits,
            e.g. ``mmad.json`` or the iMiGUE CSV).
    """

    layout: str
    root: Path
    annotation_files: dict[str, Path] = field(default_factory=dict)
    # False when the folder's manifest (``micropuppet.json``) says its test labels are real;
    # the official MA-52 test list hides them (every label 0).
    test_labels_hidden: bool = True

    @property
    def splits(self) -> list[str]:
        return list(self.annotation_files)

    def read(self, split: str, *, skip_bad: bool = False) -> Records[ClipRecord] | Records[VideoRecord]:
        """Records of one split; MMA-52 video records get ``path = ROOT/videos/<video_id>.mp4``."""
        if split not in self.annotation_files:
            raise DataError(self.root, f"no split {split!r} here (found: {', '.join(self.splits) or 'none'})")
        path = self.annotation_files[split]
        if self.layout == "ma52":
            labeled = True if (split == "test" and not self.test_labels_hidden) else None
            return read_ma52_list(path, split=split, root=self.root, labeled=labeled, skip_bad=skip_bad)
        if self.layout == "imigue":
            return read_imigue_csv(path, split=split, root=self.root, skip_bad=skip_bad)
        if path.suffix.lower() == ".json":
            records = read_mmad_json(path, subset=split, skip_bad=skip_bad)
        else:
            records = read_mma52_csv(path, subset=split, skip_bad=skip_bad)
        for rec in records:
            rec.path = str(self.video_path(rec))
        return records

    def video_path(self, record: ClipRecord | VideoRecord) -> Path:
        """The video file of a record."""
        if isinstance(record, ClipRecord):
            return Path(record.path)
        return self.root / "videos" / f"{record.video_id}.mp4"

    def keypoint_folder(self, record: ClipRecord | VideoRecord) -> Path:
        """The OpenPose JSON folder of a record's video (it may not exist)."""
        if self.layout == "ma52":
            return self.root / "keypoints" / str(record.split) / record.video_id
        return self.root / "keypoints" / self.video_path(record).stem

    def pose_pickle(self, split: str) -> Path | None:
        """``ROOT/MA52_{split}.pkl`` when present (MA-52 only)."""
        if self.layout != "ma52":
            return None
        path = self.root / f"MA52_{split}.pkl"
        return path if path.is_file() else None


def _manifest_test_labels_hidden(root: Path) -> bool:
    """Whether a generated dataset's manifest hides its test labels (True without a manifest)."""
    manifest = root / "micropuppet.json"
    if not manifest.is_file():
        return True
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise DataError(manifest, "manifest is not valid JSON") from None
    return bool(data.get("test_labels_hidden", True)) if isinstance(data, dict) else True


def open_dataset(root: str | os.PathLike) -> DatasetInfo:
    """Detect the layout of a dataset folder (MA-52 lists, MMA-52 CSV/JSON, iMiGUE CSV).

    Raises DataError when the folder is missing or holds none of the known annotation files.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(root, "dataset folder not found")
    if not root.is_dir():
        raise DataError(root, "not a folder (give the dataset root)")
    lists = {s: ma52_list_path(root, s) for s in MA52_SPLITS if ma52_list_path(root, s).is_file()}
    if lists:
        return DatasetInfo("ma52", root, lists, test_labels_hidden=_manifest_test_labels_hidden(root))
    files: dict[str, Path] = {}
    json_path = root / "mmad.json"
    for subset in MMA52_SUBSETS:
        path = root / f"{subset}.csv"
        if path.is_file() and annotation_kind(path) == "mma52":
            files[subset] = path
    if json_path.is_file():
        subsets = {rec.subset for rec in read_mmad_json(json_path, skip_bad=True)}
        for subset in [s for s in MMA52_SUBSETS if s in subsets] + sorted(s for s in subsets - set(MMA52_SUBSETS)
                                                                           if s is not None):
            files.setdefault(subset, json_path)
    if files:
        return DatasetInfo("mma52", root, files)
    candidates = sorted(root.glob("labels_*.csv")) + sorted(p for p in root.glob("*.csv")
                                                           if not p.name.startswith("labels_"))
    for path in candidates:
        try:
            kind = annotation_kind(path)
        except DataError:
            continue
        if kind == "imigue":
            return DatasetInfo("imigue", root, {s: path for s in IMIGUE_SPLITS})
    raise DataError(root, "no known dataset layout: expected {train,val,test}_list_videos.txt (MA-52), "
                          "{train,val,test}.csv or mmad.json (MMA-52), or an iMiGUE labels CSV")
