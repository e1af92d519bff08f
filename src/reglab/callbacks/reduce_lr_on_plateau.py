"""``ReduceLROnPlateau``: Keras 3's callback that lowers the learning rate on a plateau."""

from __future__ import annotations

import numbers
import warnings

import numpy as np

from reglab import monitors
from reglab.callbacks.callback import Callback
from reglab.errors import ConfigError


class ReduceLROnPlateau(Callback):
    """Multiplies the learning rate by ``factor`` when ``monitor`` stops improving, as Keras 3.

    At each epoch's end (with the monitored value present): during a cooldown the
    cooldown counter drops by one and ``wait`` is reset; an improvement (beyond
    ``min_delta``) becomes the new ``best`` and resets ``wait``; otherwise, outside a
    cooldown, ``wait`` grows, and once it reaches ``patience`` the learning rate
    becomes ``max(lr * factor, min_lr)`` if ``lr > min_lr`` (compared in float32, as
    Keras compares its float32 variable), the cooldown starts and ``wait`` is reset.

    The new rate is assigned to ``model.optimizer.learning_rate``; ``fit`` applies it
    from the next epoch. ``logs['learning_rate']`` is added at every epoch's end (so
    ``History`` records it), as Keras 3 does; reglab logs the rate as set, where Keras
    logs its float32 rounding.

    Args:
        monitor: the logs key to watch.
        factor: the multiplier, < 1.0.
        patience: epochs without improvement before the rate is reduced.
        verbose: 0 quiet, 1 prints each reduction.
        mode: 'auto', 'min' or 'max'. 'auto' is Keras 3's rule: losses are minimized,
            accuracies (and auc, precision, recall, f1) maximized; another name is a
            ConfigError at the first epoch's end (pass the mode).
        min_delta: the margin an improvement must exceed (its sign ignored).
        cooldown: epochs to wait after a reduction before counting again.
        min_lr: the lower bound of the learning rate.

    Example:
        >>> reduce_lr = ReduceLROnPlateau(monitor="val_loss", factor=0.2, patience=5,
        ...                               min_lr=0.001)
        >>> reduce_lr.factor
        0.2
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0):
        super().__init__()
        where = "ReduceLROnPlateau"
        if not isinstance(monitor, str) or not monitor:
            raise ConfigError(f"{where}: 'monitor' must be a metric name. Got {monitor!r}.")
        for name, value in (("factor", factor), ("min_delta", min_delta), ("min_lr", min_lr)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ConfigError(f"{where}: '{name}' must be a float. Got {value!r}.")
        if factor >= 1.0:
            raise ConfigError(f"{where}: 'factor' must be a float < 1.0 (new_lr = lr * factor). "
                              f"Got {factor!r}.")
        for name, value in (("patience", patience), ("cooldown", cooldown)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ConfigError(f"{where}: '{name}' must be an int >= 0. Got {value!r}.")
        self.monitor = monitor
        # NumPy scalars (a grid's np.float32) as Python numbers
        self.factor = float(factor)
        self.min_lr = float(min_lr)
        self.min_delta = abs(float(min_delta))
        self.patience = int(patience)
        self.verbose = verbose
        self.cooldown = int(cooldown)
        if mode not in ("auto", "min", "max"):
            warnings.warn(f"ReduceLROnPlateau mode '{mode}' is unknown, fallback to auto mode.",
                          stacklevel=2)
            mode = "auto"
        self.mode = mode
        #: 'min' or 'max', resolved at the first epoch's end as Keras 3 does (losses are
        #: minimized, accuracies maximized; another name needs an explicit mode)
        self.monitor_op_mode: str | None = None
        self._reset()

    def _reset(self) -> None:
        """Resets ``best`` (None until a first value, as Keras 3), ``wait`` and the cooldown
        counter."""
        self.best = None
        self.cooldown_counter = 0
        self.wait = 0

    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor_op_mode is None:
            monitors.check_monitored("ReduceLROnPlateau", self.monitor, self.mode, logs or {})
            self.monitor_op_mode = monitors.direction(
                self.monitor, self.mode, where="ReduceLROnPlateau",
                compiled=getattr(self.model, "_metric_directions", None))
        logs = logs if logs is not None else {}
        logs["learning_rate"] = float(np.float32(self.model.optimizer.learning_rate))  # Keras's variable
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(
                f"Learning rate reduction is conditioned on metric `{self.monitor}` which is "
                f"not available. Available metrics are: {','.join(logs)}.", stacklevel=2)
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        # Keras 3: monitor_op(current -+ min_delta, best), strictly
        if monitors.is_improvement(current, self.best, self.min_delta, self.monitor_op_mode):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                self._reduce(epoch)

    def _reduce(self, epoch: int) -> None:
        # Keras reads its float32 variable (0.1 as 0.10000000149) and multiplies that, so
        # rates cut again and again land on its float32 values
        old_lr = float(np.float32(self.model.optimizer.learning_rate))
        if old_lr > np.float32(self.min_lr):  # so a rate already at min_lr stays put
            new_lr = max(old_lr * self.factor, self.min_lr)
            self.model.optimizer.learning_rate = new_lr
            if self.verbose > 0:
                print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to "
                      f"{new_lr}.")
            self.cooldown_counter = self.cooldown
            self.wait = 0
