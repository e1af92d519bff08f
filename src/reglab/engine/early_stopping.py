"""Keras 3's EarlyStopping rule, written once, for one model or each member.

``EarlyStoppingRule`` holds the arguments (with Keras's defaults and checks);
``EarlyStoppingState`` holds what changes during training and decides, at
each epoch's end, whether the run improved, whether to snapshot the weights
and whether to stop. The Keras-style callback and the population engine both
use it, so the rule exists in one place:

- an improvement is ``monitor_op(current - min_delta, best)`` with ``min_delta``
  negated in 'min' mode (strictly better by more than ``min_delta``);
- ``wait`` counts epochs since the last improvement that also beat ``baseline``;
- stop when ``wait >= patience`` and ``epoch > 0``; epochs before
  ``start_from_epoch`` are ignored;
- with ``restore_best_weights``, the first eligible epoch's weights are kept
  even without an improvement, and they are restored at the end of training
  whenever a snapshot exists (Keras 3 behaviour).
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

from reglab import monitors
from reglab.errors import ConfigError
from reglab.monitors import is_improvement


@dataclass(frozen=True)
class EarlyStoppingRule:
    """The arguments of ``keras.callbacks.EarlyStopping`` (verbose aside)."""

    monitor: str = "val_loss"
    min_delta: float = 0.0
    patience: int = 0
    mode: str = "auto"
    baseline: float | None = None
    restore_best_weights: bool = False
    start_from_epoch: int = 0

    def __post_init__(self):
        where = "EarlyStopping"
        if not isinstance(self.monitor, str) or not self.monitor:
            raise ConfigError(f"{where}: 'monitor' must be a metric name. Got {self.monitor!r}.")
        if isinstance(self.patience, bool) or not isinstance(self.patience, numbers.Integral) or self.patience < 0:
            raise ConfigError(f"{where}: 'patience' must be an int >= 0. Got {self.patience!r}.")
        if (isinstance(self.start_from_epoch, bool) or not isinstance(self.start_from_epoch, numbers.Integral)
                or self.start_from_epoch < 0):
            raise ConfigError(f"{where}: 'start_from_epoch' must be an int >= 0. "
                              f"Got {self.start_from_epoch!r}.")
        if isinstance(self.min_delta, bool) or not isinstance(self.min_delta, numbers.Real) \
                or math.isnan(self.min_delta):
            raise ConfigError(f"{where}: 'min_delta' must be a float. Got {self.min_delta!r}.")
        if self.baseline is not None and (isinstance(self.baseline, bool) or not isinstance(
                self.baseline, numbers.Real) or math.isnan(self.baseline)):
            raise ConfigError(f"{where}: 'baseline' must be a number or None. "
                              f"Got {self.baseline!r}.")
        # Keras takes any truth value; a string ('false' is true) is refused as a slip
        if not (isinstance(self.restore_best_weights, bool) or (isinstance(
                self.restore_best_weights, numbers.Integral)
                and self.restore_best_weights in (0, 1))):
            raise ConfigError(f"{where}: 'restore_best_weights' must be True or False. "
                              f"Got {self.restore_best_weights!r}.")
        if self.mode not in ("auto", "min", "max"):
            warnings.warn(f"EarlyStopping mode {self.mode} is unknown, fallback to auto mode.",
                          stacklevel=3)
            object.__setattr__(self, "mode", "auto")
        object.__setattr__(self, "min_delta", abs(float(self.min_delta)))
        # NumPy scalars (a grid's np.int64) as Python ints
        object.__setattr__(self, "patience", int(self.patience))
        object.__setattr__(self, "start_from_epoch", int(self.start_from_epoch))
        if isinstance(self.baseline, numbers.Real) and not isinstance(self.baseline, bool):
            object.__setattr__(self, "baseline", float(self.baseline))

    def direction(self, maximized_metrics: tuple[str, ...] = (),
                  compiled: Mapping[str, str] | None = None) -> str:
        """'min' or 'max', resolving 'auto' as Keras 3 does (:func:`reglab.monitors.direction`)."""
        return monitors.direction(self.monitor, self.mode, maximized_metrics,
                                  compiled=compiled)


@dataclass
class EarlyStoppingState:
    """One run's early-stopping state (Keras's ``wait``, ``best``, ``best_epoch``...)."""

    rule: EarlyStoppingRule
    mode: str = "min"
    #: None until the first monitored value, which is the best whatever it is (NaN too), as
    #: Keras 3 starts its ``best`` at None
    best: float | None = None
    wait: int = 0
    best_epoch: int = 0
    stopped_epoch: int = 0
    has_snapshot: bool = False
    warned_missing: bool = field(default=False, repr=False)

    @classmethod
    def start(cls, rule: EarlyStoppingRule, maximized_metrics: tuple[str, ...] = (),
              compiled: Mapping[str, str] | None = None):
        mode = rule.direction(maximized_metrics, compiled)
        return cls(rule=rule, mode=mode)

    def update(self, epoch: int, logs: dict[str, float]) -> tuple[bool, bool]:
        """Processes one epoch's logs; returns ``(snapshot_weights, stop)``."""
        rule = self.rule
        current = logs.get(rule.monitor)
        if current is None:
            if not self.warned_missing:
                warnings.warn(
                    f"Early stopping conditioned on metric `{rule.monitor}` which is not "
                    f"available. Available metrics are: {','.join(logs)}", stacklevel=3)
                self.warned_missing = True
            return False, False
        if epoch < rule.start_from_epoch:
            return False, False
        snapshot = False
        if rule.restore_best_weights and not self.has_snapshot:
            snapshot, self.has_snapshot, self.best_epoch = True, True, epoch
        self.wait += 1
        if is_improvement(current, self.best, rule.min_delta, self.mode):
            self.best, self.best_epoch = float(current), epoch
            snapshot = snapshot or rule.restore_best_weights
            if rule.baseline is None or is_improvement(current, rule.baseline, rule.min_delta,
                                                       self.mode):
                self.wait = 0
            return snapshot, False
        if self.wait >= rule.patience and epoch > 0:
            self.stopped_epoch = epoch
            return snapshot, True
        return snapshot, False

    @property
    def restores(self) -> bool:
        """True when the snapshot should replace the final weights at the end."""
        return self.rule.restore_best_weights and self.has_snapshot
