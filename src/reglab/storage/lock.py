"""One writer per study directory: ``reglab run`` holds ``study.lock`` while it trains.

The lock is an advisory ``flock`` on the file, which the operating system releases when
its holder exits in any way (a ``kill -9`` included), so a dead holder never blocks the
next run. The file says who holds it (pid, host, since when) for the message a second
``reglab run`` on the same directory gets. On systems without ``fcntl`` (Windows) there
is no lock.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from reglab.errors import StoreError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_NAME = "study.lock"


class StudyLock:
    """Held from :meth:`acquire` to :meth:`release` (or the end of a ``with`` block)."""

    def __init__(self, directory):
        self.path = Path(directory) / LOCK_NAME
        self._handle = None

    def acquire(self) -> StudyLock:
        """Takes the lock, or raises :class:`StoreError` naming its holder."""
        if fcntl is None:
            return self
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = _describe(handle.read())
            handle.close()
            raise StoreError(
                f"{self.path.parent}: in use by another `reglab run` ({holder}). Wait for it "
                "to finish, or stop it; a run that was killed leaves no lock behind.") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": time.strftime("%Y-%m-%d %H:%M:%S %Z")}))
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> StudyLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


@contextmanager
def unheld(directory) -> Iterator[bool]:
    """Whether no ``reglab run`` holds ``directory``'s lock, keeping it unheld while the block
    runs; the lock file is neither created nor written (a reader's check, which leaves the
    directory as it was). No lock file: no run has used the directory, True."""
    path = Path(directory) / LOCK_NAME
    if fcntl is None or not path.is_file():
        yield True
        return
    try:
        handle = open(path, encoding="utf-8")
    except OSError:
        yield False
        return
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held (BlockingIOError), or not lockable here
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _describe(text: str) -> str:
    try:
        info = json.loads(text)
        return f"pid {info['pid']} on {info['host']}, since {info['since']}"
    except (ValueError, KeyError, TypeError):
        return "holder unknown"
