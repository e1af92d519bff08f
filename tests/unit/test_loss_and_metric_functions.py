"""Keras's loss and metric *functions* (``keras.losses.categorical_crossentropy``...): one
value per sample, on tensors or numpy arrays, against closed forms written here; and a
custom loss built on them weights its samples as Keras does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import reglab as keras
from reglab import losses, metrics
from reglab.errors import ConfigError

RNG = np.random.default_rng(3)
P = RNG.dirichlet(np.ones(4), size=6).astype(np.float32)  # (6, 4) probabilities
LABELS = RNG.integers(0, 4, 6)
ONE_HOT = np.eye(4, dtype=np.float32)[LABELS]


def clipped_log(p):
    return np.log(np.clip(p, 1e-7, 1 - 1e-7))


@pytest.mark.parametrize("as_array", [np.asarray, torch.tensor])
def test_crossentropy_functions_give_each_samples_loss(as_array):
    expected = -clipped_log(P[np.arange(6), LABELS])
    for value in (losses.categorical_crossentropy(as_array(ONE_HOT), as_array(P)),
                  losses.sparse_categorical_crossentropy(as_array(LABELS), as_array(P))):
        assert isinstance(value, torch.Tensor) and value.shape == (6,)
        np.testing.assert_allclose(value.numpy(), expected, rtol=1e-6)
    smoothed = ONE_HOT * 0.8 + 0.2 / 4
    np.testing.assert_allclose(
        losses.categorical_crossentropy(ONE_HOT, P, label_smoothing=0.2).numpy(),
        -(smoothed * clipped_log(P)).sum(axis=1), rtol=1e-6)
    logits = np.log(P) + 1.5
    np.testing.assert_allclose(
        losses.sparse_categorical_crossentropy(LABELS, logits, from_logits=True).numpy(),
        expected, rtol=1e-5)


def test_binary_and_squared_error_functions_reduce_the_last_axis_only():
    y = (RNG.random((6, 3)) > 0.5).astype(np.float32)
    p = RNG.random((6, 3)).astype(np.float32)
    q = np.clip(p, 1e-7, 1 - 1e-7)
    np.testing.assert_allclose(losses.binary_crossentropy(y, p).numpy(),
                               -(y * np.log(q) + (1 - y) * np.log(1 - q)).mean(axis=1),
                               rtol=1e-5)
    for fn in (losses.mean_squared_error, losses.mse, metrics.mean_squared_error):
        np.testing.assert_allclose(fn(y, p).numpy(), ((y - p) ** 2).mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(metrics.mean_absolute_error(y, p).numpy(),
                               np.abs(y - p).mean(axis=1), rtol=1e-6)
    column = p[:, :1]  # (6, 1) predictions against (6,) targets: no (6, 6) broadcast
    assert metrics.mean_squared_error(y[:, 0], column).shape == (6,)
    assert losses.mean_squared_error(y[:, 0], column).shape == (6,)


def test_loss_objects_take_numpy_and_reduce_to_the_batch_mean():
    value = losses.CategoricalCrossentropy()(ONE_HOT, P, sample_weight=np.arange(6.0))
    expected = (-clipped_log(P[np.arange(6), LABELS]) * np.arange(6.0)).sum() / 6
    assert value.shape == () and float(value) == pytest.approx(expected, rel=1e-6)


def test_arguments_the_functions_do_not_take_are_refused_by_name():
    with pytest.raises(ConfigError, match="axis=1"):
        losses.categorical_crossentropy(ONE_HOT, P, axis=1)
    with pytest.raises(ConfigError, match="ignore_class"):
        losses.sparse_categorical_crossentropy(LABELS, P, ignore_class=0)


def test_compile_takes_a_loss_function_as_its_class():
    assert type(losses.resolve(losses.sparse_categorical_crossentropy)) is \
        losses.SparseCategoricalCrossentropy
    assert type(losses.resolve(losses.mse)) is losses.MeanSquaredError
    assert type(losses.resolve("mse")) is losses.MeanSquaredError


def test_a_custom_loss_built_on_a_function_weights_each_sample():
    # Keras: a function's per-sample values are weighted by sample_weight before the mean;
    # the reference is that weighted mean, written here, of the model's own predictions
    x = RNG.random((8, 5)).astype(np.float32)
    weights = np.linspace(0.0, 2.0, 8).astype(np.float32)
    model = keras.Sequential([keras.layers.Dense(4, activation="softmax", input_shape=(5,))])

    def doubled(y_true, y_pred):
        return 2.0 * losses.categorical_crossentropy(y_true, y_pred)

    model.compile(optimizer="sgd", loss=doubled)
    targets = np.eye(4, dtype=np.float32)[RNG.integers(0, 4, 8)]
    probabilities = model.predict(x, verbose=0)
    expected = (2.0 * -(targets * clipped_log(probabilities)).sum(axis=1) * weights).sum() / 8
    result = model.evaluate(x, targets, sample_weight=weights, verbose=0, return_dict=True)
    assert result["loss"] == pytest.approx(expected, rel=1e-5)


def test_a_custom_loss_takes_integer_labels_as_given():
    # Keras passes a user's loss function the targets as they are: (N,) class labels
    # against a (N, 4) softmax, here through the sparse function
    model = keras.Sequential([keras.layers.Dense(4, activation="softmax", input_shape=(5,))])

    def halved(y_true, y_pred):
        return 0.5 * losses.sparse_categorical_crossentropy(y_true, y_pred)

    model.compile(optimizer="sgd", loss=halved)
    x = RNG.random((6, 5)).astype(np.float32)
    expected = 0.5 * -clipped_log(model.predict(x, verbose=0)[np.arange(6), LABELS]).mean()
    assert model.evaluate(x, LABELS, verbose=0) == pytest.approx(expected, rel=1e-5)
    assert np.isfinite(model.fit(x, LABELS, epochs=1, verbose=0).history["loss"][0])
