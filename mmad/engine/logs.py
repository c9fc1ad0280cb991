"""Run-folder logging: ``metrics.jsonl`` (one line per epoch), TensorBoard scalars, console/file log.

``metrics.jsonl`` lines are flat JSON objects, e.g.::

    {"epoch": 3, "step": 120, "lr": 0.0042, "time_s": 12.5, "samples_per_s": 310.2,
     "train/loss": 0.81, "train/ce": 0.74, "val/f1_mean": 0.52, "extra/routing_st_head": 0.48}

``epoch`` counts completed epochs (1 after the first); ``lr`` is the rate of the epoch's last
iteration. The other keys are also the TensorBoard tags of the per-epoch curves (x = global step);
per-iteration curves are tagged ``train_iter/<term>``, ``train_iter/lr`` and
``train_iter/grad_norm``. ``pandas.read_json(path, lines=True)`` gives one column per curve.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("mmad.engine")


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class MetricsLog:
    """Appends one JSON line per epoch to ``path``; on resume, lines past the checkpoint are dropped."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def truncate_after(self, epoch: int) -> None:
        """Keep only lines with ``epoch <= epoch`` (an epoch redone after a crash is logged once)."""
        if not self.path.is_file():
            return
        kept = [line for line in self.path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line).get("epoch", 0) <= epoch]
        self.path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def append(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({k: _json_value(v) for k, v in record.items()}) + "\n")

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]


class ScalarWriter:
    """TensorBoard ``SummaryWriter`` under ``RUN_DIR/tb``, or a no-op when disabled."""

    def __init__(self, log_dir: str | os.PathLike, *, enabled: bool):
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=os.fspath(log_dir))

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is None:
            return
        for tag, value in values.items():
            if value is not None and math.isfinite(value):
                self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def attach_log_handlers(run_dir: Path) -> list[logging.Handler]:
    """Log ``mmad.engine`` INFO lines to ``RUN_DIR/train.log``, and to stderr if nothing else shows them."""
    handlers: list[logging.Handler] = []
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", datefmt="%Y-%m-%d %H:%M:%S")
    file_handler = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
    file_handler.setFormatter(fmt)
    handlers.append(file_handler)
    if not logging.getLogger().handlers and not log.handlers:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(fmt)
        handlers.append(stream)
    for h in handlers:
        log.addHandler(h)
    if log.level == logging.NOTSET or log.level > logging.INFO:
        log.setLevel(logging.INFO)
    return handlers


def detach_log_handlers(handlers: list[logging.Handler]) -> None:
    for h in handlers:
        log.removeHandler(h)
        h.close()


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}"
