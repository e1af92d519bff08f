"""Keras 3's regression and margin losses side by side with Keras itself (torch backend):
each function's per-sample values, each class with sample weights, and training with them
(the same weights after a few epochs); names and saving."""

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

RNG = np.random.default_rng(3)
REGRESSION = (RNG.normal(size=(12, 4)).astype("float32"),
              RNG.normal(size=(12, 4)).astype("float32") * 2)
POSITIVE = (RNG.random((12, 4)).astype("float32") * 3, RNG.random((12, 4)).astype("float32") + 0.1)
PROBABILITIES = (RNG.dirichlet(np.ones(4), 12).astype("float32"),
                 RNG.dirichlet(np.ones(4), 12).astype("float32"))
SIGNS = (RNG.integers(0, 2, (12, 4)).astype("float32"), RNG.normal(size=(12, 4)).astype("float32"))
ONE_HOT = (np.eye(4, dtype="float32")[RNG.integers(0, 4, 12)],
           RNG.normal(size=(12, 4)).astype("float32"))

FUNCTIONS = [
    ("mean_absolute_error", REGRESSION), ("mae", REGRESSION),
    ("mean_absolute_percentage_error", REGRESSION), ("mape", REGRESSION),
    ("mean_squared_logarithmic_error", POSITIVE), ("msle", POSITIVE),
    ("huber", REGRESSION), ("log_cosh", REGRESSION), ("poisson", POSITIVE),
    ("hinge", SIGNS), ("squared_hinge", SIGNS), ("categorical_hinge", ONE_HOT),
    ("kl_divergence", PROBABILITIES), ("kld", PROBABILITIES),
]


@pytest.mark.parametrize(("name", "arrays"), FUNCTIONS, ids=[n for n, _ in FUNCTIONS])
def test_each_function_gives_keras_s_per_sample_values(name, arrays):
    y_true, y_pred = arrays
    got = getattr(reglab.losses, name)(y_true, y_pred)
    # Keras has the short names (mae, kld...) through get() only
    expected = keras.ops.convert_to_numpy(keras.losses.get(name)(y_true, y_pred))
    assert tuple(got.shape) == expected.shape == (12,)
    np.testing.assert_allclose(got.numpy(), expected, rtol=2e-6, atol=1e-6)


CLASSES = [
    ("MeanAbsoluteError", {}, REGRESSION), ("MeanAbsolutePercentageError", {}, REGRESSION),
    ("MeanSquaredLogarithmicError", {}, POSITIVE), ("Huber", dict(delta=0.5), REGRESSION),
    ("LogCosh", {}, REGRESSION), ("Poisson", {}, POSITIVE), ("Hinge", {}, SIGNS),
    ("SquaredHinge", {}, SIGNS), ("CategoricalHinge", {}, ONE_HOT),
    ("KLDivergence", {}, PROBABILITIES),
]


@pytest.mark.parametrize(("name", "arguments", "arrays"), CLASSES, ids=[n for n, _, _ in CLASSES])
def test_each_class_reduces_with_sample_weights_as_keras(name, arguments, arrays):
    y_true, y_pred = arrays
    weights = np.linspace(0.2, 1.8, 12).astype("float32")
    ours = getattr(reglab.losses, name)(**arguments)
    theirs = getattr(keras.losses, name)(**arguments)
    np.testing.assert_allclose(float(ours(y_true, y_pred, sample_weight=weights)),
                               float(keras.ops.convert_to_numpy(
                                   theirs(y_true, y_pred, sample_weight=weights))), rtol=2e-6)
    assert reglab.losses.get(name) is not None and type(reglab.losses.get(name)).__name__ == name


TRAINED = [("mae", "linear", REGRESSION), ("huber", "linear", REGRESSION),
           ("log_cosh", "linear", REGRESSION), ("msle", "softplus", POSITIVE),
           ("poisson", "softplus", POSITIVE), ("squared_hinge", "tanh", SIGNS),
           ("categorical_hinge", "linear", ONE_HOT), ("kl_divergence", "softmax", PROBABILITIES)]


@pytest.mark.parametrize(("loss", "activation", "arrays"), TRAINED,
                         ids=[n for n, _, _ in TRAINED])
def test_training_with_the_loss_gives_keras_s_weights(loss, activation, arrays):
    targets = np.concatenate([arrays[0]] * 4)
    x = np.random.default_rng(4).normal(size=(len(targets), 5)).astype("float32")

    def build(api):
        model = api.Sequential([api.Input((5,)), api.layers.Dense(6, activation="relu"),
                                api.layers.Dense(4, activation=activation)])
        model.compile(optimizer=api.optimizers.SGD(0.05), loss=loss, metrics=["mae"])
        return model
    keras.utils.set_random_seed(2)
    theirs, ours = build(keras), build(reglab)
    ours.set_weights(theirs.get_weights())
    expected = theirs.fit(x, targets, batch_size=12, epochs=3, shuffle=False, verbose=0).history
    got = ours.fit(x, targets, batch_size=12, epochs=3, shuffle=False, verbose=0).history
    np.testing.assert_allclose(got["loss"], expected["loss"], rtol=1e-5)
    np.testing.assert_allclose(got["mae"], expected["mae"], rtol=1e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_model_with_a_new_loss_saves_and_loads(tmp_path):
    model = reglab.Sequential([reglab.layers.Dense(2, input_shape=(3,))])
    model.compile(optimizer="sgd", loss=reglab.losses.Huber(delta=0.3))
    model.save(tmp_path / "model.keras")
    loaded = reglab.models.load_model(tmp_path / "model.keras")
    assert isinstance(loaded.loss, reglab.losses.Huber) and loaded.loss.delta == 0.3
    with pytest.raises(ConfigError, match=r"Huber: 'delta' must be a float >= 0. Got -1"):
        reglab.losses.Huber(delta=-1)


def test_a_custom_metric_function_is_logged_as_keras_logs_it(tmp_path):
    def mean_error(y_true, y_pred):  # written with keras.ops, as a Keras user would
        return keras.ops.mean(y_pred - y_true, axis=-1)

    def big_misses(y_true, y_pred):
        return keras.ops.cast(keras.ops.abs(y_true - y_pred) > 1.0, "float32")

    targets = np.concatenate([REGRESSION[0]] * 4)
    x = np.random.default_rng(4).normal(size=(len(targets), 5)).astype("float32")

    def build(api):
        model = api.Sequential([api.Input((5,)), api.layers.Dense(4)])
        model.compile(optimizer=api.optimizers.SGD(0.05), loss="mse",
                      metrics=[mean_error, big_misses, "mae", api.losses.huber])
        return model
    keras.utils.set_random_seed(2)
    theirs, ours = build(keras), build(reglab)
    ours.set_weights(theirs.get_weights())
    expected = theirs.fit(x, targets, batch_size=12, epochs=2, shuffle=False, verbose=0,
                          validation_data=(x[:12], targets[:12])).history
    got = ours.fit(x, targets, batch_size=12, epochs=2, shuffle=False, verbose=0,
                   validation_data=(x[:12], targets[:12])).history
    assert sorted(got) == sorted(expected)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ours.evaluate(x, targets, verbose=0),
                               theirs.evaluate(x, targets, verbose=0), rtol=1e-5)
    with pytest.raises(ConfigError, match=r"save_model: 'metrics' must be built-in metric "
                                          r"names. Got the function 'mean_error'"):
        ours.save(tmp_path / "model.keras")
