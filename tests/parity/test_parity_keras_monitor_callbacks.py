"""EarlyStopping, ModelCheckpoint and ReduceLROnPlateau side by side with Keras itself (torch
backend) on scripted logs: the same decisions epoch by epoch, NaN and min_delta included."""

from __future__ import annotations

import math
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

NAN = math.nan
SEQUENCES = [
    [NAN, 1.0, 0.9, 0.95, 0.9, 0.8, 0.8],
    [1.0, 0.95, 0.85, 0.8, 0.8, 0.7, 0.7],
    [math.inf, 1.0, 1.1, 1.0, 0.9, 0.9, 0.9],
    [1.0] * 7,
    [1.0, 0.7, 0.7000001, 0.39, 0.39, 0.1, 0.1],
]


def _keras_model():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    return model


def _feed(callback, model, values, monitor="val_loss"):
    callback.set_model(model)
    callback.on_train_begin({})
    rates = []
    for epoch, value in enumerate(values):
        callback.on_epoch_end(epoch, {monitor: value})
        # Keras holds the rate in a float32 variable, reglab as set: compared in float32
        rates.append(float(np.float32(float(model.optimizer.learning_rate))))
    return rates


@pytest.mark.parametrize("values", SEQUENCES)
@pytest.mark.parametrize("kwargs", [{"factor": 0.5, "patience": 1},
                                    {"factor": 0.5, "patience": 2, "min_delta": 0.1},
                                    {"factor": 0.5, "patience": 1, "cooldown": 2, "min_lr": 0.2},
                                    {"factor": 0.5, "patience": 1, "min_delta": 0.3}])
def test_reduce_lr_on_plateau(values, kwargs):
    theirs = _feed(keras.callbacks.ReduceLROnPlateau(**kwargs), _keras_model(), values)
    model = SimpleNamespace(optimizer=SimpleNamespace(learning_rate=1.0), stop_training=False)
    ours = _feed(reglab.callbacks.ReduceLROnPlateau(**kwargs), model, values)
    assert ours == theirs


@pytest.mark.parametrize("values", SEQUENCES)
@pytest.mark.parametrize("kwargs", [{"patience": 1}, {"patience": 2, "min_delta": 0.05},
                                    {"patience": 1, "start_from_epoch": 1}])
def test_early_stopping(values, kwargs):
    def stops(callback, model):
        callback.set_model(model)
        callback.on_train_begin({})
        for epoch, value in enumerate(values):
            callback.on_epoch_end(epoch, {"val_loss": value})
            if model.stop_training:
                return epoch, callback.best_epoch, callback.wait
        return None, callback.best_epoch, callback.wait

    model = SimpleNamespace(stop_training=False, get_weights=lambda: [])
    assert stops(reglab.callbacks.EarlyStopping(**kwargs), model) == stops(
        keras.callbacks.EarlyStopping(**kwargs), _keras_model())


@pytest.mark.parametrize("values", SEQUENCES)
def test_model_checkpoint_saves_the_same_epochs(values, tmp_path):
    def saved(callback_class, model):
        callback = callback_class(str(tmp_path / "m.keras"), save_best_only=True)
        callback.set_model(model)
        callback.on_train_begin({})
        epochs = []
        for epoch, value in enumerate(values):
            before = callback.best
            callback.on_epoch_end(epoch, {"val_loss": value})
            if callback.best is not before:
                epochs.append(epoch)
        return epochs

    ours_model = SimpleNamespace(save=lambda *a, **k: None, save_weights=lambda *a, **k: None,
                                 stop_training=False)
    assert saved(reglab.callbacks.ModelCheckpoint, ours_model) == saved(
        keras.callbacks.ModelCheckpoint, _keras_model())


# Logged values as both libraries log them (float32 results as Python floats) that sit on
# a float32 tie once min_delta is applied: Keras compares in float32 (keras.ops).
TIES = [([0.19, 0.20, 0.21, 0.22, 0.22, 0.23], "max", 0.01),
        ([0.3, 0.29, 0.28, 0.27, 0.26, 0.25], "min", 0.01),
        ([2.0, 2.0 - 1e-9, 2.0 - 2e-9, 1.9999999, 1.9999998, 1.9], "min", 0.0),
        ([0.5, 0.5 + 1e-9, 0.5 + 3e-8, 0.5 + 6e-8, 0.6, 0.6], "max", 0.0)]


@pytest.mark.parametrize("values, mode, min_delta", TIES)
def test_improvements_are_judged_in_float32_as_keras_judges_them(values, mode, min_delta):
    values = [float(np.float32(v)) if i % 2 else v for i, v in enumerate(values)]
    monitor = "val_accuracy" if mode == "max" else "val_loss"

    def early_stopping(api, model):
        callback = api.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=3,
                                               min_delta=min_delta)
        callback.set_model(model)
        callback.on_train_begin({})
        seen = []
        for epoch, value in enumerate(values):
            callback.on_epoch_end(epoch, {monitor: value})
            seen.append((callback.wait, callback.best, callback.best_epoch))
        return seen

    model = SimpleNamespace(stop_training=False, get_weights=lambda: [])
    assert early_stopping(reglab, model) == early_stopping(keras, _keras_model())
    kwargs = {"monitor": monitor, "mode": mode, "min_delta": min_delta, "factor": 0.5,
              "patience": 1}
    ours = SimpleNamespace(optimizer=SimpleNamespace(learning_rate=1.0), stop_training=False)
    assert _feed(reglab.callbacks.ReduceLROnPlateau(**kwargs), ours, values, monitor) == \
        _feed(keras.callbacks.ReduceLROnPlateau(**kwargs), _keras_model(), values, monitor)


def _keras_direction(name):
    """'min'/'max' as Keras's callbacks read it from the compiled metric object, or None."""
    metric = keras.metrics.get(name)
    if not isinstance(metric, keras.metrics.Metric):
        metric = keras.metrics.MeanMetricWrapper(metric, name=name)  # as compile wraps it
    direction = getattr(metric, "_direction", None)
    return None if direction is None else ("max" if direction == "up" else "min")


def test_mode_auto_takes_each_compile_metric_in_keras_direction():
    """Every metric compile takes by name improves the way Keras's metric object says, so
    EarlyStopping(monitor='val_mae') works in 'auto' mode on a regression model."""
    from reglab import monitors
    from reglab.metrics import _BY_NAME

    names = sorted(set(_BY_NAME) - {"accuracy"} | {"precision", "recall", "auc"})
    checked = 0
    for name in names:
        want = _keras_direction(name)
        if want is None:
            continue
        for monitor in (name, f"val_{name}"):
            assert monitors.direction(monitor) == want, monitor
        checked += 1
    assert checked >= 15


def test_early_stopping_on_val_mae_in_auto_mode_trains_as_in_keras():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    model = reglab.Sequential([reglab.layers.Dense(1, input_shape=(3,))])
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    stop = reglab.callbacks.EarlyStopping(monitor="val_mae", patience=1)
    history = model.fit(x, y, epochs=3, validation_split=0.25, callbacks=[stop], verbose=0)
    assert "val_mae" in history.history and stop.best == min(history.history["val_mae"])


def _fit_with(api, make_callback, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((48, 5)).astype("float32")
    y = rng.integers(0, 3, 48)
    model = api.Sequential([api.Input((5,)), api.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    callback = make_callback(api, tmp_path)
    try:
        model.fit(x, y, validation_split=0.25, epochs=2, verbose=0, callbacks=[callback])
    except ValueError as error:
        return "raises", str(error)
    return "trains", ""


CALLBACKS = {
    "EarlyStopping": lambda api, monitor, mode, tmp: api.callbacks.EarlyStopping(
        monitor=monitor, mode=mode),
    "ReduceLROnPlateau": lambda api, monitor, mode, tmp: api.callbacks.ReduceLROnPlateau(
        monitor=monitor, mode=mode),
    "ModelCheckpoint": lambda api, monitor, mode, tmp: api.callbacks.ModelCheckpoint(
        str(tmp / f"{api.__name__}.weights.h5"), monitor=monitor, mode=mode,
        save_weights_only=True),
    "ModelCheckpoint best": lambda api, monitor, mode, tmp: api.callbacks.ModelCheckpoint(
        str(tmp / f"{api.__name__}.weights.h5"), monitor=monitor, mode=mode,
        save_weights_only=True, save_best_only=True),
}


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")
@pytest.mark.parametrize("callback", sorted(CALLBACKS))
@pytest.mark.parametrize("monitor,mode", [("val_acc", "auto"), ("val_mse", "auto"),
                                          ("auc", "auto"), ("val_accuracy", "auto"),
                                          ("accuracy", "auto"), ("val_loss", "auto"),
                                          ("val_acc", "max"), ("val_acc", "min")])
def test_an_auto_monitor_that_is_no_compiled_metric_raises_as_in_keras(callback, monitor, mode,
                                                                       tmp_path):
    """Keras 3 raises at the first epoch's end when 'auto' cannot take the direction from
    the loss or a compiled metric (``val_acc`` beside a metric logged as 'accuracy': the old
    name), where a run monitoring nothing would only warn; an explicit mode trains."""
    make = CALLBACKS[callback]
    outcomes = {api.__name__: _fit_with(api, lambda a, tmp: make(a, monitor, mode, tmp),
                                        tmp_path) for api in (keras, reglab)}
    assert outcomes["reglab"][0] == outcomes["keras"][0], outcomes
    if outcomes["reglab"][0] == "raises":
        assert callback.split()[0] in outcomes["reglab"][1]
        assert repr(monitor) in outcomes["reglab"][1] and "accuracy" in outcomes["reglab"][1]


@pytest.mark.parametrize("monitor, metric", [
    ("val_acc2", lambda api: api.metrics.SparseCategoricalAccuracy(name="acc2")),
    ("val_err", lambda api: api.metrics.SparseCategoricalCrossentropy(name="err")),
    ("val_area", lambda api: api.metrics.AUC(name="area")),
])
def test_an_auto_monitor_takes_a_named_metric_object_s_direction_as_keras(monitor, metric):
    """Keras reads the direction from the compiled metric object (its ``_direction``), so a
    metric named freely is monitored the right way up under mode='auto'."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(64, 5)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") if monitor == "val_area" else rng.integers(0, 3, 64)
    units = 1 if monitor == "val_area" else 3
    results = []
    for api in (keras, reglab):
        model = api.Sequential([api.Input((5,)), api.layers.Dense(
            units, activation="sigmoid" if units == 1 else "softmax")])
        if results:
            model.set_weights(results[0][0])
        start = model.get_weights()
        model.compile(optimizer=api.optimizers.SGD(0.5),
                      loss="binary_crossentropy" if units == 1
                      else "sparse_categorical_crossentropy", metrics=[metric(api)])
        # min_delta: no decision on a round-off's difference between the two (AUC's plateau)
        stop = api.callbacks.EarlyStopping(monitor=monitor, patience=1, min_delta=1e-3)
        plateau = api.callbacks.ReduceLROnPlateau(monitor=monitor, patience=1, factor=0.5,
                                                  min_delta=1e-3)
        history = model.fit(x, y, batch_size=16, epochs=6, shuffle=False, verbose=0,
                            validation_data=(x[:32], y[:32]), callbacks=[stop, plateau])
        results.append((start, history.history[monitor], stop.best, stop.stopped_epoch,
                        float(np.float32(float(model.optimizer.learning_rate)))))
    (_, *theirs), (_, *ours) = results
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-5)
    assert ours[1] == pytest.approx(theirs[1], rel=1e-5) and ours[2:] == theirs[2:]


@pytest.mark.parametrize("save_freq, batch_size", [(3, 8), (4, 16), (1, 32)])
def test_model_checkpoint_every_n_batches_saves_where_keras_saves(tmp_path, save_freq,
                                                                  batch_size):
    """An int save_freq counts batches across epochs (40 samples: 5, 3 or 2 batches an
    epoch, the last one short); the files, named by epoch and batch, are Keras's, and each
    holds the weights the model had after that batch."""
    x = np.random.default_rng(0).normal(size=(40, 2)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    saved = {}
    for api in (keras, reglab):
        folder = tmp_path / api.__name__
        model = api.Sequential([api.Input((2,)), api.layers.Dense(1)])
        model.compile(optimizer=api.optimizers.SGD(0.1), loss="mse")
        weights = {}

        class Record(api.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.epoch = epoch

            def on_train_batch_end(self, batch, logs=None, weights=weights):
                weights[(self.epoch + 1, batch + 1)] = self.model.get_weights()
        checkpoint = api.callbacks.ModelCheckpoint(
            str(folder / "m-{epoch}-{batch}.weights.h5"), save_weights_only=True,
            save_freq=save_freq)
        model.fit(x, y, batch_size=batch_size, epochs=3, shuffle=False, verbose=0,
                  callbacks=[Record(), checkpoint])
        saved[api.__name__] = sorted(p.name for p in folder.iterdir())
        for name in saved[api.__name__]:
            epoch, batch = map(int, name[2:].split(".")[0].split("-"))
            model.load_weights(folder / name)
            for got, want in zip(model.get_weights(), weights[(epoch, batch)]):
                np.testing.assert_array_equal(got, want)
    assert saved["reglab"] == saved["keras"] and saved["keras"]


@pytest.mark.parametrize("factor", [0.1, 0.3, 0.7])
def test_reduce_lr_on_plateau_cuts_again_and_again_to_keras_s_float32_rates(factor):
    """Keras multiplies its float32 variable's value (0.1 as 0.10000000149): five cuts in a
    row land on its rates exactly, not one float32 step off."""
    values = [1.0] * 7  # no improvement: a cut every epoch after the first

    def rates(callback, model):
        callback.set_model(model)
        callback.on_train_begin({})
        out = []
        for epoch, value in enumerate(values):
            callback.on_epoch_end(epoch, {"val_loss": value})
            out.append(float(np.float32(float(model.optimizer.learning_rate))))
        return out

    keras_model = _keras_model()
    keras_model.optimizer.learning_rate = 0.1
    theirs = rates(keras.callbacks.ReduceLROnPlateau(factor=factor, patience=1, min_lr=0.0),
                   keras_model)
    model = SimpleNamespace(optimizer=reglab.optimizers.SGD(0.1), stop_training=False)
    ours = rates(reglab.callbacks.ReduceLROnPlateau(factor=factor, patience=1, min_lr=0.0),
                 model)
    assert len(set(theirs)) == len(values)  # a new rate every epoch
    assert ours == theirs


def test_learning_rate_scheduler_passes_and_logs_keras_s_float32_rates():
    """The schedule function is given the rate as Keras's float32 variable reads it, so a
    rate cut by a tenth each epoch follows Keras's values, and History logs them."""
    x = np.random.default_rng(0).standard_normal((32, 2)).astype("float32")
    y = x.sum(axis=1, keepdims=True)

    def run(api, model):
        seen = []
        model.compile(optimizer=api.optimizers.SGD(0.1), loss="mse")
        schedule = api.callbacks.LearningRateScheduler(
            lambda epoch, lr: (seen.append(lr), lr * 0.1)[1])
        history = model.fit(x, y, epochs=5, batch_size=32, verbose=0, shuffle=False,
                            callbacks=[schedule])
        return seen, history.history["learning_rate"]

    theirs = run(keras, keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    ours = run(reglab, reglab.models.Sequential([reglab.layers.Input((2,)),
                                                 reglab.layers.Dense(1)]))
    assert ours == theirs
