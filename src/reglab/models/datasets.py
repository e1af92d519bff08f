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

A dataset without a length (an ``IterableDataset``'s loader) is read to its end each epoch,
and with ``steps_per_epoch`` an epoch also ends where it runs out (Keras's too).

``evaluate`` and ``predict`` (and ``validation_data``) read one pass (or its first ``steps``
batches, never beyond the pass) into arrays and step through them in the size the batches
came in; ``predict`` also takes batches of ``x`` alone. Validation reads its dataset once per
``fit`` (Keras reads it again at each validation). A ``PyDataset``'s
``workers``/``use_multiprocessing`` are accepted and ignored: batches are read in this process.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from reglab.errors import DataError


def is_dataset(x) -> bool:
    """A torch ``DataLoader``, or an object indexed by batch with ``__len__`` and
    ``on_epoch_end`` (Keras's ``PyDataset``/``Sequence`` protocol), not an array."""
    if isinstance(x, torch.utils.data.DataLoader):
        return True
    if isinstance(x, (np.ndarray, torch.Tensor, list, tuple, dict, str)):
        return False
    from reglab.preprocessing.image import NumpyArrayIterator  # read as tensors, not batches

    return (hasattr(x, "__getitem__")
            and (hasattr(x, "__len__") or hasattr(type(x), "num_batches"))
            and callable(getattr(x, "on_epoch_end", None))
            and not isinstance(x, NumpyArrayIterator))


def length(dataset) -> int | None:
    """Batches in one pass (``len``, or a PyDataset's ``num_batches``), or None where the
    dataset does not say (an iterable dataset, a PyDataset read until it raises IndexError)."""
    try:
        if not isinstance(dataset, torch.utils.data.DataLoader) and \
                hasattr(type(dataset), "num_batches"):
            count = dataset.num_batches
            return None if count is None else int(count)
        return int(len(dataset))
    except (TypeError, NotImplementedError):
        return None


class EpochBatches:
    """``next()`` gives the dataset's batches pass after pass (see the module)."""

    def __init__(self, dataset, shuffle: bool = False):
        self.dataset, self.length = dataset, length(dataset)
        self.shuffle = bool(shuffle) and self.length is not None
        self.index, self._iterator, self._exhausted = 0, None, False

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
        """Whether the present pass has ended: its ``length`` batches read, or its iterator
        ran out (the next read starts a new pass)."""
        return self._exhausted or (self.length is not None and self.index >= self.length)

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
        """The next batch; StopIteration where the present pass runs out (a pass of unknown
        length, or shorter than its length): the reader ends its epoch there, as Keras's."""
        if self._iterator is None or self.pass_over():
            self._iterator, self.index, self._exhausted = self._new_pass(), 0, False
        try:
            batch = next(self._iterator)
        except StopIteration:
            self._exhausted = True
            raise
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


def steps_for(where: str, dataset, steps_per_epoch: int | None) -> int | None:
    """The batches of an epoch: ``steps_per_epoch``, else one pass (None: until the
    dataset's iterator runs out, for one of unknown length)."""
    if steps_per_epoch is not None:
        return steps_per_epoch
    count = length(dataset)
    if count == 0:
        raise DataError(f"{where}: the dataset ({type(dataset).__name__}) has no batches.")
    return count
