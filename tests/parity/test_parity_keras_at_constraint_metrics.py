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
    seen, start = {}, None
    for api in (keras, reglab):
        keras.utils.set_random_seed(0)
        model = api.Sequential([api.Input((6,)), api.layers.Dense(units, activation=activation)])
        start = model.get_weights() if start is None else start
        model.set_weights(start)
        model.compile(optimizer=api.optimizers.SGD(0.1), loss=loss, metrics=metrics(api))
        history = model.fit(x, y, epochs=3, batch_size=16, verbose=0, shuffle=False,
                            validation_data=(x[:50], y[:50])).history
        seen[api.__name__] = (history, model.evaluate(x, y, batch_size=32, verbose=0,
                                                      return_dict=True))
    (k_history, k_eval), (r_history, r_eval) = seen["keras"], seen["reglab"]
    assert sorted(r_history) == sorted(k_history)
    for key, values in k_history.items():
        np.testing.assert_allclose(r_history[key], values, rtol=1e-5, atol=1e-6, err_msg=key)
    for key, value in k_eval.items():
        assert r_eval[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


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
    x, y = data(1)
    for api in (keras, reglab):
        keras.utils.set_random_seed(1)
        model = api.Sequential([api.Input((6,)), api.layers.Dense(1, activation="sigmoid")])
        model.compile(optimizer="sgd", loss="binary_crossentropy", metrics=metrics(api))
        model.fit(x, y, epochs=1, batch_size=32, verbose=0)
        path = tmp_path / f"{api.__name__}.keras"
        model.save(path)
        theirs = model.evaluate(x, y, verbose=0, return_dict=True)
        for loader in (keras.models.load_model, reglab.models.load_model):
            again = loader(path).evaluate(x, y, verbose=0, return_dict=True)
            assert sorted(again) == sorted(theirs)
            for key, value in theirs.items():
                assert again[key] == pytest.approx(value, rel=1e-5, abs=1e-6), (loader, key)


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
