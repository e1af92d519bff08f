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


def _overflowing_fit_data():
    """Four batches of 8 for an MSE regression; the fourth's inputs make every prediction
    about 1e29, whose square overflows float32: that batch's loss is inf, whatever the
    weights (the first three's are finite)."""
    x = np.random.default_rng(1).random((32, 3)).astype("float32")
    x[24:] = 1e30
    return x, np.ones((32, 1), dtype="float32")


class _Seen:
    """A callback that keeps the batch and epoch logs it is given."""

    def __init__(self):
        from reglab.callbacks import Callback

        outer = self
        self.batches, self.epochs = [], []

        class Keeps(Callback):
            def on_train_batch_end(self, batch, logs=None):
                outer.batches.append((batch, dict(logs)))

            def on_epoch_end(self, epoch, logs=None):
                outer.epochs.append((epoch, dict(logs)))
        self.callback = Keeps()


@pytest.mark.parametrize("terminate", [False, True])
def test_the_bad_batch_reaches_the_callbacks_with_keras_s_running_loss(terminate, capsys):
    """As Keras 3: the batch whose loss overflows ends with its running logs (loss inf), a
    TerminateOnNaN stops there, and the epoch's logs are the running ones (loss inf, not
    NaN). reglab stops either way, with the weights before that batch."""
    x, y = _overflowing_fit_data()
    model = Sequential([Dense(1, input_shape=(3,))], seed=0)
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    seen = _Seen()
    callbacks = [seen.callback] + ([TerminateOnNaN()] if terminate else [])
    with pytest.warns(UserWarning, match="epoch 1, batch 4"):
        history = model.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0,
                            callbacks=callbacks)
    assert [batch for batch, _ in seen.batches] == [0, 1, 2, 3]
    assert all(np.isfinite(logs["loss"]) for _, logs in seen.batches[:3])
    assert seen.batches[3][1]["loss"] == np.inf and seen.batches[3][1]["mae"] > 1e28
    assert seen.epochs == [(0, seen.batches[3][1])]
    assert history.history["loss"] == [np.inf]
    assert model.stop_training is terminate
    said = capsys.readouterr().out
    assert ("Batch 3: Invalid loss, terminating training" in said) is terminate
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_a_diverged_fit_with_validation_logs_nan_validation_values():
    x, y = _overflowing_fit_data()
    model = Sequential([Dense(1, input_shape=(3,))], seed=0)
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    with pytest.warns(UserWarning, match="became NaN or infinite"):
        history = model.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0,
                            validation_data=(x[:8], y[:8]))
    assert sorted(history.history) == ["loss", "mae", "val_loss", "val_mae"]
    assert history.history["loss"] == [np.inf] and np.isnan(history.history["val_loss"][0])


def test_train_on_batch_returns_the_bad_batch_s_values_as_keras():
    """Keras returns the batch's loss (inf here) and metrics; reglab's weights stay those
    before the batch, so its mae is that of the weights it keeps (closed form)."""
    x, y = _overflowing_fit_data()
    model = Sequential([Dense(1, input_shape=(3,))], seed=0)
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    kernel, bias = (w.astype(np.float64) for w in model.get_weights())
    with pytest.warns(UserWarning, match="train_on_batch"):
        loss, mae = model.train_on_batch(x[24:], y[24:])
    assert loss == np.inf
    expected = np.abs(x[24:].astype(np.float64) @ kernel + bias - 1).mean()
    assert mae == pytest.approx(expected, rel=1e-5)


def test_a_diverged_epoch_keras_would_not_validate_has_no_validation_values():
    x, y = _overflowing_fit_data()
    model = Sequential([Dense(1, input_shape=(3,))], seed=0)
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    with pytest.warns(UserWarning, match="became NaN or infinite"):
        history = model.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0,
                            validation_data=(x[:8], y[:8]), validation_freq=2)
    assert sorted(history.history) == ["loss", "mae"]  # as Keras's: epoch 1 not validated


def test_a_deferred_check_calls_the_bad_batch_s_hooks_once(monkeypatch, capsys):
    """Off the CPU the engine checks every few steps: the batch hooks have run for the bad
    batch and those after it by then, so they are not called again, and the epoch's
    values are NaN (its running logs hold the later batches too)."""
    import reglab.engine.epoch as epoch

    monkeypatch.setattr(epoch, "divergence_check_steps", lambda device: 8)
    x, y = _overflowing_fit_data()
    x = np.concatenate([x, x[:24]])  # batch 3 overflows, seven batches before the check
    y = np.concatenate([y, y[:24]])
    model = Sequential([Dense(1, input_shape=(3,))], seed=0)
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    seen = _Seen()
    with pytest.warns(UserWarning, match="epoch 1, batch 4"):
        history = model.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0,
                            callbacks=[seen.callback, TerminateOnNaN()])
    batches = [batch for batch, _ in seen.batches]
    assert batches == sorted(set(batches)) and batches[:4] == [0, 1, 2, 3]
    assert capsys.readouterr().out.count("Invalid loss") == 1
    assert len(history.history["loss"]) == 1
