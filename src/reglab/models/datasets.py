"""Batches from a dataset read a pass at a time: a torch ``DataLoader`` or a Keras-style
``PyDataset`` (``reglab.utils.PyDataset``, ``keras.utils.PyDataset`` or ``Sequence``).

As Keras 3 reads them in ``fit``: an epoch is one pass over the dataset (``len(dataset)``
batches; a ``DataLoader`` iterated anew, with its own shuffling; a ``PyDataset`` indexed
``0 .. len - 1`` as each batch is read, in an order shuffled at each pass by Python's
``random`` when ``fit``'s ``shuffle`` is on, Keras's default), or ``steps_per_epoch`` batches
going on from where the last epoch stopped. A ``PyDataset``'s hooks are called as Keras 3's
epoch iterator calls them: ``on_epoch_begin`` before each epoch's batches and
``on_epoch_end`` after them, and ``on_epoch_end`` once more before the first epoch of ``fit``
and before ``evaluate`` reads (Keras's iterator ``reset``), so a dataset that reshuffles
there sees the same orders. Each batch is ``(x, y)`` or ``(x, y, sample_weight)`` (a list as
well, as a ``DataLoader`` gives), and the engine trains it as one step, as a generator's.

``evaluate`` and ``predict`` (and ``validation_data``) read one pass (or their first ``steps``
batches) into arrays; ``predict`` also takes batches of ``x`` alone. A ``PyDataset``'s
``workers``/``use_multiprocessing`` are accepted and ignored: batches are read in this process.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from reglab.errors import ConfigError, DataError


def is_dataset(x) -> bool:
    """A torch ``DataLoader``, or an object indexed by batch with ``__len__`` and
    ``on_epoch_end`` (Keras's ``PyDataset``/``Sequence`` protocol), not an array."""
    if isinstance(x, torch.utils.data.DataLoader):
        return True
    if isinstance(x, (np.ndarray, torch.Tensor, list, tuple, dict, str)):
        return False
    return (hasattr(x, "__getitem__") and hasattr(x, "__len__")
            and callable(getattr(x, "on_epoch_end", None))
            and not hasattr(x, "image_data_generator"))


def length(dataset) -> int | None:
    """Batches in one pass, or None where the dataset does not say (an iterable dataset)."""
    try:
        return int(len(dataset))
    except TypeError:
        return None


class EpochBatches:
    """``next()`` gives the dataset's batches pass after pass (see the module)."""

    def __init__(self, dataset, shuffle: bool = False):
        self.dataset, self.length = dataset, length(dataset)
        self.shuffle = bool(shuffle) and self.length is not None
        self.index, self._iterator = 0, None

    def _hook(self, name: str) -> None:
        if not isinstance(self.dataset, torch.utils.data.DataLoader):
            hook = getattr(self.dataset, name, None)
            if callable(hook):
                hook()

    def reset(self) -> None:
        """Keras's iterator reset: ``on_epoch_end`` before the first epoch."""
        self._hook("on_epoch_end")

    def begin_epoch(self) -> None:
        self._hook("on_epoch_begin")

    def end_epoch(self) -> None:
        self._hook("on_epoch_end")

    def pass_over(self) -> bool:
        return self.length is not None and self.index >= self.length

    def __iter__(self):
        return self

    def _new_pass(self):
        if isinstance(self.dataset, torch.utils.data.DataLoader):
            return iter(self.dataset)
        if self.length is None:  # a PyDataset without a length: indexed until it stops
            return _indexed_until_stop(self.dataset)
        order = list(range(self.length))
        if self.shuffle:  # Keras's PyDataset adapter: the batch order, by Python's random
            random.shuffle(order)
        return (self.dataset[i] for i in order)

    def __next__(self):
        if self._iterator is None or self.pass_over():
            self._iterator, self.index = self._new_pass(), 0
        try:
            batch = next(self._iterator)
        except StopIteration:  # a pass shorter than its length, or one of unknown length
            if self.index == 0:
                raise
            self._iterator, self.index = self._new_pass(), 0
            batch = next(self._iterator)
        self.index += 1
        return batch


def _indexed_until_stop(dataset):
    index = 0
    while True:
        try:
            batch = dataset[index]
        except IndexError:
            return
        yield batch
        index += 1


def steps_for(where: str, dataset, steps_per_epoch: int | None) -> int:
    """The batches of an epoch: ``steps_per_epoch``, else one pass."""
    if steps_per_epoch is not None:
        return steps_per_epoch
    count = length(dataset)
    if count is None:
        raise ConfigError(f"{where}: a dataset without a length ({type(dataset).__name__}) "
                          "needs 'steps_per_epoch' (how many batches make one epoch). Got None.")
    if count == 0:
        raise DataError(f"{where}: the dataset ({type(dataset).__name__}) has no batches.")
    return count


def arrays(where: str, dataset, steps: int | None, need_y: bool, reset: bool):
    """One pass (or the first ``steps`` batches) of ``dataset`` as ``(x, y, sample_weight)``
    arrays, each None where the batches have none; ``reset``: Keras's iterator reset first
    (``evaluate`` and validation, not ``predict``)."""
    from reglab.engine.data import as_numpy

    count = steps_for(where, dataset, steps)
    batches = EpochBatches(dataset)
    if reset:
        batches.reset()
    batches.begin_epoch()
    parts: tuple[list, list, list] = ([], [], [])
    for step in range(count):
        try:
            batch = next(batches)
        except StopIteration:
            raise DataError(f"{where}: the dataset ran out after {step} batches; expected "
                            f"{count}.") from None
        if isinstance(batch, list):
            batch = tuple(batch)
        if not isinstance(batch, tuple):
            batch = (batch,)
        if not 1 <= len(batch) <= 3 or (need_y and len(batch) < 2):
            raise DataError(f"{where}: dataset batch {step} must be (x, y) or (x, y, "
                            f"sample_weight){' or x alone' if not need_y else ''}. Got a "
                            f"{type(batch).__name__} of {len(batch)}.")
        for name, part, value in zip(("x", "y", "sample_weight"), parts, batch):
            part.append(as_numpy(f"{where}: dataset batch {step}", name, value))
    batches.end_epoch()
    joined = []
    for name, part in zip(("x", "y", "sample_weight"), parts):
        if part and len(part) != len(parts[0]):
            raise DataError(f"{where}: the dataset's batches must all have '{name}' or none "
                            f"have it. Got it in {len(part)} of {len(parts[0])} batches.")
        joined.append(np.concatenate(part) if part else None)
    return tuple(joined)
