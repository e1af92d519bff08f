"""ReduceLROnPlateau: Keras 3's rule on scripted logs, and the rate reaching the engine."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from reglab.callbacks.reduce_lr_on_plateau import ReduceLROnPlateau
from reglab.errors import ConfigError
from reglab.layers import Dense
from reglab.models import Sequential


def _tiny_model_and_data():
    model = Sequential([Dense(4, activation="relu", input_shape=(3,)),
                        Dense(2, activation="softmax")], seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    x = np.random.default_rng(0).random((16, 3)).astype("float32")
    return model, x, np.arange(16) % 2


def _fake_model(lr):
    return SimpleNamespace(optimizer=SimpleNamespace(learning_rate=lr), stop_training=False)


def _run(callback, values, lr=1.0, monitor="val_loss"):
    """Feeds ``values`` as epoch logs; returns (lr after each epoch, logged lr per epoch)."""
    model = _fake_model(lr)
    callback.set_model(model)
    callback.on_train_begin({})
    after, logged = [], []
    for epoch, value in enumerate(values):
        logs = {monitor: value}
        callback.on_epoch_end(epoch, logs)
        after.append(model.optimizer.learning_rate)
        logged.append(logs["learning_rate"])
    return after, logged


def test_patience_cooldown_and_min_lr_follow_keras():
    # best 0.9 at epoch 1; then wait 1, 2 -> reduce (1.0 -> 0.5, cooldown 1); the next
    # epoch ends the cooldown and counts wait 1; wait 2 -> 0.25; then 0.25 -> max(0.125,
    # 0.2) = 0.2; at min_lr nothing changes any more.
    callback = ReduceLROnPlateau(factor=0.5, patience=2, cooldown=1, min_lr=0.2)
    after, logged = _run(callback, [1.0, 0.9] + [0.95] * 9)
    assert after == [1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.2, 0.2, 0.2, 0.2]
    # logs['learning_rate'] is the rate in force during the epoch (read before reducing).
    # (as Keras logs its float32 variable: 0.2 is 0.20000000298023224)
    assert logged == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25] + [float(np.float32(0.2))] * 3
    assert callback.best == 0.9
    assert callback.wait == 3  # not reset while the rate sits at min_lr (Keras)


def test_cooldown_decrements_on_the_epoch_it_is_checked():
    # patience 1, cooldown 2: the cooldown epoch after a reduction and the one after it
    # (counter 2 -> 1 -> 0, then wait 1) give a reduction every second epoch.
    callback = ReduceLROnPlateau(factor=0.5, patience=1, cooldown=2)
    after, _ = _run(callback, [1.0] * 7)
    assert after == [1.0, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125]


def test_improvement_must_beat_min_delta_and_resets_wait():
    callback = ReduceLROnPlateau(factor=0.5, patience=2, min_delta=0.1)
    # 0.95 is not below 1.0 - 0.1; 0.85 is, and resets wait before it reaches patience.
    after, _ = _run(callback, [1.0, 0.95, 0.85, 0.8, 0.8])
    assert after == [1.0, 1.0, 1.0, 1.0, 0.5]
    assert callback.best == 0.85


def _direction(monitor, mode="auto"):
    callback = ReduceLROnPlateau(monitor=monitor, mode=mode)
    assert callback.monitor_op_mode is None  # resolved at the first epoch's end, as Keras
    _run(callback, [1.0], monitor=monitor)
    return callback.monitor_op_mode


def test_max_mode_and_keras_auto_rule():
    """Keras 3.15's rule (MonitorCallback): losses are minimized, metrics that go up (as
    accuracy and auc) maximized, another name needs a mode (an older Keras minimized every
    name without 'acc' in it)."""
    assert _direction("val_accuracy") == "max" and _direction("val_auc") == "max"
    assert _direction("val_loss") == "min" and _direction("val_accuracy", "min") == "min"
    assert _direction("val_mse") == "min"  # an error, as Keras's MeanSquaredError
    with pytest.raises(ConfigError, match="ReduceLROnPlateau: cannot tell whether "
                                          "monitor='val_mystery' should be maximized"):
        _direction("val_mystery")
    callback = ReduceLROnPlateau(monitor="val_accuracy", factor=0.5, patience=1, min_delta=0.05)
    # 0.5 is the first best; 0.54 - 0.05 > 0.5 is false (wait 1: reduce); 0.6 - 0.05 is an
    # improvement
    after, _ = _run(callback, [0.5, 0.54, 0.6, 0.6], monitor="val_accuracy")
    assert after == [1.0, 0.5, 0.5, 0.25]
    assert callback.best == 0.6


def test_the_first_value_is_the_best_whatever_it_is():
    """Keras 3 starts best at None: a NaN first value is the best, and nothing beats it."""
    callback = ReduceLROnPlateau(factor=0.5, patience=1)
    after, _ = _run(callback, [float("nan"), 0.5, 0.4])
    assert after == [1.0, 0.5, 0.25]


def _keras_cut(rate: float, factor: float) -> float:
    """Keras's new rate: its float32 variable's value (read as a Python float) times the
    factor."""
    return float(np.float32(rate)) * factor


def test_rate_at_min_lr_in_float32_is_not_reduced_again():
    # 0.1 -> 0.010000000149011612 (Keras's product of its float32 rate) -> 0.001 (the
    # product, 0.0009999999776482583, raised to min_lr); the float32 rate is then min_lr's
    # in float32, where Keras compares, so it stops reducing (and printing) there, and
    # wait keeps counting.
    callback = ReduceLROnPlateau(factor=0.1, patience=1, min_lr=1e-3)
    after, _ = _run(callback, [1.0] * 5, lr=0.1)
    second = _keras_cut(0.1, 0.1)
    assert second != 0.1 * 0.1 and _keras_cut(second, 0.1) < 1e-3
    assert after[:3] == [0.1, second, 1e-3]
    assert after[3] == after[4] == after[2]
    assert callback.wait == 2


def test_on_train_begin_resets_state():
    callback = ReduceLROnPlateau(patience=1, cooldown=3)
    _run(callback, [1.0, 1.0])
    assert callback.cooldown_counter == 3
    callback.on_train_begin({})
    assert (callback.best, callback.wait, callback.cooldown_counter) == (None, 0, 0)


def test_missing_monitor_warns_and_still_logs_the_rate():
    callback = ReduceLROnPlateau()
    callback.set_model(_fake_model(0.5))
    logs = {"loss": 1.0}
    with pytest.warns(UserWarning, match="conditioned on metric `val_loss` which is not "
                                         "available. Available metrics are: loss,learning_rate"):
        callback.on_epoch_end(0, logs)
    assert logs["learning_rate"] == 0.5


def test_arguments_are_checked():
    with pytest.raises(ConfigError, match=r"ReduceLROnPlateau: 'factor' must be a float < 1.0 "
                                          r"\(new_lr = lr \* factor\). Got 1.0."):
        ReduceLROnPlateau(factor=1.0)
    with pytest.raises(ConfigError, match="'patience' must be an int >= 0. Got -1."):
        ReduceLROnPlateau(patience=-1)
    with pytest.warns(UserWarning, match="ReduceLROnPlateau mode 'up' is unknown"):
        assert ReduceLROnPlateau(mode="up").mode == "auto"


def test_fit_applies_the_new_rate_from_the_next_epoch():
    tiny_model, x, y = _tiny_model_and_data()
    # min_delta=10: only the first epoch improves (the first best), every later one reduces.
    callback = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=10)
    history = tiny_model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[callback])
    assert history.history["learning_rate"] == [float(np.float32(v))
                                                for v in (0.001, 0.001, 0.0005)]
    halved = _keras_cut(0.001, 0.5)
    assert tiny_model.optimizer.learning_rate == _keras_cut(halved, 0.5)
    # The engine trained epoch 2 with the rate set at the end of epoch 1.
    assert tiny_model._population.hyperparameter(0, "learning_rate") == halved
