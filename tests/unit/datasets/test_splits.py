"""Held-out test splits (stratified, seeded) and per-feature standardization."""

from __future__ import annotations

import numpy as np
import pytest

from reglab.datasets.splits import (
    class_keys,
    standardization,
    standardize,
    stratified_split,
)
from reglab.errors import DataError


def labels(counts, seed=0):
    y = np.concatenate([np.full(c, k) for k, c in enumerate(counts)])
    return np.random.default_rng(seed).permutation(y)


@pytest.mark.parametrize("counts, fraction", [
    ((100, 100, 100), 0.25), ((150, 90, 60), 0.2), ((7, 13, 101, 3), 0.3), ((2, 2, 50), 0.5),
    ((1, 40, 9), 0.1), ((5, 5), 0.5)])
def test_the_split_is_stratified_disjoint_and_covers_every_row(counts, fraction):
    y = labels(counts)
    train, test = stratified_split(y, fraction, seed=3)
    n = len(y)
    assert len(test) == round(n * fraction)
    assert len(np.intersect1d(train, test)) == 0
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(n))
    assert np.array_equal(train, np.sort(train)) and np.array_equal(test, np.sort(test))
    for k, c in enumerate(counts):
        in_test = int(np.sum(y[test] == k))
        assert abs(in_test - c * len(test) / n) <= 1, (k, in_test)
        if c >= 2:
            assert np.sum(y[train] == k) >= 1  # every class keeps a training sample
        else:
            assert in_test == 0


def test_the_split_is_seeded_and_deterministic():
    y = labels((120, 80, 100))
    first = stratified_split(y, 0.25, seed=0)
    again = stratified_split(y.copy(), 0.25, seed=0)
    other = stratified_split(y, 0.25, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[1], other[1])
    # the draw depends only on the seed, not on numpy's global state
    np.random.seed(123)
    assert np.array_equal(stratified_split(y, 0.25, seed=0)[1], first[1])


def test_one_hot_and_float_labels_are_stratified_by_class():
    y = labels((60, 30, 10))
    one_hot = np.eye(3)[y]
    assert np.array_equal(class_keys(one_hot), y)
    assert np.array_equal(stratified_split(one_hot, 0.2, 0)[1], stratified_split(y, 0.2, 0)[1])
    as_float = y.astype(np.float32)
    assert np.array_equal(stratified_split(as_float, 0.2, 0)[1], stratified_split(y, 0.2, 0)[1])


def test_regression_targets_are_split_without_strata():
    y = np.random.default_rng(0).normal(size=50).astype(np.float32)
    assert class_keys(y) is None
    train, test = stratified_split(y, 0.2, seed=0)
    assert len(test) == 10 and len(train) == 40


def test_a_split_that_cannot_be_made_is_named():
    with pytest.raises(DataError, match="data.test_split: 0.01 of 20 samples is no test sample"):
        stratified_split(labels((10, 10)), 0.01)
    with pytest.raises(DataError, match="can give only 2 while each keeps a training sample"):
        stratified_split(labels((2, 2, 1)), 0.8)


def test_standardization_statistics_come_from_the_data_given():
    rng = np.random.default_rng(0)
    x = np.stack([rng.normal(5, 0.01, 40), rng.normal(-300, 50, 40), rng.uniform(0, 1e4, 40)],
                 axis=1).astype(np.float32)
    mean, std = standardization(x)
    by_hand = x.astype(np.float64)
    np.testing.assert_allclose(mean, by_hand.sum(0) / len(x), rtol=1e-12)
    np.testing.assert_allclose(std, np.sqrt(((by_hand - by_hand.mean(0)) ** 2).mean(0)),
                               rtol=1e-10)
    scaled = standardize(x, mean, std)
    assert scaled.dtype == np.float32
    np.testing.assert_allclose(scaled.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(scaled.std(0), 1, atol=1e-5)
    assert standardize(None, mean, std) is None


def test_a_constant_feature_is_centred_and_not_scaled():
    x = np.array([[0.1, 1.0], [0.1, 2.0], [0.1, 4.0]], dtype=np.float32)
    mean, std = standardization(x)
    assert std[0] == 1.0 and mean[0] == np.float32(0.1)
    assert np.all(standardize(x, mean, std)[:, 0] == 0.0)  # exactly, not round-off
    other = standardize(np.array([[1.1, 2.0]], dtype=np.float32), mean, std)
    assert other[0, 0] == pytest.approx(1.0)  # shifted, not divided by a tiny std
