"""Validation of a whole dataset folder (``mmad data check``).

For every split of a folder in any supported layout: annotation rows that fail to read, labels
out of range, segments outside their video, videos missing or unreadable, video frame count or
fps disagreeing with the annotations, and keypoint coverage (the fraction of a video's frames
with a detected person) from OpenPose folders or MA-52 pose pickles.

Two clocks (untrimmed videos): a video whose annotation declares another fps than its container
(MMA-52: 29 for videos that decode at 29.97) is listed in ``CheckReport.clocks`` with both fps and
the annotation's, the container's and the decoded frame counts. When the frame counts agree the
annotation's times are read through frame indices (``frame = t * annotation fps``) and predictions
are written in the annotation's clock: that is a note, not a problem. Frame counts that disagree
are a problem (and then the container's clock is used).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmad.datasets.common import Problem
from mmad.datasets.layout import DatasetInfo, open_dataset
from mmad.errors import DataError
from mmad.progress import progress
from mmad.taxonomy import NUM_IMIGUE_CLASSES, NUM_MA52_ACTIONS
from mmad.types import VideoRecord


@dataclass
class CheckReport:
    """What :func:`check_dataset` found.

    Attributes:
        root, layout: the folder and its layout.
        counts: named counts (records per split, videos found/readable, keypoint folders...).
        keypoint_coverage: video path -> fraction of frames with a detected person.
        problems: every problem, in the order found.
        usable: split -> number of records with no problem of their own.
    """

    root: str
    layout: str
    counts: Counter = field(default_factory=Counter)
    keypoint_coverage: dict[str, float] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    usable: dict[str, int] = field(default_factory=dict)
    clocks: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        coverage = list(self.keypoint_coverage.values())
        return {
            "root": self.root,
            "layout": self.layout,
            "ok": self.ok,
            "counts": dict(self.counts),
            "usable": dict(self.usable),
            "keypoint_coverage_mean": float(np.mean(coverage)) if coverage else None,
            "keypoint_coverage": self.keypoint_coverage,
            "problems": [p.to_dict() for p in self.problems],
            "clocks": self.clocks,
        }


def _num_classes(layout: str) -> int:
    return NUM_IMIGUE_CLASSES if layout == "imigue" else NUM_MA52_ACTIONS


def check_dataset(
    root: str | os.PathLike,
    *,
    check_videos: bool = True,
    check_keypoints: bool = True,
    min_keypoint_coverage: float = 0.5,
    fps_rtol: float = 0.01,
    frame_tolerance: int = 1,
) -> CheckReport:
    """Validate a dataset folder; never raises for bad content, only for a folder of no known layout.

    Args:
        root: the dataset folder (see :func:`mmad.datasets.layout.open_dataset`).
        check_videos: probe every video (:func:`mmad.video.probe`).
        check_keypoints: read every OpenPose keypoint folder (when ``ROOT/keypoints`` exists) or
            MA-52 pose pickle, and measure coverage.
        min_keypoint_coverage: a video whose fraction of frames with a person is below this is a
            problem.
        fps_rtol: relative fps difference between container and annotation that is a problem.
        frame_tolerance: frame-count difference between container and annotation that is a problem.

    Raises:
        DataError: the folder is missing or has no known layout.
    """
    info = open_dataset(root)
    report = CheckReport(root=str(info.root), layout=info.layout)
    probed: dict[Path, object] = {}  # video path -> VideoInfo, or None when unreadable
    keypoints_seen: set[str] = set()
    for split in info.splits:
        try:
            records = info.read(split, skip_bad=True)
        except DataError as e:
            report.problems.append(Problem(e.path or str(info.root), e.where, e.problem))
            report.usable[split] = 0
            continue
        report.problems.extend(records.problems)
        report.counts[f"{split}_records"] = len(records)
        report.counts["bad_annotation_rows"] += len(records.problems)
        pickle_tracks = _pickle_tracks(info, split, report) if check_keypoints else None
        usable = 0
        for rec in progress(records, desc=f"check {split}", unit="item"):
            before = len(report.problems)
            _check_labels(info, rec, report)
            video_info = None
            if check_videos:
                video_info = _check_video(info, rec, report, probed, fps_rtol, frame_tolerance)
            if check_keypoints:
                _check_keypoints(info, rec, report, video_info, pickle_tracks, min_keypoint_coverage, keypoints_seen)
            video_ok = not check_videos or video_info is not None
            usable += len(report.problems) == before and video_ok
        report.usable[split] = usable
    report.counts["problems"] = len(report.problems)
    return report


def _check_labels(info: DatasetInfo, rec, report: CheckReport) -> None:
    num_classes = _num_classes(info.layout)
    if isinstance(rec, VideoRecord):
        where = f"video {rec.video_id!r}"
        for j, seg in enumerate(rec.segments):
            here = f"{where} segment {j}"
            if not 0 <= seg.label < num_classes:
                report.problems.append(Problem(rec.path, here, f"label {seg.label} out of range 0-{num_classes - 1}"))
            if seg.t_end < seg.t_start:
                report.problems.append(Problem(rec.path, here, f"start {seg.t_start:g} s after end {seg.t_end:g} s"))
            half_frame = 0.5 / rec.fps if rec.fps > 0 else 0.0
            if seg.t_start < 0 or seg.t_end > rec.duration + half_frame:
                report.problems.append(Problem(
                    rec.path, here, f"segment {seg.t_start:g}-{seg.t_end:g} s outside the video (0-{rec.duration:g} s)"))
    elif rec.label is not None and not 0 <= rec.label < num_classes:
        report.problems.append(Problem(rec.path, f"clip {rec.video_id!r}", f"label {rec.label} out of range"))


def _check_video(info, rec, report, probed, fps_rtol, frame_tolerance):
    from mmad.video import probe

    path = info.video_path(rec)
    first_time = path not in probed
    if first_time:
        report.counts["videos"] += 1
        try:
            probed[path] = probe(path)
            report.counts["videos_readable"] += 1
        except DataError as e:
            probed[path] = None
            report.problems.append(Problem(str(path), e.where, e.problem))
            return None
    video_info = probed[path]
    if video_info is None:
        return None
    if isinstance(rec, VideoRecord):
        _check_clock(rec, path, video_info, report, fps_rtol, frame_tolerance)
    elif rec.t_end is not None and rec.t_end > video_info.duration + 0.5 / video_info.fps:
        report.problems.append(Problem(str(path), f"clip {rec.video_id!r}",
                                       f"span ends at {rec.t_end:g} s, after the video's end ({video_info.duration:g} s)"))
    return video_info


def count_decoded_frames(path: str | os.PathLike) -> int | None:
    """Frames of the first video stream, counted packet by packet (no pixel decoding); None if unreadable."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            return sum(1 for packet in container.demux(stream) if packet.size)
    except (av.error.FFmpegError, OSError, IndexError):
        return None


def _check_clock(rec: VideoRecord, path: Path, video_info, report: CheckReport, fps_rtol: float,
                 frame_tolerance: int) -> None:
    """Compare the annotation's fps and frame count with the container's and the decoded count."""
    decoded = count_decoded_frames(path)
    frames = decoded if decoded is not None else video_info.num_frames
    fps_differ = rec.fps > 0 and abs(video_info.fps - rec.fps) > fps_rtol * rec.fps
    frames_differ = abs(frames - rec.num_frames) > frame_tolerance
    if frames_differ:
        report.problems.append(Problem(str(path), None, f"{frames} frames in the file but "
                                                        f"{rec.num_frames} in the annotations"))
    if fps_differ and frames_differ:
        report.problems.append(Problem(str(path), None, f"{video_info.fps:g} fps in the file but "
                                                        f"{rec.fps:g} in the annotations"))
    if fps_differ or frames_differ or (decoded is not None and decoded != video_info.num_frames):
        report.clocks.append({
            "video": str(path), "video_id": rec.video_id, "annotation_fps": rec.fps,
            "container_fps": video_info.fps, "annotation_frames": rec.num_frames,
            "container_frames": video_info.num_frames, "decoded_frames": decoded,
            "clock": "annotation" if fps_differ and not frames_differ else "container",
        })


def _pickle_tracks(info: DatasetInfo, split: str, report: CheckReport) -> dict[str, np.ndarray] | None:
    path = info.pose_pickle(split)
    if path is None:
        return None
    from mmad.keypoints import read_pose_pickle

    try:
        tracks = read_pose_pickle(path)
    except DataError as e:
        report.problems.append(Problem(e.path or str(path), e.where, e.problem))
        return {}
    report.counts["pose_pickles"] += 1
    return {Path(k).stem: v for k, v in tracks.items()}


def _check_keypoints(info, rec, report, video_info, pickle_tracks, min_coverage, seen: set[str]) -> None:
    path = str(info.video_path(rec))
    if pickle_tracks is not None:
        track = pickle_tracks.get(rec.video_id)
        if track is None:
            report.problems.append(Problem(str(info.pose_pickle(rec.split)), f"clip {rec.video_id!r}",
                                           "no keypoints for this clip in the pose pickle"))
            return
        present = (track[..., 2] > 0).any(axis=-1).any(axis=0)  # (M, T, V) -> (T,)
    else:
        if not (info.root / "keypoints").is_dir():
            return
        if path in seen:  # several clips of one video (iMiGUE) share its keypoints
            return
        seen.add(path)
        folder = info.keypoint_folder(rec)
        if not folder.is_dir():
            report.problems.append(Problem(str(folder), None, "keypoint folder missing"))
            return
        from mmad.keypoints import read_openpose_folder

        try:
            track = read_openpose_folder(folder, num_frames=video_info.num_frames if video_info else None)
        except DataError as e:
            report.problems.append(Problem(e.path or str(folder), e.where, e.problem))
            return
        report.counts["keypoint_folders"] += 1
        present = (track[..., 2] > 0).any(axis=-1)  # (T, J) -> (T,)
    coverage = float(present.mean()) if present.size else 0.0
    report.keypoint_coverage[path] = coverage
    if coverage < min_coverage:
        report.problems.append(Problem(path, None, f"a person is detected in only {100 * coverage:.0f}% of frames "
                                                   f"(below {100 * min_coverage:.0f}%)"))


def format_report(report: CheckReport) -> str:
    """Human-readable text of a :class:`CheckReport`: counts, coverage and every problem."""
    lines = [f"{report.root}: {report.layout} layout"]
    for key, value in report.counts.items():
        lines.append(f"  {key:<22} {value}")
    for split, n in report.usable.items():
        lines.append(f"  usable {split:<15} {n}")
    if report.clocks:
        lines.append(f"  clocks: {len(report.clocks)} video(s) whose annotation fps, container fps or frame "
                     "counts disagree (predictions use the clock named last):")
        for c in report.clocks:
            decoded = "?" if c["decoded_frames"] is None else c["decoded_frames"]
            lines.append(f"    {c['video_id']}: annotation {c['annotation_fps']:g} fps / {c['annotation_frames']} "
                         f"frames, container {c['container_fps']:g} fps / {c['container_frames']} frames, "
                         f"{decoded} decoded -> {c['clock']} clock")
    if report.keypoint_coverage:
        values = np.asarray(list(report.keypoint_coverage.values()))
        lines.append(f"  keypoint coverage      mean {100 * values.mean():.1f}%, min {100 * values.min():.1f}%")
    if report.problems:
        lines.append(f"{len(report.problems)} problem(s):")
        lines.extend(f"  {p}" for p in report.problems)
    else:
        lines.append("no problems")
    return "\n".join(lines)
