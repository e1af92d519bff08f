"""``EarlyStopping``: Keras 3's callback, on the rule reglab's engine also uses."""

from __future__ import annotations

from reglab import monitors
from reglab.callbacks.callback import Callback
from reglab.engine.early_stopping import EarlyStoppingRule, EarlyStoppingState


class EarlyStopping(Callback):
    """Stops training when ``monitor`` stops improving, exactly as Keras 3.

    An improvement is a change beyond ``min_delta`` in the right direction
    (``mode`` 'auto' picks it from the name); ``patience`` counts epochs without
    one; ``baseline`` must be beaten for the count to reset; epochs before
    ``start_from_epoch`` are ignored; with ``restore_best_weights`` the best
    epoch's weights are restored at the end of training whenever a snapshot
    exists. ``stopped_epoch`` and ``best_epoch`` are set as in Keras.

    Example:
        >>> EarlyStopping(monitor="val_loss", patience=5).patience
        5
    """

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        self.rule = EarlyStoppingRule(monitor, min_delta, patience, mode, baseline,
                                      restore_best_weights, start_from_epoch)
        rule = self.rule  # its numbers as Python's (a NumPy scalar given)
        self.monitor, self.patience, self.verbose = monitor, rule.patience, verbose
        self.baseline, self.restore_best_weights = rule.baseline, restore_best_weights
        self.start_from_epoch, self.mode = rule.start_from_epoch, rule.mode
        self.min_delta = self.rule.min_delta
        self.wait = 0
        self.stopped_epoch = 0
        self.best_epoch = 0
        self.best = None
        self.best_weights = None
        self._state = None
        self._monitor_checked = False  # Keras's check of an 'auto' monitor, at the first end

    def on_train_begin(self, logs=None):
        self._state = EarlyStoppingState.start(
            self.rule, compiled=getattr(self.model, "_metric_directions", None))
        self.wait, self.stopped_epoch, self.best_epoch = 0, 0, 0
        self.best, self.best_weights = self._state.best, None

    def on_epoch_end(self, epoch, logs=None):
        if not self._monitor_checked:
            monitors.check_monitored("EarlyStopping", self.monitor, self.rule.mode, logs or {})
            self._monitor_checked = True
        snapshot, stop = self._state.update(epoch, logs or {})
        self.wait, self.best, self.best_epoch = (self._state.wait, self._state.best,
                                                 self._state.best_epoch)
        if snapshot:
            self.best_weights = self.model.get_weights()
        if stop:
            self.stopped_epoch = self._state.stopped_epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: "
                      f"{self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)

    def get_monitor_value(self, logs):
        return (logs or {}).get(self.monitor)
