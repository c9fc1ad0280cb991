"""``mmad detection``: extract clip features, train and test the temporal head; ``mmad detect``: one raw video.

    mmad detection extract --config C --recognizer K [--subset S] [--device D] [common flags]
    mmad detection train --config C [common flags] [--resume]
    mmad detection test --config C --checkpoint K [--subset val] [--predictions CSV] [common flags]
    mmad detect VIDEO [--keypoints DIR] --recognizer K1 --detector K2 --out OUT [--device D]

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
                    "print mAP at tIoU 0.1-0.9, their average and mAP@0.5, and write metrics_<subset>.json "
                    "and per_class_ap_<subset>.csv (AP per class and tIoU, with class names) beside the CSV.")
    add_run_flags(p)
    p.add_argument("--checkpoint", required=True, metavar="K", help="a checkpoint of 'mmad detection train'")
    p.add_argument("--subset", help="subset to detect on (default: data.test_subset)")
    p.add_argument("--predictions", metavar="CSV", help="where to write the challenge CSV (.json: ActivityNet style)")
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    p.set_defaults(func=run_test)

    p = subparsers.add_parser(
        "detect", help="detect micro-actions in one raw video (JSON, CSV and a timeline PNG)",
        description="Detect the micro-actions of one video with a recognizer (clip encoder) and a trained "
                    "detection head, and write OUT/<video>.json, OUT/<video>.csv and OUT/<video>_timeline.png. "
                    "Keypoints come from --keypoints (the video's OpenPose JSON folder) or, without it, from "
                    "MediaPipe when the pose extra is installed.")
    p.add_argument("video", metavar="VIDEO", help="the video file")
    p.add_argument("--keypoints", metavar="DIR", help="the video's OpenPose JSON folder")
    p.add_argument("--recognizer", required=True, metavar="K1", help="the recognition checkpoint (clip encoder)")
    p.add_argument("--detector", required=True, metavar="K2", help="the detection checkpoint")
    p.add_argument("--out", required=True, metavar="OUT", help="output folder")
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
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
    from pathlib import Path

    from detection.task import predict_subset, write_test_metrics
    from eval.report import format_detection_table

    cfg = _load(args)
    subset = args.subset or cfg.data.test_subset
    predictions, result = predict_subset(cfg, args.checkpoint, subset=subset, predictions_path=args.predictions,
                                         device=args.device)
    path = Path(args.predictions) if args.predictions else Path(cfg.out) / f"predictions_{subset}.csv"
    if result is not None:
        print(format_detection_table(result))
        json_path, csv_path = write_test_metrics(result, path.parent, subset=subset,
                                                 num_classes=cfg.model.num_classes)
        print(f"metrics: {json_path}\nper-class AP: {csv_path}")
    else:
        print(f"{len(predictions)} detections; subset {subset!r} has no labels")
    print(f"predictions: {path}")
    return 0


def run_detect(args) -> int:
    from detection.predict import detect_video, write_detections

    result = detect_video(args.video, recognizer=args.recognizer, detector=args.detector, keypoints=args.keypoints,
                          device=args.device)
    files = write_detections(result, args.out)
    table = result.detections
    print(f"{result.video_id}: {len(table)} detections in {result.duration:.2f} s")
    for row in table.head(10).itertuples(index=False):
        print(f"  {row.t_start:7.2f}-{row.t_end:7.2f} s  {row.score:.3f}  {row.label:2d} {row.class_name}"
              + (f" ({row.body_group})" if row.body_group else ""))
    for kind, path in files.items():
        print(f"{kind}: {path}")
    return 0
