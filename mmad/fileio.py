"""Atomic file writes: a reader never sees a half-written file, a failure leaves the old one.

Every writer of the toolkit that replaces a file (annotation files, manifests, feature caches,
checkpoints, videos) goes through :func:`atomic_path`: the content is written to a temporary file
in the same folder, which is renamed over the target only when writing succeeded and is deleted
otherwise.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entry table to disk (best effort; not every file system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike, *, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``.

    The temporary name ends in ``path``'s suffix, so tools that pick a format by extension (PyAV)
    write the right one. Parent folders are created. If the body raises, the temporary file is removed and ``path``
    is left as it was. With ``durable=True`` the file and its folder are fsynced around the rename
    (for checkpoints, which must survive a crash of the machine).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", *, durable: bool = False, **kwargs: Any) -> Iterator[IO]:
    """``open()`` for writing that lands the file atomically (see :func:`atomic_path`).

    Text modes default to UTF-8 and ``newline=""`` (the caller's line endings are kept).
    """
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
        kwargs.setdefault("newline", "")
    with atomic_path(path, durable=durable) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; parent folders are created."""
    with atomic_open(path, "w") as f:
        f.write(text)
    return Path(path)
