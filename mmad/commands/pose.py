"""``mmad pose``: keypoints from raw video with MediaPipe's pose model (the optional ``pose`` extra).

    mmad pose extract VIDEO --out DIR [--stride N] [--model-complexity C] [--min-detection-confidence F]
    mmad pose extract FOLDER --out DIR ...      (one subfolder DIR/<video stem>/ per video)
"""

from __future__ import annotations

import sys

from mmad.commands import add_group


def register(subparsers) -> None:
    sub = add_group(subparsers, "pose", "estimate keypoints from raw video (needs the pose extra)")

    p = sub.add_parser(
        "extract", help="run MediaPipe's pose model on a video or a folder of videos",
        description="Estimate one person's pose in every frame with MediaPipe's pose model (install the "
                    "pose extra: pip install -e '.[pose]'), map it onto OpenPose BODY_25 (neck and mid-hip "
                    "from the shoulders and hips, wrist/thumb/index/pinky hand points) and write "
                    "OpenPose-style JSON, one file per processed frame, named by the frame's index, plus the "
                    "same track as one compact keypoints.npz. A video's folder appears only when it is "
                    "complete (an interrupted run leaves a hidden .NAME.partial-* folder, removed by the next "
                    "run). "
                    "Given a folder, each video goes to DIR/<video stem>/ (the MMA-52 keypoint layout); "
                    "a video that fails is reported and skipped. Exit status: 0 all done, 1 some videos "
                    "skipped, 2 nothing could run.")
    p.add_argument("video", metavar="VIDEO", help="a video file, or a folder of videos")
    p.add_argument("--out", required=True, metavar="DIR", help="keypoint folder (the root, for a folder of videos)")
    p.add_argument("--stride", type=int, default=1, metavar="N", help="process every N-th frame (default 1)")
    p.add_argument("--model-complexity", type=int, default=1, choices=(0, 1, 2),
                   help="MediaPipe pose model (default 1, the one shipped in the wheel)")
    p.add_argument("--min-detection-confidence", type=float, default=0.5, metavar="F",
                   help="person detector threshold (default 0.5)")
    p.add_argument("--no-hands", action="store_true", help="leave the OpenPose hand arrays empty")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="for a folder: videos processed at once, one process each (default 1; "
                        "up to the number of cores)")
    p.set_defaults(func=run_extract)


def run_extract(args) -> int:
    import signal

    def interrupted(signum, frame):
        raise KeyboardInterrupt  # unwinds: the staging folder of the video in progress is removed

    previous = signal.signal(signal.SIGTERM, interrupted)
    try:
        return _extract(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _extract(args) -> int:
    from pathlib import Path

    from mmad.pose import extract_pose_folder, extract_pose_video

    if args.stride < 1:
        print(f"error: --stride must be >= 1, got {args.stride}", file=sys.stderr)
        return 2
    if args.workers < 1:
        print(f"error: --workers must be >= 1, got {args.workers}", file=sys.stderr)
        return 2
    options = dict(stride=args.stride, model_complexity=args.model_complexity,
                   min_detection_confidence=args.min_detection_confidence,
                   with_hands=not args.no_hands, progress=getattr(args, "verbosity", 0) >= 0)
    source = Path(args.video)
    if not source.is_dir():
        result = extract_pose_video(source, args.out, **options)
        print(result.summary())
        return 0
    if args.workers > 1:
        options["progress"] = False  # several bars at once would garble the terminal
    results = extract_pose_folder(source, args.out, on_video=lambda r: print(r.summary(), flush=True),
                                  workers=args.workers, **options)
    done = [r for r in results if r.error is None]
    skipped = [r for r in results if r.error is not None]
    frames = sum(r.num_frames for r in done)
    detected = sum(r.num_detected for r in done)
    seconds = sum(r.seconds for r in done)
    rate = 100 * detected / frames if frames else 0.0
    speed = frames / seconds if seconds > 0 else 0.0
    print(f"{len(done)} of {len(results)} videos done: {frames} frames, person in {detected} ({rate:.1f}%), "
          f"{speed:.1f} frames/s -> {args.out}")
    if skipped:
        print(f"{len(skipped)} skipped:", file=sys.stderr)
        for r in skipped:
            print(f"  {r.video}: {r.error}", file=sys.stderr)
        return 1 if done else 2
    return 0
