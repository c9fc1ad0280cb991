"""Progress of long steps, the same way everywhere: a tqdm bar (rate and ETA) on a terminal, one
log line every N items otherwise (a log file, CI, a pipe), nothing under ``mmad -q``.

Wrap the iterable of any loop that can take more than a few seconds::

    for video in progress(videos, desc="extract", unit="video"):
        ...

or, where the loop is not a plain iteration, count by hand::

    with Progress(total=len(items), desc="check videos", unit="video") as bar:
        for item in items:
            ...
            bar.update()

Lines go to the ``mmad.progress`` logger at INFO level; the bar goes to stderr, so stdout stays
clean for results and ``--json``. ``mmad -q`` turns both off, ``mmad -v`` adds debug lines (see
:func:`configure_logging`).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger("mmad.progress")

#: verbosity -> level of the command line's stderr handler (``-q`` = -1, default 0, ``-v`` = 1)
LEVELS = {-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}
#: top-level logger names of the toolkit (``mmad.*`` and the stage packages)
PACKAGES = ("mmad", "recognition", "detection", "eval")
_quiet = False


def _ours(record: logging.LogRecord) -> bool:
    return record.name.split(".", 1)[0] in PACKAGES or record.levelno >= logging.WARNING


class _StderrHandler(logging.StreamHandler):
    """A stream handler that writes to whatever ``sys.stderr`` is at the time of each record."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure_logging(verbosity: int = 0) -> logging.Handler:
    """Show the toolkit's log lines on stderr at the level ``verbosity`` asks for (the CLI's ``-q``/``-v``).

    ``-q`` (-1): warnings and errors only, no progress; default (0): progress and notes; ``-v`` (1):
    debug lines as well. The toolkit's loggers stay at INFO (DEBUG with ``-v``) so files such as a
    run's ``train.log`` keep every line; only what reaches the terminal changes. Calling it again
    replaces the handler of the previous call.
    """
    global _quiet
    verbosity = max(-1, min(1, verbosity))
    reset_logging()
    _quiet = verbosity < 0
    root = logging.getLogger()
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.setLevel(LEVELS[verbosity])
    handler.addFilter(_ours)
    handler._mmad_cli = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    for name in PACKAGES:
        logging.getLogger(name).setLevel(logging.DEBUG if verbosity > 0 else logging.INFO)
    return handler


def reset_logging() -> None:
    """Undo :func:`configure_logging` (the CLI calls it on the way out, so a caller's logging is left as it was)."""
    global _quiet
    _quiet = False
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_mmad_cli", False)]:
        root.removeHandler(old)
    for name in PACKAGES:
        logging.getLogger(name).setLevel(logging.NOTSET)


def _plural(unit: str) -> str:
    return unit + ("es" if unit.endswith(("s", "x", "ch", "sh")) else "s")


def _format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """Count items of a long step and show it (see the module docstring).

    Args:
        total: number of items, when known (rate, percentage and ETA need it).
        desc: what is being done, a few words ("extract", "validation").
        unit: the item's name ("video", "batch").
        every: on a non-terminal, log a line every this many items (default: about 10 lines in all,
            or every 100 items when the total is unknown). The last item always logs a line.
        enabled: False shows nothing (e.g. every rank but 0 under torchrun).
        bar: force the tqdm bar on or off (default: when stderr is a terminal).
    """

    def __init__(self, total: int | None = None, *, desc: str, unit: str = "item", every: int | None = None,
                 enabled: bool = True, bar: bool | None = None):
        self.total = total
        self.desc = desc
        self.unit = unit
        self.count = 0
        self.enabled = enabled and not _quiet
        self.every = every or (max(1, math.ceil(total / 10)) if total else 100)
        self.started = time.perf_counter()
        self._bar = None
        if self.enabled and (sys.stderr.isatty() if bar is None else bar):
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True, file=sys.stderr)

    def update(self, n: int = 1) -> None:
        """Count ``n`` more items done."""
        self.count += n
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
        elif (self.count % self.every < n or self.count == self.total) and log.isEnabledFor(logging.INFO):
            log.info(self.line())

    def line(self) -> str:
        """``desc: 30/300 videos (10%), 2.5 videos/s, ETA 1:48`` (what a non-terminal gets)."""
        elapsed = time.perf_counter() - self.started
        rate = self.count / elapsed if elapsed > 0 else 0.0
        done = f"{self.count}/{self.total}" if self.total else f"{self.count}"
        units = _plural(self.unit)
        text = f"{self.desc}: {done} {units}"
        if self.total:
            text += f" ({100 * self.count / self.total:.0f}%)"
        text += f", {rate:.3g} {units}/s" if rate >= 1 else f", {1 / rate:.3g} s/{self.unit}" if rate else ""
        if self.total and rate > 0 and self.count < self.total:
            text += f", ETA {_format_seconds((self.total - self.count) / rate)}"
        elif self.total and self.count >= self.total:
            text += f", {_format_seconds(elapsed)}"
        return text

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress(iterable: Iterable[T], *, total: int | None = None, desc: str, unit: str = "item",
             every: int | None = None, enabled: bool = True) -> Iterator[T]:
    """Yield the items of ``iterable`` while showing progress (total from ``len()`` when it has one)."""
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with Progress(total, desc=desc, unit=unit, every=every, enabled=enabled) as bar:
        for item in iterable:
            yield item
            bar.update()
