"""TerminateOnNaN: stops on a NaN or infinite batch loss, and only then."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from reglab.callbacks.terminate_on_nan import TerminateOnNaN
from reglab.layers import Dense
from reglab.models import Sequential


def _callback(**kwargs):
    callback = TerminateOnNaN(**kwargs)
    callback.set_model(SimpleNamespace(stop_training=False))
    return callback


@pytest.mark.parametrize("loss", [float("nan"), float("inf"), -np.inf, np.float32("nan")])
def test_invalid_loss_stops_training(loss, capsys):
    callback = _callback()
    callback.on_train_batch_end(3, {"loss": loss})
    assert callback.model.stop_training is True
    assert capsys.readouterr().out == "Batch 3: Invalid loss, terminating training\n"


def test_finite_or_missing_loss_does_not_stop():
    callback = _callback()
    callback.on_train_batch_end(0, {"loss": 1e30})
    callback.on_train_batch_end(1, {})
    callback.on_train_batch_end(2, None)
    assert callback.model.stop_training is False


def test_raise_error():
    with pytest.raises(RuntimeError, match="NaN or Inf loss encountered at batch 2"):
        _callback(raise_error=True).on_train_batch_end(2, {"loss": float("nan")})


def test_fit_with_finite_losses_runs_every_epoch():
    model = Sequential([Dense(4, activation="relu", input_shape=(3,)),
                        Dense(2, activation="softmax")], seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    x = np.random.default_rng(0).random((16, 3)).astype("float32")
    history = model.fit(x, np.arange(16) % 2, epochs=2, batch_size=8, verbose=0,
                        callbacks=[TerminateOnNaN()])
    assert len(history.history["loss"]) == 2 and not model.stop_training
