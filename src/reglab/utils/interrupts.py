"""Ctrl-C that reaches Python as another exception.

A SIGINT while torch's C++ code calls back into Python can come out as something else than
``KeyboardInterrupt``: torch's checkpoint writer turns the ``KeyboardInterrupt`` raised in
the middle of its write into ``RuntimeError: [enforce fail at inline_container.cc] ...
unexpected pos`` (seen with a study's per-epoch checkpoint). A study takes a RuntimeError
for a run that fails, retries its runs in halves and goes on: Ctrl-C was lost, and the
study ran to its end. While :func:`noted` is active, a handler notes each SIGINT before it
raises ``KeyboardInterrupt`` as Python's own handler does, and code that catches
``Exception`` around training calls :func:`reraise_if_interrupted` first.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

_received = False


def _note_and_raise(signum, frame):
    global _received
    _received = True
    raise KeyboardInterrupt


@contextlib.contextmanager
def noted() -> Iterator[None]:
    """Notes SIGINTs for the block, where Python's default handler is the one installed and
    this is the main thread (elsewhere, or under another handler, nothing is changed)."""
    global _received
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    _received = False
    signal.signal(signal.SIGINT, _note_and_raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _received = False


def reraise_if_interrupted(error: BaseException) -> None:
    """Raises ``KeyboardInterrupt`` (from ``error``) when a SIGINT was noted: ``error`` is
    then what the interrupt became on its way, not a failure of the work."""
    if _received:
        raise KeyboardInterrupt from error
