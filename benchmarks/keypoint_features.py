"""Stand-in detection features from a MicroPuppet set's keypoints, for comparing head settings
without a trained recognizer.

    python benchmarks/keypoint_features.py DATA_ROOT OUT_DIR [--subset train] [--stride-frames 4] [--window 16]

Per feature step (every ``stride_frames`` frames, centred like the encoder's windows): the mean,
the spread and the mean absolute and signed frame-to-frame motion of the keypoints (centred on
their mean and divided by the spread of all their coordinates, per frame) over ``window``
frames. The cache has the encoder's layout (detection.features), tagged ``keypoint-statistics``;
`mmad detection train --set data.feature_dir=OUT_DIR` trains on it. These are not the recognizer's features: numbers
measured on them compare head settings with each other only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detection.features import save_features  # noqa: E402
from mmad.datasets.mma52 import read_detection_annotations  # noqa: E402
from mmad.keypoints import read_openpose_folder  # noqa: E402


def keypoint_statistics(keypoints: np.ndarray, *, stride_frames: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """(T, J, 3) keypoints -> features (N, 4 * 2J) and the centre frame index of each step (N,)."""
    xy = keypoints[..., :2].astype(np.float32)
    scale = xy.reshape(len(xy), -1).std(axis=1)[:, None, None] + 1e-3  # spread of all x and y values
    flat = ((xy - xy.mean(axis=1, keepdims=True)) / scale).reshape(len(xy), -1)
    motion = np.diff(flat, axis=0, prepend=flat[:1])
    num_frames = len(flat)
    centres = np.arange(num_frames // stride_frames) * stride_frames + stride_frames // 2
    rows = []
    for centre in centres:
        lo, hi = max(0, centre - window // 2), min(num_frames, centre + window // 2)
        part, moves = flat[lo:hi], motion[lo:hi]
        rows.append(np.concatenate([part.mean(0), part.std(0), np.abs(moves).mean(0), moves.mean(0)]))
    return np.stack(rows), centres


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="a MicroPuppet detection folder (mmad.json, keypoints/)")
    parser.add_argument("out", help="the feature cache to write")
    parser.add_argument("--subset", help="only this subset (default: all)")
    parser.add_argument("--stride-frames", type=int, default=4)
    parser.add_argument("--window", type=int, default=16)
    args = parser.parse_args(argv)
    root, written = Path(args.root), 0
    for video in read_detection_annotations(root / "mmad.json", subset=args.subset):
        if (Path(args.out) / f"{video.video_id}.json").exists():
            continue
        keypoints = read_openpose_folder(root / "keypoints" / video.video_id, num_frames=video.num_frames)
        feats, centres = keypoint_statistics(keypoints, stride_frames=args.stride_frames, window=args.window)
        save_features(args.out, video.video_id, feats, times=centres / video.fps, stride_frames=args.stride_frames,
                      fps=video.fps, encoder_hash="keypoint-statistics", duration=video.duration)
        written += 1
    print(f"{written} videos written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
