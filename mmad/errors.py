"""Errors raised for bad user input.

A :class:`DataError` always names the file, the row or frame where it can, and what is
wrong. The command line prints its one-line message and exits with status 2.
"""

from __future__ import annotations

import os


class DataError(ValueError):
    """Bad input data: a file, a row or frame, and the problem.

    Args:
        path: the offending file or folder.
        problem: what is wrong, in a few words.
        where: optional location inside the file ("row 12", "frame 40", "key 'fps'").
    """

    def __init__(self, path: str | os.PathLike | None, problem: str, where: str | None = None):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        self.where = where
        parts = []
        if self.path is not None:
            parts.append(self.path)
        if where:
            parts.append(where)
        head = ": ".join(parts)
        super().__init__(f"{head}: {problem}" if head else problem)


class ConfigError(ValueError):
    """A configuration problem: unknown key, wrong type, bad value. One-line message."""
