"""Recognition training loader throughput: original 1080p clips against ``mmad data prepare``d ones.

Clips per second of one loader process (``num_workers=0``, one thread) for the training set of an
rgb+pose Micro-DualNet config (keypoint entity boxes, random resized crop to 224 px, flip, colour
jitter; frames decoded at ``resize_short_side`` 256), for 8 and 16 frames 8 apart, reading

- **original**: the MA-52-layout clips as recorded (1920x1080 H.264, the encoder's keyframe
  spacing) and one OpenPose JSON file per frame;
- **prepared**: the same clips after ``mmad data prepare`` (320 px short side, a keyframe every
  8 frames, one ``.npz`` of keypoints per clip), through ``data.prepared_dir``.

Beside each, the decode-only ceiling: the loader's own frame reader on the frames it sampled
(the original from its start; the prepared copy from the nearest keyframes), resized to 256 px,
and nothing else (no keypoints, boxes or transforms). Rates are clips per CPU-second of the
process (what one worker gives on a core of its own) and, in brackets, per wall second (lower when
other jobs share the cores). A second table splits the prepared loader's CPU time per clip.

The clips are MicroPuppet clips (MA-52 layout and file names, 1-3 s at 30 fps, per-frame OpenPose
JSON) rendered at 1920x1080 into ``--data`` once (about 10 s per clip) and reused afterwards; give
``--data`` an existing MA-52-layout folder to measure that instead.

    OMP_NUM_THREADS=1 python benchmarks/loader_speed.py --data /tmp/loader_speed/clips
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mmad.config import from_dict  # noqa: E402
from mmad.datasets.ma52 import write_ma52_list  # noqa: E402
from recognition.config import RecognitionConfig  # noqa: E402
from recognition.data import build_dataset  # noqa: E402


def make_clips(root: Path, count: int, *, width: int = 1920, height: int = 1080, seed: int = 0) -> Path:
    """``count`` MicroPuppet training clips of 1-3 s at ``width`` x ``height`` in MA-52 layout under ``root``."""
    from mmad.progress import progress
    from mmad.synth.actions import CLASSES
    from mmad.synth.generate import RecognitionPreset, plan_recognition, render_job

    if (root / "train_list_videos.txt").is_file():
        return root
    per_class = -(-count // len(CLASSES))
    preset = RecognitionPreset(clips_per_class=(per_class, 0, 0), subjects=(6, 1, 1), height=height, width=width,
                               max_clips=(count, 0, 0))
    records, jobs = plan_recognition(preset, seed, root)
    for job in progress(jobs, desc="render 1080p clips", unit="clip"):
        render_job(job, seed)
    write_ma52_list(records["train"], root / "train_list_videos.txt")
    return root


def loader_config(data: Path, prepared: Path | None, num_frames: int) -> RecognitionConfig:
    """An rgb+pose Micro-DualNet training config: ``num_frames`` frames 8 apart, 224 px crops of 256 px frames."""
    return from_dict(RecognitionConfig, {
        "model": {"modality": "rgb+pose"},
        "data": {"root": str(data), "num_frames": num_frames, "frame_stride": 8, "image_size": 224,
                 "resize_short_side": 256, "val_split": "", "num_workers": 0,
                 "prepared_dir": None if prepared is None else str(prepared)}})


class Clock:
    """Wall and CPU seconds of a block (CPU time is what one worker costs on a core of its own;
    on a shared machine the wall time also counts the waits for a core)."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    def rate(self, count: int) -> str:
        """``count`` per CPU second (per wall second)."""
        return f"{count / self.cpu:.1f} ({count / self.wall:.1f})"


def loader_rate(data: Path, prepared: Path | None, num_frames: int, epochs: int):
    """(Clock of ``dataset[i]`` over ``epochs`` passes, clips, Clock of the keypoints and boxes alone,
    the frame reads it made: (its frame reader, record, indices, native size, prepared copy or None))."""
    dataset = build_dataset(loader_config(data, prepared, num_frames), "train", train=True)
    reads = []
    original_read = dataset._read_frames

    def spy(record, indices, native):
        entry = dataset._prepared_entry(record)
        copy = None if entry is None else dataset.prepared.video_path(entry)
        reads.append((original_read, record, indices, native, copy))
        return original_read(record, indices, native)

    dataset._read_frames = spy
    torch.manual_seed(0)
    dataset[0]  # warm-up: imports, the first probe
    reads.clear()
    with Clock() as loader:
        for _ in range(epochs):
            for i in range(len(dataset)):
                dataset[i]
    if prepared is not None and any(copy is None for *_, copy in reads):
        raise SystemExit(f"some clips were not read from {prepared}; see the warnings above")
    with Clock() as annotations:  # probing (original) or the manifest (prepared), keypoints, boxes
        for _ in range(epochs):
            for i in range(len(dataset.records)):
                dataset._annotations(i)
    return loader, epochs * len(dataset), annotations, reads


def decode_clock(reads: list) -> Clock:
    """Decoding only the frames the loader decoded, with its own reader (the original from its
    start, or the prepared copy from the nearest keyframes), resized to 256 px; nothing else."""
    with Clock() as clock:
        for read, record, indices, native, _ in reads:
            read(record, indices, native)
    return clock


def folder_megabytes(folder: Path, suffix: str) -> float:
    return sum(p.stat().st_size for p in folder.rglob(f"*{suffix}")) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/tmp/loader_speed/clips"),
                        help="MA-52-layout folder (rendered there when it has no train list)")
    parser.add_argument("--prepared", type=Path, help="prepared folder (default: DATA-prepared)")
    parser.add_argument("--clips", type=int, default=24, help="clips to render (default 24)")
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--epochs", type=int, default=2, help="passes over the clips per measurement")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from mmad.datasets.prepare import PrepareSettings, prepare_dataset
    from mmad.video import probe

    data = make_clips(args.data, args.clips)
    prepared = args.prepared or data.with_name(data.name + "-prepared")
    settings = PrepareSettings()
    summary = prepare_dataset(data, prepared, settings=settings)
    videos = sorted((data / "train").glob("*.mp4"))
    info = probe(videos[0])
    frames = sum(probe(v).num_frames for v in videos)
    print(f"{len(videos)} clips, {info.width}x{info.height} at {info.fps:g} fps, {frames / len(videos):.0f} frames "
          f"on average; videos {folder_megabytes(data, '.mp4'):.1f} MB, keypoint JSON "
          f"{folder_megabytes(data / 'keypoints', '.json'):.1f} MB")
    if summary.prepared:
        print(f"mmad data prepare (1 process): {summary.seconds / summary.prepared:.2f} s per clip")
    print(f"prepared: short side {settings.short_side}, a keyframe every {settings.keyframe_interval} frames; videos "
          f"{folder_megabytes(prepared, '.mp4'):.1f} MB, keypoints {folder_megabytes(prepared, '.npz'):.1f} MB")
    print(f"one process, {torch.get_num_threads()} thread(s), OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"{args.epochs} passes; the training loader (rgb+pose, 224 px crops of 256 px frames)")
    header = ("frames", "original", "prepared", "speed-up", "decode-only original", "decode-only prepared")
    print("clips/s per CPU-second of one worker (per wall second in brackets)\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---:" for _ in header) + "|")
    breakdown = []
    for num_frames in args.frames:
        original, count, _, original_reads = loader_rate(data, None, num_frames, args.epochs)
        prepared_clock, _, annotations, prepared_reads = loader_rate(data, prepared, num_frames, args.epochs)
        decode_original = decode_clock(original_reads)
        decode_prepared = decode_clock(prepared_reads)
        print(f"| {num_frames} | {original.rate(count)} | {prepared_clock.rate(count)} | "
              f"{original.cpu / prepared_clock.cpu:.1f}x | {decode_original.rate(count)} | "
              f"{decode_prepared.rate(count)} |", flush=True)
        per_clip = 1e3 / count
        decode_ms, annotation_ms = decode_prepared.cpu * per_clip, annotations.cpu * per_clip
        breakdown.append(f"| {num_frames} | {prepared_clock.cpu * per_clip:.1f} | {decode_ms:.1f} | {annotation_ms:.1f} | "
                         f"{prepared_clock.cpu * per_clip - decode_ms - annotation_ms:.1f} |")
    print("\nprepared, CPU ms per clip\n")
    print("| frames | loader | decode (seek, convert, resize) | keypoints and boxes | transforms and the rest |")
    print("|---:|---:|---:|---:|---:|")
    print("\n".join(breakdown))


if __name__ == "__main__":
    main()
