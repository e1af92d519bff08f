"""The statistics a study reports: intervals over seeds, paired tests, Holm, the 1-SE rule.

Everything here works on plain floats keyed by seed; distributions and tests come from
``scipy.stats`` (no hand-written quantiles or test statistics). No torch. The verdicts
against a baseline are in :mod:`reglab.stats.verdicts`.

Example:
    >>> from reglab.stats import paired_comparison
    >>> c = paired_comparison({0: 0.85, 1: 0.86, 2: 0.84}, {0: 0.80, 1: 0.81, 2: 0.79})
    >>> round(c.mean_difference, 6), c.n
    (0.05, 3)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from reglab.errors import ConfigError, DataError

__all__ = [
    "PairedComparison",
    "Summary",
    "holm",
    "holm_adjust",
    "one_standard_error_rule",
    "paired_comparison",
    "summarize",
]

_NAN = float("nan")
# Wilcoxon's own treatment of zero differences: they are dropped before ranking. ("pratt" keeps
# them in the ranking and forces scipy's normal approximation; with ~10 seeds the exact
# distribution that "wilcox" allows is the better choice.) All-zero differences give p = 1.0.
WILCOXON_ZERO_METHOD = "wilcox"


def _check_confidence(where: str, confidence: float) -> None:
    if not (isinstance(confidence, (int, float)) and 0.0 < confidence < 1.0):
        raise ConfigError(
            f"{where}: 'confidence' must be a float in the range (0, 1). Got {confidence!r}."
        )


def _as_finite_array(where: str, name: str, values: Iterable[float]) -> np.ndarray:
    try:
        array = np.asarray(list(values), dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise DataError(f"{where}: {name!r} must hold numbers. Got {values!r}.") from error
    if array.ndim != 1:
        raise DataError(f"{where}: {name!r} must be a flat sequence of numbers. Got {values!r}.")
    if not np.all(np.isfinite(array)):
        raise DataError(f"{where}: {name!r} must hold finite numbers. Got {array.tolist()!r}.")
    return array


def _t_interval(mean: float, std: float, n: int, confidence: float) -> tuple[float, float]:
    """Student-t interval ``mean ± t_{(1+c)/2, n-1} * std / sqrt(n)``; (nan, nan) when n < 2."""
    if n < 2:
        return _NAN, _NAN
    half_width = float(stats.t.ppf(0.5 + confidence / 2.0, df=n - 1)) * std / math.sqrt(n)
    return mean - half_width, mean + half_width


# --------------------------------------------------------------------------------- summaries


@dataclass(frozen=True)
class Summary:
    """Mean of a metric over seeds with its t confidence interval.

    Attributes:
        mean: the sample mean.
        ci_low, ci_high: the two-sided Student-t interval for the mean (nan when ``n == 1``).
        std: the sample standard deviation, ``ddof=1`` (nan when ``n == 1``).
        n: the number of values (seeds).

    Example:
        >>> s = summarize([1.0, 2.0, 3.0])
        >>> (s.mean, s.n)
        (2.0, 3)
    """

    mean: float
    ci_low: float
    ci_high: float
    std: float
    n: int


def summarize(values: Iterable[float], confidence: float = 0.95) -> Summary:
    """Summarizes one metric over seeds: mean, sample std and the t interval for the mean.

    Args:
        values: one finite value per seed; at least one.
        confidence: the interval's coverage, in (0, 1).

    Raises:
        ConfigError: ``confidence`` out of range.
        DataError: no values, or a non-finite one.
    """
    _check_confidence("summarize", confidence)
    array = _as_finite_array("summarize", "values", values)
    n = int(array.size)
    if n == 0:
        raise DataError("summarize: 'values' must hold at least one value. Got [].")
    mean = float(array.mean())
    std = float(array.std(ddof=1)) if n >= 2 else _NAN
    low, high = _t_interval(mean, std, n, confidence)
    return Summary(mean=mean, ci_low=low, ci_high=high, std=std, n=n)


# ---------------------------------------------------------------------------- paired tests


@dataclass(frozen=True)
class PairedComparison:
    """Treatment minus baseline, paired by seed.

    Attributes:
        mean_difference: mean of ``treatment[seed] - baseline[seed]`` (nan with no pairs).
        ci_low, ci_high: t interval for the mean difference (nan with fewer than 2 pairs).
        t_p: two-sided p-value of the paired t-test (nan with fewer than 2 pairs).
        n: the number of pairs (seeds present in both).
        differences: the paired differences, in seed order.
        wilcoxon_p: two-sided p-value of the Wilcoxon signed-rank test, zero differences
            dropped (``zero_method="wilcox"``); 1.0 when every difference is zero; nan with
            fewer than 2 pairs. Computed when first read (with ties, scipy's permutation
            distribution takes ~0.3 s at 10 seeds), then kept.

    Example:
        >>> c = paired_comparison({0: 2.0, 1: 3.0, 2: 5.0}, {0: 1.0, 1: 1.0, 2: 2.0})
        >>> (c.mean_difference, c.n)
        (2.0, 3)
    """

    mean_difference: float
    ci_low: float
    ci_high: float
    t_p: float
    n: int
    differences: tuple[float, ...] = ()

    @functools.cached_property
    def wilcoxon_p(self) -> float:
        if len(self.differences) < 2:
            return _NAN
        return _wilcoxon_p(np.asarray(self.differences, dtype=np.float64))


def _paired_t_p(differences: np.ndarray) -> float:
    if np.ptp(differences) == 0.0:
        # Zero spread: t is 0/0 or ±inf, and scipy warns. Take the limits: no difference at
        # all is p = 1; a constant non-zero difference over every seed is p = 0.
        return 1.0 if differences[0] == 0.0 else 0.0
    return float(stats.ttest_1samp(differences, 0.0).pvalue)


def _wilcoxon_p(differences: np.ndarray) -> float:
    if np.all(differences == 0.0):
        return 1.0  # scipy divides 0/0 here; no signed rank differs from zero, so p = 1.
    return float(stats.wilcoxon(differences, zero_method=WILCOXON_ZERO_METHOD).pvalue)


def paired_comparison(
    treatment: Mapping[int, float],
    baseline: Mapping[int, float],
    confidence: float = 0.95,
) -> PairedComparison:
    """Compares two variants on the seeds they share: ``difference = treatment - baseline``.

    The paired t-test is the one-sample t-test of the differences against 0 (identical to
    ``scipy.stats.ttest_rel``); the Wilcoxon signed-rank test is ``scipy.stats.wilcoxon`` on the
    differences with ``zero_method="wilcox"`` (zero differences dropped). Seeds present in only
    one of the two are ignored.

    Args:
        treatment: metric per seed for the variant under test.
        baseline: metric per seed for the reference variant.
        confidence: coverage of the interval for the mean difference, in (0, 1).

    Raises:
        ConfigError: ``confidence`` out of range.
        DataError: a non-finite value on a shared seed.
    """
    _check_confidence("paired_comparison", confidence)
    seeds = sorted(set(treatment) & set(baseline))
    differences = _as_finite_array(
        "paired_comparison", "treatment", (treatment[s] for s in seeds)
    ) - _as_finite_array("paired_comparison", "baseline", (baseline[s] for s in seeds))
    n = int(differences.size)
    kept = tuple(float(d) for d in differences)
    if n == 0:
        return PairedComparison(_NAN, _NAN, _NAN, _NAN, 0)
    mean = float(differences.mean())
    if n < 2:
        return PairedComparison(mean, _NAN, _NAN, _NAN, n, kept)
    low, high = _t_interval(mean, float(differences.std(ddof=1)), n, confidence)
    return PairedComparison(
        mean_difference=mean,
        ci_low=low,
        ci_high=high,
        t_p=_paired_t_p(differences),
        n=n,
        differences=kept,
    )


# ------------------------------------------------------------------------ multiple testing


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input's order.

    With the m non-nan p-values sorted ascending, ``p_(i)`` is adjusted to
    ``max_{j <= i} min(1, (m - j + 1) * p_(j))``: monotone in the raw p-values and capped at 1.
    A nan p-value stays nan and does not count towards m. Rejecting where the adjusted
    p-value is below ``alpha`` holds the family-wise error rate at ``alpha`` under any
    dependence between the tests.

    Example:
        >>> [round(p, 6) for p in holm([0.01, 0.04, 0.03, 0.005])]
        [0.03, 0.06, 0.06, 0.02]
    """
    p = np.asarray(list(p_values), dtype=np.float64)
    if p.ndim != 1:
        raise DataError(f"holm: 'p_values' must be a flat sequence. Got {p_values!r}.")
    valid = ~np.isnan(p)
    if np.any((p[valid] < 0.0) | (p[valid] > 1.0)):
        raise DataError(f"holm: p-values must lie in [0, 1] or be nan. Got {p.tolist()!r}.")
    return [float(x) for x in holm_adjust(p)]


def holm_adjust(p_values: np.ndarray) -> np.ndarray:
    """:func:`holm` along the last axis of an array, each row its own family (unchecked: the
    p-values must lie in [0, 1] or be nan)."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.shape[-1:] == (0,):
        return p.copy()
    m = np.sum(~np.isnan(p), axis=-1, keepdims=True)
    order = np.argsort(p, axis=-1, kind="stable")  # nan last
    ranked = np.take_along_axis(p, order, axis=-1)
    scaled = np.minimum(1.0, (m - np.arange(p.shape[-1])) * ranked)  # nan stays nan
    adjusted = np.empty_like(p)
    np.put_along_axis(adjusted, order, np.maximum.accumulate(scaled, axis=-1), axis=-1)
    return adjusted


# ------------------------------------------------------------------------------- 1-SE rule


def one_standard_error_rule(
    xs: Sequence[float],
    means: Sequence[float],
    ses: Sequence[float],
    higher_is_better: bool = True,
) -> tuple[int, int]:
    """glmnet's one-standard-error rule along a regularization path.

    Finds the best mean, then the point with the largest ``x`` (the strongest
    regularization) whose mean is within one standard error, the best point's, of the best:
    ``mean >= best - se_best`` when higher is better, ``mean <= best + se_best`` otherwise.
    Points with a nan mean are skipped.

    Args:
        xs: regularization strength per point (e.g. lambda), larger = stronger.
        means: the cross-validated (or over-seeds) metric per point.
        ses: its standard error per point.
        higher_is_better: whether larger metric values are better.

    Returns:
        ``(best_index, one_se_index)``, indices into ``xs``.

    Example:
        >>> one_standard_error_rule([0.0, 0.1, 1.0], [0.90, 0.89, 0.70], [0.02, 0.02, 0.02])
        (0, 1)
    """
    where = "one_standard_error_rule"
    x = np.asarray(list(xs), dtype=np.float64)
    m = np.asarray(list(means), dtype=np.float64)
    se = np.asarray(list(ses), dtype=np.float64)
    if not (x.ndim == m.ndim == se.ndim == 1 and x.size == m.size == se.size):
        raise DataError(
            f"{where}: 'xs', 'means' and 'ses' must be flat sequences of one length. "
            f"Got lengths {x.size}, {m.size}, {se.size}."
        )
    valid = ~np.isnan(m)
    if not np.any(valid):
        raise DataError(f"{where}: 'means' must hold at least one number. Got {m.tolist()!r}.")
    candidates = np.flatnonzero(valid)
    best = int(
        candidates[np.argmax(m[candidates]) if higher_is_better else np.argmin(m[candidates])]
    )
    se_best = float(se[best])
    if not (np.isfinite(se_best) and se_best >= 0.0):
        raise DataError(
            f"{where}: the best point's standard error must be a finite number >= 0. "
            f"Got {se_best!r} at index {best}."
        )
    if higher_is_better:
        within = candidates[m[candidates] >= m[best] - se_best]
    else:
        within = candidates[m[candidates] <= m[best] + se_best]
    one_se = int(within[np.argmax(x[within])])
    return best, one_se
