"""CSVLogger: header, rows, NA, append, separator, flushing and closing."""

from __future__ import annotations

import csv
from types import SimpleNamespace

import numpy as np
import pytest

from reglab.callbacks.csv_logger import CSVLogger
from reglab.errors import ConfigError
from reglab.layers import Dense
from reglab.models import Sequential


def _rows(path, separator=","):
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.reader(file, delimiter=separator))


def _logger(path, **kwargs):
    logger = CSVLogger(path, **kwargs)
    logger.set_model(SimpleNamespace(metrics_names=["accuracy"], stop_training=False))
    return logger


def test_header_is_epoch_then_sorted_keys_and_each_epoch_is_flushed(tmp_path):
    path = tmp_path / "log.csv"
    logger = _logger(path)
    logger.on_train_begin({})
    logger.on_epoch_end(0, {"val_loss": 0.5, "loss": 0.75, "accuracy": 0.25})
    # flushed before training ends
    assert _rows(path) == [["epoch", "accuracy", "loss", "val_loss"], ["0", "0.25", "0.75", "0.5"]]
    logger.on_epoch_end(1, {"loss": 0.5, "accuracy": 0.5, "extra": 1.0})  # val_loss missing
    logger.on_train_end({})
    assert logger.csv_file.closed
    assert _rows(path)[2] == ["1", "0.5", "0.5", "NA"]
    assert path.read_bytes().endswith(b"\r\n")  # csv's 'excel' dialect, as Keras


def test_append_keeps_the_existing_header_and_overwrite_replaces_the_file(tmp_path):
    path = tmp_path / "log.csv"
    for append in (False, True):
        logger = _logger(path, append=append)
        logger.on_train_begin({})
        logger.on_epoch_end(0, {"loss": 1.0})
        logger.on_train_end({})
    # no validation logs in the first epoch: a val_ column for each key (Keras 3)
    assert _rows(path) == [["epoch", "loss", "val_loss"], ["0", "1.0", "NA"], ["0", "1.0", "NA"]]
    logger = _logger(path)  # append=False starts over
    logger.on_train_begin({})
    logger.on_epoch_end(0, {"loss": 2.0})
    logger.on_train_end({})
    assert _rows(path) == [["epoch", "loss", "val_loss"], ["0", "2.0", "NA"]]


def test_append_to_an_empty_file_writes_the_header(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("")
    logger = _logger(path, append=True)
    logger.on_train_begin({})
    logger.on_epoch_end(0, {"loss": 1.0})
    logger.on_train_end({})
    assert _rows(path) == [["epoch", "loss", "val_loss"], ["0", "1.0", "NA"]]


def test_separator_and_iterable_values(tmp_path):
    path = tmp_path / "log.csv"
    logger = _logger(path, separator=";")
    logger.on_train_begin({})
    logger.on_epoch_end(0, {"loss": 1.0, "name": "a", "vector": np.array([1, 2]),
                            "val_loss": 2.0})
    logger.on_train_end({})
    assert _rows(path, ";") == [["epoch", "loss", "name", "val_loss", "vector"],
                                ["0", "1.0", "a", "2.0", '"[1, 2]"']]
    with pytest.raises(ConfigError, match="CSVLogger: 'separator' must be a one-character "
                                          "string. Got ', '."):
        CSVLogger(path, separator=", ")


def test_fit_writes_one_row_per_epoch(tmp_path):
    model = Sequential([Dense(4, activation="relu", input_shape=(3,)),
                        Dense(2, activation="softmax")], seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    x = np.random.default_rng(0).random((16, 3)).astype("float32")
    y = np.arange(16) % 2
    path = tmp_path / "training.log"
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0, validation_data=(x, y),
                        callbacks=[CSVLogger(path)])
    rows = _rows(path)
    assert rows[0] == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    assert [row[0] for row in rows[1:]] == ["0", "1"]
    assert [float(row[2]) for row in rows[1:]] == history.history["loss"]


@pytest.mark.parametrize("as_flow", [False, True])
def test_a_fit_refused_for_its_data_leaves_the_log_as_it_was(as_flow, tmp_path):
    """Keras's fit builds the model from the data before any callback runs: an x of the
    wrong shape is refused and the log of an earlier run is kept (was emptied)."""
    from reglab.errors import DataError
    from reglab.preprocessing.image import ImageDataGenerator

    path = tmp_path / "log.csv"
    path.write_text("epoch,loss\n0,1.0\n")
    model = Sequential([Dense(1, input_shape=(4,))])
    model.compile("adam", "mse")
    x, y = np.ones((8, 5, 1, 1)), np.ones(8)
    data = ImageDataGenerator().flow(x, y, batch_size=4) if as_flow else (x.reshape(8, 5), y)
    with pytest.raises(DataError, match=r"first layer expects samples of shape \(4,\)"):
        if as_flow:
            model.fit(data, epochs=1, verbose=0, callbacks=[CSVLogger(str(path))])
        else:
            model.fit(*data, epochs=1, verbose=0, callbacks=[CSVLogger(str(path))])
    assert path.read_text() == "epoch,loss\n0,1.0\n"
