"""MicroPuppet dataset generators: MA-52-style recognition clips and MMA-52-style detection videos.

Both write the real on-disk layouts (see the common layout contract), so the ordinary readers load
them. Every clip or video is rendered from its own random stream, seeded by ``(seed, kind, split,
index)``, so the output does not depend on the number of worker processes, and the annotation and
keypoint files are byte-identical for the same seed. Subjects (appearance, scene and camera) are
disjoint across splits. The output folder carries ``micropuppet.json`` (kind, preset, seed,
version, complete, and ``test_labels_hidden: false``: the test split's labels are real, which
readers that assume the benchmarks' hidden test labels can check); calling a generator again on
a complete folder with the same settings returns at once, anything else (an interrupted run,
other settings) regenerates it. A non-empty folder without that file is refused (DataError)
rather than overwritten.

Recognition (``generate_recognition``): trimmed clips of one action each, ``SSSS_BB_NNNN.mp4``
(subject, body group = ``fine2coarse(label)``, running index), ``{split}_list_videos.txt`` with
the real labels in every split (the test split is not hidden), OpenPose JSON keypoints in
``keypoints/{split}/<stem>/``.

Detection (``generate_detection``): untrimmed videos ``videos/<video_id>.mp4`` with several,
overlapping action instances, ``{split}.csv`` in the official MMA-52 columns (frames, and the fps
the annotation declares), ``mmad.json`` (seconds) and ``keypoints/<video_id>/``. Instance times
are whole frames, so the CSV frames and the JSON seconds agree exactly. Videos are 30 fps except in
the ``clocks`` presets, whose videos cycle through 25, 29.97 (30000/1001) and 60 fps and whose
annotations, for some 29.97 fps videos, declare 29 fps as MMA-52's do: their seconds are
``frame / 29`` while the video decodes at 29.97, so only frame indices relate the two clocks. The layout of a video follows the
real MMA-52 training annotations (measured on ``mma52/train.csv``: 4,534 videos, 13,698 instances):

- video duration: 5.0-15.0 s, mean 10.3 s, quantiles 5/25/50/75/95% = 5.1 / 8.3 / 10.6 / 12.5 /
  14.5 s (sampled by inverse CDF through these quantiles);
- instances per video: 2 (44.9%), 3 (27.8%), 4 (14.2%), 5 (8.4%), 6-10 (4.7%), mean 3.02; here
  2/3/4/5 with probabilities 0.449/0.278/0.142/0.131 (the 6+ tail folded into 5), falling to fewer
  (at least 1) when a short video has no room;
- instance duration: 0.27-14.97 s, mean 4.1 s, median 2.6 s, quartiles 1.37 / 5.8 s; here
  log-normal with median 2.9 s and sigma 0.95, clipped to [0.8 s, 0.95 x video] and shortened
  where needed to fit the free time (which pulls the median back to about 2.5 s);
- overlap: 86.4% of instances overlap another instance of the same video (93.2% counting
  touching ends); only 9.3% of overlapping pairs share a body group. Here two instances overlap
  only when they use disjoint body parts (head / arms / legs / torso); each new instance is
  placed to overlap an earlier one with probability 0.75, in time its body parts are free.
- classes: the real set is extremely long-tailed; here classes are drawn to keep each split
  balanced (weights ``1 / (1 + count - min count)^2`` over the counts so far), because otherwise
  classes on rarely busy parts (torso, legs) would fit more often.

Measured on the annotation plan (1,500 videos, one running class count, seed 0): mean video
10.3 s, 2.95 instances per video (1/2/3/4/5: 1/43/27/16/12%), instance mean 3.4 s, median 2.5 s,
quartiles 1.4 / 4.7 s, 85.8% of instances overlapping another, every class 315-318 instances.
Generation times, measured with 2 worker processes on the project's 2-core machine while other
jobs kept it loaded (load average 7-9, so an idle machine is faster): recognition ``tiny`` 3-6 s
(in-process), ``small`` 65 s, ``demo`` 336 s (1,120 clips, 67k frames); detection ``tiny`` 3-5 s,
``small`` 49 s, ``demo`` 339 s (300 videos). Per frame, drawing takes about 1 ms, the pose and
keypoint simulation 0.5 ms, H.264 encoding 0.5 ms, and writing the OpenPose JSON file 1-3 ms.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mmad.errors import DataError
from mmad.fileio import atomic_write_text
from mmad.synth.actions import ACTION_SPECS, CLASSES, ActionInstance, animate, sample_instance
from mmad.synth.puppet import detect_keypoints, make_subject, render_frame, skeleton
from mmad.taxonomy import fine2coarse
from mmad.types import ClipRecord, Segment, VideoRecord

SYNTH_VERSION = 1
MANIFEST_NAME = "micropuppet.json"
FPS = 30.0
SPLITS = ("train", "val", "test")
_KIND_CODES = {"recognition": 1, "detection": 2}
_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class RecognitionPreset:
    """Size of a recognition set: clips per class and subjects per split, frame size, clip length (s).

    ``max_clips`` optionally caps the clips of each split (taken from a shuffled class order).
    """

    clips_per_class: tuple[int, int, int]
    subjects: tuple[int, int, int]
    height: int = 160
    width: int = 128
    clip_seconds: tuple[float, float] = (1.0, 3.0)
    max_clips: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class DetectionPreset:
    """Size of a detection set: videos and subjects per split, frame size, duration scale.

    ``max_seconds`` caps the video duration (the tiny preset keeps videos short). Video ``k`` of a
    split is encoded at ``fps[k % len(fps)]`` and its annotation declares
    ``declared_fps[k % len(fps)]`` (None: the video's own fps).
    """

    videos: tuple[int, int, int]
    subjects: tuple[int, int, int]
    height: int = 160
    width: int = 128
    max_seconds: float = 15.0
    fps: tuple[float, ...] = (FPS,)
    declared_fps: tuple[float | None, ...] = (None,)

    def clock(self, index: int) -> tuple[float, float]:
        """``(container fps, annotation fps)`` of video ``index`` of a split."""
        k = index % len(self.fps)
        declared = self.declared_fps[k] if k < len(self.declared_fps) else None
        return self.fps[k], declared or self.fps[k]


NTSC_FPS = 30000 / 1001  # "29.97"
_CLOCK_FPS = (25.0, NTSC_FPS, 60.0, NTSC_FPS)
_CLOCK_DECLARED = (None, 29.0, None, None)

RECOGNITION_PRESETS: dict[str, RecognitionPreset] = {
    "tiny": RecognitionPreset(clips_per_class=(1, 1, 1), subjects=(3, 2, 2), clip_seconds=(1.0, 1.2),
                              max_clips=(14, 7, 7)),
    "small": RecognitionPreset(clips_per_class=(8, 3, 3), subjects=(6, 2, 2)),
    "demo": RecognitionPreset(clips_per_class=(50, 15, 15), subjects=(24, 6, 6)),
}
DETECTION_PRESETS: dict[str, DetectionPreset] = {
    "tiny": DetectionPreset(videos=(2, 1, 1), subjects=(2, 1, 1), max_seconds=6.0),
    "small": DetectionPreset(videos=(24, 8, 8), subjects=(6, 2, 2)),
    "demo": DetectionPreset(videos=(200, 50, 50), subjects=(24, 6, 6)),
    # other frame rates, and annotations that declare 29 fps for 29.97 fps videos (as MMA-52's do)
    "clocks": DetectionPreset(videos=(4, 2, 2), subjects=(2, 1, 1), max_seconds=6.0, fps=_CLOCK_FPS,
                              declared_fps=_CLOCK_DECLARED),
    "clocks_small": DetectionPreset(videos=(24, 8, 8), subjects=(6, 2, 2), fps=_CLOCK_FPS,
                                    declared_fps=_CLOCK_DECLARED),
}

# MMA-52 train statistics (see the module docstring).
_DURATION_QUANTILES = ((0.0, 5.0), (0.05, 5.1), (0.25, 8.3), (0.5, 10.63), (0.75, 12.47), (0.95, 14.47), (1.0, 15.0))
_INSTANCE_COUNTS = ((2, 0.449), (3, 0.278), (4, 0.142), (5, 0.131))
_INSTANCE_MEDIAN_S, _INSTANCE_SIGMA = 2.9, 0.95
_MIN_INSTANCE_S = 0.8
_OVERLAP_PROBABILITY = 0.75
_SAME_PART_GAP_S = 0.4


# ------------------------------------------------------------------------------ rendering jobs


@dataclass(frozen=True)
class RenderJob:
    """One video to render: where, who, how long, and which actions (times in seconds)."""

    video_path: str
    keypoint_folder: str
    video_id: str
    subject_id: int
    num_frames: int
    instances: tuple[ActionInstance, ...]
    height: int
    width: int
    seed: tuple[int, ...]
    fps: float = FPS


def _subject_rng(seed: int, subject_id: int) -> np.random.Generator:
    return np.random.default_rng([seed, 7, subject_id])


def render_job(job: RenderJob, base_seed: int) -> int:
    """Render ``job``: write its mp4 and per-frame OpenPose JSON; returns the number of frames."""
    from mmad.keypoints import write_openpose_frames
    from mmad.video import write_video

    subject = make_subject(job.subject_id, _subject_rng(base_seed, job.subject_id), height=job.height, width=job.width)
    rng = np.random.default_rng(list(job.seed))
    # small per-recording camera offset so a subject's clips are not framed identically
    subject.origin = (subject.origin[0] + rng.uniform(-2, 2), subject.origin[1] + rng.uniform(-2, 2))
    controls = animate(list(job.instances), job.num_frames, job.fps, rng)
    skeletons = [skeleton(subject, controls, t) for t in range(job.num_frames)]
    keypoint_rng = np.random.default_rng([*job.seed, 1])
    body = np.zeros((job.num_frames, 25, 3), np.float32)
    hand_right = np.zeros((job.num_frames, 21, 3), np.float32)
    hand_left = np.zeros((job.num_frames, 21, 3), np.float32)
    for t, sk in enumerate(skeletons):
        body[t], hand_right[t], hand_left[t] = detect_keypoints(subject, sk, keypoint_rng)
    people_mask = keypoint_rng.random(job.num_frames) >= 0.01
    write_openpose_frames(job.keypoint_folder, job.video_id, body, hand_left=hand_left,
                          hand_right=hand_right, people_mask=people_mask)
    frame_rng = np.random.default_rng([*job.seed, 2])
    flicker = 1.0 + subject.flicker * np.cumsum(frame_rng.standard_normal(job.num_frames)) / np.sqrt(job.num_frames)
    frames = (render_frame(subject, sk, frame_rng, light=float(flicker[t])) for t, sk in enumerate(skeletons))
    write_video(job.video_path, frames, job.fps)
    return job.num_frames


def _start_method() -> str:
    """"spawn" (clean workers) unless the main program cannot be re-imported by a spawned worker
    (code read from stdin or typed at a prompt), where "fork" is the only method that works."""
    import sys

    main = sys.modules.get("__main__")
    if getattr(getattr(main, "__spec__", None), "name", None):
        return "spawn"
    main_file = getattr(main, "__file__", None)
    if main_file is None or os.path.isfile(main_file):
        return "spawn"
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


def _render_all(jobs: list[RenderJob], base_seed: int, workers: int | None) -> None:
    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    from mmad.progress import progress

    total_frames = sum(j.num_frames for j in jobs)
    if workers <= 1 or len(jobs) <= 1 or total_frames < 2000:
        for job in progress(jobs, desc="render", unit="video"):
            render_job(job, base_seed)
        return
    context = multiprocessing.get_context(_start_method())
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        done = pool.map(render_job, jobs, [base_seed] * len(jobs), chunksize=max(1, len(jobs) // (8 * workers)))
        for _ in progress(done, total=len(jobs), desc="render", unit="video"):
            pass


# ------------------------------------------------------------------------------ manifest


def _manifest(kind: str, preset: str, seed: int) -> dict:
    return {"generator": "MicroPuppet", "kind": kind, "preset": preset, "seed": int(seed),
            "version": SYNTH_VERSION, "classes": CLASSES, "test_labels_hidden": False}


def _read_manifest(root: Path) -> dict | None:
    try:
        found = json.loads((root / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) and found.get("generator") == "MicroPuppet" else None


def _is_complete(root: Path, expected: dict) -> bool:
    found = _read_manifest(root)
    return found is not None and found.get("complete") is True and all(
        found.get(k) == v for k, v in expected.items()
    )


def _prepare(root: Path, manifest: dict, names: list[str]) -> None:
    """Make ``root`` ready for a fresh run and mark it as MicroPuppet output in progress.

    What an earlier run of a generator left (``names``) is removed. A non-empty folder that is not
    MicroPuppet output is refused, so that a wrong ``out`` never deletes a real dataset.
    """
    if root.exists() and not root.is_dir():
        raise DataError(root, "output exists and is not a folder")
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()) and _read_manifest(root) is None:
        raise DataError(root, f"output folder is not empty and not MicroPuppet output ({MANIFEST_NAME} "
                        "missing); choose an empty or new folder")
    for name in names:
        path = root / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    _write_manifest(root, manifest, {"complete": False})


def _write_manifest(root: Path, manifest: dict, extra: dict) -> None:
    atomic_write_text(root / MANIFEST_NAME, json.dumps({**manifest, **extra}, indent=2) + "\n")


def _subject_ids(counts: tuple[int, int, int]) -> dict[str, list[int]]:
    """Disjoint subject ids per split: train from 1, then val, then test."""
    out, next_id = {}, 1
    for split, n in zip(SPLITS, counts):
        out[split] = list(range(next_id, next_id + n))
        next_id += n
    return out


# ------------------------------------------------------------------------------ recognition


def plan_recognition(preset: RecognitionPreset, seed: int, root: Path) -> tuple[dict[str, list[ClipRecord]], list[RenderJob]]:
    """Clip records per split and their render jobs (nothing is written)."""
    rng = np.random.default_rng([seed, _KIND_CODES["recognition"]])
    subjects = _subject_ids(preset.subjects)
    records: dict[str, list[ClipRecord]] = {}
    jobs: list[RenderJob] = []
    index = 0
    for split, per_class in zip(SPLITS, preset.clips_per_class):
        labels = [c for c in CLASSES for _ in range(per_class)]
        order = rng.permutation(len(labels))
        if preset.max_clips is not None:
            order = order[: preset.max_clips[_SPLIT_CODES[split]]]
        split_records = []
        for k, i in enumerate(order):
            label = labels[i]
            subject = subjects[split][k % len(subjects[split])]
            num_frames = int(round(rng.uniform(*preset.clip_seconds) * FPS))
            duration = num_frames / FPS
            t_start = rng.uniform(0.0, 0.15) * duration
            t_end = duration - rng.uniform(0.0, 0.12) * duration
            inst_rng = np.random.default_rng([seed, _KIND_CODES["recognition"], _SPLIT_CODES[split], index, 3])
            instance = sample_instance(label, t_start, t_end, inst_rng)
            stem = f"{subject:04d}_{fine2coarse(label):02d}_{index:04d}"
            video_path = root / split / f"{stem}.mp4"
            split_records.append(ClipRecord(
                video_id=stem, path=f"{split}/{stem}.mp4", label=label, body_label=fine2coarse(label),
                subject=f"{subject:04d}", split=split,
            ))
            jobs.append(RenderJob(
                video_path=str(video_path), keypoint_folder=str(root / "keypoints" / split / stem), video_id=stem,
                subject_id=subject, num_frames=num_frames, instances=(instance,), height=preset.height,
                width=preset.width, seed=(seed, _KIND_CODES["recognition"], _SPLIT_CODES[split], index),
            ))
            index += 1
        records[split] = split_records
    return records, jobs


def generate_recognition(out: str | os.PathLike, *, preset: str = "tiny", seed: int = 0,
                         workers: int | None = None) -> Path:
    """Write a MicroPuppet recognition set (MA-52 layout) to ``out``; returns the root path.

    Presets: ``tiny`` (14 / 7 / 7 clips of 1-1.2 s, for tests), ``small``, ``demo`` (50 / 15 / 15
    clips per class). ``workers`` processes render in parallel (default: up to 4, or in-process
    for small jobs). Returns at once when ``out`` already holds this preset and seed.
    """
    from mmad.datasets.ma52 import write_ma52_list

    if preset not in RECOGNITION_PRESETS:
        raise ValueError(f"unknown recognition preset {preset!r}; choose from {sorted(RECOGNITION_PRESETS)}")
    root = Path(out)
    manifest = _manifest("recognition", preset, seed)
    if _is_complete(root, manifest):
        return root
    _prepare(root, manifest, [*SPLITS, "keypoints", *(f"{s}_list_videos.txt" for s in SPLITS)])
    started = time.perf_counter()
    records, jobs = plan_recognition(RECOGNITION_PRESETS[preset], seed, root)
    _render_all(jobs, seed, workers)
    for split in SPLITS:
        write_ma52_list(records[split], root / f"{split}_list_videos.txt")
    _write_manifest(root, manifest, {
        "complete": True,
        "clips": {s: len(records[s]) for s in SPLITS},
        "generation_seconds": round(time.perf_counter() - started, 1),
    })
    return root


# ------------------------------------------------------------------------------ detection


def _sample_video_seconds(rng: np.random.Generator, max_seconds: float) -> float:
    q, v = zip(*_DURATION_QUANTILES)
    return float(min(np.interp(rng.random(), q, v), max_seconds))


def _free_intervals(duration: float, busy: list[tuple[float, float]], gap: float) -> list[tuple[float, float]]:
    """The parts of ``[0, duration]`` at least ``gap`` seconds away from every ``busy`` interval."""
    free = [(0.0, duration)]
    for b_start, b_end in busy:
        cut_start, cut_end = b_start - gap, b_end + gap
        nxt = []
        for f_start, f_end in free:
            if cut_end <= f_start or cut_start >= f_end:
                nxt.append((f_start, f_end))
                continue
            if cut_start > f_start:
                nxt.append((f_start, cut_start))
            if cut_end < f_end:
                nxt.append((cut_end, f_end))
        free = nxt
    return [f for f in free if f[1] - f[0] >= _MIN_INSTANCE_S]


def plan_video_segments(
    duration: float, rng: np.random.Generator, class_counts: dict[int, int] | None = None
) -> list[tuple[int, float, float]]:
    """Random ``(label, t_start, t_end)`` instances for a video of ``duration`` seconds.

    Follows the MMA-52 statistics in the module docstring. Instances that overlap in time use
    disjoint body parts; instances on a shared part are at least 0.4 s apart. Each slot draws a
    class uniformly and places it in the time its body parts are free (shortening it to fit),
    overlapping an earlier instance on other parts with probability 0.85; a class that cannot be
    placed gives its slot to another.
    """
    counts, probs = zip(*_INSTANCE_COUNTS)
    wanted = int(rng.choice(counts, p=np.asarray(probs) / sum(probs)))
    placed: list[tuple[int, float, float]] = []
    counts_so_far = np.array([0 if class_counts is None else class_counts.get(c, 0) for c in CLASSES], float)

    def draw_label() -> int:
        weights = 1.0 / (1.0 + counts_so_far - counts_so_far.min()) ** 2
        return int(rng.choice(CLASSES, p=weights / weights.sum()))

    for _ in range(wanted):
        overlap_wanted = bool(placed) and rng.random() < _OVERLAP_PROBABILITY
        for attempt in range(12):
            if attempt == 8:  # no class found that overlaps: place the next one anywhere free
                overlap_wanted = False
            label = draw_label()
            parts = ACTION_SPECS[label].parts
            busy = [(s, e) for other, s, e in placed if parts & ACTION_SPECS[other].parts]
            free = _free_intervals(duration, busy, _SAME_PART_GAP_S)
            length = float(np.exp(np.log(_INSTANCE_MEDIAN_S) + _INSTANCE_SIGMA * rng.standard_normal()))
            length = float(np.clip(length, _MIN_INSTANCE_S, 0.95 * duration))
            anchors = [(s, e) for other, s, e in placed if not parts & ACTION_SPECS[other].parts]
            choices = []  # (free interval, window the start must lie in)
            if overlap_wanted:
                if not anchors:
                    continue
                a_start, a_end = anchors[int(rng.integers(len(anchors)))]
                for f_start, f_end in free:
                    span = min(length, f_end - f_start)
                    low, high = max(f_start, a_start - span + 0.3), min(f_end - span, a_end - 0.3)
                    if high >= low:
                        choices.append((span, low, high))
            else:
                for f_start, f_end in free:
                    span = min(length, f_end - f_start)
                    choices.append((span, f_start, f_end - span))
            if choices:
                span, low, high = choices[int(rng.integers(len(choices)))]
                start = float(rng.uniform(low, max(low, high)))
                placed.append((label, start, min(duration, start + span)))
                counts_so_far[CLASSES.index(label)] += 1
                break
    if not placed:  # a very short video with nothing placed: one instance over most of it
        placed.append((draw_label(), 0.1 * duration, 0.9 * duration))
    if class_counts is not None:
        for label, _, _ in placed:
            class_counts[label] = class_counts.get(label, 0) + 1
    return sorted(placed, key=lambda x: (x[1], x[2], x[0]))


def plan_detection(preset: DetectionPreset, seed: int, root: Path) -> tuple[list[VideoRecord], list[RenderJob]]:
    """Video records (all splits) and their render jobs (nothing is written).

    Instances are planned in frames of the video; the render job performs them at the container's
    fps, the record states them (and the duration) in seconds of the fps the annotation declares.
    """
    subjects = _subject_ids(preset.subjects)
    records: list[VideoRecord] = []
    jobs: list[RenderJob] = []
    for split, n_videos in zip(SPLITS, preset.videos):
        class_counts: dict[int, int] = {}  # keeps every split's classes balanced
        for index in range(n_videos):
            job_seed = (seed, _KIND_CODES["detection"], _SPLIT_CODES[split], index)
            rng = np.random.default_rng([*job_seed, 3])
            fps, declared = preset.clock(index)
            num_frames = int(round(_sample_video_seconds(rng, preset.max_seconds) * fps))
            duration = num_frames / fps
            segments, instances = [], []
            for label, t_start, t_end in plan_video_segments(duration, rng, class_counts):
                f_start = int(round(t_start * fps))
                f_end = min(num_frames, max(f_start + 1, int(round(t_end * fps))))
                segments.append(Segment(label, f_start / declared, f_end / declared))
                instances.append(sample_instance(label, f_start / fps, f_end / fps, rng))
            video_id = f"{split}{index:04d}"
            subject = subjects[split][index % len(subjects[split])]
            records.append(VideoRecord(
                video_id=video_id, duration=num_frames / declared, fps=declared, num_frames=num_frames,
                segments=segments,
                subset=split, labeled=True, path=f"videos/{video_id}.mp4",
            ))
            jobs.append(RenderJob(
                video_path=str(root / "videos" / f"{video_id}.mp4"),
                keypoint_folder=str(root / "keypoints" / video_id), video_id=video_id, subject_id=subject,
                num_frames=num_frames, instances=tuple(instances), height=preset.height, width=preset.width,
                seed=job_seed, fps=fps,
            ))
    return records, jobs


def generate_detection(out: str | os.PathLike, *, preset: str = "tiny", seed: int = 0,
                       workers: int | None = None) -> Path:
    """Write a MicroPuppet detection set (MMA-52 layout) to ``out``; returns the root path.

    Presets: ``tiny`` (2 / 1 / 1 videos of at most 6 s, for tests), ``small`` (24 / 8 / 8),
    ``demo`` (200 / 50 / 50), and with 25 / 29.97 / 60 fps videos, some annotated at 29 fps:
    ``clocks`` (4 / 2 / 2 videos of at most 6 s, for tests), ``clocks_small`` (24 / 8 / 8).
    Returns at once when ``out`` already holds this preset and seed.
    """
    from mmad.datasets.mma52 import write_mma52_csv, write_mmad_json

    if preset not in DETECTION_PRESETS:
        raise ValueError(f"unknown detection preset {preset!r}; choose from {sorted(DETECTION_PRESETS)}")
    root = Path(out)
    manifest = _manifest("detection", preset, seed)
    if _is_complete(root, manifest):
        return root
    _prepare(root, manifest, ["videos", "keypoints", "mmad.json", *(f"{s}.csv" for s in SPLITS)])
    started = time.perf_counter()
    records, jobs = plan_detection(DETECTION_PRESETS[preset], seed, root)
    _render_all(jobs, seed, workers)
    for split in SPLITS:
        write_mma52_csv([r for r in records if r.subset == split], root / f"{split}.csv")
    write_mmad_json(records, root / "mmad.json")
    _write_manifest(root, manifest, {
        "complete": True,
        "videos": {s: sum(r.subset == s for r in records) for s in SPLITS},
        "instances": {s: sum(len(r.segments) for r in records if r.subset == s) for s in SPLITS},
        "generation_seconds": round(time.perf_counter() - started, 1),
    })
    return root


def preset_summary() -> dict:
    """The presets as plain dicts (for ``--help`` texts and reports)."""
    return {
        "recognition": {k: asdict(v) for k, v in RECOGNITION_PRESETS.items()},
        "detection": {k: asdict(v) for k, v in DETECTION_PRESETS.items()},
    }
