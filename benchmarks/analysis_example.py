"""Example of `mmad analyze` on a generated clinical-style study (for the README).

Generates 290 participants in the paper's groups (ASD 120, PSY 46, TDC 124), one 2-3 minute
video each, with detections in the MMA-52 challenge CSV format and three planted differences:

- "retracting feet": PSY spend more time in it when they do it (intensity odds x 2.5);
- "shaking legs": ASD more often do it at all (engagement odds x 3);
- "turning head": PSY spend less time in it (intensity odds x 0.5).

Then runs ``mmad analyze`` on the files, prints the command, the Table V-like Markdown table
and the wall time, and leaves everything (inputs and outputs) in the output folder.

    python benchmarks/analysis_example.py [--out runs/analysis_example] [--seed 0]
"""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

from mmad.analysis import PlantedEffect, simulate_study
from mmad.cli import main as mmad_main
from mmad.taxonomy import MA52_ACTIONS

PLANTED = (
    PlantedEffect(MA52_ACTIONS.index("retracting feet"), "PSY", intensity_ratio=2.5),
    PlantedEffect(MA52_ACTIONS.index("shaking legs"), "ASD", prob_odds_ratio=3.0),
    PlantedEffect(MA52_ACTIONS.index("turning head"), "PSY", intensity_ratio=0.5),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/analysis_example")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    detections, participants = simulate_study(effects=PLANTED, videos_per_participant=(1, 1), seed=args.seed)
    challenge = detections.rename(columns={"label": "class"})[["video_id", "t_start", "t_end", "class", "score"]]
    challenge.to_csv(out / "detections.csv")
    participants.to_csv(out / "participants.csv", index=False)
    print(f"generated {len(participants)} participants, {len(detections)} detections "
          f"(planted: {', '.join(f'{MA52_ACTIONS[e.action_id]} in {e.group}' for e in PLANTED)})")

    argv = ["analyze", "--detections", str(out / "detections.csv"), "--participants", str(out / "participants.csv"),
            "--out", str(out / "analysis"), "--threshold", "0.3", "--top-actions", "10",
            "--covariates", "age,sex"]
    print("$ mmad " + " ".join(shlex.quote(a) for a in argv) + "\n")
    start = time.perf_counter()
    rc = mmad_main(argv)
    print(f"\nmmad analyze took {time.perf_counter() - start:.1f} s")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
