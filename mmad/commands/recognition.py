"""``mmad recognition``: train, test, profile and interpret Micro-DualNet.

    mmad recognition train --config C [--data DIR] [--out RUN] [--epochs N] [--set K=V ...] [--resume]
    mmad recognition test --checkpoint K [--config C] [--views 1x1] [--split val|test]
                          [--pred submission.csv] [--out DIR]
    mmad recognition profile --config C [--frames 16] [--size 224]
    mmad recognition interpret --checkpoint K [--config C] [--compare st=K1 ts=K2] [--split val] [--out DIR]

test and interpret build the model and read the data as the checkpoint's stored config says
(``--config`` replaces it, ``--data``/``--set`` adjust it) and write next to the checkpoint unless
``--out`` names a folder.

The stage code (torch, the model, the data) is imported inside the handlers.
"""

from __future__ import annotations

import sys

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
    sub = add_group(subparsers, "recognition", "train, test, profile and interpret Micro-DualNet")

    p = sub.add_parser(
        "train", help="train a recognition model",
        description="Train the model a config describes with the shared engine. The run folder receives "
                    "last.pt (every epoch), best.pt (best validation F1mean), metrics.jsonl, train.log, "
                    "config.yaml, tb/ and skipped.txt (clips that could not be loaded).",
        epilog="example: mmad recognition train --config configs/recognition/micropuppet.yaml "
               "--data data/micropuppet/recognition --out runs/rec --set data.num_frames=16",
        formatter_class=ExampleFormatter)
    add_run_flags(p)
    add_device_flag(p)
    p.set_defaults(func=run_train)

    p = sub.add_parser(
        "test", help="score a checkpoint on a split",
        description="Print the MA-52 metrics of a checkpoint on a split and write metrics_<split>.json, "
                    "per_class_<split>.csv, confusion_<split>.csv/.png (labelled splits) and, when asked, "
                    "the MA-52 submission CSV, into the checkpoint's folder (or --out).",
        epilog="example: mmad recognition test --checkpoint runs/rec/best.pt --split val --views 2x3",
        formatter_class=ExampleFormatter)
    p.add_argument("--checkpoint", required=True, metavar="K", help="a checkpoint written by 'mmad recognition train'")
    add_config_flags(p, checkpoint_config=True)
    p.add_argument("--views", default="1x1", metavar="CLIPSxCROPS",
                   help="temporal clips x spatial crops per video, scores averaged (default 1x1)")
    add_split_flag(p, "split to score (default: data.test_split)")
    p.add_argument("--pred", metavar="CSV", help="also write the MA-52 submission file (predictions) here")
    add_deprecated(p, "--submission", "--pred", metavar="CSV")
    p.add_argument("--out", metavar="DIR", help="folder for the reports (default: the checkpoint's folder)")
    add_device_flag(p)
    add_precision_flag(p)
    p.set_defaults(func=run_test)

    p = sub.add_parser(
        "profile", help="parameters, GFLOPs and CPU step time of a config's model",
        description="Parameters and GFLOPs per clip, split into backbone and head, and the CPU time of one "
                    "training step.",
        epilog="example: mmad recognition profile --config configs/recognition/micropuppet.yaml --frames 8 "
               "--size 112",
        formatter_class=ExampleFormatter)
    add_config_flags(p, data=False)
    p.add_argument("--frames", type=int, help="frames per clip (default: data.num_frames)")
    p.add_argument("--size", type=int, help="frame size in pixels (default: data.image_size)")
    p.set_defaults(func=run_profile)

    p = sub.add_parser(
        "interpret", help="routing weights per class and entity; per-class accuracy of several models",
        description="Mean routing weights (alpha_ST, alpha_TS) per class and entity as CSV and heatmap, and "
                    "the per-class accuracy of the checkpoint beside those given with --compare (the paper's "
                    "Fig. 5: ST-only, TS-only and dual). Files go to the checkpoint's folder/interpret (or --out).",
        epilog="example: mmad recognition interpret --checkpoint runs/rec/best.pt "
               "--compare st=runs/rec_st/best.pt ts=runs/rec_ts/best.pt --split val",
        formatter_class=ExampleFormatter)
    p.add_argument("--checkpoint", required=True, metavar="K", help="the main (dual-path) checkpoint")
    add_config_flags(p, checkpoint_config=True)
    p.add_argument("--compare", nargs="*", default=[], metavar="NAME=CHECKPOINT",
                   help="other checkpoints to compare per class, e.g. st=runs/st/best.pt ts=runs/ts/best.pt; "
                        "each is built from the config stored in it")
    p.add_argument("--name", default="dual", help="name of the main checkpoint in the comparison (default dual)")
    add_split_flag(p, "split to analyse (default: data.val_split)")
    p.add_argument("--views", default="1x1", metavar="CLIPSxCROPS", help="test views (default 1x1)")
    p.add_argument("--out", metavar="DIR", help="folder for the files (default: CHECKPOINT_FOLDER/interpret)")
    add_device_flag(p)
    p.set_defaults(func=run_interpret)


def _load(args, checkpoint: str | None = None):
    from recognition.config import RecognitionConfig

    return load_run_config(RecognitionConfig, args, checkpoint, kind="recognition")


def run_train(args) -> int:
    from mmad.engine import read_skipped
    from recognition.task import train

    cfg = _load(args)
    result = train(cfg, resume=args.resume, device=args.device, allow_config_change=args.allow_config_change)
    if not is_main_process():
        return 0
    print(f"run folder: {result.run_dir}")
    print(f"epochs: {result.epochs_done}")
    if result.best_metric is not None:
        print(f"best val f1_mean: {result.best_metric:.4f} (epoch {result.best_epoch})")
        last = next((h for h in reversed(result.history) if "val/top1" in h), None)
        if last is not None:
            print(f"last val top1: {last['val/top1']:.4f}  f1_mean: {last['val/f1_mean']:.4f}")
    skipped = read_skipped(result.run_dir)
    if skipped:
        print(f"skipped {len(skipped)} clip(s) that could not be loaded (see {result.run_dir / 'skipped.txt'}):")
        for index, message in skipped[:10]:
            print(f"  item {index}: {message}")
    return 0


def run_test(args) -> int:
    from recognition.task import test

    cfg = _load(args, args.checkpoint)
    report = test(cfg, args.checkpoint, views=args.views, submission=args.pred, split=args.split,
                  out=args.out, device=args.device, precision=args.precision)
    if report.table is not None:
        print(report.table)
    else:
        print(f"{len(report.predictions.video_ids)} clips scored; the split has no labels")
    for kind, path in report.files.items():
        print(f"{kind}: {path}")
    return 0


def run_profile(args) -> int:
    cfg = _load(args)
    try:
        from recognition import profile
    except ModuleNotFoundError as e:
        if e.name == "recognition.profile":
            raise ConfigError("model profiling is not available in this build (recognition/profile.py)") from None
        raise
    frames = args.frames or cfg.data.num_frames
    size = args.size or cfg.data.image_size
    text = profile.profile_report(cfg, num_frames=frames, image_size=size)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def run_interpret(args) -> int:
    from recognition.interpret import interpret

    cfg = _load(args, args.checkpoint)
    compare = {}
    for item in args.compare:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--compare takes NAME=CHECKPOINT, got {item!r}")
        compare[name] = path
    result = interpret(cfg, args.checkpoint, compare=compare, name=args.name, split=args.split,
                       views=args.views, out=args.out, device=args.device)
    print(result.summary)
    for kind, path in result.files.items():
        print(f"{kind}: {path}")
    return 0
