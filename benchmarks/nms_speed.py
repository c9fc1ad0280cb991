"""Speed of the per-class Gaussian soft-NMS (detection.nms) against the one-pick-per-round loop.

Candidates are made the way ``detection.postprocess`` makes them from a head output: 52 classes
over the points of a 5-level pyramid on N steps (7.5 steps/s), background logits ~ N(-5, 1.5)
with short random segments, and for the classes with ground truth a logit ~ N(3, 1) at the points
inside each ground-truth segment, predicting that segment with 10% jitter; then sigmoid, the
``pre_nms_topk`` best, seconds, clipping. Shapes (sigma 0.5, min score 1e-3):

- a 15 s video (112 steps, 3 classes with a few actions), 2,000 and 5,000 candidates, 200 kept;
- a long video (2,304 steps, 13 classes with actions), 5,000 candidates, up to 2,000 kept;
- a stress case: 3 classes high at every point of 2,304 steps (actions of 2-13 s tiling the video,
  predicted by every pyramid level), 5,000 candidates, up to 2,000 kept.

Both columns are process CPU time (one thread; other jobs on the machine do not count), the best
of ``--repeats`` runs; "equal" means the same survivors in the same order with scores within
1e-5 relative.

    OMP_NUM_THREADS=1 python benchmarks/nms_speed.py
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
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from detection.assign import pyramid_points  # noqa: E402
from detection.nms import soft_nms  # noqa: E402
from detection.postprocess import loop_soft_nms  # noqa: E402

STEP_SECONDS = 4 / 30  # stride 4 frames at 30 fps
LEVELS = 5


def make_candidates(*, num_steps: int, num_classes: int, active: list[int], topk: int, seed: int,
                    tiling: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidates (segments (M, 2) seconds float32, scores (M,) float32, classes (M,)) of one video."""
    rng = np.random.default_rng(seed)
    ranges = [(0 if level == 0 else 4 * 2 ** (level - 1), 4 * 2**level if level < LEVELS - 1 else 1e4)
              for level in range(LEVELS)]
    position, low, high, _ = pyramid_points(num_steps, regression_ranges=ranges).numpy().T
    shape = (position.size, num_classes)
    logits = rng.normal(-5, 1.5, shape)
    reach = np.maximum(low, 1)[:, None]
    onset = position[:, None] - rng.uniform(0.3, 1.5, shape) * reach * rng.uniform(0.5, 1.5, shape)
    offset = position[:, None] + rng.uniform(0.3, 1.5, shape) * reach * rng.uniform(0.5, 1.5, shape)
    for c in active:
        t = 0.0
        while t < num_steps:
            length = rng.uniform(16, 96) if tiling else rng.uniform(4, 40)
            start, end = t, t + length
            t = end if tiling else end + rng.uniform(20, 200)
            inside = (position >= start) & (position <= end)
            if not tiling:  # only the levels whose regression range fits the action
                inside &= (length / 2 >= low) & (length / 2 <= 2 * high)
            k = int(inside.sum())
            logits[inside, c] = rng.normal(3, 1, k)
            onset[inside, c] = start + rng.normal(0, 0.1, k) * length
            offset[inside, c] = end + rng.normal(0, 0.1, k) * length
    scores = torch.from_numpy(logits).float().sigmoid().flatten()
    segments = torch.from_numpy(np.stack([onset, offset], axis=-1)).float().reshape(-1, 2)
    candidates = torch.nonzero(scores > 1e-3).flatten()
    if candidates.numel() > topk:
        candidates = candidates[scores[candidates].topk(topk).indices]
    seconds = (segments[candidates] * STEP_SECONDS + STEP_SECONDS / 2).clamp(min=0, max=num_steps * STEP_SECONDS)
    long_enough = (seconds[:, 1] - seconds[:, 0]) >= 0.01
    return (seconds[long_enough].numpy(), scores[candidates][long_enough].numpy(),
            (candidates % num_classes)[long_enough].numpy())


SHAPES = [
    ("15 s video", dict(num_steps=112, num_classes=52, active=[3, 7, 20], topk=2000, seed=0), 200),
    ("15 s video", dict(num_steps=112, num_classes=52, active=[3, 7, 20], topk=5000, seed=0), 200),
    ("long video", dict(num_steps=2304, num_classes=52, active=list(range(0, 52, 4)), topk=5000, seed=1), 2000),
    ("3 classes everywhere", dict(num_steps=2304, num_classes=52, active=[1, 2, 3], topk=5000, seed=2,
                                  tiling=True), 2000),
]


def best_cpu_ms(nms, repeats: int, *args, **kwargs) -> tuple[float, tuple[np.ndarray, np.ndarray]]:
    """Best process CPU time in ms of ``nms(*args, **kwargs)`` over ``repeats`` runs, and its result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.process_time()
        result = nms(*args, **kwargs)
        best = min(best, time.process_time() - start)
    return best * 1e3, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of the fast soft-NMS (best shown)")
    parser.add_argument("--loop-repeats", type=int, default=2, help="timed runs of the loop (best shown)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    options = dict(sigma=0.5, min_score=1e-3)
    print("| input | candidates | steps | kept (cap) | survivors | loop ms | new ms | speed-up | equal |")
    print("|---|---|---|---|---|---|---|---|---|")
    all_equal = True
    for name, shape, max_kept in SHAPES:
        segments, scores, classes = make_candidates(**shape)
        inputs = (segments, scores, classes)
        soft_nms(*inputs, max_kept=max_kept, **options)  # warm-up
        loop_ms, (loop_index, loop_scores) = best_cpu_ms(loop_soft_nms, args.loop_repeats, *inputs,
                                                         max_kept=max_kept, **options)
        new_ms, (index, kept) = best_cpu_ms(soft_nms, args.repeats, *inputs, max_kept=max_kept, **options)
        equal = index.tolist() == loop_index.tolist() and np.allclose(kept, loop_scores, rtol=1e-5, atol=0)
        all_equal &= equal
        print(f"| {name} | {scores.size:,} | {shape['num_steps']:,} | {max_kept:,} | {index.size:,} | "
              f"{loop_ms:.1f} | {new_ms:.2f} | {loop_ms / new_ms:.0f}x | {'yes' if equal else 'NO'} |")
    return 0 if all_equal else 1


if __name__ == "__main__":
    sys.exit(main())
