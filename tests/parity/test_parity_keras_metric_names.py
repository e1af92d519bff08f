"""compile's metric identifiers side by side with Keras 3: a name is logged as written
("AUC", "Accuracy", "MSE"), Keras's class names and aliases are taken, a second metric of
one name is logged with ``_1``, and EarlyStopping's mode 'auto' finds each one's direction,
so that ``monitor="val_AUC"`` acts as in Keras."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import reglab  # noqa: E402

keras = pytest.importorskip("keras")



@pytest.fixture(autouse=True)
def fresh_names():
    """Keras numbers its metric objects' default names process-wide (precision, precision_1):
    the objects made here are forgotten after each test, in both libraries."""
    yield
    keras.backend.clear_session()
    reglab.backend.clear_session()


X = np.random.default_rng(0).random((64, 4)).astype("float32")
Y = (X[:, 0] > 0.5).astype("float32")


def _fit(lib, metrics, callbacks=(), epochs=1, weighted=None):
    first = ([lib.Input((4,)), lib.layers.Dense(1, activation="sigmoid",
                                                kernel_initializer="zeros")])
    model = lib.Sequential(first)
    model.compile(lib.optimizers.SGD(0.5), "binary_crossentropy", metrics=metrics,
                  weighted_metrics=weighted)
    history = model.fit(X, Y, epochs=epochs, batch_size=16, verbose=0, shuffle=False,
                        validation_split=0.25, callbacks=list(callbacks))
    return model, history.history


@pytest.mark.parametrize("metrics, weighted", [
    (["AUC", "Accuracy", "BinaryAccuracy"], None),
    (["mse", "mse"], None),
    (["MeanSquaredError", "RootMeanSquaredError", "MSE", "MAE", "Precision", "recall"], None),
    (["binary_accuracy", "root_mean_squared_error", "Precision"], None),
    (["mse"], ["mse", "AUC"]),
])
def test_metrics_are_logged_under_keras_s_names_with_keras_s_values(metrics, weighted):
    _, ours = _fit(reglab, metrics, weighted=weighted)
    _, theirs = _fit(keras, metrics, weighted=weighted)
    assert sorted(ours) == sorted(theirs)
    for key, values in theirs.items():
        np.testing.assert_allclose(ours[key], values, rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("metric", ["AUC", "MSE", "Accuracy", "BinaryAccuracy",
                                    "RootMeanSquaredError"])
def test_early_stopping_finds_the_direction_of_a_metric_named_as_keras_names_it(metric):
    stopped = {}
    for lib in (reglab, keras):
        stop = lib.callbacks.EarlyStopping(monitor=f"val_{metric}", patience=1)
        _, history = _fit(lib, [metric], [stop], epochs=12)
        stopped[lib.__name__] = (len(history["loss"]), stop.stopped_epoch)
    assert stopped["reglab"] == stopped["keras"]


def test_a_model_with_metrics_named_as_written_saves_and_loads_them(tmp_path):
    model, _ = _fit(reglab, ["AUC", "mse", "mse"])
    model.save(tmp_path / "m.keras")
    loaded = reglab.models.load_model(tmp_path / "m.keras")
    assert loaded.logged_metric_names == ["AUC", "mse", "mse_1"]
    np.testing.assert_allclose(loaded.evaluate(X, Y, verbose=0),
                               model.evaluate(X, Y, verbose=0), rtol=1e-6)


@pytest.mark.parametrize("case", ["sequence", "image"])
def test_metrics_of_outputs_with_several_axes_are_keras_s(case):
    # a value per position (a Dense on (5, 4) samples; a Conv2D's per-pixel sigmoid): Keras
    # takes the mean over every value, each sample's mean here (the same with equal counts)
    rng = np.random.default_rng(0)
    if case == "sequence":
        x = rng.random((40, 5, 4)).astype("float32")
        y = np.eye(3)[rng.integers(0, 3, (40, 5))].astype("float32")
        loss, metrics = "categorical_crossentropy", ["accuracy", "categorical_accuracy", "mse"]
    else:
        x = rng.random((16, 6, 6, 2)).astype("float32")
        y = (rng.random((16, 6, 6, 1)) > 0.5).astype("float32")
        loss, metrics = "binary_crossentropy", ["accuracy", "mse", "AUC"]
    results = []
    for lib in (reglab, keras):
        last = (lib.layers.Dense(3, activation="softmax", kernel_initializer="ones")
                if case == "sequence" else
                lib.layers.Conv2D(1, 3, padding="same", activation="sigmoid",
                                  kernel_initializer="ones"))
        model = lib.Sequential([lib.Input(x.shape[1:]), last])
        model.compile("sgd", loss, metrics=metrics)
        history = model.fit(x, y, epochs=2, batch_size=8, verbose=0, shuffle=False).history
        results.append((history, model.evaluate(x, y, verbose=0)))
    (ours, our_eval), (theirs, their_eval) = results
    assert sorted(ours) == sorted(theirs)
    for key in theirs:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-4, err_msg=key)
    np.testing.assert_allclose(our_eval, their_eval, rtol=1e-4)


def test_the_loss_functions_keras_s_metrics_module_exports_work_as_metrics():
    # keras.metrics.poisson, .log_cosh, .huber...: the loss functions, as mean metrics
    names = [n for n in dir(keras.metrics) if not n.startswith("_") and n[0].islower()
             and n not in ("get", "serialize", "deserialize")]
    missing = [n for n in names if not hasattr(reglab.metrics, n)]
    assert not missing
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 4)).astype("float32"), rng.random((40, 3)).astype("float32")
    logs, start = {}, None
    for api in (keras, reglab):
        keras.utils.set_random_seed(0)
        model = api.Sequential([api.Input((4,)), api.layers.Dense(3, activation="softplus")])
        start = model.get_weights() if start is None else start
        model.set_weights(start)
        model.compile(optimizer="sgd", loss="mse",
                      metrics=[api.metrics.poisson, api.metrics.log_cosh, api.metrics.huber])
        logs[api.__name__] = model.fit(x, y, epochs=2, verbose=0, shuffle=False).history
    assert sorted(logs["reglab"]) == sorted(logs["keras"])
    for key, values in logs["keras"].items():
        np.testing.assert_allclose(logs["reglab"][key], values, rtol=1e-6, err_msg=key)
