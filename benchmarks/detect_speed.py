"""``mmad detect`` on a long raw video: wall time per stage, memory, and the sampled-frame pose track.

Makes a long video by looping a short person clip (``--source``, e.g. a talking-head clip; default a
rendered MicroPuppet clip) onto a canvas of the asked size at 30 fps, then runs what ``mmad detect
VIDEO`` runs without ``--keypoints`` (MediaPipe pose on the sampled frames, the clip encoder, the
head, soft-NMS) and prints one row per setting:

- **demo models**: the MicroPuppet recipes (``configs/recognition/micropuppet.yaml``, pose only;
  ``configs/detection/micropuppet.yaml``) at 640x360 and 1280x720, unless ``--recognizer`` and
  ``--detector`` name trained checkpoints (the speed does not depend on the weights);
- **R50 RGB at 224 px**: a ResNet-50 rgb recognizer (the paper's Micro-DualNet settings, T = 8),
  on a shorter stretch (``--r50-seconds``); there the backbone dominates, so the row also gives the
  ResNet-50 alone (streamed in the same chunks, on as many 224 px frames) and the ratio
  backbone-alone time / whole command time (the figure of merit, bar >= 0.7).

Columns: video seconds, frames, sampled frames, wall seconds of the whole call (checkpoint loading
included), the CPU seconds it used (all threads; on a shared machine wall time grows with the
load, CPU time much less), x real time, and the busy seconds of each stage (decode, convert + pose, and the
encoder's wall time, which includes waiting for the first two: the three stages overlap).

``--rss`` instead measures peak resident memory (the process's ``ru_maxrss``) on a 1-minute and a
10-minute video (320x180 by default, to keep the run short): ``mmad detect`` with a keypoint track
(every frame decoded, the demo encoder) and, on the 1-minute one, with MediaPipe pose; and ``mmad
detection extract`` with an rgb+pose ResNet-18 recognizer at 112 px (every frame decoded, one in
``--rss-extract-stride`` through the network). Memory must not grow with the video's length.

``--track`` compares the pose track ``detect`` estimates (MediaPipe on every ``stride``-th frame
only) with MediaPipe run on every frame, at the sampled frames, on ``--source`` (pixel error of the
upper-body joints), and the detections with either track.

    OMP_NUM_THREADS=2 python benchmarks/detect_speed.py --source clip.mp4 --threads 2
    OMP_NUM_THREADS=2 python benchmarks/detect_speed.py --source clip.mp4 --rss
    OMP_NUM_THREADS=1 python benchmarks/detect_speed.py --source clip.mp4 --track

Needs the pose extra (MediaPipe).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from detection.config import DetectionConfig  # noqa: E402
from detection.predict import detect_video  # noqa: E402
from mmad.config import from_dict, load_config, to_dict  # noqa: E402
from mmad.video import iter_frames, probe, write_video  # noqa: E402
from recognition.config import RecognitionConfig  # noqa: E402

FPS = 30


def parse_size(text: str) -> tuple[int, int]:
    width, height = text.lower().split("x")
    return int(width), int(height)


def default_source(out: Path) -> Path:
    """A rendered MicroPuppet clip (a person), when no --source is given."""
    from mmad.synth.generate import RECOGNITION_PRESETS, plan_recognition, render_job

    _, jobs = plan_recognition(RECOGNITION_PRESETS["tiny"], 0, out / "puppet")
    render_job(jobs[0], 0)
    return Path(jobs[0].video_path)


def long_video(source: Path, size: tuple[int, int], seconds: float, out: Path) -> Path:
    """``source`` scaled to fit ``size`` (letterboxed), looped to ``seconds`` at 30 fps (cached by name)."""
    path = out / f"long_{source.stem}_{size[0]}x{size[1]}_{int(seconds)}s.mp4"
    if path.is_file():
        return path
    info = probe(source)
    scale = min(size[0] / info.width, size[1] / info.height)
    inner = (int(info.width * scale) // 2 * 2, int(info.height * scale) // 2 * 2)
    import av

    clip = []
    for _, _, frame in iter_frames(source):
        image = av.VideoFrame.from_ndarray(frame, format="rgb24").to_ndarray(format="rgb24", width=inner[0],
                                                                           height=inner[1])
        canvas = np.zeros((size[1], size[0], 3), np.uint8)
        y, x = (size[1] - inner[1]) // 2, (size[0] - inner[0]) // 2
        canvas[y:y + inner[1], x:x + inner[0]] = image
        clip.append(canvas)
    total = int(round(seconds * FPS))
    # play forwards then backwards so that the loop has no jump
    order = list(range(len(clip))) + list(range(len(clip) - 2, 0, -1))
    write_video(path, (clip[order[t % len(order)]] for t in range(total)), FPS)
    return path


def demo_models(out: Path) -> tuple[Path, Path]:
    """Checkpoints with the MicroPuppet recipes (random weights: speed only)."""
    return make_models(out / "demo", load_config(RecognitionConfig, REPO / "configs/recognition/micropuppet.yaml"))


def r50_models(out: Path) -> tuple[Path, Path]:
    rcfg = from_dict(RecognitionConfig, {"model": {"modality": "rgb", "backbone": {"arch": "resnet50"}},
                                         "data": {"num_frames": 8, "image_size": 224, "resize_short_side": 256}})
    return make_models(out / "r50", rcfg)


def make_models(folder: Path, rcfg: RecognitionConfig) -> tuple[Path, Path]:
    from detection.encoder import ClipEncoder
    from detection.task import build_detector
    from recognition.model import build_model

    recognizer, detector = folder / "recognizer.pt", folder / "detector.pt"
    if recognizer.is_file() and detector.is_file():
        return recognizer, detector
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save({"model": build_model(rcfg.model).state_dict(), "ema": None, "config": to_dict(rcfg)}, recognizer)
    dcfg = load_config(DetectionConfig, REPO / "configs/detection/micropuppet.yaml")
    dcfg.model.feature_dim = ClipEncoder.from_checkpoint(recognizer, encoder_cfg=dcfg.encoder, device="cpu").feature_dim
    dcfg.encoder.device = "cpu"
    torch.save({"model": build_detector(dcfg).state_dict(), "ema": None, "config": to_dict(dcfg)}, detector)
    return recognizer, detector


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_detect(video: Path, recognizer: Path, detector: Path) -> dict:
    started, cpu = time.perf_counter(), cpu_seconds()
    result = detect_video(video, recognizer=recognizer, detector=detector, device="cpu", progress=False)
    wall = time.perf_counter() - started
    cpu = cpu_seconds() - cpu
    report = result.report
    return {"seconds": result.seconds_seen, "frames": report.frames_decoded, "sampled": report.sampled,
            "wall": wall, "cpu": cpu, "person": report.person_fraction, "detections": len(result.detections),
            **{f"t_{k}": v for k, v in report.stage_seconds.items()}, "result": result}


def backbone_alone(recognizer: Path, frames: int, chunk: int) -> float:
    """Seconds for the recognizer's backbone, streamed in chunks, over ``frames`` random 224 px frames."""
    from detection.encoder import StreamingBackbone, load_recognizer

    model, cfg = load_recognizer(recognizer)
    size = cfg.data.image_size
    stream = StreamingBackbone(model.backbone)
    g = torch.Generator().manual_seed(0)
    data = torch.rand(min(frames, chunk), 3, size, size, generator=g)
    started = time.perf_counter()
    done = 0
    while done < frames:
        n = min(chunk, frames - done)
        stream.push(data[:n])
        done += n
    stream.push(None, final=True)
    return time.perf_counter() - started


def table(header, rows) -> str:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(header)]
    lines = ["| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    return "\n".join(lines)


def speed(args, out: Path, source: Path) -> None:
    recognizer, detector = (Path(args.recognizer), Path(args.detector)) if args.recognizer else demo_models(out)
    rows = []
    for size in args.sizes:
        video = long_video(source, size, args.seconds, out)
        r = run_detect(video, recognizer, detector)
        rows.append((f"demo, {size[0]}x{size[1]}", f"{r['seconds']:.0f}", r["frames"], r["sampled"], f"{r['wall']:.1f}",
                     f"{r['cpu']:.1f}", f"{r['seconds'] / r['wall']:.1f}", f"{r['t_decode']:.1f}", f"{r['t_pose']:.1f}",
                     f"{r['t_encode']:.1f}", f"{100 * r['person']:.0f}%", "", ""))
        print(rows[-1], flush=True)
    if args.r50_seconds > 0:
        rec50, det50 = r50_models(out)
        video = long_video(source, (640, 360), args.r50_seconds, out)
        r = run_detect(video, rec50, det50)
        alone = backbone_alone(rec50, r["sampled"], 64)
        rows.append(("R50 rgb 224px, 640x360", f"{r['seconds']:.0f}", r["frames"], r["sampled"], f"{r['wall']:.1f}",
                     f"{r['cpu']:.1f}", f"{r['seconds'] / r['wall']:.2f}", f"{r['t_decode']:.1f}", f"{r['t_pose']:.1f}",
                     f"{r['t_encode']:.1f}", f"{100 * r['person']:.0f}%", f"{alone:.1f}", f"{alone / r['wall']:.2f}"))
    header = ("setting", "video s", "frames", "sampled", "wall s", "CPU s", "x real time", "decode s", "pose s", "encode s",
              "person", "backbone alone s", "backbone / whole")
    print(f"\nmmad detect without --keypoints, {torch.get_num_threads()} thread(s), source {source.name}, "
          f"load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(table(header, rows))


def peak_rss(command: list[str]) -> tuple[float, float, int]:
    """(peak RSS in MiB, wall seconds, exit status) of one command in a fresh process."""
    probe_code = ("import resource, subprocess, sys, time; t = time.perf_counter(); rc = subprocess.call(sys.argv[1:]); "
                  "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.perf_counter() - t, rc)")
    done = subprocess.run([sys.executable, "-c", probe_code, *command], capture_output=True, text=True)
    kib, wall, rc = done.stdout.strip().splitlines()[-1].split()
    return int(kib) / 1024, float(wall), int(rc)


def synthetic_track(video: Path, path: Path) -> Path:
    """A keypoint track (a person standing still) for every 4th frame of ``video``, as ``.npz``."""
    from mmad.pose import KeypointTrack

    if path.is_file():
        return path
    info = probe(video)
    frames = np.arange(0, info.num_frames, 4, dtype=np.int64)
    person = np.zeros((67, 3), np.float32)
    person[:25, 0] = info.width * np.linspace(0.35, 0.65, 25)
    person[:25, 1] = info.height * np.linspace(0.15, 0.95, 25)
    person[:25, 2] = 0.9
    return KeypointTrack(frames=frames, keypoints=np.repeat(person[None], len(frames), 0), width=info.width,
                         height=info.height, num_frames=info.num_frames).save(path)


def rss(args, out: Path, source: Path) -> None:
    """Peak RSS of detect and detection extract on short and long videos (see the module docstring)."""
    from mmad.keypoints import write_openpose_frames
    from mmad.pose import KeypointTrack

    recognizer, detector = (Path(args.recognizer), Path(args.detector)) if args.recognizer else demo_models(out)
    r18 = from_dict(RecognitionConfig, {"model": {"modality": "rgb+pose", "backbone": {"arch": "resnet18"}, "dim": 128,
                                                  "sem": {"roi_size": 3, "pose_hidden": 128},
                                                  "transformer": {"num_layers": 1, "num_heads": 4, "ffn_dim": 256}},
                                        "data": {"num_frames": 8, "image_size": 112, "resize_short_side": 128}})
    rec18, _ = make_models(out / "r18", r18)
    mmad = [sys.executable, "-m", "mmad.cli"]
    size = args.rss_size
    rows = []
    for minutes in args.rss_minutes:
        video = long_video(source, size, 60 * minutes, out)
        track = synthetic_track(video, out / f"{video.stem}_track.npz")
        runs = [("mmad detect --keypoints (demo models)",
                 ["--keypoints", str(track)])]
        if minutes in args.rss_pose_minutes:
            runs.append(("mmad detect, MediaPipe pose (demo models)", []))
        for label, extra in runs:
            target = out / f"rss_detect_{minutes}_{len(extra)}"
            mib, wall, rc = peak_rss([*mmad, "detect", str(video), *extra, "--recognizer", str(recognizer),
                                      "--detector", str(detector), "--out", str(target), "--device", "cpu", "--quiet"])
            rows.append((label, f"{minutes} min", f"{mib:.0f}", f"{wall:.0f}", rc))
            print(rows[-1], flush=True)
        # a one-video dataset for `detection extract`, keypoint JSON from the same track
        root = out / f"rss_data_{minutes}"
        (root / "videos").mkdir(parents=True, exist_ok=True)
        target = root / "videos" / "v.mp4"
        if not target.exists():
            target.symlink_to(video.resolve())
        folder = root / "keypoints" / "v"
        if not folder.is_dir():
            loaded = KeypointTrack.load(track)
            for index, points in zip(loaded.frames, loaded.keypoints):
                written = write_openpose_frames(folder / ".tmp", "v", points[None, :25],
                                                hand_left=points[None, 25:46], hand_right=points[None, 46:])
                written[0].rename(folder / f"v_{int(index):012d}_keypoints.json")
        info = probe(video)
        (root / "mmad.json").write_text(json.dumps({"v": {"subset": "val", "duration": info.duration, "actions": []}}))
        extract_cmd = [*mmad, "detection", "extract", "--config", str(REPO / "configs/detection/micropuppet.yaml"),
                       "--recognizer", str(rec18), "--set", f"data.root={root}", "--set",
                       f"data.feature_dir={out / f'rss_features_{minutes}'}", "--set", "encoder.device=cpu",
                       "--set", f"encoder.stride_frames={args.rss_extract_stride}"]
        mib, wall, rc = peak_rss(extract_cmd)
        rows.append((f"mmad detection extract (R18 rgb+pose 112 px, stride {args.rss_extract_stride})",
                     f"{minutes} min", f"{mib:.0f}", f"{wall:.0f}", rc))
        print(rows[-1], flush=True)
    print(f"\npeak RSS (ru_maxrss of the process), {size[0]}x{size[1]} 30 fps, load average at the end "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(table(("command", "video", "peak RSS MiB", "wall s", "status"), rows))


def track(args, out: Path, source: Path) -> None:
    """The sampled-frame track against MediaPipe on every frame, and the detections with each."""
    from mmad.pose import extract_pose_video, read_keypoint_track

    recognizer, detector = (Path(args.recognizer), Path(args.detector)) if args.recognizer else demo_models(out)
    video = long_video(source, (640, 360), args.track_seconds, out)
    every = out / "track_every_frame"
    extract_pose_video(video, every, progress=False)
    full = read_keypoint_track(every)
    sampled = run_detect(video, recognizer, detector)
    with_full = run_detect_keypoints(video, recognizer, detector, every)
    mine = sampled["result"].keypoints
    ref = full.at(mine.frames)
    upper = [0, 1, 2, 3, 4, 5, 6, 7, 15, 16, 17, 18]  # nose, neck, shoulders, elbows, wrists, eyes, ears
    both = (mine.keypoints[:, upper, 2] > 0.5) & (ref[:, upper, 2] > 0.5)
    error = np.linalg.norm(mine.keypoints[:, upper, :2] - ref[:, upper, :2], axis=-1)[both]
    person_mine = (mine.keypoints[:, :25, 2] > 0).any(-1).mean()
    person_ref = (ref[:, :25, 2] > 0).any(-1).mean()
    print(f"\npose at the {len(mine.frames)} sampled frames of {video.name}: MediaPipe on those frames only vs on every frame")
    print(table(("joints compared", "median px", "90th pct px", "max px", "person (sampled / every)"),
                [(int(both.sum()), f"{np.median(error):.2f}", f"{np.percentile(error, 90):.2f}", f"{error.max():.1f}",
                  f"{100 * person_mine:.1f}% / {100 * person_ref:.1f}%")]))
    a, b = sampled["result"].detections, with_full["result"].detections
    matched = sum(
        any(int(x.label) == int(y.label) and tiou(x, y) >= 0.5 for y in b.itertuples()) for x in a.itertuples())
    print(f"detections: {len(a)} with the sampled track, {len(b)} with the every-frame track; "
          f"{matched} of the first matched in the second (same class, tIoU >= 0.5)")


def run_detect_keypoints(video: Path, recognizer: Path, detector: Path, keypoints: Path) -> dict:
    result = detect_video(video, recognizer=recognizer, detector=detector, keypoints=keypoints, device="cpu")
    return {"result": result}


def tiou(x, y) -> float:
    inter = max(0.0, min(x.t_end, y.t_end) - max(x.t_start, y.t_start))
    union = max(x.t_end, y.t_end) - min(x.t_start, y.t_start)
    return inter / union if union > 0 else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", help="a short person clip to loop (default: a rendered MicroPuppet clip)")
    parser.add_argument("--out", default="runs/detect_speed", help="work folder (videos, models, outputs)")
    parser.add_argument("--seconds", type=float, default=180.0, help="length of the long video (default 180)")
    parser.add_argument("--sizes", default="640x360,1280x720", help="frame sizes of the demo-model rows")
    parser.add_argument("--r50-seconds", type=float, default=30.0, help="video length for the R50 row (0: skip)")
    parser.add_argument("--recognizer", help="a trained recognizer (with --detector) instead of the demo recipes")
    parser.add_argument("--detector")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--rss", action="store_true", help="measure peak RSS on 1- and 10-minute videos instead")
    parser.add_argument("--rss-minutes", default="1,10")
    parser.add_argument("--rss-size", default="320x180", help="frame size of the --rss videos")
    parser.add_argument("--rss-pose-minutes", default="1", help="lengths also run with MediaPipe pose")
    parser.add_argument("--rss-extract-stride", type=int, default=16,
                        help="encoder.stride_frames of the extraction runs (every frame is decoded regardless)")
    parser.add_argument("--track", action="store_true", help="compare the sampled-frame pose track instead")
    parser.add_argument("--track-seconds", type=float, default=20.0)
    args = parser.parse_args()
    args.sizes = [parse_size(s) for s in args.sizes.split(",") if s]
    args.rss_minutes = [float(m) if "." in m else int(m) for m in args.rss_minutes.split(",")]
    args.rss_pose_minutes = [float(m) if "." in m else int(m) for m in args.rss_pose_minutes.split(",") if m]
    args.rss_size = parse_size(args.rss_size)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    source = Path(args.source) if args.source else default_source(out)
    if args.rss:
        rss(args, out, source)
    elif args.track:
        track(args, out, source)
    else:
        speed(args, out, source)
    print(f"(peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
