"""``mmad recognition``: train, test, profile and interpret Micro-DualNet.

    mmad recognition train --config C [--data DIR] [--out RUN] [--epochs N] [--set K=V ...] [--resume]
    mmad recognition test --config C --checkpoint K [--views 1x1] [--split val|test]
                          [--submission out.csv] [--out DIR]
    mmad recognition profile --config C [--frames 16] [--size 224]
    mmad recognition interpret --config C --checkpoint K [--compare st=K1 ts=K2] [--split val] [--out DIR]

The stage code (torch, the model, the data) is imported inside the handlers.
"""

from __future__ import annotations

import sys

from mmad.commands import add_group, add_run_flags, is_main_process, run_overrides
from mmad.errors import ConfigError


def register(subparsers) -> None:
    sub = add_group(subparsers, "recognition", "train, test, profile and interpret Micro-DualNet")

    p = sub.add_parser(
        "train", help="train a recognition model",
        description="Train the model a config describes with the shared engine. The run folder receives "
                    "last.pt (every epoch), best.pt (best validation F1mean), metrics.jsonl, train.log, "
                    "config.yaml, tb/ and skipped.txt (clips that could not be loaded).")
    add_run_flags(p)
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.set_defaults(func=run_train)

    p = sub.add_parser(
        "test", help="score a checkpoint on a split",
        description="Print the MA-52 metrics of a checkpoint on a split and write metrics_<split>.json, "
                    "per_class_<split>.csv, confusion_<split>.csv/.png (labelled splits) and, when asked, "
                    "the MA-52 submission CSV.")
    add_run_flags(p)
    p.add_argument("--checkpoint", required=True, help="a checkpoint written by 'mmad recognition train'")
    p.add_argument("--views", default="1x1", metavar="CLIPSxCROPS",
                   help="temporal clips x spatial crops per video, scores averaged (default 1x1)")
    p.add_argument("--split", help="split to score (default: data.test_split)")
    p.add_argument("--submission", metavar="CSV", help="write the MA-52 submission file here")
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    p.set_defaults(func=run_test)

    p = sub.add_parser(
        "profile", help="parameters, GFLOPs and CPU step time of a config's model",
        description="Parameters and GFLOPs per clip, split into backbone and head, and the CPU time of one "
                    "training step.")
    p.add_argument("--config", required=True, help="YAML config file")
    p.add_argument("--frames", type=int, help="frames per clip (default: data.num_frames)")
    p.add_argument("--size", type=int, help="frame size in pixels (default: data.image_size)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="set any config field (repeatable)")
    p.set_defaults(func=run_profile)

    p = sub.add_parser(
        "interpret", help="routing weights per class and entity; per-class accuracy of several models",
        description="Mean routing weights (alpha_ST, alpha_TS) per class and entity as CSV and heatmap, and "
                    "the per-class accuracy of the checkpoint beside those given with --compare (the paper's "
                    "Fig. 5: ST-only, TS-only and dual).")
    add_run_flags(p)
    p.add_argument("--checkpoint", required=True, help="the main (dual-path) checkpoint")
    p.add_argument("--compare", nargs="*", default=[], metavar="NAME=CHECKPOINT",
                   help="other checkpoints to compare per class, e.g. st=runs/st/best.pt ts=runs/ts/best.pt; "
                        "each is built from the config stored in it")
    p.add_argument("--name", default="dual", help="name of the main checkpoint in the comparison (default dual)")
    p.add_argument("--split", help="split to analyse (default: data.val_split)")
    p.add_argument("--views", default="1x1", metavar="CLIPSxCROPS", help="test views (default 1x1)")
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    p.set_defaults(func=run_interpret)


def _load(args):
    from mmad.config import load_config
    from recognition.config import RecognitionConfig

    return load_config(RecognitionConfig, args.config, run_overrides(args))


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

    cfg = _load(args)
    report = test(cfg, args.checkpoint, views=args.views, submission=args.submission, split=args.split,
                  out=args.out, device=args.device)
    if report.table is not None:
        print(report.table)
    else:
        print(f"{len(report.predictions.video_ids)} clips scored; the split has no labels")
    for kind, path in report.files.items():
        print(f"{kind}: {path}")
    return 0


def run_profile(args) -> int:
    from mmad.config import load_config
    from recognition.config import RecognitionConfig

    cfg = load_config(RecognitionConfig, args.config, list(args.overrides))
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

    cfg = _load(args)
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
