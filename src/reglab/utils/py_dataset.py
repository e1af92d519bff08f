"""``PyDataset`` (Keras 3's name; ``Sequence`` is its alias): a dataset of batches by index."""

from __future__ import annotations

import numbers

from reglab.errors import ConfigError


class PyDataset:
    """Base class of a dataset of batches: subclass it with ``__len__`` (the batches of one
    pass; or the ``num_batches`` property) and ``__getitem__(index)`` (batch ``index``: ``(x, y)``, ``(x, y, sample_weight)``,
    or ``x`` alone for ``predict``), and optionally ``on_epoch_end`` (called after each pass,
    to reshuffle say). ``Model.fit``, ``evaluate`` and ``predict`` read it as Keras 3 does
    (see :mod:`reglab.models.datasets`).

    Args:
        workers, use_multiprocessing, max_queue_size: Keras's arguments, checked and kept;
            batches are read in this process, one after another.

    Example:
        >>> import numpy as np
        >>> class Halves(PyDataset):
        ...     def __len__(self):
        ...         return 2
        ...     def __getitem__(self, index):
        ...         return np.full((3, 2), index, "float32"), np.zeros(3)
        >>> len(Halves()), Halves()[1][0].shape
        (2, (3, 2))
    """

    def __init__(self, workers=1, use_multiprocessing=False, max_queue_size=10):
        for name, value in (("workers", workers), ("max_queue_size", max_queue_size)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ConfigError(f"PyDataset: '{name}' must be a positive int. Got {value!r}.")
        if not isinstance(use_multiprocessing, bool):
            raise ConfigError("PyDataset: 'use_multiprocessing' must be True or False. Got "
                              f"{use_multiprocessing!r}.")
        self._workers, self._use_multiprocessing = workers, use_multiprocessing
        self._max_queue_size = max_queue_size

    @property
    def workers(self) -> int:
        return getattr(self, "_workers", 1)

    @property
    def use_multiprocessing(self) -> bool:
        return getattr(self, "_use_multiprocessing", False)

    @property
    def max_queue_size(self) -> int:
        return getattr(self, "_max_queue_size", 10)

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__}: a PyDataset defines "
                                  "__getitem__(index) (one batch).")

    def __iter__(self):
        """The batches of one pass in order (Keras's; endless where the length is unknown,
        until ``__getitem__`` raises IndexError)."""
        count = self.num_batches
        index = 0
        while count is None or index < count:
            try:
                yield self[index]
            except IndexError:
                if count is None:
                    return
                raise
            index += 1

    @property
    def num_batches(self) -> int | None:
        """The batches of one pass (Keras's property): ``len(self)`` where the subclass
        defines ``__len__``, else None (read until ``__getitem__`` raises IndexError); a
        subclass may define this property instead of ``__len__``."""
        return len(self) if hasattr(self, "__len__") else None

    def on_epoch_begin(self):
        """Called before each pass (Keras's hook; nothing by default)."""

    def on_epoch_end(self):
        """Called after each pass (Keras's hook; nothing by default)."""


Sequence = PyDataset
