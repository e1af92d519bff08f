"""``ModelCheckpoint``: Keras 3's callback that saves the model (or its weights) each epoch."""

from __future__ import annotations

import numbers
import os
import warnings

import numpy as np

from reglab import monitors
from reglab.callbacks.callback import Callback
from reglab.errors import ConfigError


class ModelCheckpoint(Callback):
    """Saves the model, or only its weights, at the end of every epoch, as Keras 3.

    Args:
        filepath: where to save. It may name ``{epoch}`` (1-based) and any key of
            the epoch's logs, with format specs: ``'model-{epoch:02d}-{val_loss:.2f}.keras'``.
        monitor: the logs key that decides "best" with ``save_best_only``.
        verbose: 0 silent, 1 prints a line each time the callback acts.
        save_best_only: save only when ``monitor`` improved on the best value so far
            (strictly: lower in 'min' mode, higher in 'max' mode). Without a format
            field in ``filepath`` each better model overwrites the previous one.
        save_weights_only: save ``model.save_weights(path)`` when the model has that
            method; otherwise the weights in ``model.get_weights()`` order as a NumPy
            ``.npz`` archive written at exactly ``path`` (entries ``arr_0``, ``arr_1``,
            ...; read back with ``f = np.load(path)``;
            ``model.set_weights([f[f"arr_{i}"] for i in range(len(f.files))])``).
            Otherwise ``model.save(path)`` saves the whole model.
        mode: 'auto', 'min' or 'max'; 'auto' resolves from the monitor's name by the
            same rule as ``EarlyStopping`` (losses are minimized, accuracies maximized).
        save_freq: 'epoch', or a positive int N: save after every N training batches
            (counted across epochs, as Keras counts them), with the batch's running logs;
            ``filepath`` may then also name ``{batch}`` (1-based in its epoch).
        initial_value_threshold: the "best" value to beat before the first save with
            ``save_best_only``.

    Differences from Keras: the file extension is not checked (reglab's formats are
    not Keras's ``.keras``/``.weights.h5``), but for an HDF5 one (``.h5``) where the whole
    model is saved, which is refused (reglab does not write Keras's legacy format); a ``filepath`` field missing from the logs
    raises ``ConfigError`` (Keras raises ``KeyError``); with ``save_best_only`` and the
    monitor missing from the logs the epoch is skipped with a warning, as Keras 3.0
    (later Keras versions save anyway, which can overwrite a better checkpoint).
    As in Keras, ``best`` is kept across ``fit`` calls.

    Example:
        >>> checkpoint = ModelCheckpoint("best.keras", monitor="val_accuracy",
        ...                              save_best_only=True)
        >>> checkpoint.best is None  # Keras 3: the first monitored value is the first best
        True
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto", save_freq="epoch",
                 initial_value_threshold=None):
        super().__init__()
        if isinstance(filepath, os.PathLike):
            filepath = os.fspath(filepath)
        if not isinstance(filepath, str) or not filepath:
            raise ConfigError(f"ModelCheckpoint: 'filepath' must be a path. Got {filepath!r}.")
        from reglab.models.saving import HDF5_SUFFIXES  # saving imports most of reglab

        if save_weights_only and not filepath.endswith(".weights.h5"):
            # Keras refuses it here; save_weights would refuse it after the first epoch
            raise ConfigError(
                f"ModelCheckpoint: with save_weights_only=True, 'filepath' must end in "
                f"'.weights.h5' (Keras's weights file). Got {filepath!r}.")
        if not save_weights_only and filepath.lower().endswith(HDF5_SUFFIXES):
            raise ConfigError(
                f"ModelCheckpoint: 'filepath' {filepath!r} names an HDF5 file, Keras's legacy "
                "model format, which reglab does not write. End it in '.keras' to save the "
                "whole model, or pass save_weights_only=True for the weights ('.weights.h5').")
        if save_freq != "epoch" and (isinstance(save_freq, bool) or
                                     not isinstance(save_freq, numbers.Integral)
                                     or save_freq < 1):
            raise ConfigError(
                f"ModelCheckpoint: 'save_freq' must be 'epoch' or a positive int (save every "
                f"that many batches). Got {save_freq!r}.")
        if save_freq != "epoch":
            save_freq = int(save_freq)
            # the batch hook only here: a callback with it gets each batch's logs
            self.on_train_batch_end = self._save_after_batches
        if not isinstance(monitor, str) or not monitor:
            raise ConfigError(f"ModelCheckpoint: 'monitor' must be a metric name. "
                              f"Got {monitor!r}.")
        if mode not in ("auto", "min", "max"):
            warnings.warn(f"ModelCheckpoint mode '{mode}' is unknown, fallback to auto mode.",
                          stacklevel=2)
            mode = "auto"
        self.filepath = filepath
        self.monitor = monitor
        self.verbose = verbose
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self.mode = mode
        self.save_freq = save_freq
        self.initial_value_threshold = initial_value_threshold
        # Keras resolves the direction at the first epoch's end; here now when the mode is
        # explicit or resolvable from the name. The best stays None until a first value.
        self.monitor_op_mode: str | None = None
        self.best = initial_value_threshold
        if mode != "auto":
            self._resolve_mode()
        self._monitor_checked = False  # Keras's check of an 'auto' monitor, at the first end
        self._batches_since_saving, self._last_batch, self._epoch = 0, None, 0

    def _resolve_mode(self) -> str:
        """'min' or 'max': EarlyStopping's rule (:mod:`reglab.monitors`), so the callbacks
        agree."""
        if self.monitor_op_mode is None:
            self.monitor_op_mode = monitors.direction(
                self.monitor, self.mode, where="ModelCheckpoint",
                compiled=getattr(self.model, "_metric_directions", None))
        return self.monitor_op_mode

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if not self._monitor_checked:
            monitors.check_monitored("ModelCheckpoint", self.monitor, self.mode, logs)
            self._monitor_checked = True
        if self.save_freq == "epoch":
            self._save_if(epoch, None, logs)

    def _save_after_batches(self, batch, logs=None):
        """``on_train_batch_end`` with an int ``save_freq``: Keras's count of the batches
        since the last save (a batch number not above the last one starts a new epoch)."""
        new_epoch = self._last_batch is None or batch <= self._last_batch
        self._batches_since_saving += batch + 1 if new_epoch else batch - self._last_batch
        self._last_batch = batch
        if self._batches_since_saving >= self.save_freq:
            self._batches_since_saving = 0
            self._save_if(self._epoch, batch, dict(logs or {}))

    def _save_if(self, epoch: int, batch: int | None, logs: dict) -> None:
        filepath = self._get_file_path(epoch, batch, logs)
        if self._should_save(epoch, logs, filepath):
            self._save(filepath)
            if self.verbose > 0:
                print(f"\nEpoch {epoch + 1}: finished saving model to {filepath}")

    def _get_file_path(self, epoch: int, batch: int | None, logs: dict) -> str:
        fields = {"epoch": epoch + 1, **({} if batch is None or "batch" in logs
                                          else {"batch": batch + 1}), **logs}
        fields["epoch"] = epoch + 1
        try:
            return self.filepath.format(**fields)
        except KeyError as error:
            raise ConfigError(
                f"ModelCheckpoint: 'filepath' {self.filepath!r} names {error.args[0]!r}, which "
                f"is not in the logs. Available: {', '.join(fields)}.") from None

    def _should_save(self, epoch: int, logs: dict, filepath: str) -> bool:
        if not self.save_best_only:
            if self.verbose > 0:
                print(f"\nEpoch {epoch + 1}: saving model to {filepath}")
            return True
        mode = self._resolve_mode()
        current = logs.get(self.monitor)
        if current is None:  # Keras 3 saves then, as without save_best_only
            warnings.warn(f"Can save best model only with {self.monitor} available.",
                          stacklevel=3)
            return True
        current = float(current)
        best_str = "None" if self.best is None else f"{self.best:.5f}"
        # Keras: monitor_op(current - min_delta, best) with min_delta = 0, i.e. strictly better.
        if monitors.is_improvement(current, self.best, 0.0, mode):
            if self.verbose > 0:
                print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {best_str} to "
                      f"{current:.5f}, saving model to {filepath}")
            self.best = current
            return True
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {best_str}")
        return False

    def _save(self, filepath: str) -> None:
        dirname = os.path.dirname(filepath)
        if dirname:
            os.makedirs(dirname, exist_ok=True)
        if os.path.isdir(filepath):
            raise ConfigError("ModelCheckpoint: 'filepath' must name a file, not an existing "
                              f"directory. Got {filepath!r}.")
        if not self.save_weights_only:
            self.model.save(filepath)
            return
        save_weights = getattr(self.model, "save_weights", None)
        if callable(save_weights):
            save_weights(filepath)
            return
        # A file object, so that NumPy writes at exactly ``filepath`` (given a name, it
        # appends '.npz').
        with open(filepath, "wb") as file:
            np.savez(file, *self.model.get_weights())
