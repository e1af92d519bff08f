"""CSVLogger side by side with Keras's own (torch backend): the same file, byte for byte, for
the same epochs' logs (validation logs from the start, never, or only in later epochs;
keys that come and go; appending to a file)."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

from types import SimpleNamespace  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import reglab  # noqa: E402

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
if keras.backend.backend() != "torch":  # pragma: no cover - another backend chosen outside
    pytest.skip("these comparisons run Keras on its torch backend", allow_module_level=True)

SEQUENCES = {
    "validation every epoch": [{"loss": 0.9, "accuracy": 0.5, "val_loss": 1.0,
                                "val_accuracy": 0.4}] * 3,
    "no validation": [{"loss": 0.9, "accuracy": 0.5}, {"loss": 0.8, "accuracy": 0.6}],
    "validation from the second epoch": [{"loss": 0.9}, {"loss": 0.8, "val_loss": 1.1},
                                         {"loss": 0.7}],
    "a key that comes later": [{"loss": 0.9, "val_loss": 1.0},
                               {"loss": 0.8, "val_loss": 1.1, "learning_rate": 0.01}],
    "values of every kind": [{"loss": np.float32(0.25), "name": "a", "vector": np.array([1, 2]),
                              "scalar": np.array(3.5)}],
}


def _write(api, path, sequences, append=False):
    logger = api.callbacks.CSVLogger(str(path), append=append)
    logger.set_model(SimpleNamespace(stop_training=False, metrics_names=["loss"]))
    for logs_list in sequences:
        logger.on_train_begin({})
        for epoch, logs in enumerate(logs_list):
            logger.on_epoch_end(epoch, dict(logs))
        logger.on_train_end({})
    return path.read_bytes()


@pytest.mark.parametrize("name", sorted(SEQUENCES))
def test_the_file_is_keras_s_byte_for_byte(name, tmp_path):
    runs = [SEQUENCES[name]]
    assert _write(reglab, tmp_path / "ours.csv", runs) == \
        _write(keras, tmp_path / "theirs.csv", runs)


def test_appending_a_second_fit_is_keras_s(tmp_path):
    runs = [SEQUENCES["no validation"], SEQUENCES["validation every epoch"]]
    assert _write(reglab, tmp_path / "ours.csv", runs, append=True) == \
        _write(keras, tmp_path / "theirs.csv", runs, append=True)
