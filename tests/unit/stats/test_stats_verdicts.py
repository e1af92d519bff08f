"""reglab.stats.verdicts: each verdict from hand-made per-seed values, the p-values against
scipy's one-sided t-tests, and the family-wise error rate of the claims on simulated null
studies."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from reglab.errors import ConfigError
from reglab.stats import compare_variants, holm
from reglab.stats.verdicts import decide_verdicts, t_test_p_values

BASE = [0.800, 0.810, 0.790, 0.805, 0.795]


def study(**differences) -> dict[str, dict[int, float]]:
    """A baseline and one variant per keyword, ``baseline + differences`` seed by seed."""
    values = {"baseline": dict(enumerate(BASE))}
    for name, d in differences.items():
        values[name] = {seed: BASE[seed] + d[seed] for seed in range(len(d))}
    return values


def verdicts(values, **kwargs) -> dict[str, str]:
    return {v.variant: v.verdict for v in compare_variants(values, "baseline", **kwargs)}


# ------------------------------------------------------------------------ each verdict


def test_better_needs_the_difference_beyond_the_minimum_effect():
    values = study(l2=[0.050, 0.046, 0.053, 0.049, 0.052])
    assert verdicts(values, min_effect=0.01)["l2"] == "better"
    assert verdicts(values, min_effect=0.048)["l2"] == "no detectable difference"  # CI straddles
    assert verdicts(values, min_effect=0.06)["l2"] == "equivalent"  # the whole CI below δ


def test_worse_and_lower_is_better():
    values = study(broken=[-0.050, -0.046, -0.053, -0.049, -0.052])
    assert verdicts(values, min_effect=0.01)["broken"] == "worse"
    assert verdicts(values, min_effect=0.01, higher_is_better=False)["broken"] == "better"


def test_a_significant_but_negligible_difference_is_equivalent_not_better():
    # The case of issue 11: +0.0006 on every seed is far from 0 in seed units (p ~ 1e-5)
    # but far below one binomial SE of a 10,000-image test set (0.0037).
    values = study(l2=[0.0006, 0.0005, 0.0007, 0.0006, 0.0006])
    assert verdicts(values)["l2"] == "better"  # min_effect = 0: a real, tiny difference
    result = {v.variant: v for v in compare_variants(values, "baseline", min_effect=0.0037)}
    assert result["l2"].verdict == "equivalent"
    assert result["l2"].p_holm == 1.0 and result["l2"].p_equivalence < 1e-4


def test_no_detectable_difference():
    values = study(noisy=[0.010, -0.020, 0.015, -0.005, 0.002])
    result = {v.variant: v for v in compare_variants(values, "baseline", min_effect=0.0037)}
    assert result["noisy"].verdict == "no detectable difference"
    assert result["noisy"].p_holm >= 0.05 and result["noisy"].p_equivalence >= 0.05


@pytest.mark.parametrize("seeds", [1, 2])
def test_too_few_seeds_makes_no_claim(seeds):
    huge = [0.10] * seeds  # a constant +0.10: p = 0 with two seeds under a t-test
    values = study(l2=huge, dropout=[0.050, 0.046, 0.053, 0.049, 0.052])
    result = {v.variant: v for v in compare_variants(values, "baseline", min_effect=0.0)}
    assert result["l2"].verdict == "too few seeds"
    assert math.isnan(result["l2"].p_holm) and math.isnan(result["l2"].p_equivalence)
    assert result["l2"].comparison.n == seeds
    # it takes no part in the correction: dropout's p is that of a family of one
    alone = {v.variant: v for v in compare_variants(
        study(dropout=[0.050, 0.046, 0.053, 0.049, 0.052]), "baseline")}
    assert result["dropout"].p_holm == alone["dropout"].p_holm


def test_three_seeds_are_enough():
    assert verdicts(study(l2=[0.050, 0.046, 0.053]), min_effect=0.01)["l2"] == "better"


def test_the_baseline_row():
    (base,) = [v for v in compare_variants(study(), "baseline")]
    assert base.verdict == "baseline" and base.comparison is None
    assert base.p_holm is None and base.p_equivalence is None


def test_identical_variant_is_equivalent_with_a_minimum_effect_only():
    values = study(same=[0.0] * 5)
    assert verdicts(values, min_effect=0.0)["same"] == "no detectable difference"
    assert verdicts(values, min_effect=0.001)["same"] == "equivalent"


def test_constant_difference_takes_the_limits():
    values = study(l2=[0.02] * 5)
    assert verdicts(values, min_effect=0.01)["l2"] == "better"
    assert verdicts(values, min_effect=0.03)["l2"] == "equivalent"
    # exactly on the boundary (0.02 = 0.02, no round-off: the difference is constant
    # bit for bit only when the values are): neither claim
    exact = {"baseline": {s: 0.5 for s in range(4)}, "l2": {s: 0.75 for s in range(4)}}
    assert verdicts(exact, min_effect=0.25)["l2"] == "no detectable difference"


# ------------------------------------------------------------------- against scipy and Holm


def test_p_values_are_scipy_one_sided_t_tests_holm_corrected_over_two_per_variant():
    rng = np.random.default_rng(3)
    d = {name: 0.004 + 0.004 * rng.standard_normal(6) for name in ("a", "b", "c")}
    d["c"] -= 0.01
    values = {"baseline": {s: 0.8 for s in range(6)}} | {
        name: {s: 0.8 + d[name][s] for s in range(6)} for name in d}
    delta = 0.002
    result = {v.variant: v for v in compare_variants(values, "baseline", min_effect=delta)}
    names = ["a", "b", "c"]
    up = [stats.ttest_1samp(d[n], delta, alternative="greater").pvalue for n in names]
    down = [stats.ttest_1samp(d[n], -delta, alternative="less").pvalue for n in names]
    directional = holm(up + down)  # one family of 2m one-sided hypotheses
    for i, name in enumerate(names):
        assert result[name].p_holm == pytest.approx(min(directional[i], directional[i + 3]))
    equivalence = holm([max(stats.ttest_1samp(d[n], delta, alternative="less").pvalue,
                            stats.ttest_1samp(d[n], -delta, alternative="greater").pvalue)
                        for n in names])
    assert [result[n].p_equivalence for n in names] == pytest.approx(equivalence)


def test_one_comparison_without_minimum_effect_is_the_two_sided_test():
    d = [0.010, 0.002, 0.008, -0.001, 0.006]
    (v,) = [v for v in compare_variants(study(l2=d), "baseline") if v.comparison]
    assert v.p_holm == pytest.approx(stats.ttest_1samp(d, 0.0).pvalue)


def test_the_wilcoxon_verdicts_shift_the_differences():
    d = [0.050, 0.046, 0.053, 0.049, 0.052, 0.047, 0.051, 0.048]
    values = {"baseline": {s: 0.8 for s in range(8)}, "l2": {s: 0.8 + d[s] for s in range(8)}}
    (v,) = [v for v in compare_variants(values, "baseline", test="wilcoxon", min_effect=0.01)
            if v.comparison]
    p_up = stats.wilcoxon(np.array(d) - 0.01, alternative="greater").pvalue
    assert v.verdict == "better" and v.p_holm == pytest.approx(2 * p_up)
    (v,) = [v for v in compare_variants(values, "baseline", test="wilcoxon", min_effect=0.1)
            if v.comparison]
    assert v.verdict == "equivalent"


@pytest.mark.parametrize("value", [-0.01, "0.01", float("nan"), float("inf"), True])
def test_a_bad_minimum_effect_is_refused(value):
    with pytest.raises(ConfigError, match=r"compare_variants: 'min_effect' must be a float "
                                          r">= 0\. Got "):
        compare_variants(study(l2=[0.01] * 5), "baseline", min_effect=value)


# --------------------------------------------------------------- the vectorized core


def test_compare_variants_is_the_vectorized_core():
    rng = np.random.default_rng(7)
    for _ in range(20):
        base = 0.8 + 0.01 * rng.standard_normal(5)
        shifts = rng.choice([-0.01, 0.0, 0.004, 0.01], size=3)
        values = {"baseline": dict(enumerate(base))} | {
            f"v{i}": dict(enumerate(base + s + 0.004 * rng.standard_normal(5)))
            for i, s in enumerate(shifts)}
        result = {v.variant: v.verdict for v in compare_variants(values, "baseline",
                                                                  min_effect=0.003)}
        d = np.array([[values[f"v{i}"][s] - base[s] for s in range(5)] for i in range(3)])
        labels, _, _ = decide_verdicts(*t_test_p_values(d.mean(1), d.std(1, ddof=1), 5, 0.003))
        assert [result[f"v{i}"] for i in range(3)] == labels.tolist()


def _null_studies(rng, studies, variants, seeds, true_difference):
    """Per-seed differences of simulated studies: a shared baseline draw per seed (the
    comparisons are correlated, as in a study) and each variant's own noise."""
    baseline = rng.standard_normal((studies, 1, seeds))
    variant = rng.standard_normal((studies, variants, seeds)) + true_difference
    return variant - baseline  # (studies, variants, seeds)


def _claims(differences, min_effect, alpha):
    n = differences.shape[-1]
    labels, _, _ = decide_verdicts(
        *t_test_p_values(differences.mean(-1), differences.std(-1, ddof=1), n, min_effect),
        alpha=alpha)
    return labels


def family_wise_rates(studies=5000, variants=4, seeds=5, alpha=0.05, seed=20240611):
    """Measured family-wise rates of false claims on simulated studies, unit noise:

    - ``"zero"``: every variant equal to the baseline (Δ = 0), min_effect 0: the share of
      studies with any 'better' or 'worse';
    - ``"boundary"``: every variant exactly at Δ = +δ (δ = 0.5): 'better' claims Δ > δ, so any
      'better' or 'worse' is false; the worst case for the directional claims;
    - ``"equivalence"``: every variant at Δ = ±δ alternately: any 'equivalent' is false.
    """
    rng = np.random.default_rng(seed)
    zero = _claims(_null_studies(rng, studies, variants, seeds, 0.0), 0.0, alpha)
    boundary = _claims(_null_studies(rng, studies, variants, seeds, 0.5), 0.5, alpha)
    signs = np.where(np.arange(variants) % 2 == 0, 1.0, -1.0)[:, None]
    equivalence = _claims(_null_studies(rng, studies, variants, seeds, 0.5 * signs), 0.5,
                          alpha)
    directional = ("better", "worse")
    return {
        "zero": float(np.isin(zero, directional).any(-1).mean()),
        "boundary": float(np.isin(boundary, directional).any(-1).mean()),
        "equivalence": float((equivalence == "equivalent").any(-1).mean()),
    }


def test_the_family_wise_rate_of_false_claims_is_at_most_alpha():
    studies, alpha = 5000, 0.05
    rates = family_wise_rates(studies=studies, alpha=alpha)
    print(f"\nfamily-wise false-claim rates, {studies} null studies × 4 variants × 5 seeds: "
          + ", ".join(f"{k} {v:.4f}" for k, v in rates.items()))
    bound = alpha + 3 * math.sqrt(alpha * (1 - alpha) / studies)  # 0.059
    assert all(rate <= bound for rate in rates.values()), rates
    assert rates["zero"] > 0.01  # the tests are not dead: near alpha at the boundary
