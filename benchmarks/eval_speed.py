"""Speed of the detection evaluation at MMA-52 validation scale, checked against the loop reference.

Builds 1,475 videos with MMA-52-like ground truth (about 3.2 segments of 52 long-tailed classes per
video, 5-15 s videos) and 200 predictions per video (295,000 rows: jittered ground truth and random
segments), evaluates them at the 9 official tIoU thresholds, and prints one table: rows, seconds,
rows per second, and the largest difference from the per-prediction loop of
``tests/reference_eval.py``. With ``--gt PATH/val.csv`` the real validation ground truth is used.

    OMP_NUM_THREADS=1 python benchmarks/eval_speed.py
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from eval.detection import DEFAULT_TIOU_THRESHOLDS, evaluate_detection  # noqa: E402


def synthetic_ground_truth(rng: np.random.Generator, *, videos: int, classes: int) -> pd.DataFrame:
    """MMA-52-like ground truth: 5-15 s videos, 1-6 segments each, long-tailed class frequencies."""
    class_weights = 1.0 / np.arange(1, classes + 1) ** 1.1
    class_weights /= class_weights.sum()
    rows = []
    for v in range(videos):
        duration = rng.uniform(5, 15)
        for _ in range(rng.integers(1, 7)):
            length = min(duration, rng.lognormal(np.log(2.6), 0.7))
            start = rng.uniform(0, duration - length)
            rows.append((f"val{v:04d}", round(start, 4), round(start + length, 4), rng.choice(classes, p=class_weights)))
    return pd.DataFrame(rows, columns=["video_id", "t_start", "t_end", "label"])


def synthetic_predictions(
    rng: np.random.Generator, gt: pd.DataFrame, *, per_video: int, classes: int
) -> pd.DataFrame:
    """``per_video`` predictions per ground-truth video: jittered true segments, then random ones."""
    parts = []
    for vid, group in gt.groupby("video_id", sort=False):
        k = len(group)
        copies = min(per_video, 4 * k)
        pick = rng.integers(0, k, copies)
        length = (group.t_end.to_numpy() - group.t_start.to_numpy())[pick]
        s = group.t_start.to_numpy()[pick] + rng.normal(0, 0.2, copies) * length
        e = group.t_end.to_numpy()[pick] + rng.normal(0, 0.2, copies) * length
        label = np.where(rng.random(copies) < 0.7, group.label.to_numpy()[pick], rng.integers(0, classes, copies))
        rest = per_video - copies
        rs = rng.uniform(0, group.t_end.max(), rest)
        re = rs + rng.lognormal(np.log(2.0), 0.8, rest)
        parts.append(pd.DataFrame({
            "video_id": vid,
            "t_start": np.concatenate([np.minimum(s, e), rs]),
            "t_end": np.concatenate([np.maximum(s, e), re]),
            "label": np.concatenate([label, rng.integers(0, classes, rest)]),
            "score": np.concatenate([rng.uniform(0.3, 1.0, copies), rng.uniform(0.0, 0.7, rest)]),
        }))
    return pd.concat(parts, ignore_index=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=1475)
    parser.add_argument("--per-video", type=int, default=200)
    parser.add_argument("--classes", type=int, default=52)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of the fast evaluation (best is shown)")
    parser.add_argument("--gt", help="use this MMA-52 CSV as ground truth (frames / fps)")
    parser.add_argument("--skip-reference", action="store_true", help="do not run the slow loop reference")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    if args.gt:
        table = pd.read_csv(args.gt)
        gt = pd.DataFrame({"video_id": table.video_id.astype(str),
                           "t_start": (table.start_frame / table.fps).round(4),
                           "t_end": (table.end_frame / table.fps).round(4), "label": table["class"]})
    else:
        gt = synthetic_ground_truth(rng, videos=args.videos, classes=args.classes)
    pred = synthetic_predictions(rng, gt, per_video=args.per_video, classes=args.classes)
    thresholds = DEFAULT_TIOU_THRESHOLDS

    times = []
    for _ in range(max(1, args.repeats)):
        t0 = time.perf_counter()
        result = evaluate_detection(gt, pred, tiou_thresholds=thresholds, num_classes=args.classes)
        times.append(time.perf_counter() - t0)
    fast_seconds = min(times)

    if args.skip_reference:
        ref_seconds, max_diff = float("nan"), float("nan")
    else:
        from reference_eval import reference_detection_ap

        t0 = time.perf_counter()
        ref = reference_detection_ap(gt, pred, tiou_thresholds=thresholds, classes=result.classes)
        ref_seconds = time.perf_counter() - t0
        same_nan = np.array_equal(np.isnan(ref), np.isnan(result.ap))
        max_diff = float(np.nanmax(np.abs(result.ap - ref))) if same_nan else float("inf")

    rows = [
        ("prediction rows", f"{len(pred):,}"),
        ("videos", f"{gt.video_id.nunique():,}"),
        ("ground-truth segments", f"{len(gt):,}"),
        ("classes", f"{args.classes}"),
        ("tIoU thresholds", f"{thresholds.size}"),
        ("threads", os.environ.get("OMP_NUM_THREADS", "?")),
        (f"fast seconds (best of {len(times)})", f"{fast_seconds:.3f}"),
        ("fast seconds (first run)", f"{times[0]:.3f}"),
        ("fast rows / s", f"{len(pred) / fast_seconds:,.0f}"),
        ("reference loop seconds", f"{ref_seconds:.1f}"),
        ("max |fast - reference|", f"{max_diff:.1e}" if max_diff else "0 (identical)"),
        ("average mAP", f"{result.average_mAP:.4f}"),
        ("speed bar (< 2 s)", "met" if fast_seconds < 2.0 else "NOT met"),
    ]
    width = max(len(name) for name, _ in rows)
    print("Detection evaluation speed (eval.detection.evaluate_detection)")
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")
    ok = fast_seconds < 2.0 and (args.skip_reference or max_diff <= 1e-12)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
