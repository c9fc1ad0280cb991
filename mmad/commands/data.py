"""``mmad data``: summary statistics, validation and synthetic generation of datasets.

    mmad data stats FILE [--json] [--split S]
    mmad data check DIR [--skip-bad] [--report FILE] [--no-videos] [--no-keypoints]
    mmad data synth recognition|detection --preset tiny|small|demo|clocks|clocks_small --out DIR [--seed N]
    mmad data convert SRC DST --to FORMAT [--from FORMAT] [--split S] [--class-map FILE] [--prefix P]
    mmad data prepare DIR --out DIR [--short-side PX] [--keyframe-interval N] [--crf N] [--workers N] [--force]
"""

from __future__ import annotations

import json

from mmad.commands import ExampleFormatter, add_group, add_split_flag


def register(subparsers) -> None:
    sub = add_group(subparsers, "data", "inspect, validate and generate datasets")

    p = sub.add_parser(
        "stats", help="counts and distributions of an annotation file",
        description="Numbers of videos, instances and classes, per-class counts, durations, instances per "
                    "video and the fraction of overlapping instances, for any supported annotation file: "
                    "MA-52 list (.txt), MMA-52 CSV or mmad.json, iMiGUE labels CSV.",
        epilog="example: mmad data stats data/micropuppet/detection/mmad.json --split val",
        formatter_class=ExampleFormatter)
    p.add_argument("file", metavar="FILE", help="annotation file")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    add_split_flag(p, "only this split: the subset of mmad.json / an MMA-52 CSV (train, val, test), the "
                      "iMiGUE cross-subject side (train, test), the MA-52 list's split name")
    p.add_argument("--skip-bad", action="store_true",
                   help="leave bad rows out (listed on stderr) instead of stopping at the first")
    p.set_defaults(func=run_stats)

    p = sub.add_parser(
        "check", help="validate a dataset folder",
        description="Validate a dataset folder in any supported layout (MA-52, MMA-52, iMiGUE): annotation rows, "
                    "labels, segments outside their video, missing or unreadable videos, frame count and fps "
                    "against the annotations, keypoint coverage. Prints counts and every problem. Exit status: "
                    "0 no problems, 1 problems, 2 not a dataset folder.",
        epilog="example: mmad data check data/micropuppet/detection --report check.json",
        formatter_class=ExampleFormatter)
    p.add_argument("root", metavar="DIR", help="dataset folder")
    p.add_argument("--skip-bad", action="store_true",
                   help="bad items are listed (and written to --report) but only make the exit status 1 when a "
                        "split is left with no usable item")
    p.add_argument("--report", metavar="FILE", help="write the counts and every problem as JSON")
    p.add_argument("--min-coverage", type=float, default=0.5, metavar="F",
                   help="smallest acceptable fraction of frames with a detected person (default 0.5)")
    p.add_argument("--no-videos", action="store_true", help="do not open the videos")
    p.add_argument("--no-keypoints", action="store_true", help="do not read the keypoints")
    p.set_defaults(func=run_check)

    p = sub.add_parser(
        "synth", help="write the MicroPuppet synthetic dataset",
        description="Render the MicroPuppet synthetic micro-action dataset in the real on-disk formats: "
                    "'recognition' (MA-52 layout, trimmed clips) or 'detection' (MMA-52 layout, untrimmed).",
        epilog="example: mmad data synth detection --preset tiny --out data/micropuppet/detection",
        formatter_class=ExampleFormatter)
    p.add_argument("task", choices=("recognition", "detection"), help="which layout to write")
    p.add_argument("--preset", default="tiny", choices=("tiny", "small", "demo", "clocks", "clocks_small"),
                   help="size preset (default tiny: seconds to make); detection only: clocks, clocks_small (25, "
                        "29.97 and 60 fps videos, some annotated at 29 fps as MMA-52's are)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=run_synth)

    p = sub.add_parser(
        "convert", help="convert annotation files to and from ActionFormer, OpenTAD and mmaction2",
        description="Convert an annotation file. Detection: MMA-52 CSV (mma52-csv), mmad.json (mmad-json), "
                    "ActionFormer JSON (actionformer), OpenTAD JSON + category_idx.txt (opentad). Recognition: "
                    "MA-52 list (ma52) and mmaction2 video list (mmaction2). Class names and ids are kept. "
                    "Example: mmad data convert val.csv val_actionformer.json --to actionformer")
    p.add_argument("src", metavar="SRC", help="input annotation file")
    p.add_argument("dst", metavar="DST", help="output file")
    p.add_argument("--to", required=True, metavar="FORMAT",
                   help="output format: mma52-csv, mmad-json, actionformer, opentad, ma52 or mmaction2")
    p.add_argument("--from", dest="source_format", metavar="FORMAT", help="input format (default: guessed)")
    p.add_argument("--split", help="detection: keep only this subset (or name a CSV's); recognition: the split")
    p.add_argument("--class-map", metavar="FILE",
                   help="class names in id order (one per line, or MA-52's label_name.txt); default MA-52")
    p.add_argument("--prefix", help="mmaction2: path prefix of each clip (default '<split>/')")
    p.set_defaults(func=run_convert)

    p = sub.add_parser(
        "prepare", help="small, seekable copies of a recognition dataset for fast training",
        description="Re-encode every video of a recognition dataset (MA-52 or iMiGUE layout) to a smaller size with "
                    "a keyframe every few frames, and pack each video's OpenPose JSON keypoints into one .npz (in "
                    "the original's pixel coordinates), under --out with a manifest (prepared.json). Training and "
                    "testing read them with --set data.prepared_dir=DIR: same sampled frames, keypoints and boxes, "
                    "several times faster; a copy whose original changed is ignored. Running again redoes only "
                    "what changed; a bad video is reported and skipped. Exit status 1 when some videos failed.",
        epilog="example: mmad data prepare data/micropuppet/recognition --out data/micropuppet/recognition-prepared",
        formatter_class=ExampleFormatter)
    p.add_argument("root", metavar="DIR", help="dataset folder")
    p.add_argument("--out", required=True, metavar="DIR", help="folder of the prepared copies (new, or prepared before)")
    p.add_argument("--short-side", type=int, default=320, metavar="PX",
                   help="shorter side of the copies in pixels, never upscaled (default 320; keep it >= the "
                        "loader's data.resize_short_side)")
    p.add_argument("--keyframe-interval", type=int, default=8, metavar="N",
                   help="frames from one keyframe to the next (default 8)")
    p.add_argument("--crf", type=int, default=18, metavar="N", help="x264 quality, lower is better (default 18)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="processes encoding in parallel (default 1)")
    p.add_argument("--force", action="store_true", help="redo every video, even those up to date")
    p.set_defaults(func=run_prepare)


def run_stats(args) -> int:
    import sys

    from mmad.datasets.layout import annotation_kind, read_annotation_file
    from mmad.datasets.stats import annotation_stats, format_stats
    from mmad.taxonomy import class_names

    kind = annotation_kind(args.file)
    subset, split = (args.split, None) if kind == "mma52" else (None, args.split)
    records = read_annotation_file(args.file, subset=subset, split=split, skip_bad=args.skip_bad)
    for problem in records.problems:
        print(f"skipped: {problem}", file=sys.stderr)
    stats = annotation_stats(records)
    if args.json:
        stats["per_class"] = {str(k): v for k, v in stats["per_class"].items()}
        stats.update(file=str(args.file), format=kind, subset=subset, split=split,
                     skipped_rows=len(records.problems))
        print(json.dumps(stats))
        return 0
    title = f"{args.file} ({kind}" + (f", split {args.split}" if args.split else "") + ")"
    print(format_stats(stats, class_names=class_names(kind), title=title))
    return 0


def run_check(args) -> int:
    from mmad.datasets.check import check_dataset, format_report
    from mmad.fileio import atomic_write_text

    report = check_dataset(args.root, check_videos=not args.no_videos, check_keypoints=not args.no_keypoints,
                           min_keypoint_coverage=args.min_coverage)
    print(format_report(report))
    if args.report:
        atomic_write_text(args.report, json.dumps(report.to_dict(), indent=2) + "\n")
        print(f"report written to {args.report}")
    if report.ok:
        return 0
    if args.skip_bad and report.usable and all(n > 0 for n in report.usable.values()):
        print(f"{len(report.problems)} bad item(s) to skip; every split keeps usable items")
        return 0
    return 1


def run_synth(args) -> int:
    import sys

    from mmad import synth
    from mmad.datasets.layout import open_dataset

    generate = getattr(synth, f"generate_{args.task}", None)
    if generate is None:
        print(f"error: this installation has no mmad.synth.generate_{args.task}", file=sys.stderr)
        return 2
    try:
        generate(args.out, preset=args.preset, seed=args.seed)
    except ValueError as e:  # a preset this task does not have
        print(f"error: {e}", file=sys.stderr)
        return 2
    info = open_dataset(args.out)
    parts = []
    for split in info.splits:
        records = info.read(split)
        if info.layout == "mma52":
            instances = sum(len(r.segments) for r in records)
            parts.append(f"{split} {len(records)} videos / {instances} instances")
        else:
            parts.append(f"{split} {len(records)} clips")
    print(f"wrote {args.task} dataset ({args.preset}, seed {args.seed}) to {args.out}")
    print(f"{info.layout} layout: " + ", ".join(parts))
    return 0


def run_convert(args) -> int:
    from mmad.datasets.convert import convert_annotations

    written = convert_annotations(args.src, args.dst, to=args.to, source_format=args.source_format,
                                  subset=args.split, class_map=args.class_map, prefix=args.prefix)
    for path in written:
        print(f"wrote {path}")
    return 0


def run_prepare(args) -> int:
    import sys

    from mmad.datasets.prepare import PrepareSettings, prepare_dataset

    if args.workers < 1:
        print(f"error: --workers must be >= 1, got {args.workers}", file=sys.stderr)
        return 2
    settings = PrepareSettings(short_side=args.short_side, keyframe_interval=args.keyframe_interval, crf=args.crf)
    summary = prepare_dataset(args.root, args.out, settings=settings, workers=args.workers, force=args.force)
    print(f"prepared {summary.prepared} video(s), {summary.up_to_date} already up to date, {len(summary.failed)} "
          f"failed, in {summary.seconds:.1f} s -> {summary.out}")
    for error in summary.failed.values():
        print(f"failed: {error}")
    print(f"use it with: --set data.prepared_dir={summary.out}")
    return 1 if summary.failed else 0
