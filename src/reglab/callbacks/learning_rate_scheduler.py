"""``LearningRateScheduler``: Keras 3's callback that sets the learning rate each epoch."""

from __future__ import annotations

import numbers

import numpy as np

from reglab.callbacks.callback import Callback
from reglab.errors import ConfigError


class LearningRateScheduler(Callback):
    """At each epoch's start, sets ``model.optimizer.learning_rate`` to
    ``schedule(epoch, lr)`` (``lr``: the current rate; a function of ``epoch`` alone is
    called so when the two-argument call raises ``TypeError``, as Keras 3 does); at each
    epoch's end adds ``logs['learning_rate']`` (so ``History`` records it).

    ``epoch`` counts from 0. The new rate must be a float (Keras's rule: ``float``,
    ``numpy.float32`` or ``numpy.float64``), else a ConfigError naming the epoch; a rate
    of 0 or less is refused by the optimizer, as any rate set on it. An optimizer created
    with a ``LearningRateSchedule`` cannot be given a rate (TypeError, as Keras).

    Args:
        schedule: ``f(epoch, lr) -> float`` or ``f(epoch) -> float``.
        verbose: 0 quiet, 1 prints each epoch's rate.

    Example:
        >>> def halve_after_ten(epoch, lr):
        ...     return lr if epoch < 10 else lr * 0.5
        >>> LearningRateScheduler(halve_after_ten).verbose
        0
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise ConfigError(f"LearningRateScheduler: 'schedule' must be a function of "
                              f"(epoch, lr) or (epoch). Got {schedule!r}.")
        if isinstance(verbose, bool) or not isinstance(verbose, numbers.Integral):
            raise ConfigError(f"LearningRateScheduler: 'verbose' must be 0 or 1. "
                              f"Got {verbose!r}.")
        self.schedule = schedule
        self.verbose = int(verbose)

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        try:
            # the rate as Keras's float32 variable reads (0.1 as 0.10000000149)
            rate = self.schedule(epoch, float(np.float32(optimizer.learning_rate)))
        except TypeError:  # Keras's fallback: the one-argument form
            rate = self.schedule(epoch)
        if isinstance(rate, bool) or not isinstance(rate, (float, np.float32, np.float64)):
            raise ConfigError(f"LearningRateScheduler: the output of the 'schedule' function "
                              f"should be a float. Got {rate!r} at epoch {epoch}.")
        optimizer.learning_rate = float(rate)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to "
                  f"{rate}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            # Keras logs its float32 variable's value
            logs["learning_rate"] = float(np.float32(self.model.optimizer.learning_rate))
