"""Verdicts against the baseline: better, worse, equivalent, no detectable difference, too few
seeds, with a minimum effect and the family-wise error rate held at ``alpha``.

Each variant is paired with the baseline by seed; its differences ``d = variant − baseline``
estimate the expected difference ``Δ`` (over training seeds, on the study's fixed test set).
With ``δ = min_effect`` and ``m`` variants that have at least :data:`MIN_SEEDS` paired seeds,
the verdicts come from three one-sided tests per variant:

- ``H_up: Δ <= δ`` against ``Δ > δ`` and ``H_down: Δ >= −δ`` against ``Δ < −δ``, for the ``2m``
  directional claims. The ``2m`` one-sided p-values go through one Holm step-down procedure at
  level ``alpha``; rejecting ``H_up`` (``H_down`` when lower is better) says ``'better'``,
  rejecting the other ``'worse'``. The two p-values of one variant sum to at least 1, so at
  most one of them is ever rejected.
- ``H_eq: |Δ| >= δ`` against ``|Δ| < δ``, the two one-sided tests (TOST) of equivalence: its
  p-value is the larger of the two, and the ``m`` of them go through their own Holm procedure
  at ``alpha``. Rejecting it says ``'equivalent'`` (never with ``δ = 0``).

Why the family-wise error rate of ``'better'``/``'worse'`` claims is at most ``alpha``: a
``'better'`` claim is false exactly when its ``H_up`` is true (``Δ <= δ``), a ``'worse'``
claim exactly when its ``H_down`` is true, and Holm's procedure over any family of hypotheses
with valid p-values rejects at least one true hypothesis with probability at most ``alpha``,
whatever the dependence between the tests (they share the baseline). The per-variant
decision cannot leak error either: the direction is the rejected hypothesis itself, not the
sign of a two-sided test (Holm with two-sided tests and a direction read from the sign is
proved to bound directional errors only for independent tests). The same argument bounds the
probability of any false ``'equivalent'`` claim by ``alpha``. In confidence-interval terms,
``'better'`` means that the one-sided lower confidence bound for ``Δ``, at the level Holm
assigns to that hypothesis (``1 − alpha / (2m − k + 1)`` at its step ``k``), lies above
``+δ``; ``'equivalent'`` that the two-sided interval at ``1 − 2·alpha / (m − k + 1)`` lies
within ``±δ``. The plain 95 % interval of the difference can clear ``δ`` without a verdict.

Example:
    >>> from reglab.stats import compare_variants
    >>> values = {
    ...     "none": {0: 0.80, 1: 0.81, 2: 0.79, 3: 0.80},
    ...     "l2": {0: 0.85, 1: 0.86, 2: 0.84, 3: 0.86},
    ... }
    >>> [(v.variant, v.verdict) for v in compare_variants(values, baseline="none")]
    [('l2', 'better'), ('none', 'baseline')]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats

from reglab.errors import ConfigError, DataError, unknown_name
from reglab.stats.compare import (
    WILCOXON_ZERO_METHOD,
    PairedComparison,
    Summary,
    holm_adjust,
    paired_comparison,
    summarize,
)

__all__ = [
    "BASELINE",
    "BETTER",
    "EQUIVALENT",
    "MIN_SEEDS",
    "NO_DIFFERENCE",
    "TOO_FEW_SEEDS",
    "WORSE",
    "VariantVerdict",
    "compare_variants",
    "decide_verdicts",
    "t_test_p_values",
]

BASELINE = "baseline"
BETTER = "better"
WORSE = "worse"
EQUIVALENT = "equivalent"
NO_DIFFERENCE = "no detectable difference"
TOO_FEW_SEEDS = "too few seeds"
#: paired seeds a verdict needs; with fewer, no test is made (2 seeds give a t-test 1 degree
#: of freedom: any two nearly equal differences look significant)
MIN_SEEDS = 3
_TESTS = ("t", "wilcoxon")


@dataclass(frozen=True)
class VariantVerdict:
    """One variant's standing against the baseline.

    Attributes:
        variant: the variant's name.
        summary: its metric over all of its seeds.
        comparison: paired against the baseline on shared seeds; None for the baseline.
        p_holm: Holm-adjusted p-value against ``H0: |Δ| <= min_effect``, the smaller of its
            two one-sided tests' (``< alpha`` exactly when the verdict is ``'better'`` or
            ``'worse'``); None for the baseline, nan with too few seeds.
        verdict: ``'baseline'``, ``'better'``, ``'worse'``, ``'equivalent'``,
            ``'no detectable difference'`` or ``'too few seeds'``.
        p_equivalence: Holm-adjusted p-value against ``H0: |Δ| >= min_effect`` (``< alpha``
            exactly when the verdict is ``'equivalent'``); None for the baseline, nan with too
            few seeds.
    """

    variant: str
    summary: Summary
    comparison: PairedComparison | None
    p_holm: float | None
    verdict: str
    p_equivalence: float | None = None


# ------------------------------------------------------------------- the vectorized core


def t_test_p_values(mean, std, n, min_effect: float):
    """One-sided paired t-test p-values of the three hypotheses, element by element.

    Args:
        mean, std, n: mean, sample standard deviation (``ddof=1``) and count of the paired
            differences; arrays of one shape (or broadcastable).
        min_effect: ``δ >= 0``.

    Returns:
        ``(p_up, p_down, p_equivalent)``: for ``H_up: Δ <= δ``, ``H_down: Δ >= −δ`` and
        ``H_eq: |Δ| >= δ`` (the larger of the two one-sided tests of TOST). With zero spread
        the statistics take their limits (a constant difference beyond ``δ`` gives p = 0),
        and a difference exactly on the boundary gives p = 1. Nan where ``n < MIN_SEEDS``.
    """
    mean, std, n = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in
                                         (mean, std, n)))
    enough = n >= MIN_SEEDS
    df = np.where(enough, n - 1.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = std / np.sqrt(np.where(enough, n, 1.0))
        above = (mean - min_effect) / se  # t for the boundary +δ
        below = (mean + min_effect) / se  # t for the boundary −δ

    def kept(value):
        return np.where(enough, value, np.nan)

    p_up = np.where(np.isnan(above), 1.0, stats.t.sf(above, df))
    p_down = np.where(np.isnan(below), 1.0, stats.t.cdf(below, df))
    p_equivalent = np.where(np.isnan(above) | np.isnan(below), 1.0,
                            np.maximum(stats.t.cdf(above, df), stats.t.sf(below, df)))
    return kept(p_up), kept(p_down), kept(p_equivalent)


def decide_verdicts(p_up, p_down, p_equivalent, alpha: float = 0.05,
                    higher_is_better: bool = True):
    """Verdicts from the one-sided p-values, with variants on the last axis.

    Leading axes are independent families (e.g. simulated studies). A nan p-value marks a
    variant with too few seeds: it is left out of the families.

    Returns:
        ``(verdicts, p_holm, p_equivalence)``: an array of verdict strings, the adjusted
        p-value of the directional claim (the smaller of the two) and of equivalence.
    """
    p_up, p_down, p_equivalent = (np.asarray(a, dtype=np.float64) for a in
                                  (p_up, p_down, p_equivalent))
    good, bad = (p_up, p_down) if higher_is_better else (p_down, p_up)
    m = good.shape[-1]
    directional = holm_adjust(np.concatenate([good, bad], axis=-1))
    good_holm, bad_holm = directional[..., :m], directional[..., m:]
    equivalence_holm = holm_adjust(p_equivalent)
    verdicts = np.select(
        [np.isnan(good_holm), good_holm < alpha, bad_holm < alpha, equivalence_holm < alpha],
        [TOO_FEW_SEEDS, BETTER, WORSE, EQUIVALENT], NO_DIFFERENCE)
    return verdicts, np.fmin(good_holm, bad_holm), equivalence_holm


# --------------------------------------------------------------------------- per variant


def _wilcoxon_one_sided(differences: np.ndarray, alternative: str) -> float:
    if np.all(differences == 0.0):
        return 1.0  # no signed rank differs from zero (scipy divides 0/0 here)
    return float(stats.wilcoxon(differences, zero_method=WILCOXON_ZERO_METHOD,
                                alternative=alternative).pvalue)


def _wilcoxon_p_values(differences: np.ndarray, min_effect: float) -> tuple[float, ...]:
    """The three one-sided p-values from Wilcoxon signed-rank tests of the shifted
    differences (valid for a symmetric distribution of differences, Δ its centre)."""
    if differences.size < MIN_SEEDS:
        return math.nan, math.nan, math.nan
    above, below = differences - min_effect, differences + min_effect
    return (_wilcoxon_one_sided(above, "greater"), _wilcoxon_one_sided(below, "less"),
            max(_wilcoxon_one_sided(above, "less"), _wilcoxon_one_sided(below, "greater")))


def _moments(comparison: PairedComparison) -> tuple[float, float, int]:
    d = np.asarray(comparison.differences, dtype=np.float64)
    if d.size == 0:
        return math.nan, math.nan, 0
    if np.ptp(d) == 0.0:  # exactly constant: no round-off in the mean or the spread
        return float(d[0]), 0.0, int(d.size)
    std = float(d.std(ddof=1)) if d.size > 1 else math.nan
    return float(d.mean()), std, int(d.size)


def compare_variants(
    values: Mapping[str, Mapping[int, float]],
    baseline: str,
    higher_is_better: bool = True,
    alpha: float = 0.05,
    test: str = "t",
    min_effect: float = 0.0,
) -> list[VariantVerdict]:
    """Compares every variant with the baseline and ranks them.

    Each non-baseline variant is paired with the baseline on the seeds both have
    (:func:`~reglab.stats.paired_comparison`). With fewer than :data:`MIN_SEEDS` shared
    seeds its verdict is ``'too few seeds'`` and it takes no part in the tests. The others
    are tested as the module docstring says:

    - ``'better'``: Holm's procedure over the ``2m`` one-sided hypotheses ``Δ <= δ`` and
      ``Δ >= −δ`` (``δ = min_effect``) rejects the one that says the variant is not better
      by more than ``δ``: the difference's one-sided confidence bound at the Holm-adjusted
      level clears ``+δ`` (``−δ`` when lower is better). ``'worse'`` likewise the other way.
      The family-wise probability of any false ``'better'`` or ``'worse'`` claim is at most
      ``alpha``, under any dependence between the comparisons.
    - ``'equivalent'``: not better or worse, and Holm's procedure over the ``m`` equivalence
      tests (TOST, ``|Δ| >= δ`` rejected) says the difference lies within ``±δ``; the
      family-wise probability of a false ``'equivalent'`` is at most ``alpha`` as well.
    - ``'no detectable difference'``: none of these.

    With ``min_effect = 0`` and one comparison, ``'better'`` and ``'worse'`` are the two-sided
    test at ``alpha``, as before minimum effects.

    Args:
        values: ``values[variant][seed]`` = metric, e.g. test accuracy.
        baseline: the reference variant's name; must be a key of ``values``.
        higher_is_better: whether larger metric values are better (accuracy) or worse (loss).
        alpha: family-wise significance level, in (0, 1).
        test: ``'t'`` (paired t-test) or ``'wilcoxon'`` (signed-rank tests of the shifted
            differences, one scipy call per hypothesis: slow with ties).
        min_effect: ``δ``, the smallest difference worth a verdict, a number >= 0 in the
            metric's units.

    Returns:
        One verdict per variant, best mean first; the baseline stays in the list.

    Raises:
        ConfigError: unknown baseline, unknown test, ``alpha`` or ``min_effect`` out of range.
        DataError: a variant without values, or a non-finite value.
    """
    where = "compare_variants"
    if baseline not in values:
        raise unknown_name(where, "baseline variant", baseline, [str(v) for v in values])
    if test not in _TESTS:
        raise unknown_name(where, "test", test, _TESTS)
    if not (isinstance(alpha, (int, float)) and 0.0 < alpha < 1.0):
        raise ConfigError(f"{where}: 'alpha' must be a float in the range (0, 1). Got {alpha!r}.")
    if (isinstance(min_effect, bool) or not isinstance(min_effect, (int, float))
            or not math.isfinite(min_effect) or min_effect < 0):
        raise ConfigError(f"{where}: 'min_effect' must be a float >= 0. Got {min_effect!r}.")

    others = [name for name in values if name != baseline]
    comparisons = {name: paired_comparison(values[name], values[baseline]) for name in others}
    if test == "t":
        moments = np.array([_moments(comparisons[name]) for name in others],
                           dtype=np.float64).reshape(-1, 3)  # (m, 3): mean, std, n
        raw = t_test_p_values(*moments.T, float(min_effect))
    else:
        raw = tuple(np.array([_wilcoxon_p_values(np.asarray(comparisons[name].differences),
                                                 float(min_effect)) for name in others],
                             dtype=np.float64).reshape(-1, 3).T)
    labels, p_holm, p_equivalence = decide_verdicts(*raw, alpha=alpha,
                                                    higher_is_better=higher_is_better)
    decided = {name: (str(labels[i]), float(p_holm[i]), float(p_equivalence[i]))
               for i, name in enumerate(others)}

    verdicts = []
    for name, per_seed in values.items():
        try:
            summary = summarize(per_seed.values())
        except DataError as error:
            raise DataError(f"{where}: variant {name!r}: {error}") from error
        if name == baseline:
            verdicts.append(VariantVerdict(name, summary, None, None, BASELINE))
            continue
        label, p, p_eq = decided[name]
        verdicts.append(VariantVerdict(name, summary, comparisons[name], p, label, p_eq))

    sign = -1.0 if higher_is_better else 1.0
    verdicts.sort(key=lambda v: (sign * v.summary.mean, v.variant))
    return verdicts
