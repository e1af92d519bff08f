"""``CSVLogger``: Keras 3's callback that streams each epoch's logs to a CSV file."""

from __future__ import annotations

import collections.abc
import csv
import os

import numpy as np

from reglab.callbacks.callback import Callback
from reglab.errors import ConfigError


def _csv_value(value):
    """Keras's ``handle_value``: strings as they are, 1-D iterables as ``"[a, b]"``."""
    if isinstance(value, str):
        return value
    if isinstance(value, collections.abc.Iterable) and not (
            isinstance(value, np.ndarray) and value.ndim == 0):
        return f'"[{", ".join(map(str, value))}]"'
    return value


class CSVLogger(Callback):
    """Writes one CSV row per epoch: ``epoch`` (0-based) and each logs key, as Keras 3.

    The header is ``epoch`` followed by the first epoch's logs keys, sorted (and, when
    none of them is a validation log, each key again with ``val_``); a key missing from an
    epoch is written as ``NA``. The file is opened at the start of training,
    flushed after every row and closed at the end. With ``append=True`` rows are
    added to an existing file, and the header is written only if the file is empty
    or new. Rows use the csv module's 'excel' dialect (``\\r\\n`` line ends), with
    ``separator`` between fields.

    Args:
        filename: the CSV file, e.g. ``'run/log.csv'``.
        separator: the string between fields.
        append: True to append to an existing file (to continue training), False to
            overwrite it.

    Example:
        >>> CSVLogger("training.log").append
        False
    """

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        if isinstance(filename, os.PathLike):
            filename = os.fspath(filename)
        if not isinstance(filename, str) or not filename:
            raise ConfigError(f"CSVLogger: 'filename' must be a path. Got {filename!r}.")
        if not isinstance(separator, str) or len(separator) != 1:
            raise ConfigError("CSVLogger: 'separator' must be a one-character string. "
                              f"Got {separator!r}.")
        self.sep = separator
        self.filename = filename
        self.append = append
        self.writer = None
        self.keys = None
        self.append_header = True
        self.csv_file = None

    def on_train_begin(self, logs=None):
        if self.append:
            if os.path.exists(self.filename):
                with open(self.filename, encoding="utf-8") as file:
                    self.append_header = not bool(len(file.readline()))
            mode = "a"
        else:
            mode = "w"
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.csv_file = open(self.filename, mode, newline="", encoding="utf-8")  # noqa: SIM115
        self.writer = None
        self.keys = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            # Keras 3: a first epoch without validation logs gives every key a val_ column
            # too (a later epoch's validation, validation_freq's, then has its place)
            if self.keys and not any(key.startswith("val_") for key in self.keys):
                self.keys += [f"val_{key}" for key in self.keys]
        if self.writer is None:
            separator = self.sep

            class Dialect(csv.excel):
                delimiter = separator

            self.writer = csv.DictWriter(self.csv_file, fieldnames=["epoch"] + self.keys,
                                         dialect=Dialect)
            if self.append_header:
                self.writer.writeheader()
        row = {"epoch": epoch}
        row.update((key, _csv_value(logs.get(key, "NA"))) for key in self.keys)
        self.writer.writerow(row)
        self.csv_file.flush()

    def on_train_end(self, logs=None):
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.writer = None
