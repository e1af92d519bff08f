"""Keras 3's R2Score: compiled (both aggregations, several columns, an adjusted score), as a
weighted metric, by hand with sample weights (a score per column with
class_aggregation=None), saved and read both ways, against Keras on its torch backend."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import warnings  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import reglab  # noqa: E402
from keras_side_by_side import assert_logs_alike, assert_saved_alike, fit_side_by_side  # noqa: E402, I001
from reglab.errors import ConfigError, DataError  # noqa: E402

keras = pytest.importorskip("keras")
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:More independent predictors")]
if keras.backend.backend() != "torch":  # pragma: no cover - another backend chosen outside
    pytest.skip("these comparisons run Keras on its torch backend", allow_module_level=True)


def data(n=90, columns=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype("float32")
    y = (x[:, :columns] * [1.0, -2.0, 0.5][:columns] + rng.normal(scale=0.5, size=(n, columns))
         + [3.0, 0.0, -1.0][:columns]).astype("float32")
    return x, y


def compiled(api):
    m = api.metrics
    return [m.R2Score(name="r2"),
            m.R2Score(class_aggregation="variance_weighted_average", name="r2_var"),
            m.R2Score(num_regressors=4, name="r2_adjusted")]


@pytest.mark.parametrize("columns", [1, 3])
def test_compiled_r2_logs_keras_s_values(columns):
    x, y = data(columns=columns)
    weights = np.random.default_rng(2).uniform(0.2, 2.0, len(x)).astype("float32")
    seen = fit_side_by_side(
        keras, reglab, lambda api: api.Sequential([api.Input((5,)), api.layers.Dense(columns)]),
        lambda api: {"optimizer": api.optimizers.SGD(0.05), "loss": "mse",
                     "metrics": compiled(api),
                     "weighted_metrics": [api.metrics.R2Score(name="wr2")]},
        x, y, validation=40, sample_weight=weights)
    assert_logs_alike(seen, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("build", [
    lambda m: m.R2Score(),
    lambda m: m.R2Score(class_aggregation=None),
    lambda m: m.R2Score(class_aggregation="variance_weighted_average"),
    lambda m: m.R2Score(num_regressors=2),
])
def test_by_hand_with_sample_weights_and_reset(build):
    x, y = data(40)
    rng = np.random.default_rng(5)
    p = y + rng.normal(scale=0.7, size=y.shape).astype("float32")
    w = rng.uniform(0.1, 2.0, 40).astype("float32")
    results = []
    for api in (keras, reglab):
        metric = build(api.metrics)
        metric.update_state(y[:25], p[:25], sample_weight=w[:25])
        metric.update_state(y[25:], p[25:], sample_weight=w[25:])
        results.append(np.asarray(metric.result()))
        metric.reset_state()
        results.append(np.asarray(metric.result()))
        metric.update_state(y[:10], p[:10])
        results.append(np.asarray(metric.result()))
    # Keras sums in float32, reglab's sums by hand in float64: SS_tot = Σy² - Σy·ȳ
    # cancels, so a score near 0 may differ in its 6th decimal
    for mine, theirs in zip(results[3:], results[:3]):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-5)


def test_against_the_closed_form():
    r2 = reglab.metrics.R2Score()
    r2.update_state([[1.0], [2.0], [3.0]], [[1.0], [2.0], [2.0]])
    assert float(r2.result()) == pytest.approx(1 - 1 / 2)  # SS_res 1, SS_tot 2
    adjusted = reglab.metrics.R2Score(num_regressors=1)
    adjusted.update_state([[1.0], [2.0], [3.0], [5.0]], [[1.0], [2.0], [2.0], [5.0]])
    ss_tot = sum((v - 2.75) ** 2 for v in (1, 2, 3, 5))
    plain = 1 - 1 / ss_tot
    assert float(adjusted.result()) == pytest.approx(1 - (1 - plain) * 3 / 2, rel=1e-6)
    constant = reglab.metrics.R2Score(class_aggregation=None)  # SS_tot 0: Keras scores 0
    constant.update_state([[4.0, 1.0], [4.0, 2.0]], [[3.0, 1.0], [4.0, 2.0]])
    np.testing.assert_array_equal(constant.result().numpy(), [0.0, 1.0])
    with warnings.catch_warnings(record=True) as caught:  # p >= n - 1: Keras's fallback
        warnings.simplefilter("always")
        few = reglab.metrics.R2Score(num_regressors=5)
        few.update_state([[1.0], [2.0], [3.0]], [[1.0], [2.0], [2.0]])
        assert float(few.result()) == pytest.approx(0.5)
    assert any("More independent predictors" in str(w.message) for w in caught)


def test_each_member_of_a_population_gets_its_own_score():
    from reglab.engine import Member, Population
    x, y = data()

    def member(seed):
        return Member([reglab.layers.Dense(3, input_shape=(5,))], reglab.optimizers.SGD(0.05),
                      seed=seed)
    metric = [reglab.metrics.R2Score()]
    together = Population([member(1), member(1), member(2)], loss="mse", metrics=metric).fit(
        x, y, batch_size=16, epochs=2, validation_data=(x[:30], y[:30]))
    for position, seed in enumerate((1, 1, 2)):
        alone = Population([member(seed)], loss="mse", metrics=metric).fit(
            x, y, batch_size=16, epochs=2, validation_data=(x[:30], y[:30]))
        assert alone.members[0].history == together.members[position].history


def test_saved_and_read_both_ways(tmp_path):
    def compiled_model(api):
        model = api.Sequential([api.Input((5,)), api.layers.Dense(3)])
        model.compile(optimizer="sgd", loss="mse",
                      metrics=[api.metrics.R2Score(class_aggregation="variance_weighted_average",
                                                   num_regressors=2)])
        return model
    assert_saved_alike(keras, reglab, compiled_model, *data(), tmp_path)


def test_what_cannot_be_logged_or_computed_is_refused():
    x, y = data()
    model = reglab.Sequential([reglab.Input((5,)), reglab.layers.Dense(3)])
    with pytest.raises(ConfigError, match=r"r2_score: a compiled metric logs one number"):
        model.compile(optimizer="sgd", loss="mse",
                      metrics=[reglab.metrics.R2Score(class_aggregation=None)])
        model.fit(x, y, epochs=1, verbose=0)
    for bad, match in [({"class_aggregation": "mean"}, "'class_aggregation' must be one of"),
                       ({"num_regressors": -1}, "'num_regressors' must be an integer >= 0"),
                       ({"dtype": "float16"}, "'dtype' must be None or 'float32'")]:
        with pytest.raises(ConfigError, match=f"R2Score: {match}"):
            reglab.metrics.R2Score(**bad)
    with pytest.raises(DataError, match=r"r2_score: expects targets and outputs of one shape"):
        reglab.metrics.R2Score().update_state(np.zeros((4, 2)), np.zeros((4, 3)))
