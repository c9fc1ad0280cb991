"""How often training crops cut ground-truth segments, for several crop settings.

    python benchmarks/crop_cuts.py [--annotations data/micropuppet/detection/mmad.json] [--epochs 20]

For every training video (features every ``--stride-frames`` frames at the video's fps, no cache
needed) the feature dataset's own ``random_window`` draws ``--epochs`` training windows per setting.
A segment of a drawn window counts as *cut* when the window ends inside it and it is still kept
(its target boundary is then the window's edge, a boundary the video does not have) and as
*dropped* when the window removed it. Without ``--annotations`` the MicroPuppet demo preset's plan
is used (nothing is rendered). Prints one table: per setting, the share of drawn windows that are
shorter than the video, and the shares of segments cut and dropped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detection.dataset import FeatureSequence, FeatureSequenceDataset, segments_to_steps  # noqa: E402
from detection.timeline import Timeline  # noqa: E402

SETTINGS = {  # name: (crop_prob, min_crop_fraction)
    "no crop": (0.0, 0.5),
    "mmad until now (0.3 of windows, 50-100%)": (0.3, 0.5),
    "ActionFormer (every window, 90-100%)": (1.0, 0.9),
}


def training_videos(annotations: str | None, subset: str):
    if annotations:
        from mmad.datasets.mma52 import read_detection_annotations

        return list(read_detection_annotations(annotations, subset=subset))
    from mmad.synth.generate import DETECTION_PRESETS, plan_detection

    records, _ = plan_detection(DETECTION_PRESETS["demo"], 0, Path("unused"))
    return [r for r in records if r.subset == subset]


def cut_statistics(videos, *, crop_prob: float, min_crop_fraction: float, max_seq_len: int, epochs: int,
                   stride_frames: int, seed: int = 0) -> dict[str, float]:
    """Shares of windows shorter than their video, of segments cut at a window edge and of segments dropped."""
    torch.manual_seed(seed)
    dataset = FeatureSequenceDataset(".", [], training=True, max_seq_len=max_seq_len, crop_prob=crop_prob,
                                     min_crop_fraction=min_crop_fraction)
    windows = shorter = segments = cut = dropped = 0
    for video in videos:
        fps = float(video.fps or 30.0)
        num_steps = max(1, int(round(video.duration * fps / stride_frames)))
        timeline = Timeline.from_stride(fps=fps, stride_frames=stride_frames, num_steps=num_steps)
        steps, labels = segments_to_steps(video, timeline)
        item = FeatureSequence(feats=torch.zeros(1, num_steps), segments=steps, labels=labels,
                               video_id=video.video_id, timeline=timeline, duration=video.duration, fps=fps,
                               stride_frames=stride_frames)
        for _ in range(epochs):
            window = dataset.random_window(item)
            windows += 1
            length = window.feats.shape[1]
            shorter += length < num_steps
            segments += len(steps)
            dropped += len(steps) - len(window.labels)
            # a kept segment that touches a window edge the full video does not have was cut there
            first = round((window.timeline.start - timeline.start) / timeline.step_seconds)
            cut_low = (window.segments[:, 0] <= -0.5 + 1e-4) & (first > 0)
            cut_high = (window.segments[:, 1] >= length - 0.5 - 1e-4) & (first + length < num_steps)
            cut += int((cut_low | cut_high).sum())
    return {"windows": windows, "shorter": shorter / windows, "cut": cut / max(segments, 1),
            "dropped": dropped / max(segments, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotations", help="mmad.json or an MMA-52 CSV (default: the MicroPuppet demo plan)")
    parser.add_argument("--subset", default="train")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--stride-frames", type=int, default=4)
    parser.add_argument("--max-seq-len", type=int, default=128)
    args = parser.parse_args(argv)
    videos = training_videos(args.annotations, args.subset)
    print(f"{len(videos)} {args.subset} videos, {sum(len(v.segments) for v in videos)} segments, "
          f"{args.epochs} windows each, max_seq_len {args.max_seq_len}")
    print(f"{'setting':45s} {'windows cropped':>16s} {'segments cut':>13s} {'segments dropped':>17s}")
    for name, (prob, fraction) in SETTINGS.items():
        stats = cut_statistics(videos, crop_prob=prob, min_crop_fraction=fraction, max_seq_len=args.max_seq_len,
                               epochs=args.epochs, stride_frames=args.stride_frames)
        print(f"{name:45s} {stats['shorter']:16.1%} {stats['cut']:13.1%} {stats['dropped']:17.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
