"""``mmad detection``: extract clip features, train and test the temporal head; ``mmad detect``: one raw video.

    mmad detection extract --checkpoint RECOGNIZER [--config C] [--data DIR] [--split S] [--out FEATURES]
                           [--in-dataset] [--device D] [--set K=V ...]
    mmad detection train --config C [--data DIR] [--out RUN] [--epochs N] [--set K=V ...] [--resume]
    mmad detection test --checkpoint K [--config C] [--split val] [--pred CSV] [--out DIR] [--diagnose OUT] [--set K=V ...]
    mmad detect VIDEO [--keypoints DIR] --recognizer K1 --detector K2 --out OUT [--device D] [--html]
                [--score-threshold F] [--max-detections N] [--strict]

Features go to ``data.feature_dir`` (relative to the working directory, like ``out``; ``--out``
names another folder, ``--in-dataset`` puts them in DATA/features), never into the dataset unless
asked. ``test`` reads the checkpoint's stored config unless ``--config`` is given and writes next
to the checkpoint unless ``--out`` names a folder.

The stage code (torch, the models, the data) is imported inside the handlers.
"""

from __future__ import annotations

from mmad.commands import (
    ExampleFormatter,
    add_config_flags,
    add_deprecated,
    add_device_flag,
    add_group,
    add_precision_flag,
    add_run_flags,
    add_split_flag,
    is_main_process,
    load_run_config,
)
from mmad.errors import ConfigError


def register(subparsers) -> None:
    sub = add_group(subparsers, "detection", "temporal detection: extract clip features, train and test the head")

    p = sub.add_parser(
        "extract", help="encode the dataset's videos with a recognizer into the feature cache",
        description="Run a trained recognizer as clip encoder along every video of the config's annotation "
                    "file (or one split) and write one feature file per video into --out (default "
                    "data.feature_dir, relative to the working directory; never the dataset folder unless "
                    "--in-dataset), tagged with the recognizer checkpoint's hash. Videos already encoded by "
                    "this checkpoint are skipped; a video that fails is reported, listed in failed_rank<R>.txt "
                    "and skipped. Under torchrun each process takes a disjoint share of the videos. Exit "
                    "status 1 when some videos failed.",
        epilog="example: mmad detection extract --config configs/detection/micropuppet.yaml "
               "--checkpoint runs/rec/best.pt --data data/micropuppet/detection --out runs/features/micropuppet",
        formatter_class=ExampleFormatter)
    # not required= here: the old spelling --recognizer must satisfy it too (checked in run_extract)
    p.add_argument("--checkpoint", metavar="K", help="(required) a checkpoint of 'mmad recognition train'")
    add_deprecated(p, "--recognizer", "--checkpoint", metavar="K")
    add_config_flags(p, config_optional=True, example="encoder.stride_frames=8")
    add_split_flag(p, "only this split (default: every video of the annotation file)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--out", metavar="DIR", help="feature folder (overrides data.feature_dir)")
    where.add_argument("--in-dataset", action="store_true",
                       help="write the features into DATA/features (the dataset folder)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: encoder.device, else cuda when available)")
    add_precision_flag(p, default=None)
    p.set_defaults(func=run_extract)

    p = sub.add_parser(
        "train", help="train the temporal head on cached features",
        description="Train the head a config describes with the shared engine. The run folder receives "
                    "last.pt, best.pt (best validation average mAP), metrics.jsonl, train.log and config.yaml.",
        epilog="example: mmad detection train --config configs/detection/micropuppet.yaml "
               "--set data.feature_dir=runs/features/micropuppet --out runs/det --epochs 5",
        formatter_class=ExampleFormatter)
    add_run_flags(p, example="data.max_seq_len=128")
    add_device_flag(p)
    p.set_defaults(func=run_train)

    p = sub.add_parser(
        "test", help="detect on a subset, write the challenge CSV and print mAP",
        description="Detect with a trained head on a split (default data.test_subset), write the MMA-52 "
                    "challenge CSV (default predictions_<split>.csv next to the checkpoint, or in --out) and, "
                    "when the split is labelled, print mAP at tIoU 0.1-0.9, their average and mAP@0.5, and write "
                    "metrics_<split>.json and per_class_ap_<split>.csv (AP per class and tIoU, with class names) "
                    "beside the CSV.",
        epilog="example: mmad detection test --checkpoint runs/det/best.pt --split val",
        formatter_class=ExampleFormatter)
    p.add_argument("--checkpoint", required=True, metavar="K", help="a checkpoint of 'mmad detection train'")
    add_config_flags(p, checkpoint_config=True, example="postprocess.max_segments=50")
    add_split_flag(p, "split to detect on (default: data.test_subset)")
    p.add_argument("--pred", metavar="CSV", help="where to write the challenge CSV (.json: ActivityNet style)")
    add_deprecated(p, "--predictions", "--pred", metavar="CSV")
    p.add_argument("--out", metavar="DIR", help="folder for the predictions (default: the checkpoint's folder)")
    p.add_argument("--diagnose", metavar="OUT", help="also write the error analysis (as 'mmad eval detection "
                   "--diagnose') into OUT when the split is labelled")
    p.add_argument("--top-k", type=int, default=10, metavar="K", help="false-positive profile of the top K x "
                   "(ground-truth count) predictions (default 10)")
    add_device_flag(p)
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
    p.add_argument("--html", action="store_true", help="also write OUT/<video>.html, the page of 'mmad view' "
                   "(video, timeline, table; the pose overlay with --keypoints)")
    p.add_argument("--score-threshold", type=float, metavar="F",
                   help="keep detections scoring at least F (default: the detector's postprocess.score_threshold)")
    p.add_argument("--max-detections", type=int, metavar="N",
                   help="keep at most N detections (default: the detector's postprocess.max_segments)")
    p.add_argument("--strict", action="store_true",
                   help="stop (status 2) when the frames decoded or the keypoints do not match the video's header")
    p.set_defaults(func=run_detect)


def _load(args, checkpoint: str | None = None):
    from detection.config import DetectionConfig

    return load_run_config(DetectionConfig, args, checkpoint, kind="detection")


def run_extract(args) -> int:
    from pathlib import Path

    from detection.encoder import extract_features

    if not args.checkpoint:
        raise ConfigError("mmad detection extract: --checkpoint (the recognizer checkpoint) is required")
    cfg = _load(args)
    if args.out:
        cfg.data.feature_dir = str(Path(args.out).resolve())
    elif args.in_dataset:
        cfg.data.feature_dir = str(Path(cfg.data.root, "features").resolve())
    if args.precision:
        cfg.encoder.precision = args.precision
    report = extract_features(cfg, args.checkpoint, subset=args.split, device=args.device)
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
    result = train_detection(cfg, resume=args.resume, device=args.device,
                             allow_config_change=args.allow_config_change)
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
    from pathlib import Path

    from detection.task import predict_subset, write_test_metrics
    from eval.report import format_detection_table

    cfg = _load(args, args.checkpoint)
    split = args.split or cfg.data.test_subset
    folder = Path(args.out) if args.out else Path(args.checkpoint).parent
    path = Path(args.pred) if args.pred else folder / f"predictions_{split}.csv"
    predictions, result = predict_subset(cfg, args.checkpoint, subset=split, predictions_path=path,
                                         device=args.device)
    if result is not None:
        print(format_detection_table(result))
        if args.diagnose:
            from mmad.commands.eval import write_detection_diagnosis
            from mmad.datasets.mma52 import read_detection_annotations, records_to_frame

            truth = records_to_frame(read_detection_annotations(cfg.data.annotation_path, subset=split))
            print(write_detection_diagnosis(args.diagnose, truth, predictions, num_classes=cfg.model.num_classes,
                                            top_k=args.top_k))
            print(f"diagnosis: {args.diagnose}")
        json_path, csv_path = write_test_metrics(result, path.parent, subset=split,
                                                 num_classes=cfg.model.num_classes)
        print(f"metrics: {json_path}\nper-class AP: {csv_path}")
    else:
        print(f"{len(predictions)} detections; split {split!r} has no labels")
    print(f"predictions: {path}")
    return 0


def run_detect(args) -> int:
    import signal
    import sys
    from pathlib import Path

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
                              progress=getattr(args, "verbosity", 0) >= 0 and sys.stderr.isatty(),
                              on_warning=lambda line: print(f"warning: {line}", file=sys.stderr, flush=True))
        files = write_detections(result, args.out)
        keypoint_folder = args.keypoints if args.keypoints and Path(args.keypoints).is_dir() else None
        if args.html:
            from mmad.viewer import write_viewer_page

            files["html"] = write_viewer_page(Path(args.out) / f"{result.video_id}.html", args.video,
                                              result.detections, keypoints_dir=keypoint_folder)
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
