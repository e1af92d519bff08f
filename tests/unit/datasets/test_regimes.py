"""Data regimes: stratified nested training subsets and label noise, keyed by seed (numpy only).

Each property is checked against independent arithmetic: exact shares in integers, set
inclusion, exact counts of replaced labels, and binomial bounds where a draw is random."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reglab.datasets.regimes import (
    VALIDATION_NOISE_STREAM,
    class_quotas,
    label_classes,
    noisy_labels,
    present_labels,
    subset_indices,
    training_size,
)
from reglab.errors import DataError


def labels(counts, seed=0):
    y = np.concatenate([np.full(c, k) for k, c in enumerate(counts)])
    return np.random.default_rng(seed).permutation(y)


@pytest.mark.parametrize("counts", [(50, 30, 20), (36, 1, 33, 5, 21), (1, 30, 1, 30, 38, 4, 4),
                                    (2, 39, 35, 2, 5, 18, 35), (1000, 3, 7), (9, 9, 9, 9)])
def test_quotas_are_within_one_sample_of_the_exact_share_and_never_shrink(counts):
    # (36, 1, 33, 5, 21) and (1, 30, ...) break largest-remainder nesting or a greedy rule
    total = sum(counts)
    previous = np.zeros(len(counts), dtype=np.int64)
    for n in range(total + 1):
        quotas = class_quotas(counts, n)
        exact_times_total = n * np.asarray(counts)  # the exact share, times the total
        assert quotas.sum() == n
        assert np.all(quotas * total >= exact_times_total - total + 1)  # > share − 1
        assert np.all(quotas * total <= exact_times_total + total - 1)  # < share + 1
        assert np.all(quotas >= previous)  # house-monotone: per-class prefixes nest
        previous = quotas


def test_subsets_are_stratified_nested_and_keyed_by_the_seed():
    counts = (400, 250, 200, 100, 50)
    y = labels(counts)
    sizes = [10, 37, 100, 333, 600, 1000]
    for seed in (0, 1):
        subsets = [subset_indices(y, n, seed) for n in sizes]
        for n, subset in zip(sizes, subsets):
            assert len(subset) == n == len(np.unique(subset))
            assert np.array_equal(subset, np.sort(subset))
            got = np.bincount(y[subset], minlength=len(counts))
            assert np.array_equal(got, class_quotas(counts, n))
            assert np.all(np.abs(got - n * np.asarray(counts) / len(y)) < 1)
        for small, large in zip(subsets, subsets[1:]):
            assert np.isin(small, large).all()  # a smaller subset lies inside a larger one
    assert np.array_equal(subset_indices(y, 100, 0), subset_indices(y.copy(), 100, 0))
    assert not np.array_equal(subset_indices(y, 100, 0), subset_indices(y, 100, 1))
    np.random.seed(123)  # numpy's global state plays no part
    assert np.array_equal(subset_indices(y, 100, 0), subset_indices(y, 100, 0))
    assert np.array_equal(subset_indices(y, len(y), 5), np.arange(len(y)))


def test_subsets_of_one_hot_labels_and_of_regression_targets():
    y = labels((60, 30, 10))
    assert np.array_equal(subset_indices(np.eye(3)[y], 40, 2), subset_indices(y, 40, 2))
    targets = np.random.default_rng(0).random(50)  # not class labels: no strata, still nested
    small, large = subset_indices(targets, 10, 0), subset_indices(targets, 30, 0)
    assert len(small) == 10 and np.isin(small, large).all()


def test_training_sizes_and_their_errors():
    assert training_size(300, 1000, 10) == 300
    assert training_size(0.25, 1000, 10) == 250
    assert training_size(0.0015, 1000, 1) == 2  # 1.5 rounds half up
    assert training_size(1.0, 1000, 10) == 1000
    with pytest.raises(DataError, match=r"data.train_size\[2\]: expected at most the 1,000 "
                                        r"training samples .*Got 5,000\."):
        training_size(5000, 1000, 10, "data.train_size[2]")
    with pytest.raises(DataError, match=r"expected at least 10 training samples \(one per "
                                        r"class, 10 classes\)\. Got 5\."):
        training_size(5, 1000, 10)
    with pytest.raises(DataError, match=r"Got 0\.001, which is 1 of the 1,000\."):
        training_size(0.001, 1000, 10)
    with pytest.raises(DataError, match=r"For all the training data write 1\.0"):
        training_size(1, 1000, 10)


def test_symmetric_noise_replaces_exactly_its_rate_with_other_classes():
    classes, n = 10, 5000
    y = labels([n // classes] * classes)
    rows = np.arange(n)
    for rate in (0.0, 0.1, 0.3, 0.5, 1.0):
        noisy, replaced = noisy_labels(y, rows, rate, classes, seed=3)
        assert replaced.sum() == math.floor(rate * n + 0.5)  # the real corruption rate
        assert np.array_equal(replaced, noisy != y)  # a replaced label is another class
        assert noisy.dtype == y.dtype and noisy.shape == y.shape
    noisy, replaced = noisy_labels(y, rows, 0.3, classes, seed=3)
    # which samples and which wrong classes are random: each class loses about 30 % of its
    # labels and each wrong class is about equally likely (4 binomial standard errors)
    for c in range(classes):
        mine = y == c
        share = replaced[mine].mean()
        assert abs(share - 0.3) < 4 * math.sqrt(0.3 * 0.7 / mine.sum())
        targets = np.bincount(noisy[mine & replaced], minlength=classes)
        assert targets[c] == 0
        k = (mine & replaced).sum()
        p = 1 / (classes - 1)
        others = np.delete(targets, c)
        assert np.all(np.abs(others - k * p) < 4 * math.sqrt(k * p * (1 - p)))


def test_noise_is_nested_in_the_rate_consistent_across_subsets_and_keyed_by_the_seed():
    y = labels([300, 200, 100])
    low = noisy_labels(y, np.arange(600), 0.1, 3, seed=0)
    high = noisy_labels(y, np.arange(600), 0.4, 3, seed=0)
    assert np.all(high[1] >= low[1])  # a higher rate replaces the same labels and more
    assert np.array_equal(high[0][low[1]], low[0][low[1]])  # with the same wrong classes
    rows = subset_indices(y, 150, 0)
    small = noisy_labels(y, rows, 0.4, 3, seed=0)
    both = small[1] & high[1][rows]
    assert both.sum() > 0 and np.array_equal(small[0][both], high[0][rows][both])
    other = noisy_labels(y, np.arange(600), 0.4, 3, seed=1)
    assert not np.array_equal(other[1], high[1])
    validation = noisy_labels(y, np.arange(600), 0.4, 3, seed=0, stream=VALIDATION_NOISE_STREAM)
    assert not np.array_equal(validation[1], high[1])  # a stream of its own


def test_a_confusion_matrix_gives_each_class_its_row_s_counts():
    y = labels([100, 60, 41])
    matrix = ((0.8, 0.2, 0.0), (0.0, 1.0, 0.0), (0.5, 0.25, 0.25))
    noisy, replaced = noisy_labels(y, np.arange(len(y)), matrix, 3, seed=0)
    table = np.zeros((3, 3), dtype=int)
    np.add.at(table, (y, noisy), 1)
    # largest remainders of T[i][j] · n_i: 41 · (0.5, 0.25, 0.25) = (20.5, 10.25, 10.25)
    assert table.tolist() == [[80, 20, 0], [0, 60, 0], [21, 10, 10]]
    assert replaced.sum() == 20 + 21 + 10
    unchanged, none = noisy_labels(y, np.arange(len(y)), np.eye(3), 3, seed=0)
    assert np.array_equal(unchanged, y) and not none.any()


def test_one_hot_labels_stay_one_hot_and_regression_targets_are_refused():
    y = labels([40, 40])
    one_hot = np.eye(2, dtype=np.float32)[y]
    noisy, replaced = noisy_labels(one_hot, np.arange(80), 0.25, 2, seed=0)
    assert noisy.dtype == np.float32 and noisy.shape == (80, 2)
    assert np.array_equal(noisy.argmax(1) != y, replaced) and replaced.sum() == 20
    assert label_classes(y, one_hot[:3]) == 2 and label_classes(np.array([0.5, 1.5])) is None
    with pytest.raises(DataError, match="data.label_noise: replaces class labels"):
        noisy_labels(np.array([0.5, 1.5, 2.5]), np.arange(3), 0.3, 3, seed=0)


def test_noise_takes_exact_class_labels_and_the_classes_the_data_have():
    soft = np.tile([[0.9, 0.05, 0.05], [0.05, 0.9, 0.05]], (20, 1))
    with pytest.raises(DataError, match="soft or multi-label rows"):
        noisy_labels(soft, np.arange(40), 0.3, 3, seed=0)
    two_columns = np.random.default_rng(0).normal(size=(40, 2))
    with pytest.raises(DataError, match="not class labels"):
        noisy_labels(two_columns, np.arange(40), 0.3, 2, seed=0)
    gapped = np.repeat([1, 3, 5], 40)
    labels = present_labels(gapped)
    assert labels.tolist() == [1, 3, 5]
    noisy, replaced = noisy_labels(gapped, np.arange(120), 0.5, labels, seed=0)
    assert set(noisy.tolist()) <= {1, 3, 5} and replaced.sum() == 60
    assert (noisy[replaced] != gapped[replaced]).all()
    # the same labels one-hot, with columns for the classes 0, 2 and 4 that no row sets:
    # the same classes, the same noise (the unused columns gain no label)
    one_hot = np.eye(6, dtype=np.float32)[gapped]
    assert present_labels(one_hot).tolist() == [1, 3, 5]
    noisy_hot, replaced_hot = noisy_labels(one_hot, np.arange(120), 0.5,
                                           present_labels(one_hot), seed=0)
    np.testing.assert_array_equal(noisy_hot.argmax(1), noisy)
    np.testing.assert_array_equal(replaced_hot, replaced)
    contiguous = np.repeat([0, 1, 2], 40)  # the labels 0..K-1: as drawn from range(K)
    np.testing.assert_array_equal(
        noisy_labels(contiguous, np.arange(120), 0.3, present_labels(contiguous), seed=4)[0],
        noisy_labels(contiguous, np.arange(120), 0.3, 3, seed=4)[0])
