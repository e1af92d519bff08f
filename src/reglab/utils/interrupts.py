"""Ctrl-C that reaches Python as another exception.

A SIGINT while torch's C++ code calls back into Python can come out as something else than
``KeyboardInterrupt``: torch's checkpoint writer turns the ``KeyboardInterrupt`` raised in
the middle of its write into ``RuntimeError: [enforce fail at inline_container.cc] ...
unexpected pos`` (seen with a study's per-epoch checkpoint). A study takes a RuntimeError
for a run that fails, retries its runs in halves and goes on: Ctrl-C was lost, and the
study ran to its end. While :func:`noted` is active, a handler notes each SIGINT before it
raises ``KeyboardInterrupt`` as Python's own handler does, and code that catches
``Exception`` around training calls :func:`reraise_if_interrupted` first. Under
:func:`terminate_as_interrupt` (the CLI's commands) a SIGTERM is noted and raised so too,
as :class:`Terminated`.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

#: what a signal noted in the block raised (KeyboardInterrupt or Terminated), else None
_received: type[KeyboardInterrupt] | None = None


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a job scheduler's stop at its time limit, ``docker stop``), raised
    as Ctrl-C is, so that it ends a study as Ctrl-C does: what was saved is kept, the
    cluster closed, and the same command goes on from there."""


def _note_and_raise(signum, frame):
    global _received
    _received = KeyboardInterrupt
    raise KeyboardInterrupt


def _note_and_terminate(signum, frame):
    global _received
    _received = Terminated
    raise Terminated


@contextlib.contextmanager
def noted() -> Iterator[None]:
    """Notes SIGINTs for the block, where Python's default handler is the one installed and
    this is the main thread (elsewhere, or under another handler, nothing is changed)."""
    global _received
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    _received = None
    signal.signal(signal.SIGINT, _note_and_raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _received = None


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raised as :class:`Terminated` for the block (and noted, as SIGINT is under
    :func:`noted`), where its disposition is the default (end the process at once) and this
    is the main thread; elsewhere nothing is changed."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    global _received
    signal.signal(signal.SIGTERM, _note_and_terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _received = None  # noted for the block only (a later failure is not this one)


def reraise_if_interrupted(error: BaseException) -> None:
    """Raises ``KeyboardInterrupt`` (:class:`Terminated` for a SIGTERM; from ``error``) when
    one was noted: ``error`` is then what the interrupt became on its way, not a failure of
    the work."""
    if _received is not None:
        raise _received from error
