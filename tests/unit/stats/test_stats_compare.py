"""reglab.stats.compare against scipy.stats and closed forms."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from reglab.errors import ConfigError, DataError
from reglab.stats import (
    Summary,
    holm,
    one_standard_error_rule,
    paired_comparison,
    summarize,
)
from reglab.stats.compare import holm_adjust

# ---------------------------------------------------------------------------- summarize


def test_summarize_t_interval_closed_form():
    s = summarize([1, 2, 3, 4, 5])
    sd = math.sqrt(2.5)
    half = stats.t.ppf(0.975, 4) * sd / math.sqrt(5)
    assert s.n == 5
    assert s.mean == pytest.approx(3.0)
    assert s.std == pytest.approx(sd)
    assert s.ci_low == pytest.approx(3.0 - half)
    assert s.ci_high == pytest.approx(3.0 + half)
    # and the same as scipy's own interval
    low, high = stats.t.interval(0.95, 4, loc=3.0, scale=stats.sem([1, 2, 3, 4, 5]))
    assert (s.ci_low, s.ci_high) == pytest.approx((low, high))


def test_summarize_other_confidence():
    s = summarize([0.1, 0.4, 0.2], confidence=0.9)
    half = stats.t.ppf(0.95, 2) * np.std([0.1, 0.4, 0.2], ddof=1) / math.sqrt(3)
    assert s.ci_high - s.mean == pytest.approx(half)


def test_summarize_single_value_has_nan_spread():
    s = summarize([0.7])
    assert s.mean == 0.7 and s.n == 1
    assert math.isnan(s.std) and math.isnan(s.ci_low) and math.isnan(s.ci_high)


def test_summarize_constant_values_have_zero_width():
    assert summarize([2.0, 2.0, 2.0]) == Summary(2.0, 2.0, 2.0, 0.0, 3)


@pytest.mark.parametrize(
    ("values", "confidence", "error", "match"),
    [
        ([], 0.95, DataError, r"summarize: 'values' must hold at least one value"),
        ([1.0, float("nan")], 0.95, DataError, r"summarize: 'values' must hold finite numbers"),
        ([1.0, 2.0], 1.0, ConfigError, r"summarize: 'confidence' must be a float .* Got 1.0"),
    ],
)
def test_summarize_rejects(values, confidence, error, match):
    with pytest.raises(error, match=match):
        summarize(values, confidence=confidence)


# ---------------------------------------------------------------------- paired_comparison

TREATMENT = {0: 0.81, 1: 0.84, 2: 0.80, 3: 0.86, 4: 0.83, 5: 0.85, 6: 0.82, 99: 0.1}
BASE = {0: 0.80, 1: 0.81, 2: 0.80, 3: 0.82, 4: 0.79, 5: 0.84, 6: 0.83, 7: 0.5}


def test_paired_comparison_matches_scipy_on_shared_seeds():
    c = paired_comparison(TREATMENT, BASE)
    seeds = range(7)  # 99 and 7 are unpaired
    a = np.array([TREATMENT[s] for s in seeds])
    b = np.array([BASE[s] for s in seeds])
    d = a - b
    assert c.n == 7
    assert c.mean_difference == pytest.approx(d.mean())
    assert c.t_p == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert c.wilcoxon_p == pytest.approx(stats.wilcoxon(a, b, zero_method="wilcox").pvalue)
    low, high = stats.t.interval(0.95, 6, loc=d.mean(), scale=stats.sem(d))
    assert (c.ci_low, c.ci_high) == pytest.approx((low, high))


def test_paired_comparison_sign_is_treatment_minus_baseline():
    c = paired_comparison({0: 1.0, 1: 2.0, 2: 4.0}, {0: 2.0, 1: 2.5, 2: 4.0})
    assert c.mean_difference == pytest.approx(-0.5)


def test_paired_comparison_with_a_zero_difference_matches_scipy():
    a = {0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0, 4: 6.0, 5: 5.5}
    b = {0: 1.0, 1: 1.5, 2: 2.0, 3: 4.5, 4: 4.0, 5: 5.0}
    c = paired_comparison(a, b)
    d = np.array([a[s] - b[s] for s in range(6)])
    assert c.wilcoxon_p == pytest.approx(stats.wilcoxon(d, zero_method="wilcox").pvalue)


@pytest.mark.parametrize("pairs", [0, 1])
def test_paired_comparison_fewer_than_two_pairs_is_nan(pairs):
    c = paired_comparison({s: 1.0 + s for s in range(pairs)}, {s: 0.5 for s in range(pairs)})
    assert c.n == pairs
    for field in (c.ci_low, c.ci_high, c.t_p, c.wilcoxon_p):
        assert math.isnan(field)
    assert math.isnan(c.mean_difference) if pairs == 0 else c.mean_difference == 0.5


def test_paired_comparison_identical_values_give_p_one():
    same = {s: 0.5 + 0.01 * s for s in range(5)}
    c = paired_comparison(same, dict(same))
    assert (c.mean_difference, c.ci_low, c.ci_high, c.t_p, c.wilcoxon_p, c.n) == \
        (0.0, 0.0, 0.0, 1.0, 1.0, 5)
    assert c.differences == (0.0,) * 5


def test_wilcoxon_runs_only_when_read_and_once(monkeypatch):
    from reglab.stats import compare as module

    calls = []
    real = module.stats.wilcoxon
    monkeypatch.setattr(module.stats, "wilcoxon", lambda *a, **k: calls.append(1) or real(*a, **k))
    c = paired_comparison(TREATMENT, BASE)
    assert calls == []  # not computed with the comparison
    first = c.wilcoxon_p
    assert c.wilcoxon_p == first and calls == [1]  # computed on first read, then kept


def test_paired_comparison_constant_nonzero_difference():
    c = paired_comparison({s: 1.0 for s in range(6)}, {s: 0.0 for s in range(6)})
    assert c.t_p == 0.0
    assert c.wilcoxon_p == pytest.approx(stats.wilcoxon(np.ones(6)).pvalue)
    assert (c.ci_low, c.ci_high) == (1.0, 1.0)


# ------------------------------------------------------------------------------------ holm


def test_holm_hand_computed():
    # sorted 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_keeps_nan():
    out = holm([0.6, float("nan"), 0.2])  # m = 2 non-nan: 0.2*2 = 0.4, then 0.6*1 = 0.6
    assert out[0] == pytest.approx(0.6) and out[2] == pytest.approx(0.4) and math.isnan(out[1])
    capped = holm([0.6, float("nan"), 0.7])  # 0.6*2 = 1.2 -> 1, then max(1, 0.7) = 1
    assert capped[0] == 1.0 and capped[2] == 1.0 and math.isnan(capped[1])
    assert holm([]) == []
    assert holm([0.03]) == [0.03]


def test_holm_is_monotone_in_raw_p():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=20)
    adj = np.array(holm(p.tolist()))
    order = np.argsort(p)
    assert np.all(np.diff(adj[order]) >= 0)
    assert np.all(adj >= p) and np.all(adj <= 1)


def test_holm_adjust_treats_each_row_as_a_family():
    rows = np.array([[0.01, 0.04, np.nan, 0.005], [0.5, 0.2, 0.01, np.nan], [np.nan] * 4])
    adjusted = holm_adjust(rows)
    for row, out in zip(rows, adjusted):
        np.testing.assert_array_equal(out, holm(row.tolist()))
    assert holm_adjust(np.empty((3, 0))).shape == (3, 0)


def test_holm_rejects_out_of_range():
    with pytest.raises(DataError, match=r"holm: p-values must lie in \[0, 1\]"):
        holm([0.1, 1.5])


# -------------------------------------------------------------------------------- 1-SE rule


def test_one_standard_error_rule_on_constructed_path():
    xs = [0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    means = [0.900, 0.905, 0.910, 0.902, 0.890, 0.700]
    ses = [0.004, 0.004, 0.005, 0.004, 0.004, 0.010]
    # best 0.910 at index 2; within one SE: mean >= 0.905 -> indices 1, 2 -> largest x is 1e-3?
    # No: index 3 has 0.902 < 0.905; so the 1-SE point is index 2 itself.
    assert one_standard_error_rule(xs, means, ses) == (2, 2)
    ses = [0.01] * 6  # threshold 0.900 -> indices 0..3, the largest x among them is 1e-2
    assert one_standard_error_rule(xs, means, ses) == (2, 3)


def test_one_standard_error_rule_lower_is_better_and_unsorted_xs():
    xs = [1.0, 0.01, 0.1, 0.0]
    losses = [0.50, 0.31, 0.33, 0.32]
    ses = [0.02, 0.025, 0.02, 0.02]
    # best 0.31 at index 1; within: loss <= 0.335 -> indices 1, 2, 3 -> largest x = 0.1 (index 2)
    assert one_standard_error_rule(xs, losses, ses, higher_is_better=False) == (1, 2)


def test_one_standard_error_rule_skips_nan_and_rejects_bad_input():
    assert one_standard_error_rule([0, 1, 2], [0.8, float("nan"), 0.79], [0.02] * 3) == (0, 2)
    with pytest.raises(DataError, match=r"one_standard_error_rule: .* of one length"):
        one_standard_error_rule([0, 1], [0.5], [0.1])
    with pytest.raises(DataError, match=r"'means' must hold at least one number"):
        one_standard_error_rule([0], [float("nan")], [0.1])


def test_stats_does_not_import_torch():
    code = "import sys, reglab.stats; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
