"""Keras-style progress output: a bar per epoch (``verbose=1``) or a line (``verbose=2``), as
Keras 3's ``Progbar`` writes them (its ANSI bold and colours, elapsed seconds, the time per
step in s, ms or us, values to four decimals or in exponent form when small); ``evaluate``
and ``predict`` print theirs with :func:`progress_line`."""

from __future__ import annotations

import math
import re
import sys
import time

from reglab.callbacks.callback import Callback

_BAR = 20


def format_logs(logs, order: list[str] | None = None, verbose: int = 2) -> str:
    """``accuracy: 0.8521 - loss: 0.4231`` in Keras's order, that of its ``Progbar``: the
    keys as first seen, ``order`` (those of ``verbose=1``'s earlier batches: an epoch's
    training keys, then its ``val_`` keys) extended with ``logs``' others in their own
    order (an epoch's logs sorted, as Keras 3's, then what a callback adds, its
    ``learning_rate``). A value whose size is 1e-3 or less is written in exponent form, as
    Keras's bar writes it (its ``verbose=2`` line tests the value, not its size)."""
    logs = dict(logs)
    order = [] if order is None else order
    order.extend(key for key in logs if key not in order)
    return " - ".join(f"{key}: {_value(logs[key], verbose)}" for key in order if key in logs)


def _value(value, verbose: int) -> str:
    value = float(value)
    large = abs(value) > 1e-3 if verbose == 1 else value > 1e-3
    return f"{value:.4f}" if large or math.isnan(value) else f"{value:.4e}"


def _per_step(seconds: float) -> str:
    """Keras's ``_format_time``: ``5ms/step`` (s at or above a second, us below a ms)."""
    if seconds >= 1 or seconds == 0:
        return f"{seconds:.0f}s/step"
    if seconds >= 1e-3:
        return f"{seconds * 1000:.0f}ms/step"
    return f"{seconds * 1e6:.0f}us/step"


def progress_line(verbose: int, done: int, steps: int, elapsed: float, logs=None,
                  order: list[str] | None = None, eta: bool = False) -> str:
    """One progress line as Keras's ``Progbar`` writes it, without its line ending:
    ``verbose=1``'s bar (its time the estimated time left with ``eta``), or ``verbose=2``'s
    line."""
    per_step = _per_step(elapsed / max(done, 1))
    text = format_logs(logs, order, verbose) if logs else ""
    metrics = f" - {text}" if text else ""
    width = int(math.log10(steps)) + 1 if steps > 0 else 1
    count = f"{done:>{width}}/{steps}"
    if verbose == 2:
        return f"{count} - {elapsed:.0f}s - {per_step}{metrics}"
    filled = int(_BAR * done / max(steps, 1))
    bar = f"\x1b[1m{count}\x1b[0m "
    if filled > 0:
        bar += f"\x1b[32m{'━' * filled}\x1b[0m"
    bar += f"\x1b[37m{'━' * (_BAR - filled)}\x1b[0m"
    shown = f"{elapsed / max(done, 1) * (steps - done):.0f}s" if eta else f"{elapsed:.0f}s"
    return f"{bar} \x1b[1m{shown}\x1b[0m {per_step}{metrics}"


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _in_place(line: str, previous_width: int) -> tuple[str, int]:
    """``line`` written over the previous bar as Keras's Progbar writes it on POSIX (its
    "dynamic display"): backspaces over the previous bar's width, a carriage return, the
    line, spaces over what is left of a longer previous bar; and the line's width."""
    width = len(_ANSI.sub("", line))
    return ("\b" * previous_width + "\r" + line
            + " " * max(previous_width - width, 0)), width


def print_progress(verbose: int, steps: int, elapsed: float, logs=None, stream=None) -> None:
    """The last line of ``evaluate``'s or ``predict``'s progress, as Keras prints it."""
    if not verbose:
        return
    stream = stream or sys.stdout
    line = progress_line(verbose, steps, steps, elapsed, logs)
    stream.write((line if verbose == 2 else _in_place(line, 0)[0]) + "\n")
    stream.flush()


class ProgbarLogger(Callback):
    """Prints ``Epoch i/n`` and a progress bar updated at most every ``interval`` seconds."""

    def __init__(self, verbose: int = 1, interval: float = 0.1, stream=None):
        super().__init__()
        self.verbose = verbose
        self.interval = interval
        self.stream = stream or sys.stdout

    def on_epoch_begin(self, epoch, logs=None):
        epochs = self.params.get("epochs")
        if epochs is None or epochs > 1:  # Keras prints no "Epoch 1/1" for a one-epoch fit
            self.stream.write(f"Epoch {epoch + 1}/{epochs}\n")
            self.stream.flush()
        self._start = self._last = time.perf_counter()
        self._order: list[str] = []  # the keys as first seen this epoch (Keras's Progbar)
        self._width = 0  # the bar's width as last written

    def _line(self, done: int, logs, final: bool) -> str:
        steps = self.params.get("steps") or done
        # verbose=1's bar lists keys as first seen over the epoch; verbose=2's line, the
        # epoch's (Keras)
        return progress_line(self.verbose, done, steps, time.perf_counter() - self._start,
                             logs, self._order if self.verbose == 1 else None, eta=not final)

    def on_train_batch_end(self, batch, logs=None):
        if logs:  # Keras's bar sees every batch's keys, shown or not
            self._order.extend(key for key in logs if key not in self._order)
        if self.verbose != 1:
            return
        now = time.perf_counter()
        if now - self._last < self.interval:
            return
        self._last = now
        text, self._width = _in_place(self._line(batch + 1, logs, final=False), self._width)
        self.stream.write(text)
        self.stream.flush()

    def on_epoch_end(self, epoch, logs=None):
        steps = self.params.get("steps") or 0
        line = self._line(steps, logs, final=True)
        self.stream.write(line if self.verbose == 2 else _in_place(line, self._width)[0])
        self.stream.write("\n")
        self.stream.flush()
