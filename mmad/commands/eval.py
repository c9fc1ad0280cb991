"""``mmad eval``: score prediction files with the benchmarks' official protocols.

- ``mmad eval detection --gt GT --pred PRED [--split val] [--tiou 0.1:0.9:0.1]
  [--protocol mma52|activitynet] [--json]``: MMA-52 detection mAP.
- ``mmad eval recognition --gt LIST --pred CSV [--json] [--confusion-csv P] [--confusion-png P]``:
  MA-52 recognition metrics of a submission CSV.

``--json`` prints exactly one JSON object on stdout. The metric code (``eval/``) is imported inside
the handlers.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager

from mmad.commands import add_group, add_split_flag
from mmad.errors import DataError


def register(subparsers) -> None:
    commands = add_group(subparsers, "eval", "evaluate prediction files (official MMA-52 / MA-52 protocols)")

    p = commands.add_parser(
        "detection",
        help="temporal detection mAP at tIoU thresholds",
        description="Per-class AP at each tIoU threshold, mAP, its average over thresholds and mAP@0.5. "
        "Predictions for videos absent from the ground truth count as false positives.",
    )
    p.add_argument("--gt", required=True, help="ground truth: MMA-52 CSV (frames + fps) or mmad.json (seconds)")
    p.add_argument("--pred", required=True, help="predictions: challenge CSV (,video_id,t_start,t_end,class,score) "
                   "or ActivityNet-style JSON")
    add_split_flag(p, "split to evaluate when the ground-truth file holds several (e.g. val)")
    p.add_argument("--tiou", type=_tiou_argument, default=None, metavar="START:STOP:STEP|A,B,...",
                   help="tIoU thresholds (default 0.1:0.9:0.1)")
    p.add_argument("--protocol", choices=("mma52", "activitynet"), default="mma52",
                   help="mma52: official tIoU = inter / (union + 1e-4); activitynet: plain tIoU")
    p.add_argument("--num-classes", type=int, default=52, help="class ids must be below this (default 52)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--diagnose", metavar="OUT", help="also write the error analysis (AP by instance duration, "
                   "overlap, body group; false-positive profile; boundary errors) as tables and plots into OUT")
    p.add_argument("--top-k", type=int, default=10, metavar="K",
                   help="the false-positive profile covers the top K x (ground-truth count) predictions (default 10)")
    p.set_defaults(func=_run_detection)

    p = commands.add_parser(
        "recognition",
        help="MA-52 recognition metrics of a submission CSV",
        description="Action Top-1/Top-5, body Top-1, macro/micro F1 at both levels, F1mean, mean class accuracy.",
    )
    p.add_argument("--gt", required=True, help="labelled list file, e.g. val_list_videos.txt")
    p.add_argument("--pred", required=True, help="submission CSV: vid,action_pred_1..5,body_pred_1..5")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--confusion-csv", metavar="PATH", help="write the action confusion matrix as CSV")
    p.add_argument("--confusion-png", metavar="PATH", help="draw the action confusion matrix as a PNG heatmap")
    p.set_defaults(func=_run_recognition)


def _tiou_argument(text: str):
    from eval.detection import parse_tiou_range

    try:
        return parse_tiou_range(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


@contextmanager
def _located_errors():
    """Re-raise the metric package's input errors as :class:`DataError` (one line, exit 2)."""
    from eval.errors import EvalInputError

    try:
        yield
    except EvalInputError as e:
        raise DataError(e.path, e.problem, e.where) from None


def _run_detection(args) -> int:
    from eval.detection import DEFAULT_TIOU_THRESHOLDS, evaluate_detection
    from eval.io import read_detection_predictions
    from eval.report import format_detection_table
    from mmad.datasets.mma52 import read_detection_annotations, records_to_frame
    from mmad.taxonomy import MA52_ACTIONS

    records = read_detection_annotations(args.gt, subset=args.split)
    subsets = sorted({r.subset for r in records if r.subset})
    if args.split is None and len(subsets) > 1:
        raise DataError(args.gt, f"holds several splits ({', '.join(subsets)}); choose one with --split")
    if not records:
        raise DataError(args.gt, "no videos" + (f" in split {args.split!r}" if args.split else ""))
    if not any(r.labeled for r in records):
        raise DataError(args.gt, "labels are hidden in this split (e.g. MMA-52 test); nothing to evaluate against")
    ground_truth = records_to_frame(records)
    with _located_errors():
        predictions = read_detection_predictions(
            args.pred, num_classes=args.num_classes, class_names=MA52_ACTIONS
        )
        if predictions.empty:
            print(f"warning: {args.pred}: no detections (an empty submission); every AP is 0", file=sys.stderr)
        result = evaluate_detection(
            ground_truth,
            predictions,
            tiou_thresholds=DEFAULT_TIOU_THRESHOLDS if args.tiou is None else args.tiou,
            protocol=args.protocol,
            num_classes=args.num_classes,
        )
    diagnosis = None
    if args.diagnose:
        diagnosis = write_detection_diagnosis(args.diagnose, ground_truth, predictions, num_classes=args.num_classes,
                                              top_k=args.top_k, tiou_thresholds=result.tiou_thresholds,
                                              protocol=args.protocol)
    if args.json:
        sys.stdout.write(json.dumps(result.to_dict()) + "\n")
    else:
        print(format_detection_table(result))
        if diagnosis:
            print(f"\nDiagnosis (tables and plots in {args.diagnose}):\n{diagnosis}")
    return 0


def write_detection_diagnosis(out, ground_truth, predictions, *, num_classes: int | None, top_k: int = 10,
                              **kwargs) -> str:
    """Diagnose detections (``eval.diagnose``; MA-52 body groups for 52 classes) and write the tables and
    plots into the folder ``out``; returns the Markdown summary. ``kwargs``: tIoU thresholds, protocol."""
    from eval.diagnose import diagnose_detection, diagnosis_markdown, write_diagnosis
    from mmad.taxonomy import MA52_ACTIONS, MA52_BODY_GROUPS, fine2coarse_table

    if top_k < 1:
        raise DataError(None, f"--top-k must be at least 1, got {top_k}")
    body = {"body_of_action": fine2coarse_table(), "body_names": MA52_BODY_GROUPS} \
        if num_classes == len(MA52_ACTIONS) else {}
    with _located_errors():
        diagnosis = diagnose_detection(ground_truth, predictions, num_classes=num_classes, top_k=top_k, **body,
                                       **kwargs)
    write_diagnosis(diagnosis, out)
    return diagnosis_markdown(diagnosis)


def _run_recognition(args) -> int:
    from pathlib import Path

    import numpy as np

    from eval.io import read_ma52_submission, write_confusion_csv
    from eval.recognition import evaluate_recognition_ranked
    from eval.report import format_recognition_table, save_confusion_heatmap
    from mmad.datasets.ma52 import read_ma52_list
    from mmad.taxonomy import MA52_ACTIONS

    records = read_ma52_list(args.gt)
    if not all(r.labeled for r in records):
        raise DataError(args.gt, "labels are hidden in this list (e.g. MA-52 test); nothing to evaluate against")
    with _located_errors():
        submission = read_ma52_submission(args.pred)
    row_of = {Path(vid).stem: i for i, vid in enumerate(submission["vid"])}
    known = {r.video_id for r in records}
    for i, vid in enumerate(submission["vid"]):
        if Path(vid).stem not in known:
            raise DataError(args.pred, f"video {vid!r} is not in {args.gt}", f"line {i + 2}")
    missing = [r.video_id for r in records if r.video_id not in row_of]
    if missing:
        raise DataError(args.pred, f"no prediction for {len(missing)} of {len(records)} videos (first: {missing[0]})")
    rows = np.array([row_of[r.video_id] for r in records])
    action_ranked = submission[[f"action_pred_{k}" for k in range(1, 6)]].to_numpy()[rows]
    body_ranked = submission[[f"body_pred_{k}" for k in range(1, 6)]].to_numpy()[rows]
    labels = np.array([r.label for r in records])
    with _located_errors():
        result = evaluate_recognition_ranked(action_ranked, labels, body_ranked=body_ranked)
    if args.confusion_csv:
        write_confusion_csv(args.confusion_csv, result.confusion, class_names=MA52_ACTIONS)
    if args.confusion_png:
        save_confusion_heatmap(args.confusion_png, result.confusion, class_names=MA52_ACTIONS)
    if args.json:
        sys.stdout.write(json.dumps(result.to_dict()) + "\n")
    else:
        print(format_recognition_table(result))
    return 0
