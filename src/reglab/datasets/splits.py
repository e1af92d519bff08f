"""Held-out test splits and feature standardization for the user's own data (numpy only).

:func:`stratified_split` takes a seeded test split with every class in the same proportion;
:func:`standardization` computes per-feature statistics that :func:`standardize` applies.
Both are deterministic: the same arrays and seed give the same result in any process.
"""

from __future__ import annotations

import math

import numpy as np

from reglab.errors import DataError


def class_keys(y: np.ndarray) -> np.ndarray | None:
    """The class of each sample for stratification: the labels themselves (shape ``(N,)`` or
    ``(N, 1)``), or the argmax of rows of class scores ``(N, K)`` (one-hot, soft or
    multi-label rows: every value in [0, 1]); None when the targets are not class labels
    (non-integer values or rows of other values: a regression)."""
    y = np.asarray(y)
    flat = y.reshape(len(y), -1)
    if flat.shape[1] > 1:
        with np.errstate(invalid="ignore"):
            scores = flat.dtype.kind == "b" or bool(np.all((flat >= 0) & (flat <= 1)))
        return np.argmax(flat, axis=1) if scores else None
    keys = flat[:, 0]
    if keys.dtype.kind in "biu":
        return keys.astype(np.int64)
    if keys.dtype.kind == "f" and np.all(np.isfinite(keys)) and np.all(keys == np.round(keys)):
        return keys.astype(np.int64)
    return None


def _quotas(counts: np.ndarray, n_test: int) -> np.ndarray:
    """Test samples per class: the class's share of ``n_test`` by largest remainders, so the
    quotas sum to ``n_test`` and each is within one sample of its exact share, then capped so
    that a class keeps a training sample (a class of one sample keeps it), the excess moved
    to the classes with the largest remainders that have room."""
    n = int(counts.sum())
    exact = counts * n_test / n
    quotas = np.floor(exact).astype(np.int64)
    capacity = np.where(counts >= 2, counts - 1, 0)
    order = np.argsort(-(exact - quotas), kind="stable")  # largest remainder first
    quotas = np.minimum(quotas, capacity)
    missing = n_test - int(quotas.sum())
    while missing > 0:
        for index in order:
            if missing and quotas[index] < capacity[index]:
                quotas[index] += 1
                missing -= 1
        # one pass gives each class with room at most one more sample; more passes are
        # needed only when capped classes left more than one sample each to the others
    return quotas


def stratified_split(y: np.ndarray, fraction: float, seed: int = 0,
                     where: str = "data.test_split", stratify: bool = True
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``(train indices, test indices)``, both sorted: a test split of ``round(N · fraction)``
    samples, each class in its proportion (within one sample), drawn with
    ``numpy.random.default_rng(seed)``; every class with two or more samples keeps at least one
    training sample. Targets that are not class labels (see :func:`class_keys`), and any
    targets with ``stratify=False`` (a regression loss's), are split without strata.

    Raises:
        DataError: the fraction leaves no test sample, or more than the classes can give.
    """
    n = len(y)
    n_test = int(math.floor(n * fraction + 0.5))
    if n_test < 1:
        raise DataError(f"{where}: {fraction} of {n} samples is no test sample. Expected a "
                        f"fraction that gives at least one (>= {0.5 / n:.3g}).")
    rng = np.random.default_rng(seed)
    keys = class_keys(y) if stratify else None
    if keys is None:
        if n_test >= n:
            raise DataError(f"{where}: {fraction} of {n} samples leaves no training sample.")
        test = rng.permutation(n)[:n_test]
    else:
        classes, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        inverse = inverse.reshape(-1)
        capacity = int(np.where(counts >= 2, counts - 1, 0).sum())
        if n_test > capacity:
            raise DataError(
                f"{where}: {fraction} of {n} samples is {n_test} test samples, but the "
                f"{len(classes)} classes can give only {capacity} while each keeps a training "
                f"sample. Expected a smaller test_split.")
        quotas = _quotas(counts, n_test)
        parts = []
        for index in range(len(classes)):
            members = np.flatnonzero(inverse == index)
            parts.append(rng.permutation(members)[:quotas[index]])
        test = np.concatenate(parts)
    test = np.sort(test)
    mask = np.ones(n, dtype=bool)
    mask[test] = False
    return np.flatnonzero(mask), test


def standardization(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature ``(mean, std)`` of ``x`` over its first axis, in float64, with the population
    standard deviation (``ddof=0``, as scikit-learn's StandardScaler and Keras's Normalization
    layer). A feature that is constant in ``x`` gets std 1 and its value as mean, so it becomes
    exactly 0 and is not scaled."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    constant = np.all(x == x[:1], axis=0)
    mean = np.where(constant, x[0], mean)
    std = np.where(constant | (std == 0), 1.0, std)
    return mean, std


def standardize(x: np.ndarray | None, mean: np.ndarray, std: np.ndarray) -> np.ndarray | None:
    """``(x − mean) / std`` computed in float64, returned as float32 (None stays None)."""
    if x is None:
        return None
    return ((np.asarray(x, dtype=np.float64) - mean) / std).astype(np.float32)
