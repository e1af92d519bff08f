"""Keras 3's PearsonCorrelation, ConcordanceCorrelation and LogCoshError: compiled (as objects
and by name), by hand with sample weights, the per-sample functions, and saved and read both
ways, against Keras on its torch backend."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import reglab  # noqa: E402
from keras_side_by_side import assert_logs_alike, assert_saved_alike, fit_side_by_side  # noqa: E402, I001
from reglab.errors import ConfigError  # noqa: E402

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
if keras.backend.backend() != "torch":  # pragma: no cover - another backend chosen outside
    pytest.skip("these comparisons run Keras on its torch backend", allow_module_level=True)

CLASSES = ["PearsonCorrelation", "ConcordanceCorrelation", "LogCoshError"]


def data(n=80, columns=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype("float32")
    y = (x[:, :1] * np.arange(1, columns + 1) + rng.normal(size=(n, columns))).astype("float32")
    return x, y


def test_compiled_log_keras_s_values():
    x, y = data()
    seen = fit_side_by_side(
        keras, reglab, lambda api: api.Sequential([api.Input((5,)), api.layers.Dense(4)]),
        lambda api: {"optimizer": api.optimizers.SGD(0.02), "loss": "mse", "metrics": [
            *(getattr(api.metrics, c)() for c in CLASSES),
            api.metrics.PearsonCorrelation(name="p2"), "concordance_correlation"]},
        x, y, validation=30)
    assert_logs_alike(seen)


@pytest.mark.parametrize("name", CLASSES)
def test_by_hand_with_sample_weights(name):
    x, y = data(30)
    p = y + np.random.default_rng(1).normal(scale=0.8, size=y.shape).astype("float32")
    w = np.linspace(0.1, 2.0, 30).astype("float32")
    results = []
    for api in (keras, reglab):
        metric = getattr(api.metrics, name)()
        metric.update_state(y[:20], p[:20], sample_weight=w[:20])
        metric.update_state(y[20:], p[20:])
        results.append(float(metric.result()))
        metric.reset_state()
        results.append(float(metric.result()))
    np.testing.assert_allclose(results[2:], results[:2], rtol=1e-5, atol=1e-7)


def test_the_functions_against_keras_s_and_the_docstring():
    y_true = [[0, 1, 0.5], [1, 1, 0.2]]
    y_pred = [[0.1, 0.9, 0.5], [1, 0.9, 0.2]]
    t, p = torch.tensor(y_true)[None], torch.tensor(y_pred)[None]
    for mine, theirs in [(reglab.metrics.pearson_correlation, keras.metrics.pearson_correlation),
                         (reglab.metrics.concordance_correlation,
                          keras.metrics.concordance_correlation)]:
        np.testing.assert_allclose(mine(t, p)[0].numpy(),
                                   np.asarray(theirs(np.array(y_true), np.array(y_pred))),
                                   rtol=1e-6)
    np.testing.assert_allclose(reglab.metrics.concordance_correlation(t, p)[0].numpy(),
                               [0.97560976, 0.98765432], rtol=1e-6)


def test_saved_and_read_both_ways(tmp_path):
    def compiled_model(api):
        model = api.Sequential([api.Input((5,)), api.layers.Dense(4)])
        model.compile(optimizer="sgd", loss="mse",
                      metrics=[getattr(api.metrics, c)(name=f"m{i}")
                               for i, c in enumerate(CLASSES)])
        return model
    assert_saved_alike(keras, reglab, compiled_model, *data(), tmp_path)


def test_monitored_in_auto_mode_and_other_axes_refused():
    x, y = data()
    model = reglab.Sequential([reglab.Input((5,)), reglab.layers.Dense(4)])
    model.compile(optimizer="sgd", loss="mse", metrics=["pearson_correlation"])
    stop = reglab.callbacks.EarlyStopping(monitor="val_pearson_correlation", patience=0)
    history = model.fit(x, y, epochs=3, verbose=0, validation_data=(x, y),
                        callbacks=[stop]).history  # 'auto' resolved (else ConfigError)
    assert stop.best == max(history["val_pearson_correlation"])  # maximized
    with pytest.raises(ConfigError, match=r"PearsonCorrelation: only axis=-1"):
        reglab.metrics.PearsonCorrelation(axis=0)
