"""The results of a study: per variant, mean ± CI over seeds and the verdict against the baseline.

:func:`rank_variants` computes them once; :func:`results_table` prints them and the HTML
report shows them. Choices are made on validation accuracy (the best variant, the best
strength of a sweep); test accuracy is reported, never used to choose. The verdicts'
minimum effect is the study file's ``[stats] min_effect``, else one binomial standard error
of the baseline's test accuracy (:func:`resolve_min_effect`); both the table and the report
derive it from the store alone, so they agree.

With data regimes (:mod:`reglab.study.regimes`) each regime is ranked on its own
(:func:`rank_regimes`): every variant against the baseline of its own regime, paired by seed,
with the regime's own minimum effect, Holm's correction over the regime's comparisons (a
regime is a family: it asks its own question), and the table prints one block per regime.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from reglab.study import precision

FINAL_OK = ("done", "stopped_early")
#: family-wise significance level of the verdicts
ALPHA = 0.05
#: test-split sizes of the built-in datasets, for stores whose runs did not record
#: ``test_samples``
BUILTIN_TEST_SAMPLES = {"fashion_mnist": 10_000, "mnist": 10_000}


def format_number(value, digits: int = 4, sign: bool = False) -> str:
    """``value`` with ``digits`` decimals (a ``+`` on positives with ``sign``); "—" for None,
    nan or infinity."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    value = round(float(value), digits) + 0.0  # a value that rounds to zero shows no sign
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def decimals_for(values, least: int = 4, significant: int = 4, most: int = 12) -> int:
    """Decimals that show the largest finite ``|value|`` to ``significant`` digits, at least
    ``least`` (a proportion's 0.8781) and at most ``most``: an error of 2.3e-5 shows as
    0.00002300, where four decimals showed 0.0000 beside its verdict."""
    scale = max((abs(float(v)) for v in values  # numbers only: a store's JSON may hold others
                 if isinstance(v, numbers.Real) and not isinstance(v, bool)
                 and math.isfinite(v) and v != 0), default=0.0)
    if scale == 0.0:
        return least
    return min(most, max(least, significant - 1 - math.floor(math.log10(scale))))


def ranking_decimals(ranking: Ranking) -> tuple[int, int]:
    """``(the values' decimals, the differences' decimals)`` of a ranking's table: the rows'
    means (and gaps) to four significant digits of the largest; the differences to the
    baseline with as many decimals, or more where the largest difference needs them for two
    significant digits (a difference of 1.5e-5 between errors near 1)."""
    values = decimals_for(row.verdict.summary.mean for row in ranking.rows)
    differences = decimals_for((row.verdict.comparison.mean_difference for row in ranking.rows
                                if row.verdict.comparison is not None),
                               least=values, significant=2)
    return values, differences


def variant_label(record) -> str:
    """``l2_path[l2=0.001]`` for a sweep point (values as precise as the run ids), the
    variant's name otherwise."""
    from reglab.study.sweeps import format_value

    point = ",".join(f"{k.split('.')[-1]}={format_value(v)}" for k, v in record.point.items())
    return f"{record.variant}[{point}]" if point else record.variant


@dataclass(frozen=True)
class RankedVariant:
    """One row of the results: a variant (at one sweep point) over its seeds."""

    label: str
    verdict: object  # reglab.stats.VariantVerdict on the ranked metric
    gap: object  # reglab.stats.Summary of generalization_gap (train − test accuracy...)
    validation_mean: float


@dataclass(frozen=True)
class MinEffect:
    """The minimum effect of a study's verdicts, and how it was chosen (in words)."""

    value: float
    source: str


@dataclass(frozen=True)
class Ranking:
    rows: tuple[RankedVariant, ...]  # best test mean first
    baseline: str
    metric: str
    best: str | None  # the label with the best mean validation accuracy; None without any
    min_effect: MinEffect = MinEffect(0.0, "")
    alpha: float = ALPHA
    #: the labels with a better mean validation value than ``best`` that were not chosen
    #: because some of their seeds diverged or failed, with those counts in words
    passed_over: tuple[tuple[str, str], ...] = ()

    def row(self, label: str) -> RankedVariant:
        return next(r for r in self.rows if r.label == label)


@dataclass(frozen=True)
class RegimeRanking:
    """The ranking of one data regime's runs (``label`` '' and ``regime`` {} without
    regimes: the whole study)."""

    label: str
    regime: dict
    ranking: Ranking
    #: the regime's runs' mean number of training samples and share of replaced training
    #: labels (nan where the runs did not record them: the default regime)
    train_samples: float = math.nan
    label_noise_rate: float = math.nan

    def describe(self) -> str:
        """``train_size=1000,label_noise=0.3 (1,000 training samples, 30.0 % of their labels
        replaced)``."""
        facts = []
        if math.isfinite(self.train_samples):
            facts.append(f"{self.train_samples:,.0f} training samples")
        if math.isfinite(self.label_noise_rate) and self.label_noise_rate > 0:
            facts.append(f"{100 * self.label_noise_rate:.1f} % of their labels replaced")
        return self.label + (f" ({', '.join(facts)})" if facts else "")


def run_regime(record) -> dict:
    """A run's data regime: its record's, or the one its run id names (a store that lost
    its regime column still names the regime there)."""
    from reglab.study.regimes import regime_from_run_id

    return getattr(record, "regime", None) or regime_from_run_id(record.run_id)


def rank_regimes(runs, baseline: str = "baseline", metric: str = "test_accuracy",
                 choose_on: str = "val_accuracy", min_effect: float | None = None,
                 dataset: str | None = None) -> list[RegimeRanking]:
    """:func:`rank_variants` per data regime (in the order the runs first show each one);
    regimes without a finished run with ``metric`` are left out, and so are regimes without
    one of the baseline (one baseline for the whole study: ``baseline``, else the first
    variant the runs show; a regime's variants are never compared with another). A study
    without regimes gives one ranking, labelled ''."""
    from reglab.study.regimes import regime_label

    groups: dict[str, list] = {}
    regimes: dict[str, dict] = {}
    for record in runs:
        regime = run_regime(record)
        label = regime_label(regime)
        groups.setdefault(label, []).append(record)
        regimes.setdefault(label, dict(regime))
    ranked = [variant_label(r) for r in runs if r.status in FINAL_OK and metric in r.metrics]
    if ranked and baseline not in ranked:
        baseline = ranked[0]
    out = []
    for label, group in groups.items():
        ranking = rank_variants(group, baseline, metric, choose_on, min_effect, dataset,
                                fallback=len(groups) == 1)
        if ranking is None:
            continue
        finished = [r for r in group if r.status in FINAL_OK]
        out.append(RegimeRanking(
            label, regimes[label], ranking,
            finite_mean(r.metrics.get("train_samples", math.nan) for r in finished),
            finite_mean(r.metrics.get("label_noise_rate", math.nan) for r in finished)))
    return out


def resolve_min_effect(min_effect: float | None, metric: str, baseline_mean: float,
                       test_samples: float | None) -> MinEffect:
    """The verdicts' minimum effect: ``min_effect`` when the study file sets it, else one
    binomial standard error of the baseline's mean test accuracy ``p`` over the ``n`` test
    samples, ``sqrt(p (1 − p) / n)``: the test set's own resolution (differences below it
    are a few images of one fixed test set). 0 when ``metric`` is not a proportion or ``n``
    is unknown, and the source says so."""
    from reglab.study.spec import METRICS

    if min_effect is not None:
        return MinEffect(float(min_effect), "set by the study file ([stats] min_effect)")
    if not (metric.startswith("test_") and metric[len("test_"):] in METRICS):
        return MinEffect(0.0, f"{metric} is not a proportion, so it has no binomial "
                              "default (differences are tested against 0); set [stats] "
                              "min_effect for a difference worth a verdict")
    if not (test_samples and math.isfinite(test_samples) and math.isfinite(baseline_mean)):
        return MinEffect(0.0, "the test set's size is unknown, so there is no binomial "
                              "default; set [stats] min_effect")
    p = min(max(baseline_mean, 0.0), 1.0)
    return MinEffect(math.sqrt(p * (1.0 - p) / test_samples),
                     f"one binomial standard error of the baseline's {metric}, "
                     f"√(p(1 − p)/n), p = {p:.4f}, n = {int(test_samples)} test samples")


def test_sample_count(runs, dataset: str | None = None) -> float | None:
    """The test set's size: as the runs recorded it (``test_samples``), else the built-in
    dataset's; None when unknown."""
    for record in runs:
        n = record.metrics.get("test_samples")
        if isinstance(n, (int, float)) and math.isfinite(n) and n > 0:
            return float(n)
    known = BUILTIN_TEST_SAMPLES.get(dataset or "")
    return None if known is None else float(known)


def rank_variants(runs, baseline: str = "baseline", metric: str = "test_accuracy",
                  choose_on: str = "val_accuracy", min_effect: float | None = None,
                  dataset: str | None = None, fallback: bool = True) -> Ranking | None:
    """Ranks the finished runs' variants by ``metric``; None when no run has it yet (or,
    without ``fallback``, when ``baseline`` has none).

    ``baseline`` falls back to the first variant when the study has none of that name.
    The best variant is chosen on ``choose_on`` (validation), never on ``metric``; it is None
    when no run has a finite ``choose_on``. Verdicts use ``min_effect`` (the study file's
    ``[stats] min_effect``), or by default one binomial standard error of the baseline's
    ``metric`` (the test set's size from the runs, else from ``dataset``'s name).
    """
    from reglab.stats import compare_variants, summarize

    upwards = higher_is_better(metric)
    values: dict[str, dict[int, float]] = {}
    gaps: dict[str, list[float]] = {}
    validation: dict[str, list[float]] = {}
    for record in runs:
        if record.status not in FINAL_OK or metric not in record.metrics:
            continue
        label = variant_label(record)
        values.setdefault(label, {})[record.seed] = record.metrics[metric]
        gaps.setdefault(label, []).append(generalization_gap(record.metrics, metric))
        validation.setdefault(label, []).append(record.metrics.get(choose_on, math.nan))
    if not values:
        return None
    if baseline not in values:
        if not fallback:
            return None
        baseline = next(iter(values))
    finished = [r for r in runs if r.status in FINAL_OK]
    chosen_effect = resolve_min_effect(
        min_effect, metric, finite_mean(values[baseline].values()),
        test_sample_count([r for r in finished if variant_label(r) == baseline] + finished,
                          dataset))
    rows = []
    for verdict in compare_variants(values, baseline=baseline, higher_is_better=upwards,
                                    alpha=ALPHA, min_effect=chosen_effect.value):
        finite_gaps = [g for g in gaps[verdict.variant] if math.isfinite(g)]
        gap = summarize(finite_gaps) if finite_gaps else None
        rows.append(RankedVariant(verdict.variant, verdict, gap,
                                  finite_mean(validation[verdict.variant])))
    # The best is chosen among the settings whose every seed finished: one that diverged
    # (or failed) on some seeds is no safe choice whatever its survivors' mean. Those better
    # on validation are named beside the choice.
    lost = left_out(runs)
    scored = sorted((r for r in rows if not math.isnan(r.validation_mean)),
                    key=lambda r: r.validation_mean, reverse=higher_is_better(choose_on))
    best = next((r.label for r in scored if r.label not in lost), None)
    passed = []
    for r in scored:
        if r.label == best:
            break
        passed.append((r.label, left_out_words(lost[r.label])))
    return Ranking(tuple(rows), baseline, metric, best, chosen_effect, ALPHA, tuple(passed))


def generalization_gap(metrics: dict, metric: str) -> float:
    """A run's generalization gap on the ranked metric, positive when it fits its training
    data better than the test data: train − test accuracy, test − train error or loss."""
    if metric == "test_loss":
        return metrics.get("gap_loss", math.nan)
    if metric == "test_data_loss":
        return metrics.get("test_data_loss", math.nan) - metrics.get("train_data_loss", math.nan)
    gap = metrics.get("gap_accuracy", math.nan)  # train − test of the study's first metric
    return gap if higher_is_better(metric) else -gap


#: run statuses that end a run without a result the table ranks
LEFT_OUT = ("diverged", "failed")


def left_out(runs) -> dict[str, dict[str, int]]:
    """Per variant label, how many of its runs diverged or failed (in that order): the runs
    a ranking leaves out. A diverged run's metrics are those of the weights it was frozen
    with (somewhere in its divergence), so it is not averaged in; the table says it is
    missing instead."""
    counts: dict[str, dict[str, int]] = {}
    for record in runs:
        if record.status in LEFT_OUT:
            by_status = counts.setdefault(variant_label(record), {})
            by_status[record.status] = by_status.get(record.status, 0) + 1
    return {label: {s: by_status[s] for s in LEFT_OUT if s in by_status}
            for label, by_status in counts.items()}


def left_out_words(by_status: dict[str, int]) -> str:
    """``1 seed diverged, 2 failed``."""
    parts = [f"{n} {'seed' if n == 1 else 'seeds'} {status}" if i == 0 else f"{n} {status}"
             for i, (status, n) in enumerate(by_status.items())]
    return ", ".join(parts)


def left_out_lines(ranking: Ranking, missing: dict[str, dict[str, int]]) -> list[str]:
    """The lines under a table for the variants that have no row: every run of theirs
    diverged or failed."""
    ranked = {row.label for row in ranking.rows}
    absent = [label for label in missing if label not in ranked]
    if not absent:
        return []
    return ["not ranked (no finished run): " + "; ".join(
        f"{label} ({left_out_words(missing[label])})" for label in absent)]


def finite_mean(values) -> float:
    """The mean of the finite numbers among ``values``; nan when there are none."""
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def unfinished_line(runs) -> str:
    """A first line for a table over a study that is not over (its runs queued or running:
    in progress, or a run was stopped), naming the variants still missing runs; else ''."""
    waiting = [r for r in runs if not r.finished]
    if not waiting:
        return ""
    labels = sorted({variant_label(r) for r in waiting})
    return (f"partial results: {len(waiting)} of {len(runs)} runs not finished ("
            f"{', '.join(labels)}); `reglab run` on the same study goes on from them\n\n")


def metric_keys(metric_names) -> tuple[str, str]:
    """``(ranked, chosen on)`` run-metric keys for a study's first metric, which the logs name
    as written ('accuracy', 'acc', 'mae'...): its test and validation values; without a
    metric, the data loss's: Keras's loss adds the penalties, which would make every
    penalized variant look worse by its penalty alone (as a tuning's objective, which is
    ``val_data_loss`` for the same reason)."""
    name = next(iter(metric_names), None) or "data_loss"
    return f"test_{name}", f"val_{name}"


def chosen_on(spec, keys: tuple[str, str]) -> str:
    """The validation log the best variant is chosen on: a tuning's objective (what its
    trials were chosen on), else the study's first metric's (``keys[1]``)."""
    tune = getattr(spec, "tune", None) if spec else None
    return tune.objective if tune else keys[1]


def higher_is_better(metric_key: str) -> bool:
    """Whether larger values of a run metric are better: an accuracy's ('test_accuracy'), not
    an error's or a loss's ('test_mae', 'val_loss'), by Keras's rule
    (:func:`reglab.monitors.direction`)."""
    from reglab.monitors import direction

    return direction(metric_key.split("_", 1)[1], where="the study's table") == "max"


def baseline_replaced(runs, baseline: str, used: str) -> str:
    """A line saying so when the study has a ``baseline`` variant but compares with another
    (none of the baseline's runs finished), else ''."""
    mine = [r for r in runs if variant_label(r) == baseline]
    if used == baseline or not mine:
        return ""
    statuses = ", ".join(sorted({r.status for r in mine}))
    return (f"note: no run of the baseline '{baseline}' finished ({len(mine)} {statuses}); "
            f"the table compares with '{used}' instead\n")


def _why_no_table(runs, metric: str) -> str:
    """The line shown instead of the table: why no run ranks (none finished yet, every one
    diverged or failed, or the finished ones have no ``metric``: no test set)."""
    finished = [r for r in runs if r.status == "done"]
    if not finished:
        ended = [r for r in runs if r.status in ("diverged", "failed")]
        if runs and len(ended) == len(runs):
            how = "diverged" if all(r.status == "diverged" for r in ended) else \
                "diverged or failed"
            return (f"no table: every run {how} ({len(ended)} of {len(runs)}); see `reglab ls` "
                    "for each run's status")
        return f"no finished runs with {metric} yet"
    if not any(metric in (r.metrics or {}) for r in finished):
        return (f"no table: the {len(finished)} finished run(s) have no {metric} (the study has "
                "no test set: give it data.test or data.test_split to rank and compare them)")
    return f"no finished runs with {metric} yet"


def stored_spec(store):
    """The study a store holds (a StudySpec), None when it holds none yet."""
    from reglab.study.spec import StudySpec

    stored = store.study()
    return StudySpec.from_canonical(stored[1], str(getattr(store, "path", "the stored study"))) \
        if stored else None


def stored_metrics(store) -> tuple[str, ...]:
    """The metrics of the study a store holds (``('accuracy',)`` when it holds none, or one
    this version cannot read: the runs are still listed)."""
    from reglab.errors import ReglabError

    try:
        spec = stored_spec(store)
    except ReglabError:
        spec = None
    return tuple(spec.training.metrics) if spec else ("accuracy",)


def results_table(store, baseline: str = "baseline") -> str:
    """The ranked table with paired differences to the baseline and Holm-corrected verdicts,
    on the study's first metric (test, ranked; validation, chosen on)."""
    spec = stored_spec(store)
    keys = metric_keys(spec.training.metrics if spec else ["accuracy"])
    from reglab.study.plan import is_trial_run

    # a tuning's trials are chosen among, not ranked: the table is its confirmation's
    runs = [r for r in store.runs() if not is_trial_run(r.run_id)]
    partial = unfinished_line(runs)
    keys = (keys[0], chosen_on(spec, keys))
    rankings = rank_regimes(runs, baseline, metric=keys[0], choose_on=keys[1],
                            min_effect=spec.stats.min_effect if spec else None,
                            dataset=spec.data.dataset if spec else None)
    tuning = tuning_summary(store.get_meta("tuning"), spec) if spec and spec.tune else ""
    heading = partial + tuning  # what comes before the table
    if not rankings:
        if tuning and (store.get_meta("tuning") or {}).get("unconfirmed"):
            return heading.rstrip("\n")  # nothing was confirmed: no table to explain
        return heading + _why_no_table(runs, keys[0])
    heading += baseline_replaced(runs, baseline, rankings[0].ranking.baseline)
    requested = spec.training.precision if spec else "float32"
    # what "auto" resolved to, recorded when the study started (the file's own otherwise)
    auto = requested == precision.AUTO
    trained = store.get_meta("precision") if auto else None
    reason = store.get_meta("precision_reason") if auto else None
    footer = []
    if requested != "float32":
        footer.append(f"\nprecision: {precision.describe(requested, trained, reason)}")
    if len(rankings) == 1 and not rankings[0].label:  # no data regimes: one table
        ranking = rankings[0].ranking
        missing = left_out(runs)
        from reglab.study.regimes import fixed_regime_label

        fixed = fixed_regime_label(spec.data) if spec else ""
        if fixed:  # one regime for every run: the table's data, said once
            heading += f"data regime {fixed} (every run)\n"
        lines = [heading + "\n".join([*_table_lines(ranking, keys, missing),
                                     *left_out_lines(ranking, missing)]),
                 "\n" + verdict_rule(ranking), *footer, "\n" + _best_line(ranking, keys)]
        return "\n".join(lines)
    from reglab.study.regimes import regime_label

    lines = [heading.rstrip("\n")] if heading else []  # unfinished runs, tuning, baseline
    for regime in rankings:
        missing = left_out(r for r in runs if regime_label(run_regime(r)) == regime.label)
        lines += [f"data regime {regime.describe()}:",
                  *_table_lines(regime.ranking, keys, missing),
                  *left_out_lines(regime.ranking, missing),
                  min_effect_line(regime.ranking), _best_line(regime.ranking, keys), ""]
    shown = {regime.label for regime in rankings}
    baseline = rankings[0].ranking.baseline
    finished = [r for r in runs if r.status in FINAL_OK and keys[0] in r.metrics]
    for label in dict.fromkeys(regime_label(run_regime(r)) for r in finished):
        if label not in shown:
            lines += [f"data regime {label}: no finished {baseline} runs, so no verdicts "
                      "(a regime is compared with its own baseline only)", ""]
    lines.append(tests_line(rankings[0].ranking, "within its data regime"))
    return "\n".join(lines + footer)


def _best_line(ranking: Ranking, keys) -> str:
    passed = passed_over_words(ranking)
    if ranking.best is None and passed:
        return (f"nothing chosen on {keys[1]}: every variant with validation data lost seeds "
                f"({passed})")
    if ranking.best is None:
        return ("no validation data: nothing chosen (test metrics are never used to "
                "choose)")
    best = ranking.row(ranking.best)
    line = (f"best on {keys[1]}: {ranking.best} "
            f"({keys[0]} {format_number(best.verdict.summary.mean, ranking_decimals(ranking)[0])})")
    return f"{line}; passed over, better on validation but not every seed finished: {passed}" \
        if passed else line


def passed_over_words(ranking: Ranking) -> str:
    """``l2[l2=1] (3 seeds diverged); ...``: the settings better on validation than the
    choice that lost seeds; '' when none."""
    return "; ".join(f"{label} ({words})" for label, words in ranking.passed_over)


def _table_lines(ranking: Ranking, keys, missing: dict[str, dict[str, int]] | None = None
                 ) -> list[str]:
    """The header and one line per row of a ranking; a row whose variant has runs that
    diverged or failed (``missing``, from :func:`left_out`) says so after its verdict, its
    numbers being those of the other seeds."""
    baseline = ranking.baseline
    digits, delta_digits = ranking_decimals(ranking)
    cells = []
    for row in ranking.rows:
        v = row.verdict
        s = v.summary
        ci = (f"{format_number(s.mean, digits)} ({format_number(s.ci_low, digits - 1)}–"
              f"{format_number(s.ci_high, digits - 1)})")
        gap = format_number(row.gap.mean if row.gap else math.nan, digits)
        if v.comparison is None:
            delta, p = "", ""
        else:
            c = v.comparison
            delta = (f"{format_number(c.mean_difference, delta_digits, sign=True)} ("
                     f"{format_number(c.ci_low, delta_digits - 1, sign=True)}…"
                     f"{format_number(c.ci_high, delta_digits - 1, sign=True)})")
            p = format_number(v.p_holm, 3)
        lost = (missing or {}).get(row.label)
        note = f" (without {left_out_words(lost)})" if lost else ""
        cells.append((row.label, ci, gap, delta, p, f"{v.verdict}{note}"))
    # the columns as wide as their longest number (a proportion's fit the header's widths)
    ci_width = max([24, *(len(c[1]) for c in cells)])
    gap_width = max([8, *(len(c[2]) for c in cells)])
    delta_width = max([22, *(len(c[3]) for c in cells)])
    lines = [f"{'variant':40s} {keys[0] + ' (95% CI)':>{ci_width}s} {'gap':>{gap_width}s} "
             f"{padded('Δ vs ' + baseline, delta_width, right=True)} {'p (Holm)':>9s}  verdict"]
    for label, ci, gap, delta, p, verdict in cells:
        lines.append(f"{padded(label, 40)} {ci:>{ci_width}s} {gap:>{gap_width}s} "
                     f"{delta:>{delta_width}s} {p:>9s}  {verdict}")
    return lines


def padded(text: str, width: int, right: bool = False) -> str:
    """``text`` aligned in ``width`` terminal columns (left, or ``right``): a wide character
    (CJK, full width) takes two, a mark or format character (combining accents, Thai and
    Devanagari vowel signs, joiners) none, as terminals draw them."""
    import unicodedata

    columns = sum(0 if unicodedata.category(ch) in ("Mn", "Me", "Cf") else
                  2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
    space = " " * max(width - columns, 0)
    return space + text if right else text + space


def tuning_summary(summary: dict | None, spec) -> str:
    """A tuning study's first lines: its trials, budget and the trial confirmed below."""
    from reglab.study.sweeps import format_value
    from reglab.tune.trainer import objective_name

    if not summary:
        return "tuning in progress (no summary yet)\n\n"
    trials = summary["trials"]
    diverged = f"{trials['diverged']} diverged, " if trials.get("diverged") else ""
    same = summary.get("same_values", 0)
    lines = [f"tuning: {summary['asked']} trials asked ({trials['complete']} complete, "
             f"{trials['pruned']} pruned, {diverged}{trials['failed']} failed"
             f"{f'; {same} drew values already tried and took their result' if same else ''}), "
             f"{summary['model_epochs']:,} model-epochs ({summary['pruning_saved']:,} saved by "
             f"pruning), {summary['wall_time']:.0f} s, populations of up to "
             f"{summary['population_size']} trials"]
    chosen = summary.get("chosen")
    if chosen:
        point = ", ".join(f"{p}={format_value(v)}" for p, v in chosen["point"])
        rule = "the best on validation" if chosen["rule"] == "best" else (
            f"the 1-SE rule (SE {chosen['standard_error']:.4f}; the best was trial "
            f"{chosen['best_number']})")
        if chosen.get("note"):
            rule += f"; {chosen['note']}"
        confirmed = (f"not confirmed: {summary['unconfirmed']} (give it data.test or "
                     "data.test_split to confirm it on fresh seeds)"
                     if summary.get("unconfirmed") else
                     f"confirmed on fresh seeds {', '.join(map(str, spec.seeds))}:")
        lines.append(f"chosen: trial {chosen['number']} by {rule}: {chosen['variant']}"
                     f"{f' ({point})' if point else ''}, {objective_name(spec.tune.objective)} "
                     f"{chosen['value']:.4f}; {confirmed}")
    return "\n".join(lines) + "\n\n"


def min_effect_line(ranking: Ranking) -> str:
    """``min effect δ = 0.0033: <where it comes from>.``"""
    effect = ranking.min_effect
    return f"min effect δ = {effect.value:.4g}: {effect.source}."


def tests_line(ranking: Ranking, family: str = "") -> str:
    """What the verdicts' tests are, in one line (``family``: the comparisons each Holm
    procedure runs over, when not the whole study)."""
    from reglab.stats import MIN_SEEDS

    within = f" {family}" if family else ""
    return (f"verdicts (≥ {MIN_SEEDS} paired seeds): better/worse if Δ is beyond ±δ, equivalent "
            f"if within ±δ, each Holm-corrected at α = {ranking.alpha:g}{within}; p (Holm): "
            "H0 |Δ| ≤ δ.")


def verdict_rule(ranking: Ranking) -> str:
    """What the verdicts of ``ranking`` mean, in two lines: its minimum effect and its tests."""
    return f"{min_effect_line(ranking)}\n{tests_line(ranking)}"
