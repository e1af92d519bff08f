"""Parity in float64: losses and accuracy metrics against closed forms written in numpy.

Keras 3 (``from_logits=False``) clips probabilities to ``[1e-7, 1 - 1e-7]`` after
normalizing them by their sum; label smoothing mixes ``y * (1 - s) + s / K`` (categorical)
or ``y * (1 - s) + s / 2`` (binary); the reduction is ``sum(loss * weight) / batch``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reglab import losses, metrics
from reglab.errors import ConfigError

F64 = torch.float64
EPS = 1e-7


def probs(n, k, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.0, 1.0, size=(n, k)) ** 3
    p[0] = 0.0
    p[0, 1] = 1.0  # exact 0 and 1: the clip matters
    p[1] *= 3.0  # not normalized: Keras divides by the sum
    return p


def np_categorical_ce(y_onehot, p, smoothing=0.0):
    k = p.shape[-1]
    y = y_onehot * (1 - smoothing) + smoothing / k
    q = np.clip(p / p.sum(axis=-1, keepdims=True), EPS, 1 - EPS)
    return -(y * np.log(q)).sum(axis=-1)


def np_log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_categorical_crossentropy(smoothing):
    p = probs(9, 4)
    labels = np.arange(9) % 4
    onehot = np.eye(4)[labels]
    loss = losses.CategoricalCrossentropy(label_smoothing=smoothing)
    got = loss.per_sample(torch.tensor(onehot), torch.tensor(p)).numpy()
    np.testing.assert_allclose(got, np_categorical_ce(onehot, p, smoothing), rtol=1e-13)
    np.testing.assert_allclose(float(loss(torch.tensor(onehot), torch.tensor(p))),
                               np_categorical_ce(onehot, p, smoothing).mean(), rtol=1e-13)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_sparse_categorical_crossentropy_equals_its_one_hot_form(smoothing):
    p = probs(9, 5, seed=1)
    labels = np.array([1, 0, 4, 3, 2, 2, 1, 0, 4])
    expected = np_categorical_ce(np.eye(5)[labels], p, smoothing)
    loss = losses.SparseCategoricalCrossentropy(label_smoothing=smoothing)
    got = loss.per_sample(torch.tensor(labels), torch.tensor(p)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-13)
    column = loss.per_sample(torch.tensor(labels).view(-1, 1), torch.tensor(p)).numpy()
    np.testing.assert_allclose(column, expected, rtol=1e-13)  # (B, 1) targets too


def test_crossentropy_from_logits():
    rng = np.random.default_rng(2)
    logits = rng.normal(scale=3.0, size=(6, 3))
    labels = np.array([0, 2, 1, 1, 0, 2])
    expected = -np_log_softmax(logits)[np.arange(6), labels]
    got = losses.SparseCategoricalCrossentropy(from_logits=True).per_sample(
        torch.tensor(labels), torch.tensor(logits))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-13)
    got = losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1).per_sample(
        torch.tensor(np.eye(3)[labels]), torch.tensor(logits))
    y = np.eye(3)[labels] * 0.9 + 0.1 / 3
    np.testing.assert_allclose(got.numpy(), -(y * np_log_softmax(logits)).sum(-1), rtol=1e-13)


def test_crossentropy_with_member_axis_and_shared_targets():
    p = np.stack([probs(7, 3, seed=s) for s in range(3)])  # (P, B, K)
    labels = np.array([0, 1, 2, 2, 1, 0, 1])
    got = losses.SparseCategoricalCrossentropy().per_sample(torch.tensor(labels), torch.tensor(p))
    assert got.shape == (3, 7)
    for m in range(3):
        np.testing.assert_allclose(got[m].numpy(), np_categorical_ce(np.eye(3)[labels], p[m]),
                                   rtol=1e-13)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_binary_crossentropy(smoothing):
    rng = np.random.default_rng(3)
    p = rng.uniform(size=(8, 2))
    p[0, 0], p[1, 1] = 0.0, 1.0
    y = rng.integers(0, 2, size=(8, 2)).astype(np.float64)
    ys = y * (1 - smoothing) + 0.5 * smoothing
    q = np.clip(p, EPS, 1 - EPS)
    expected = -(ys * np.log(q) + (1 - ys) * np.log(1 - q)).mean(axis=-1)
    loss = losses.BinaryCrossentropy(label_smoothing=smoothing)
    np.testing.assert_allclose(loss.per_sample(torch.tensor(y), torch.tensor(p)).numpy(),
                               expected, rtol=1e-12)
    z = rng.normal(size=(8, 2))
    expected = -(ys * np.log(1 / (1 + np.exp(-z))) + (1 - ys) * np.log(1 / (1 + np.exp(z))))
    got = losses.BinaryCrossentropy(from_logits=True, label_smoothing=smoothing).per_sample(
        torch.tensor(y), torch.tensor(z))
    np.testing.assert_allclose(got.numpy(), expected.mean(axis=-1), rtol=1e-12)


def test_binary_crossentropy_single_unit_with_flat_targets():
    p = np.array([[0.9], [0.2], [0.6]])
    y = np.array([1.0, 0.0, 0.0])
    expected = -np.log([0.9, 0.8, 0.4])
    got = losses.resolve("binary_crossentropy").per_sample(torch.tensor(y), torch.tensor(p))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)


def test_mean_squared_error():
    rng = np.random.default_rng(4)
    y, p = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    got = losses.resolve("mse").per_sample(torch.tensor(y), torch.tensor(p))
    np.testing.assert_allclose(got.numpy(), ((y - p) ** 2).mean(axis=-1), rtol=1e-13)
    flat = losses.resolve("mean_squared_error").per_sample(torch.tensor(y[:, 0]), torch.tensor(p[:, :1]))
    np.testing.assert_allclose(flat.numpy(), (y[:, 0] - p[:, 0]) ** 2, rtol=1e-13)


def test_reduction_is_sum_over_batch_size():
    values = torch.tensor([[1.0, 2.0, 3.0, 6.0]], dtype=F64)
    weights = torch.tensor([1.0, 0.0, 0.5, 2.0], dtype=F64)
    assert float(losses.reduce_mean(values)) == 3.0
    assert float(losses.reduce_mean(values, weights)) == (1.0 + 0.0 + 1.5 + 12.0) / 4


def test_loss_lookup_and_errors():
    assert isinstance(losses.resolve("sparse_categorical_crossentropy"),
                      losses.SparseCategoricalCrossentropy)
    with pytest.raises(ConfigError, match=r"unknown loss 'categorical_crossentropyy'.*Did you mean"):
        losses.resolve("categorical_crossentropyy")
    with pytest.raises(ConfigError, match=r"'label_smoothing' must be a float in \[0, 1\]"):
        losses.CategoricalCrossentropy(label_smoothing=1.5)


# -- metrics ----------------------------------------------------------------------------------
@pytest.mark.parametrize("y_true_shape, y_pred_shape, expected", [
    ((32,), (1, 10), metrics.sparse_categorical_accuracy),
    ((32, 1), (1, 10), metrics.sparse_categorical_accuracy),
    ((32, 10), (1, 10), metrics.categorical_accuracy),
    ((32,), (1, 1), metrics.binary_accuracy),
    ((32, 1), (1, 1), metrics.binary_accuracy),
])
def test_accuracy_resolves_by_shapes(y_true_shape, y_pred_shape, expected):
    assert metrics.resolve("accuracy", y_true_shape, y_pred_shape) is expected
    assert metrics.resolve("acc", y_true_shape, y_pred_shape) is expected


def test_accuracy_values():
    p = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]], dtype=F64)
    labels = torch.tensor([1, 2, 2, 0])
    np.testing.assert_array_equal(metrics.sparse_categorical_accuracy(labels, p).numpy(),
                                  [1, 0, 1, 0])
    onehot = torch.eye(3, dtype=F64)[labels]
    np.testing.assert_array_equal(metrics.categorical_accuracy(onehot, p).numpy(), [1, 0, 1, 0])
    pb = torch.tensor([[0.7], [0.4], [0.51], [0.5]], dtype=F64)
    yb = torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=F64)
    np.testing.assert_array_equal(metrics.binary_accuracy(yb, pb).numpy(), [1, 1, 0, 0])
    with pytest.raises(ConfigError, match=r"unknown metric 'accurcy'"):
        metrics.resolve("accurcy", (4,), (1, 3))


def test_binary_accuracy_takes_the_targets_as_they_are():
    """Keras 3's binary_accuracy compares the raw target with the thresholded prediction:
    a regression's float targets are hits only where they are exactly 0 or 1 (reglab once
    thresholded them at 0.5 too: 0.425 where Keras gives 0). Targets that reglab's own batch
    transforms mixed are scored on their side of 0.5 (``of_mixed_targets``)."""
    y_true = torch.tensor([0.3, 1.0, 0.0, 0.7, 0.2], dtype=F64)
    y_pred = torch.tensor([[0.2], [0.9], [0.2], [0.9], [0.7]], dtype=F64)
    np.testing.assert_array_equal(metrics.binary_accuracy(y_true, y_pred).numpy(),
                                  [0, 1, 1, 0, 0])
    np.testing.assert_array_equal(
        metrics.binary_accuracy.of_mixed_targets(y_true, y_pred).numpy(), [1, 1, 1, 1, 0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_accuracy_takes_the_first_maximal_class_as_numpy_argmax(dtype):
    """Ties (a saturated softmax, low precision) and NaN count as in Keras's argmax:
    the first maximal class, a NaN being maximal (numpy's argmax, written here)."""
    rng = np.random.default_rng(3)
    y_pred = rng.integers(0, 3, size=(4, 50, 10)).astype(np.float64)  # many ties
    y_pred[rng.random(y_pred.shape) < 0.03] = np.nan
    y_pred[rng.random(y_pred.shape) < 0.03] = np.inf
    labels = rng.integers(0, 10, size=(4, 50))
    predicted = torch.from_numpy(y_pred).to(dtype)
    rounded = predicted.to(torch.float64).numpy()
    expected = (np.argmax(rounded, axis=-1) == labels).astype(np.float64)
    got = metrics.sparse_categorical_accuracy(torch.from_numpy(labels), predicted)
    np.testing.assert_array_equal(got.to(torch.float64).numpy(), expected)
    one_hot = np.eye(10)[labels]
    got = metrics.categorical_accuracy(torch.from_numpy(one_hot).to(dtype), predicted)
    np.testing.assert_array_equal(got.to(torch.float64).numpy(), expected)
