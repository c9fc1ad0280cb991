"""Pieces shared by the dataset readers: problem lists, strict-or-collect reporting, atomic writes.

Every reader either raises :class:`~mmad.errors.DataError` at the first bad row (the default) or,
with ``skip_bad=True``, leaves the bad row out and records a :class:`Problem` for it. The records
come back as a :class:`Records` list whose ``problems`` attribute holds those problems, so
nothing is ever dropped without a trace.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from mmad.errors import DataError

T = TypeVar("T")


@dataclass(frozen=True)
class Problem:
    """One bad item found while reading or checking a dataset.

    Args:
        path: the file or folder concerned.
        where: location inside it ("line 12", "video 'train0003'"), or None.
        message: what is wrong.
    """

    path: str
    where: str | None
    message: str

    def __str__(self) -> str:
        return str(DataError(self.path, self.message, self.where))

    def to_dict(self) -> dict:
        return {"path": self.path, "where": self.where, "message": self.message}


class Records(list[T]):
    """A list of records with the problems met while reading them (``.problems``, may be empty)."""

    def __init__(self, items=(), problems=()):
        super().__init__(items)
        self.problems: list[Problem] = list(problems)


class ProblemSink:
    """Raises :class:`DataError` for a bad item, or collects a :class:`Problem` when ``skip_bad``."""

    def __init__(self, path: str | os.PathLike, *, skip_bad: bool = False):
        self.path = os.fspath(path)
        self.skip_bad = skip_bad
        self.problems: list[Problem] = []

    def report(self, where: str | None, message: str) -> None:
        if not self.skip_bad:
            raise DataError(self.path, message, where)
        self.problems.append(Problem(self.path, where, message))


def read_text_lines(path: str | os.PathLike) -> list[str]:
    """All lines of a UTF-8 text file (without line ends); DataError when missing, binary or empty."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    if path.is_dir():
        raise DataError(path, "is a folder, expected a file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(path, f"not a UTF-8 text file (byte {e.start})") from None
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise DataError(path, "empty file")
    return lines


def parse_int(text: str) -> int:
    """An integer field; accepts "12" and "12.0" but not "12.5", "nan" or ""."""
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        value = float(text)  # raises ValueError for non-numbers
        if not math.isfinite(value) or value != int(value):
            raise ValueError(f"not an integer: {text!r}") from None
        return int(value)


def parse_float(text: str) -> float:
    """A finite float field; ValueError for "", "nan", "inf" or non-numbers."""
    value = float(text.strip())
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {text!r}")
    return value
