"""Writing a file so that readers see the old content or the new, never a half-written file."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator
from typing import BinaryIO


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], exclusive: bool = False) -> Iterator[BinaryIO]:
    """Yields a binary handle on a fresh sibling temporary file; when the block ends, the file
    is flushed to disk and renamed over ``path``. If the block raises, the temporary file is
    removed and ``path`` is untouched. With ``exclusive`` an existing ``path`` is never
    replaced: the file is linked into place, and ``FileExistsError`` raised when another
    writer got there first (where the file system has no hard links, checked just before).

    The temporary is created with ``O_EXCL`` (never an existing file) and mode ``0o666``, so
    the umask applies as it does to ``open()``. Its name holds the writer's process id: the
    temporaries of ``path`` left by a writer killed before its rename are removed here.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    _remove_leftovers(directory, os.path.basename(path))
    while True:
        temp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}-"
                                       f"{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                         0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if not exclusive:
            os.replace(temp, path)
        else:
            try:
                os.link(temp, path)  # fails if path exists: never replaces another's file
            except FileExistsError:
                raise
            except OSError:  # no hard links here
                if os.path.lexists(path):
                    raise FileExistsError(errno.EEXIST, "File exists", path) from None
                os.replace(temp, path)
            else:
                os.remove(temp)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temp)
        raise


def _remove_leftovers(directory: str, name: str) -> None:
    """Removes ``.name.<pid>-<hex>.tmp`` files whose writer is no longer running."""
    if os.name == "nt":  # os.kill there ends the process it tests
        return
    prefix = f".{name}."
    try:
        entries = os.listdir(directory)
    except OSError:
        return
    for entry in entries:
        if not (entry.startswith(prefix) and entry.endswith(".tmp")):
            continue
        owner = entry[len(prefix):-len(".tmp")].split("-", 1)[0]
        if not owner.isdigit() or int(owner) == os.getpid() or _running(int(owner)):
            continue  # another writer's (or an older reglab's, without its pid)
        with contextlib.suppress(OSError):
            os.remove(os.path.join(directory, entry))


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # someone else's process: running
        return True
    return True
