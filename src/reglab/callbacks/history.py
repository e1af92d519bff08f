"""``History``: what ``fit`` returns, as in Keras."""

from __future__ import annotations

from reglab.callbacks.callback import Callback


class History(Callback):
    """Records each epoch's logs: ``history.history['loss']`` is a list, one value per epoch.

    Beyond Keras, ``history.penalties`` keeps the split of each epoch's loss into
    ``data_loss`` and ``penalty`` (and their ``val_`` counterparts).
    """

    def __init__(self):
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.penalties: dict[str, list[float]] = {}

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)
        for key, value in getattr(self.model, "_last_penalty_logs", {}).items():
            self.penalties.setdefault(key, []).append(value)
