"""Prepared copies of a recognition dataset, made for fast loading (``mmad data prepare``).

A benchmark clip is a 1080p-class H.264 video with a keyframe every few seconds and one OpenPose
JSON file per frame; a training sample needs 8-16 of its frames at 256 px and the keypoints of the
clip. Reading that from the originals means decoding full-size frames from the start of the clip
and parsing 30-90 JSON files. A prepared folder holds, for every video of an MA-52 or iMiGUE
layout dataset:

- ``<same relative path as the original>.mp4``: every decoded frame of the original, upright,
  re-encoded with libx264 (yuv420p, CRF ``crf``) so that the shorter side is ``short_side`` px
  (never upscaled; both sides rounded to even), at the original frame rate, with a keyframe
  exactly every ``keyframe_interval`` frames and no B-frames, so that :func:`mmad.video.seek_frames`
  decodes only a few frames around each sampled one;
- ``<keypoint folder's relative path>.npz`` (float32): ``track`` (T, 67, 3), the subject's track
  exactly as :func:`mmad.keypoints.read_openpose_folder` reads the whole folder
  (``body25_hands``, points outside the frame dropped), and every person of every frame untracked
  (``people`` (P, 67, 3) with ``people_offsets`` (T + 1,): frame t holds rows
  ``offsets[t]:offsets[t + 1]``), which a span of a long video (iMiGUE) tracks on its own.
  Keypoints stay in the **original video's pixel coordinates**: a reader computes entity boxes
  from them with the original frame size, as it does from the JSON files, and scales keypoints and
  boxes to its decoded frames afterwards, so boxes come out identical;
- ``prepared.json``: the settings, and per video the original's size and modification time, the
  keypoint folder's signature (file count, bytes, newest modification time), the original's
  frame rate, frame count and upright size. A reader uses a prepared copy only while all of these
  still match (a changed original is read from the original again, with a warning).

Outputs are written atomically, so an interrupted run leaves whole files; running again skips the
videos whose prepared copy is up to date (``force`` redoes them). A bad video is logged and
skipped; the summary lists it. Layouts with long videos and temporal annotations (MMA-52) are read
by the feature extractor, not by this loader, and are refused.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mmad.datasets.layout import DatasetInfo, open_dataset
from mmad.errors import ConfigError, DataError
from mmad.fileio import FileLock, atomic_open, atomic_write_text

log = logging.getLogger("mmad.datasets")

PREPARED_VERSION = 1
MANIFEST_NAME = "prepared.json"
LAYOUTS = ("ma52", "imigue")
NUM_JOINTS = 67  # body25_hands: what the prepared keypoint files hold

__all__ = ["PrepareSettings", "PreparedVideo", "PreparedData", "PrepareSummary", "prepare_dataset",
           "prepare_video", "keypoint_signature", "MANIFEST_NAME"]


@dataclass(frozen=True)
class PrepareSettings:
    """How videos are re-encoded: shorter side in px, frames between keyframes, x264 CRF."""

    short_side: int = 320
    keyframe_interval: int = 8
    crf: int = 18

    def __post_init__(self) -> None:
        if self.short_side < 16 or self.keyframe_interval < 1 or not 0 <= self.crf <= 51:
            raise ConfigError(f"prepare settings out of range: short side {self.short_side} (>= 16), keyframe "
                              f"interval {self.keyframe_interval} (>= 1), crf {self.crf} (0-51)")


@dataclass(frozen=True)
class PreparedVideo:
    """One video of a prepared folder (a ``prepared.json`` entry); paths are relative.

    ``source`` is the original, relative to the dataset root; ``video`` and ``keypoints`` (None
    when the original has no keypoint folder) are relative to the prepared folder. ``fps``,
    ``num_frames`` (the header's count, as :func:`mmad.video.probe` reports it), ``width`` and
    ``height`` (upright) describe the original; ``decoded_frames`` is how many frames it really
    decoded to (all of them are in the prepared video).
    """

    source: str
    video: str
    keypoints: str | None
    source_size: int
    source_mtime_ns: int
    keypoint_signature: tuple[int, int, int] | None
    fps: float
    num_frames: int
    decoded_frames: int
    width: int
    height: int
    prepared_width: int
    prepared_height: int

    @classmethod
    def from_dict(cls, data: dict) -> PreparedVideo:
        data = dict(data)
        if data.get("keypoint_signature") is not None:
            data["keypoint_signature"] = tuple(data["keypoint_signature"])
        return cls(**data)


@dataclass
class PrepareSummary:
    """What a :func:`prepare_dataset` run did: counts, failures (source -> one-line reason), seconds."""

    out: Path
    prepared: int = 0
    up_to_date: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


# ----------------------------------------------------------------------------- signatures


def _stat_signature(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return int(stat.st_size), int(stat.st_mtime_ns)


def keypoint_signature(folder: str | os.PathLike) -> tuple[int, int, int] | None:
    """(JSON files, their bytes, newest modification time in ns) of a keypoint folder; None when absent."""
    try:
        entries = [e for e in os.scandir(folder) if e.name.endswith(".json")]
    except (FileNotFoundError, NotADirectoryError):
        return None
    stats = [e.stat() for e in entries]
    return len(stats), sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0)


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        raise DataError(path, f"not inside the dataset folder {root}") from None


# ----------------------------------------------------------------------------- one video


def _prepared_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(W, H) of the prepared copy: shorter side ``short_side`` (never larger than the original), both even."""
    from mmad.video import resized_size

    scaled = resized_size(width, height, short_side) if min(width, height) > short_side else (width, height)
    return tuple(max(2, 2 * int(round(v / 2))) for v in scaled)


def _pack_people(people_per_frame: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    counts = np.array([len(p) for p in people_per_frame], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    rows = [p for p in people_per_frame if len(p)]
    people = np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, NUM_JOINTS, 3), np.float32)
    return people, offsets


def prepare_video(source: str | os.PathLike, keypoint_folder: str | os.PathLike, *, root: str | os.PathLike,
                  out: str | os.PathLike, settings: PrepareSettings) -> PreparedVideo:
    """Write the prepared copy of one video and its keypoints under ``out``; returns its manifest entry.

    Raises:
        DataError: the video cannot be read, or its keypoint folder holds a bad file.
    """
    from mmad.keypoints import read_openpose_people, track_people
    from mmad.video import DecodeReport, iter_decoded, probe, write_video

    source, keypoint_folder, root, out = Path(source), Path(keypoint_folder), Path(root), Path(out)
    size, mtime = _stat_signature(source) if source.is_file() else (0, 0)
    info = probe(source)
    rel_video = _relative(source, root)
    signature = keypoint_signature(keypoint_folder)
    signature = signature if signature is not None and signature[0] > 0 else None
    rel_keypoints = None
    if signature is not None:
        people = read_openpose_people(keypoint_folder)
        track = track_people(people, num_joints=NUM_JOINTS, frame_size=(info.width, info.height))
        packed, offsets = _pack_people(people)
        rel_keypoints = _relative(keypoint_folder, root) + ".npz"
        with atomic_open(out / rel_keypoints, "wb") as f:
            np.savez(f, track=track.astype(np.float32), people=packed, people_offsets=offsets)
    width, height = _prepared_size(info.width, info.height, settings.short_side)
    report = DecodeReport()
    frames = (decoded.rgb(frame_size=(width, height)) for _, decoded in iter_decoded(source, report=report))
    write_video(out / rel_video, frames, info.fps, crf=settings.crf, keyframe_interval=settings.keyframe_interval)
    if report.error:
        log.warning("%s: the stream ends early after %d frames (%s); prepared what decodes, as the loader reads it",
                    source, report.frames_decoded, report.error)
    return PreparedVideo(source=rel_video, video=rel_video, keypoints=rel_keypoints, source_size=size,
                         source_mtime_ns=mtime, keypoint_signature=signature, fps=info.fps,
                         num_frames=info.num_frames, decoded_frames=report.frames_decoded, width=info.width,
                         height=info.height, prepared_width=width, prepared_height=height)


def _prepare_job(source: str, keypoint_folder: str, root: str, out: str, settings: PrepareSettings):
    """``(source, entry or None, error line or None)``; a worker process never raises for one bad video."""
    try:
        return source, prepare_video(source, keypoint_folder, root=root, out=out, settings=settings), None
    except DataError as exc:
        return source, None, str(exc)
    except Exception as exc:  # a long run never dies on one video
        return source, None, f"{source}: {exc.__class__.__name__}: {exc}"


# ----------------------------------------------------------------------------- the manifest


def _read_manifest(folder: Path) -> dict | None:
    path = folder / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise DataError(path, "not a valid prepared-data manifest (unreadable JSON); run mmad data prepare again "
                              "with --force") from None
    if not isinstance(data, dict) or data.get("version") != PREPARED_VERSION or "videos" not in data:
        raise DataError(path, f"not a version-{PREPARED_VERSION} prepared-data manifest; run mmad data prepare "
                              "again with --force")
    return data


def _write_manifest(out: Path, root: Path, layout: str, settings: PrepareSettings,
                    entries: dict[str, PreparedVideo], failed: dict[str, str]) -> None:
    manifest = {"version": PREPARED_VERSION, "root": str(root.resolve()), "layout": layout,
                "settings": asdict(settings), "videos": {k: asdict(v) for k, v in sorted(entries.items())},
                "failed": dict(sorted(failed.items()))}
    atomic_write_text(out / MANIFEST_NAME, json.dumps(manifest, indent=1) + "\n")


def _is_fresh(entry: PreparedVideo, root: Path, folder: Path, keypoint_folder: Path) -> str | None:
    """None when ``entry`` still matches its original and its files exist, else why not."""
    source = root / entry.source
    try:
        if _stat_signature(source) != (entry.source_size, entry.source_mtime_ns):
            return "the original video changed since it was prepared"
    except OSError:
        return "the original video is gone"
    signature = keypoint_signature(keypoint_folder)
    if signature is not None and signature[0] == 0:
        signature = None
    if signature != entry.keypoint_signature:
        return "the keypoint folder changed since it was prepared"
    if not (folder / entry.video).is_file() or (entry.keypoints and not (folder / entry.keypoints).is_file()):
        return "a prepared file is missing"
    return None


# ----------------------------------------------------------------------------- preparing a dataset


def _videos(info: DatasetInfo) -> dict[str, tuple[Path, Path]]:
    """Every video of every split: ``{source path: (video path, keypoint folder)}``, in split order."""
    videos: dict[str, tuple[Path, Path]] = {}
    for split in info.splits:
        records = info.read(split, skip_bad=True)
        for problem in records.problems:
            log.warning("skipped annotation: %s", problem)
        for record in records:
            path = info.video_path(record)
            videos.setdefault(str(path), (path, info.keypoint_folder(record)))
    return videos


def _start_method() -> str:
    from mmad.synth.generate import _start_method as start_method

    return start_method()


def prepare_dataset(root: str | os.PathLike, out: str | os.PathLike, *, settings: PrepareSettings | None = None,
                    workers: int = 1, force: bool = False) -> PrepareSummary:
    """Prepare every video of the recognition dataset at ``root`` into the folder ``out``.

    ``workers`` processes encode in parallel (1: in this process). Videos whose prepared copy is
    up to date (same settings, unchanged original and keypoints) are skipped unless ``force``.
    The manifest is rewritten (atomically) as results come in, so an interrupted run keeps what
    it finished. Returns a :class:`PrepareSummary`; a bad video is logged and listed there.

    Raises:
        DataError: ``root`` is not a recognition dataset, or ``out`` is the dataset folder or a
            non-empty folder that is not a prepared folder.
    """
    from mmad.progress import Progress

    settings = settings or PrepareSettings()
    root, out = Path(root), Path(out)
    info = open_dataset(root)
    if info.layout not in LAYOUTS:
        raise DataError(root, f"a {info.layout} dataset: mmad data prepare handles recognition datasets "
                              f"({', '.join(LAYOUTS)} layouts)")
    if out.resolve() == root.resolve():
        raise DataError(out, "the prepared folder must not be the dataset folder itself")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST_NAME).is_file():
        raise DataError(out, f"folder is not empty and holds no {MANIFEST_NAME}; choose an empty or new folder")
    started = time.perf_counter()
    summary = PrepareSummary(out=out)
    with FileLock(out / ".lock", purpose="mmad data prepare"):
        old = None if force else _read_manifest(out)
        reuse = old is not None and old.get("settings") == asdict(settings)
        old_entries = {k: PreparedVideo.from_dict(v) for k, v in old["videos"].items()} if reuse else {}
        entries: dict[str, PreparedVideo] = {}
        todo = []
        for path, keypoint_folder in _videos(info).values():
            try:
                key = _relative(path, root)
            except DataError as exc:
                summary.failed[str(path)] = str(exc)
                log.error("skipped: %s", exc)
                continue
            entry = old_entries.get(key)
            if entry is not None and _is_fresh(entry, root, out, keypoint_folder) is None:
                entries[key] = entry
                summary.up_to_date += 1
            else:
                todo.append((str(path), str(keypoint_folder), str(root), str(out), settings))
        last_write = time.monotonic()

        def record(source: str, entry: PreparedVideo | None, error: str | None) -> None:
            nonlocal last_write
            if entry is None:
                summary.failed[source] = error or "failed"
                log.error("skipped: %s", error)
            else:
                entries[entry.source] = entry
                summary.prepared += 1
            if time.monotonic() - last_write > 30:
                _write_manifest(out, root, info.layout, settings, entries, summary.failed)
                last_write = time.monotonic()

        with Progress(total=len(todo), desc="prepare", unit="video") as bar:
            if workers <= 1 or len(todo) <= 1:
                for job in todo:
                    record(*_prepare_job(*job))
                    bar.update()
            else:
                context = multiprocessing.get_context(_start_method())
                with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                    for result in pool.map(_prepare_job, *zip(*todo), chunksize=1):
                        record(*result)
                        bar.update()
        _write_manifest(out, root, info.layout, settings, entries, summary.failed)
    summary.seconds = time.perf_counter() - started
    return summary


# ----------------------------------------------------------------------------- reading


class PreparedData:
    """A prepared folder opened for reading: the fresh prepared copy of a video, or None.

    Args:
        folder: the prepared folder (``data.prepared_dir``).
        root: the dataset folder its manifest's paths are relative to.
        min_short_side: the smallest shorter side a copy may have to be used (the loader's
            ``resize_short_side``); a copy made smaller than that (and smaller than its original)
            would be upscaled, so the original is read instead.

    Raises:
        ConfigError: the folder holds no ``prepared.json``.
        DataError: the manifest is unreadable.
    """

    max_warnings = 5

    def __init__(self, folder: str | os.PathLike, *, root: str | os.PathLike, min_short_side: int = 0):
        self.folder, self.root = Path(folder), Path(root)
        manifest = _read_manifest(self.folder) if self.folder.is_dir() else None
        if manifest is None:
            raise ConfigError(f"data.prepared_dir {self.folder} holds no {MANIFEST_NAME}: run "
                              f"'mmad data prepare {self.root} --out {self.folder}' first, or unset data.prepared_dir")
        self.settings = PrepareSettings(**manifest["settings"])
        self.min_short_side = int(min_short_side)
        self.entries = {k: PreparedVideo.from_dict(v) for k, v in manifest["videos"].items()}
        self._checked: dict[str, PreparedVideo | None] = {}
        self._warnings = 0

    def warn(self, path: str | os.PathLike, reason: str) -> None:
        """Log (the first few times) that a prepared copy is not used, and why."""
        self._warnings += 1
        if self._warnings <= self.max_warnings:
            log.warning("%s: %s; reading the original%s", path, reason,
                        " (further such warnings are not shown)" if self._warnings == self.max_warnings else "")

    def entry(self, video: str | os.PathLike, keypoint_folder: str | os.PathLike) -> PreparedVideo | None:
        """The up-to-date prepared copy of ``video`` (checked once per object), or None."""
        key = str(video)
        if key in self._checked:
            return self._checked[key]
        entry = None
        try:
            found = self.entries.get(_relative(Path(video), self.root))
        except DataError:
            found = None
        if found is not None:
            reason = _is_fresh(found, self.root, self.folder, Path(keypoint_folder))
            if reason is None and min(found.prepared_width, found.prepared_height) < self.min_short_side and \
                    (found.prepared_width, found.prepared_height) != (found.width, found.height):
                reason = (f"the prepared copy's shorter side ({min(found.prepared_width, found.prepared_height)} px) is "
                          f"below data.resize_short_side {self.min_short_side}")
            if reason is None:
                entry = found
            else:
                self.warn(video, reason)
        self._checked[key] = entry
        return entry

    def drop(self, video: str | os.PathLike, error: Exception) -> None:
        """Stop using the prepared copy of ``video`` (it failed to read: ``error``)."""
        self._checked[str(video)] = None
        self.warn(video, f"prepared copy unreadable ({error})")

    def video_path(self, entry: PreparedVideo) -> Path:
        return self.folder / entry.video

    def keypoints(self, entry: PreparedVideo, first: int, stop: int, *, span: bool) -> np.ndarray:
        """(stop - first, 67, 3) keypoints of frames ``[first, stop)`` in the original's pixels.

        ``span=False``: the whole-video track (as :func:`mmad.keypoints.read_openpose_folder`
        reads it); ``span=True``: the subject tracked over those frames only (as a span of a long
        video is read). Frames past the keypoint files are zeros.

        Raises:
            DataError: no keypoint file for this video, or it is unreadable.
        """
        from mmad.keypoints import track_people

        if entry.keypoints is None:
            raise DataError(self.folder / entry.video, "no prepared keypoints for this video")
        path = self.folder / entry.keypoints
        try:
            with np.load(path) as data:
                if not span:
                    track = data["track"]
                    kp = track[first:stop]
                else:
                    people, offsets = data["people"], data["people_offsets"]
                    kp = None
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise DataError(path, f"unreadable prepared keypoint file ({exc.__class__.__name__})") from None
        if kp is None:
            last = len(offsets) - 1
            per_frame = [people[offsets[t]:offsets[t + 1]] if t < last else people[:0] for t in range(first, stop)]
            kp = track_people(per_frame, num_joints=NUM_JOINTS)
        if kp.shape[1:] != (NUM_JOINTS, 3):
            raise DataError(path, f"prepared keypoints of shape {kp.shape}, expected (T, {NUM_JOINTS}, 3)")
        length = stop - first
        if kp.shape[0] < length:
            kp = np.concatenate([kp, np.zeros((length - kp.shape[0], NUM_JOINTS, 3), np.float32)])
        return kp
