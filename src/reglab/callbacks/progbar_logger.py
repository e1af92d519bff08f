"""Keras-style progress output: a bar per epoch (``verbose=1``) or a line (``verbose=2``)."""

from __future__ import annotations

import sys
import time

from reglab.callbacks.callback import Callback

_BAR = 20


def format_logs(logs, order: list[str] | None = None) -> str:
    """``accuracy: 0.8521 - loss: 0.4231`` in Keras's order: sorted, or with ``order`` (the
    keys as first seen, extended here with new keys in sorted order, as Keras 3's sorted
    logs bring them) that of its ``verbose=1`` bar: an epoch's training keys, then its
    ``val_`` keys."""
    logs = dict(logs)
    order = [] if order is None else order
    order.extend(key for key in sorted(logs) if key not in order)
    return " - ".join(f"{key}: {logs[key]:.4f}" for key in order if key in logs)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds >= 1 else f"{seconds * 1000:.0f}ms"


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

    def _line(self, done: int, logs, final: bool) -> str:
        steps = self.params.get("steps") or done
        elapsed = time.perf_counter() - self._start
        per_step = _duration(elapsed / max(done, 1)) + "/step"
        # verbose=1's bar lists keys as first seen; verbose=2's line sorts them all (Keras)
        text = format_logs(logs, self._order if self.verbose == 1 else None) if logs else ""
        if self.verbose == 2:
            return f"{done}/{steps} - {_duration(elapsed)} - {per_step}" + (f" - {text}" if text else "")
        filled = int(_BAR * done / max(steps, 1))
        bar = "━" * filled + ("━" if final else " ") * 0 + "─" * (_BAR - filled)
        width = len(str(steps))
        return f"\r{done:>{width}}/{steps} {bar} {_duration(elapsed)} {per_step}" + (
            f" - {text}" if text else "")

    def on_train_batch_end(self, batch, logs=None):
        if logs:  # Keras's bar sees every batch's keys, shown or not
            self._order.extend(key for key in sorted(logs) if key not in self._order)
        if self.verbose != 1:
            return
        now = time.perf_counter()
        if now - self._last < self.interval:
            return
        self._last = now
        self.stream.write(self._line(batch + 1, logs, final=False))
        self.stream.flush()

    def on_epoch_end(self, epoch, logs=None):
        steps = self.params.get("steps") or 0
        line = self._line(steps, logs, final=True)
        self.stream.write(line.lstrip("\r") if self.verbose == 2 else line)
        self.stream.write("\n")
        self.stream.flush()
