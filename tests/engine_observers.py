"""Engine observers the tests share."""

from __future__ import annotations


class EndEpochAt:
    """Ends the epoch after batch ``step`` of ``epoch`` (``population.end_epoch_requested``,
    as Keras's stop_training set within an epoch does); records the epochs that ended."""

    def __init__(self, epoch, step):
        self.at, self.epoch, self.ends = (epoch, step), None, []

    def on_train_begin(self, population):
        self.population = population

    def on_epoch_begin(self, epoch):
        self.epoch = epoch

    def on_train_batch_end(self, step):
        if (self.epoch, step) == self.at:
            self.population.end_epoch_requested = True

    def on_epoch_end(self, epoch, logs):
        self.ends.append(epoch)


def record_augmented_batches(monkeypatch) -> list:
    """The list the engine's augmented batches are appended to from now on (each as the
    model receives it), by wrapping ``reglab.engine.augmentation.augment_batch``."""
    from reglab.engine import augmentation

    seen = []
    original = augmentation.augment_batch

    def recording(*args, **kwargs):
        out = original(*args, **kwargs)
        seen.append(out.detach().clone())
        return out
    monkeypatch.setattr(augmentation, "augment_batch", recording)
    return seen
