"""The one error type of ``eval``: bad input, located in its file.

``eval`` does not depend on ``mmad``; the command line turns this error into
:class:`mmad.errors.DataError` (same fields, same one-line message).
"""

from __future__ import annotations

import os


class EvalInputError(ValueError):
    """Bad evaluation input: the file (or None for in-memory data), where in it, and the problem.

    The message reads ``"path: where: problem"``, leaving out the parts that are None.
    """

    def __init__(self, path: str | os.PathLike | None, problem: str, where: str | None = None):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        self.where = where
        head = ": ".join(p for p in (self.path, where) if p)
        super().__init__(f"{head}: {problem}" if head else problem)
