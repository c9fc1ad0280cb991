"""``mmad detection``: extract clip features, train and test the temporal head; ``mmad detect``: one raw video.

    mmad detection extract --config C --recognizer K [--subset S] [--device D] [common flags]
    mmad detection train --config C [common flags] [--resume]
    mmad detection test --config C --checkpoint K [--subset val] [--predictions CSV] [common flags]
    mmad detect VIDEO [--keypoints DIR] --recognizer K1 --detector K2 --out OUT [--device D]
                [--score-threshold F] [--max-detections N] [--strict] [--quiet]

The stage code (torch, the models, the data) is imported inside the handlers.
"""

from __future__ import annotations

import sys

from mmad.commands import add_group, add_run_flags, is_main_process, run_overrides


def register(subparsers) -> None:
    sub = add_group(subparsers, "detection", "temporal detection: extract clip features, train and test the head")

    p = sub.add_parser(
        "extract", help="encode the dataset's videos with a recognizer into the feature cache",
        description="Run a trained recognizer as clip encoder along every video of the config's annotation "
                    "file (or one subset) and write one feature file per video into data.feature_dir, tagged "
                    "with the recognizer checkpoint's hash. Videos already encoded by this checkpoint are "
                    "skipped; a video that fails is reported, listed in failed_rank<R>.txt and skipped. Under "
                    "torchrun each process takes a disjoint share of the videos. Exit status 1 when some "
                    "videos failed.")
    add_run_flags(p)
    p.add_argument("--recognizer", required=True, metavar="K", help="a checkpoint of 'mmad recognition train'")
    p.add_argument("--subset", help="only this subset (default: every video of the annotation file)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: encoder.device, else cuda when available)")
    p.set_defaults(func=run_extract)

    p = sub.add_parser(
        "train", help="train the temporal head on cached features",
        description="Train the head a config describes with the shared engine. The run folder receives "
                    "last.pt, best.pt (best validation average mAP), metrics.jsonl, train.log and config.yaml.")
    add_run_flags(p)
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    p.set_defaults(func=run_train)

    p = sub.add_parser(
        "test", help="detect on a subset, write the challenge CSV and print mAP",
        description="Detect with a trained head on a subset (default data.test_subset), write the MMA-52 "
                    "challenge CSV (default RUN/predictions_<subset>.csv) and, when the subset is labelled, "
                    "print mAP at tIoU 0.1-0.9, their average and mAP@0.5.")
    add_run_flags(p)
    p.add_argument("--checkpoint", required=True, metavar="K", help="a checkpoint of 'mmad detection train'")
    p.add_argument("--subset", help="subset to detect on (default: data.test_subset)")
    p.add_argument("--predictions", metavar="CSV", help="where to write the challenge CSV (.json: ActivityNet style)")
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    p.set_defaults(func=run_test)

    p = subparsers.add_parser(
        "detect", help="detect micro-actions in one raw video (JSON, CSV and a timeline PNG)",
        description="Detect the micro-actions of one video with a recognizer (clip encoder) and a trained "
                    "detection head, and write OUT/<video>.json, OUT/<video>.csv and OUT/<video>_timeline.png "
                    "(each atomically). Keypoints come from --keypoints (the video's OpenPose JSON folder, the "
                    "folder of 'mmad pose extract' or a keypoints .npz) or, without it, from MediaPipe (the pose "
                    "extra) run on the frames the encoder samples; the estimated track is kept as "
                    "OUT/<video>_keypoints.npz. Steps without a person get no detections. A video that decodes "
                    "fewer frames than its header says, or keypoints that cover fewer frames, give a warning "
                    "(an error with --strict); keypoints of another video are refused.")
    p.add_argument("video", metavar="VIDEO", help="the video file")
    p.add_argument("--keypoints", metavar="DIR", help="the video's OpenPose JSON folder (or a keypoints .npz)")
    p.add_argument("--recognizer", required=True, metavar="K1", help="the recognition checkpoint (clip encoder)")
    p.add_argument("--detector", required=True, metavar="K2", help="the detection checkpoint")
    p.add_argument("--out", required=True, metavar="OUT", help="output folder")
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--score-threshold", type=float, metavar="F",
                   help="keep detections scoring at least F (default: the detector's postprocess.score_threshold)")
    p.add_argument("--max-detections", type=int, metavar="N",
                   help="keep at most N detections (default: the detector's postprocess.max_segments)")
    p.add_argument("--strict", action="store_true",
                   help="stop (status 2) when the frames decoded or the keypoints do not match the video's header")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_detect)


def _load(args):
    from detection.config import DetectionConfig
    from mmad.config import load_config

    return load_config(DetectionConfig, args.config, run_overrides(args))


def run_extract(args) -> int:
    import logging

    from detection.encoder import extract_features

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    cfg = _load(args)
    report = extract_features(cfg, args.recognizer, subset=args.subset, device=args.device)
    print(report.summary())
    if cfg.model.feature_dim is not None and report.feature_dim != cfg.model.feature_dim:
        print(f"note: model.feature_dim is {cfg.model.feature_dim} but these features have {report.feature_dim}; "
              f"train with --set model.feature_dim={report.feature_dim}")
    if report.failed:
        print(f"{len(report.failed)} video(s) failed (listed in {report.failed_file}):")
        for video_id, reason in report.failed[:10]:
            print(f"  {video_id}: {reason}")
        return 1
    return 0


def run_train(args) -> int:
    from detection.task import train_detection

    cfg = _load(args)
    result = train_detection(cfg, resume=args.resume, device=args.device)
    if not is_main_process():
        return 0
    print(f"run folder: {result.run_dir}")
    print(f"epochs: {result.epochs_done}")
    if result.best_metric is not None:
        print(f"best val mAP: {100 * result.best_metric:.2f} (epoch {result.best_epoch})")
        last = next((h for h in reversed(result.history) if "val/mAP@0.5" in h), None)
        if last is not None:
            print(f"last val mAP: {100 * last['val/mAP']:.2f}  mAP@0.5: {100 * last['val/mAP@0.5']:.2f}")
    return 0


def run_test(args) -> int:
    from detection.task import predict_subset
    from eval.report import format_detection_table

    cfg = _load(args)
    subset = args.subset or cfg.data.test_subset
    predictions, result = predict_subset(cfg, args.checkpoint, subset=subset, predictions_path=args.predictions,
                                         device=args.device)
    if result is not None:
        print(format_detection_table(result))
    else:
        print(f"{len(predictions)} detections; subset {subset!r} has no labels")
    from pathlib import Path

    path = Path(args.predictions) if args.predictions else Path(cfg.out) / f"predictions_{subset}.csv"
    print(f"predictions: {path}")
    return 0


def run_detect(args) -> int:
    import signal

    from detection.predict import check_output_folder, detect_video, resolve_device, write_detections

    # everything that can be checked before the work is checked first
    check_output_folder(args.out)
    resolve_device(args.device)

    def interrupted(signum, frame):
        raise KeyboardInterrupt  # unwinds: temporary files and threads are cleaned up

    previous = signal.signal(signal.SIGTERM, interrupted)
    try:
        result = detect_video(args.video, recognizer=args.recognizer, detector=args.detector,
                              keypoints=args.keypoints, device=args.device, score_threshold=args.score_threshold,
                              max_detections=args.max_detections, strict=args.strict,
                              progress=not args.quiet and sys.stderr.isatty(),
                              on_warning=lambda line: print(f"warning: {line}", file=sys.stderr, flush=True))
        files = write_detections(result, args.out)
    finally:
        signal.signal(signal.SIGTERM, previous)
    report, table = result.report, result.detections
    times = ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in report.stage_seconds.items())
    print(f"{result.video_id}: {result.seconds_seen:.2f} s of video ({report.frames_decoded} frames, "
          f"{report.sampled} sampled), a person in {100 * report.person_fraction:.0f}% of the sampled frames")
    print(f"took {report.wall_seconds:.1f} s ({times}; decode, pose and encode overlap)")
    print(f"{len(table)} detection(s)" + (":" if len(table) else ""))
    for row in table.head(10).itertuples(index=False):
        print(f"  {row.t_start:7.2f}-{row.t_end:7.2f} s  {row.score:.3f}  {row.label:2d} {row.class_name}"
              + (f" ({row.body_group})" if row.body_group else ""))
    for kind, path in files.items():
        print(f"{kind}: {path}")
    return 0
