"""The results table of a study: per variant, mean ± CI over seeds and the verdict.

Choices are made on validation accuracy (the best strength of a sweep); test accuracy
is reported, never used to choose.
"""

from __future__ import annotations

import math


def _fmt(value: float, digits: int = 4) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else \
        f"{value:.{digits}f}"


def variant_label(record) -> str:
    point = ",".join(f"{k.split('.')[-1]}={v:.3g}" for k, v in record.point.items())
    return f"{record.variant}[{point}]" if point else record.variant


def results_table(store, baseline: str = "baseline", metric: str = "test_accuracy") -> str:
    """The ranked table with paired differences to the baseline and Holm-corrected verdicts."""
    from reglab.stats import compare_variants

    values: dict[str, dict[int, float]] = {}
    gaps: dict[str, dict[int, float]] = {}
    val: dict[str, dict[int, float]] = {}
    for record in store.runs(status=("done", "stopped_early")):
        label = variant_label(record)
        if metric in record.metrics:
            values.setdefault(label, {})[record.seed] = record.metrics[metric]
            gaps.setdefault(label, {})[record.seed] = record.metrics.get("gap_accuracy", math.nan)
            val.setdefault(label, {})[record.seed] = record.metrics.get("val_accuracy", math.nan)
    if not values:
        return "no finished runs yet"
    if baseline not in values:
        baseline = next(iter(values))
    verdicts = compare_variants(values, baseline=baseline)
    lines = [f"{'variant':40s} {'test acc (95% CI)':>24s} {'gap':>8s} {'Δ vs ' + baseline:>22s}"
             f" {'p (Holm)':>9s}  verdict"]
    for v in verdicts:
        s = v.summary
        ci = f"{_fmt(s.mean)} ({_fmt(s.ci_low, 3)}–{_fmt(s.ci_high, 3)})"
        gap = sum(gaps[v.variant].values()) / len(gaps[v.variant])
        if v.comparison is None:
            delta, p = "", ""
        else:
            c = v.comparison
            delta = f"{c.mean_difference:+.4f} ({c.ci_low:+.3f}…{c.ci_high:+.3f})"
            p = _fmt(v.p_holm, 3)
        lines.append(f"{v.variant:40s} {ci:>24s} {gap:8.4f} {delta:>22s} {p:>9s}  {v.verdict}")
    best = max(val, key=lambda k: sum(val[k].values()) / len(val[k]))
    lines.append(f"\nbest on validation accuracy: {best} "
                 f"(test {sum(values[best].values()) / len(values[best]):.4f})")
    return "\n".join(lines)
