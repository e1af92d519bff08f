"""Keras 3's SensitivityAtSpecificity, SpecificityAtSensitivity, PrecisionAtRecall and
RecallAtPrecision: compiled (sigmoid and softmax heads, a linear head whose outputs leave
[0, 1], one threshold or many), by hand with sample weights, against closed forms, and saved
and read both ways, against Keras on its torch backend."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import reglab  # noqa: E402
from keras_side_by_side import assert_logs_alike, assert_saved_alike, fit_side_by_side  # noqa: E402, I001
from reglab.errors import ConfigError  # noqa: E402

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
if keras.backend.backend() != "torch":  # pragma: no cover - another backend chosen outside
    pytest.skip("these comparisons run Keras on its torch backend", allow_module_level=True)


def metrics(api):
    m = api.metrics
    return [m.SensitivityAtSpecificity(0.6, name="sens"),
            m.SpecificityAtSensitivity(0.8, num_thresholds=17, name="spec"),
            m.PrecisionAtRecall(0.5, name="prec"),
            m.RecallAtPrecision(0.7, num_thresholds=1, name="rec"),
            m.RecallAtPrecision(0.2, num_thresholds=3, name="rec3")]


def data(units, n=120, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    if units == 1:
        return x, (x[:, 0] + rng.normal(scale=1.0, size=n) > 0).astype("float32")[:, None]
    return x, np.eye(units, dtype="float32")[(x[:, :units] + rng.normal(size=(n, units))).argmax(1)]


@pytest.mark.parametrize("units, activation, loss", [
    (1, "sigmoid", "binary_crossentropy"), (3, "softmax", "categorical_crossentropy"),
    (1, None, "mse")])  # a linear head: predictions outside [0, 1] are clipped
def test_compiled_logs_keras_s_values(units, activation, loss):
    x, y = data(units)
    seen = fit_side_by_side(
        keras, reglab,
        lambda api: api.Sequential([api.Input((6,)), api.layers.Dense(units, activation=activation)]),
        lambda api: {"optimizer": api.optimizers.SGD(0.1), "loss": loss,
                     "metrics": metrics(api)}, x, y)
    assert_logs_alike(seen)


@pytest.mark.parametrize("index", range(5))
def test_by_hand_with_sample_weights(index):
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, (50, 1)).astype("float32")
    p = np.clip(0.6 * y + rng.random((50, 1)) * 0.7 - 0.1, -0.2, 1.1).astype("float32")
    p[:3, 0] = [0.0, 1.0, 0.5]  # the ends and a threshold
    w = rng.uniform(0.1, 2.0, 50).astype("float32")
    results = []
    for api in (keras, reglab):
        metric = metrics(api)[index]
        metric.update_state(y[:30], p[:30], sample_weight=w[:30])
        metric.update_state(y[30:], p[30:])
        results.append(float(metric.result()))
        metric.reset_state()
        results.append(float(metric.result()))
    np.testing.assert_allclose(results[2:], results[:2], rtol=1e-6, atol=1e-7)


def test_against_closed_forms():
    y = np.array([[1], [1], [1], [0], [0], [0]], dtype="float32")
    p = np.array([[0.9], [0.8], [0.3], [0.7], [0.2], [0.1]], dtype="float32")
    # at threshold 0.5 (one threshold): tp 2, fn 1, fp 1, tn 2
    one = reglab.metrics.PrecisionAtRecall(0.6, num_thresholds=1)
    one.update_state(y, p)
    assert float(one.result()) == pytest.approx(2 / 3)
    none = reglab.metrics.PrecisionAtRecall(0.7, num_thresholds=1)  # recall 2/3 < 0.7
    none.update_state(y, p)
    assert float(none.result()) == 0.0
    # many thresholds: specificity 1 needs the threshold above 0.7: sensitivity 2/3
    best = reglab.metrics.SensitivityAtSpecificity(1.0)
    best.update_state(y, p)
    assert float(best.result()) == pytest.approx(2 / 3)


def test_saved_and_read_both_ways(tmp_path):
    def compiled_model(api):
        model = api.Sequential([api.Input((6,)), api.layers.Dense(1, activation="sigmoid")])
        model.compile(optimizer="sgd", loss="binary_crossentropy", metrics=metrics(api))
        return model
    assert_saved_alike(keras, reglab, compiled_model, *data(1), tmp_path)


@pytest.mark.parametrize(("build", "match"), [
    (lambda m: m.SensitivityAtSpecificity(1.5), r"'specificity' must be a number in \[0, 1\]"),
    (lambda m: m.PrecisionAtRecall(-0.1), r"'recall' must be a number in \[0, 1\]"),
    (lambda m: m.RecallAtPrecision(0.5, num_thresholds=0), r"'num_thresholds' must be an "
                                                           r"integer > 0"),
])
def test_bad_arguments_are_refused_where_keras_refuses_them(build, match):
    with pytest.raises(ConfigError, match=match):
        build(reglab.metrics)
    with pytest.raises(ValueError):
        build(keras.metrics)
    with pytest.raises(ConfigError, match=r"'class_id' is not supported"):
        reglab.metrics.PrecisionAtRecall(0.5, class_id=1)
