"""Data regimes (numpy only): stratified, nested training subsets and label noise, keyed by seed.

A study's data regime is how much training data a run gets (``train_size``) and how many of its
labels are wrong (``label_noise``). Both are drawn from the run's seed with streams of their own
(:func:`reglab.utils.seeds.derive_seed`), never from numpy's global state:

* :func:`subset_indices`: ``n`` training samples, each class in its proportion, and *nested*:
  every class is one seed-keyed permutation of its samples and the subset takes a prefix of
  each, with per-class counts from a house-monotone apportionment (:func:`class_quotas`), so
  for one seed the subset of ``n`` samples lies inside the subset of any ``m > n``.
* :func:`noisy_labels`: exactly ``round(rate · n)`` of ``n`` labels replaced, each by a
  uniformly drawn *other* class (so the rate is the rate of wrong labels), or, with a class
  confusion matrix ``T`` (``T[i][j]``: the share of class ``i``'s labels that become ``j``),
  exactly the largest-remainder rounding of ``T[i][j] · n_i`` of each class. Which labels are
  replaced follows one seed-keyed random order of all the samples, so a higher rate replaces
  the same labels and more, and a sample replaced in two regimes gets the same wrong class.

Example:
    >>> import numpy as np
    >>> y = np.repeat(np.arange(3), [50, 30, 20])
    >>> small, large = subset_indices(y, 10, seed=0), subset_indices(y, 40, seed=0)
    >>> np.bincount(y[small]).tolist(), bool(np.isin(small, large).all())
    ([5, 3, 2], True)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

from reglab.datasets.splits import class_keys
from reglab.errors import DataError
from reglab.utils.seeds import derive_seed

#: the purposes (streams) the regimes draw from, under each run's seed
SUBSET_STREAM = "data/train_size"
NOISE_STREAM = "data/label_noise"
VALIDATION_NOISE_STREAM = "data/label_noise/validation"


def _generator(seed: int, purpose: str) -> np.random.Generator:
    return np.random.default_rng(derive_seed(seed, purpose))


def _half_up(value: float) -> int:
    """``value`` rounded to the nearest int, halves up (``round`` rounds halves to even)."""
    return int(math.floor(value + 0.5))


# ---- training subsets --------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _quotas(counts: tuple[int, ...], n: int) -> tuple[int, ...]:
    total = sum(counts)
    if n >= total:
        return counts
    seats = [0] * len(counts)
    for size in range(1, n + 1):
        best, priority = -1, -1.0
        for c, count in enumerate(counts):
            # eligible: one more sample keeps the class within its upper quota at this size
            if seats[c] * total < size * count and count / (seats[c] + 1) > priority:
                best, priority = c, count / (seats[c] + 1)
        seats[best] += 1
    return tuple(seats)


def replaced_count(rate: float, n: int) -> int:
    """How many of ``n`` labels a symmetric noise ``rate`` replaces: ``round(rate · n)``,
    halves up (:func:`noisy_labels`)."""
    return _half_up(float(rate) * n)


def class_quotas(counts: Sequence[int], n: int) -> np.ndarray:
    """Samples per class in a stratified subset of ``n`` of the ``sum(counts)`` samples.

    Balinski and Young's quota method (1975): the subset grows one sample at a time, the next
    one going to the class with the largest ``count / (taken + 1)`` among those that one more
    sample keeps within their upper quota. Every class then has the floor or the ceiling of
    its exact share ``n · count / total`` (within one sample, as largest remainders give), and
    the counts never decrease as ``n`` grows (which largest remainders do not promise: the
    Alabama paradox), so per-class prefixes nest. Ties go to the lower class index.

    Example:
        >>> class_quotas([50, 30, 20], 7).tolist()
        [4, 2, 1]
    """
    counts = tuple(int(c) for c in counts)
    if n < 0:
        raise DataError(f"class_quotas: 'n' must be an int >= 0. Got {n!r}.")
    return np.asarray(_quotas(counts, int(n)), dtype=np.int64)


def training_size(value: int | float, available: int, classes: int | None,
                  where: str = "data.train_size") -> int:
    """The number of training samples ``value`` asks for: an int is a number of samples, a
    float in (0, 1] a fraction of the ``available`` ones (rounded, halves up).

    Raises:
        DataError: more than are available, or fewer than the ``classes`` (each class needs
            room for a sample).
    """
    if isinstance(value, float):
        n = _half_up(value * available)
        got = f"Got {value}, which is {n:,} of the {available:,}."
    else:
        n = int(value)
        got = f"Got {n:,}."
    if n > available:
        raise DataError(f"{where}: expected at most the {available:,} training samples left "
                        f"after the validation split. {got} A fraction in (0, 1] takes a "
                        "share of them.")
    least = classes or 1
    if n < least:
        what = f"one per class, {classes} classes" if classes else "one"
        hint = " For all the training data write 1.0 (a fraction)." if value == 1 else ""
        raise DataError(f"{where}: expected at least {least} training samples ({what}). "
                        f"{got}{hint}")
    return n


def subset_indices(y: np.ndarray, n: int, seed: int, stratify: bool = True) -> np.ndarray:
    """Sorted indices of a stratified subset of ``n`` samples of ``y`` for ``seed``.

    Each class (see :func:`reglab.datasets.splits.class_keys`) gets :func:`class_quotas`
    samples: a prefix of one permutation of its samples, drawn for ``seed`` from the stream
    :data:`SUBSET_STREAM` (classes in ascending order, one permutation each), so subsets of
    one seed are nested. Targets that are not class labels, and any with ``stratify=False``
    (a regression loss's), get a prefix of one permutation of all samples. ``n`` equal to
    ``len(y)`` gives every index, in order.
    """
    total = len(y)
    if not 0 <= n <= total:
        raise DataError(f"subset_indices: 'n' must be in [0, {total}]. Got {n!r}.")
    if n == total:
        return np.arange(total)
    rng = _generator(seed, SUBSET_STREAM)
    keys = class_keys(y) if stratify else None
    if keys is None:
        return np.sort(rng.permutation(total)[:n])
    classes, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    quotas = class_quotas(counts, n)
    parts = [rng.permutation(np.flatnonzero(inverse == c))[:quotas[c]]
             for c in range(len(classes))]
    return np.sort(np.concatenate(parts))


# ---- label noise ---------------------------------------------------------------------------

NOT_CLASS_LABELS = ("data.label_noise: replaces class labels; expected integer or one-hot "
                    "labels. Got targets that are not class labels (a regression, or soft or "
                    "multi-label rows).")


def label_classes(*ys: np.ndarray | None) -> int | None:
    """How many classes the labels of ``ys`` name: the columns of one-hot rows, else the
    largest integer label + 1; None when they are not class labels (see ``class_keys``)."""
    found = 0
    for y in ys:
        if y is None or len(y) == 0:
            continue
        flat = np.asarray(y).reshape(len(y), -1)
        if flat.shape[1] > 1:
            found = max(found, flat.shape[1])
            continue
        keys = class_keys(y)
        if keys is None or keys.min() < 0:
            return None
        found = max(found, int(keys.max()) + 1)
    return found or None


def noise_keys(y: np.ndarray) -> np.ndarray | None:
    """The class of each sample when ``y`` holds class labels that noise can replace:
    integer labels (``(N,)`` or ``(N, 1)``), or exact one-hot rows (0s and one 1); None for
    anything else (soft or multi-label rows, a regression), whose targets noise would rewrite
    whole."""
    y = np.asarray(y)
    flat = y.reshape(len(y), -1)
    if flat.shape[1] > 1 and not (np.isin(flat, (0, 1)).all() and (flat.sum(axis=1) == 1).all()):
        return None
    return class_keys(y)


def present_labels(*ys: np.ndarray | None) -> np.ndarray | None:
    """The classes a symmetric noise draws replacements from: the labels that occur in
    ``ys``, integer labels or the hot columns of one-hot rows (a column no row sets is no
    class of the data, as a gap in integer labels); None when they are not class labels."""
    found: set[int] = set()
    for y in ys:
        if y is None or len(y) == 0:
            continue
        keys = noise_keys(y)
        if keys is None:
            return None
        found.update(np.unique(keys).tolist())
    return np.array(sorted(found), dtype=np.int64) if found else None


def _largest_remainder(shares: np.ndarray, total: int) -> np.ndarray:
    """Integer counts summing to ``total`` in proportion to ``shares`` (which sum to 1):
    floors, then one more each for the largest remainders (ties: lower index)."""
    exact = np.asarray(shares, dtype=np.float64) * total
    counts = np.floor(exact + 1e-9).astype(np.int64)
    missing = total - int(counts.sum())
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[:max(missing, 0)]] += 1
    return counts


def noisy_labels(y: np.ndarray, rows: np.ndarray, noise, classes: int, seed: int,
                 stream: str = NOISE_STREAM) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, replaced)``: the labels of ``y[rows]`` with ``noise`` applied for ``seed``,
    in ``y``'s own layout (integer labels or one-hot rows, its dtype), and the mask of those
    replaced.

    ``noise`` is a rate in [0, 1] (symmetric: exactly ``round(rate · len(rows))`` labels
    replaced, each by a uniformly drawn other class of ``range(classes)``) or a
    ``classes × classes`` matrix whose row ``i`` is the distribution of class ``i``'s noisy
    label (exactly the largest-remainder rounding of ``T[i][j] · n_i`` become ``j``). The
    labels replaced are the first in one random order of all of ``y``'s samples, drawn for
    ``seed`` from ``stream`` with the other classes' offsets, so regimes of one seed agree on
    every sample they share.

    Raises:
        DataError: ``y`` holds no class labels, or labels outside ``range(classes)``.
    """
    y = np.asarray(y)
    keys_all = noise_keys(y)
    if keys_all is None:
        raise DataError(NOT_CLASS_LABELS)
    labels = np.arange(classes) if np.ndim(classes) == 0 else np.asarray(classes, np.int64)
    classes = int(labels.max()) + 1 if labels.size else 0
    if keys_all.size and not np.isin(keys_all, labels).all():
        raise DataError(f"data.label_noise: expected labels among {labels.tolist()}. Got "
                        f"labels from {keys_all.min()} to {keys_all.max()}.")
    rng = _generator(seed, stream)
    order = np.empty(len(y), dtype=np.int64)
    order[rng.permutation(len(y))] = np.arange(len(y))  # order[i]: sample i's place in line
    offsets = rng.integers(1, max(len(labels), 2), size=len(y))
    rows = np.asarray(rows, dtype=np.int64)
    keys = keys_all[rows]
    new = keys.copy()
    place = order[rows]
    if isinstance(noise, (int, float)):
        k = replaced_count(noise, len(rows))
        chosen = np.argsort(place, kind="stable")[:k]
        # another class among those the data have (labels 0..K-1: (key + offset) mod K)
        position = np.searchsorted(labels, keys[chosen])
        new[chosen] = labels[(position + offsets[rows][chosen]) % len(labels)]
    else:
        matrix = np.asarray(noise, dtype=np.float64)
        for c in range(classes):
            members = np.flatnonzero(keys == c)
            if members.size == 0:
                continue
            members = members[np.argsort(place[members], kind="stable")]
            counts = _largest_remainder(matrix[c], members.size)
            targets = np.repeat([j for j in range(classes) if j != c],
                                [counts[j] for j in range(classes) if j != c])
            new[members[:targets.size]] = targets
    replaced = new != keys
    flat = y.reshape(len(y), -1)
    if flat.shape[1] > 1:  # one-hot rows
        out = np.eye(flat.shape[1], dtype=y.dtype)[new]
    else:
        out = new.astype(y.dtype).reshape((len(rows), *y.shape[1:]))
    return out, replaced
