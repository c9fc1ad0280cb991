"""Atomic file writes: a reader never sees a half-written file, a failure leaves the old one.

Every writer of the toolkit that replaces a file (annotation files, manifests, feature caches,
checkpoints, videos) goes through :func:`atomic_path`: the content is written to a temporary file
in the same folder, which is renamed over the target only when writing succeeded and is deleted
otherwise. :class:`FileLock` keeps two processes from writing the same folder at once.
"""

from __future__ import annotations

import atexit
import errno
import json
import logging
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("mmad")

# Errors of a write that the user can act on (a full disk, a read-only folder): reported as a DataError.
_WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


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


def ensure_folder(folder: str | os.PathLike) -> Path:
    """Create ``folder`` (and parents); a file in the way, or no permission, is a DataError naming it."""
    from mmad.errors import DataError

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
        raise DataError(blocker, "is a file, but a folder is needed here") from None
    except OSError as e:
        raise DataError(folder, f"cannot create the folder ({e.strerror or e})") from None
    return folder


def _write_error(path: Path, error: OSError) -> Exception:
    """A DataError for what a user can fix (full disk, read-only folder), else ``error`` itself."""
    from mmad.errors import DataError

    if error.errno in _WRITE_ERRORS:
        return DataError(path, f"cannot write ({error.strerror or error}); any previous version is unchanged")
    return error


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it back at once
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike, *, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``.

    The temporary name ends in ``path``'s suffix, so tools that pick a format by extension (PyAV)
    write the right one. Parent folders are created. If the body raises, the temporary file is removed and ``path``
    is left as it was. With ``durable=True`` the file and its folder are fsynced around the rename
    (for checkpoints, which must survive a crash of the machine).
    """
    path = Path(path)
    ensure_folder(path.parent)
    if path.is_dir():
        from mmad.errors import DataError

        raise DataError(path, "is a folder; cannot write a file there")
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    except OSError as e:
        raise _write_error(path, e) from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        if tmp.exists():  # mkstemp makes it owner-only; give it the mode a plain open() would
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise _write_error(path, e) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", *, durable: bool = False, **kwargs: Any) -> Iterator[IO]:
    """``open()`` for writing that lands the file atomically (see :func:`atomic_path`).

    A full disk, a read-only folder or an output folder that is a file raise
    :class:`~mmad.errors.DataError` naming the target; the previous file stays as it was.
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


# ----------------------------------------------------------------------------- lock files


class FileLock:
    """A lock file that keeps two processes from writing the same run folder or feature cache.

    :meth:`acquire` creates ``path`` exclusively and writes the holder (process id, host, what it
    does, since when) into it. When ``path`` exists and its holder is a live process, it raises
    :class:`~mmad.errors.DataError` naming the lock file and the holder; a lock left by a process
    that no longer runs (on this host) is taken over with a warning. :meth:`release` (also called at
    interpreter exit) removes the file if it is still ours. Use it as a context manager or call
    ``acquire``/``release``.

    Args:
        path: the lock file, e.g. ``RUN_DIR/.lock``.
        purpose: what the holder does, shown to a process that is refused (``"training"``).
    """

    def __init__(self, path: str | os.PathLike, *, purpose: str):
        self.path = Path(path)
        self.purpose = purpose
        self.held = False

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def acquire(self) -> FileLock:
        from mmad.errors import DataError

        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "purpose": self.purpose,
              "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = read_lock_holder(self.path)
                if holder is None:
                    continue  # released meanwhile
                if _holder_alive(holder, self.path):
                    raise DataError(self.path, f"in use by process {holder.get('pid')} on {holder.get('host')} "
                                               f"({holder.get('purpose', '?')}, since {holder.get('since', '?')}); "
                                               "wait for it to finish, or delete this file if that process is gone"
                                    ) from None
                log.warning("%s: taking over the lock of process %s (%s), which no longer runs", self.path,
                            holder.get("pid"), holder.get("purpose", "?"))
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(me, f)
            self.held = True
            atexit.register(self.release)
            return self
        raise DataError(self.path, "could not take the lock (other processes keep taking it)")

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        atexit.unregister(self.release)
        holder = read_lock_holder(self.path)
        if holder is not None and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
            self.path.unlink(missing_ok=True)


def read_lock_holder(path: str | os.PathLike) -> dict[str, Any] | None:
    """The holder written in a lock file (``{}`` when unreadable), or None when there is no lock."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        return {}
    try:
        holder = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _holder_alive(holder: dict[str, Any], path: Path) -> bool:
    """Whether the holder of a lock may still run (another host, or a lock file being written: yes)."""
    pid = holder.get("pid")
    if not isinstance(pid, int):
        try:  # a lock file without a readable holder: being written now, or left by a crash long ago
            return time.time() - path.stat().st_mtime < 10.0
        except FileNotFoundError:
            return False
    if holder.get("host") != socket.gethostname():
        return True
    if pid == os.getpid():
        return False  # our own lock, left by an earlier call that failed
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
