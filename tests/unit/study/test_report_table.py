"""The ranking behind the results table and the report: choices on validation, never on test."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from reglab.storage import RunRecord
from reglab.study.report_table import (
    MinEffect,
    metric_keys,
    rank_variants,
    results_table,
    variant_label,
)

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def run(variant, seed, test, val=math.nan, point=None):
    return RunRecord(f"{variant}/seed={seed}", variant, point or {}, seed, "p", {}, "done",
                     metrics={"test_accuracy": test, "val_accuracy": val, "gap_accuracy": 0.01})


def test_the_best_is_chosen_on_validation_not_test():
    runs = [run("baseline", s, 0.80 + s / 100, val=0.90) for s in range(3)]
    runs += [run("l2", s, 0.90 + s / 100, val=0.85) for s in range(3)]  # better on test only
    ranking = rank_variants(runs)
    assert [r.label for r in ranking.rows] == ["l2", "baseline"]  # ranked on test
    assert ranking.best == "baseline"  # chosen on validation


def test_without_validation_data_nothing_is_chosen():
    runs = [run("baseline", s, 0.8) for s in range(3)] + [run("l2", s, 0.9) for s in range(3)]
    ranking = rank_variants(runs)
    assert ranking.best is None and ranking.rows[0].label == "l2"


def test_sweep_labels_are_as_precise_as_run_ids():
    a = run("p", 0, 0.8, point={"kernel_regularizer.l2": 1.0001e-3})
    b = run("p", 0, 0.8, point={"kernel_regularizer.l2": 1.0002e-3})
    assert variant_label(a) != variant_label(b)
    assert variant_label(run("p", 0, 0.8, point={"kernel_regularizer.l2": 1e-5})) == "p[l2=1e-05]"


def test_metric_keys_follow_the_study_metric():
    assert metric_keys(["acc"]) == ("test_acc", "val_acc")
    assert metric_keys(["mae"]) == ("test_mae", "val_mae")
    # without a metric: the data loss (Keras's loss adds the penalties)
    assert metric_keys(()) == ("test_data_loss", "val_data_loss")


def error_run(variant, seed, test, val, gap, metric="mae"):
    return RunRecord(f"{variant}/seed={seed}", variant, {}, seed, "p", {}, "done",
                     metrics={f"test_{metric}": test, f"val_{metric}": val,
                              "gap_accuracy": -gap, "gap_loss": gap})


@pytest.mark.parametrize("metric", ["mae", "loss"])
def test_an_error_or_a_loss_ranks_lower_first_and_calls_a_lower_variant_better(metric):
    noise = [0.001, -0.002, 0.0015, -0.001]
    runs = [error_run("baseline", s, 1.0 + noise[s], 1.1, 0.2, metric) for s in range(4)]
    runs += [error_run("l2", s, 0.8 + noise[s] / 2, 1.2, 0.1, metric) for s in range(4)]
    runs += [error_run("dropout", s, 1.3 + noise[s], 1.0, 0.3, metric) for s in range(4)]
    ranking = rank_variants(runs, metric=f"test_{metric}", choose_on=f"val_{metric}")
    assert [r.label for r in ranking.rows] == ["l2", "baseline", "dropout"]
    verdicts = {r.label: r.verdict.verdict for r in ranking.rows}
    assert verdicts == {"l2": "better", "baseline": "baseline", "dropout": "worse"}
    assert ranking.best == "dropout"  # the lowest validation error, whatever the test says
    # the gap is test − train, positive when the run fits its training data better
    assert ranking.row("l2").gap.mean == pytest.approx(0.1)
    assert "not a proportion" in ranking.min_effect.source and ranking.min_effect.value == 0


# ------------------------------------------------------------------ the minimum effect

STUDY = """
seeds = 4
[data]
dataset = "fashion_mnist"
[model]
input_shape = [784]
layers = [{ type = "Dense", units = 10, activation = "softmax" }]
[training]
epochs = 1
[variants.baseline]
[variants.l2]
kernel_regularizer = { type = "L2", l2 = 1e-4 }
"""


class StoredStudy:
    """What results_table reads of a store: the study as stored, and the runs."""

    def __init__(self, text: str, runs):
        from reglab.study import parse_study

        self.spec = parse_study("study.toml", text)
        self._runs = runs

    def study(self):
        return self.spec.fingerprint(), json.loads(self.spec.canonical_json())

    def runs(self):
        return self._runs


def four_seeds(difference: float, extra=None):
    base = [0.800, 0.810, 0.790, 0.805]
    noise = [0.001, -0.001, 0.0005, -0.0005]
    runs = [run("baseline", s, base[s]) for s in range(4)]
    runs += [run("l2", s, base[s] + difference + noise[s]) for s in range(4)]
    for record in runs:
        record.metrics.update(extra or {})
    return runs


def verdict_line(table: str, label: str) -> str:
    return next(line for line in table.splitlines() if line.startswith(label + " "))


def test_the_min_effect_of_the_study_file_reaches_the_verdict():
    runs = four_seeds(0.03)
    default = results_table(StoredStudy(STUDY, runs))
    assert verdict_line(default, "l2").endswith("better")
    p = sum([0.800, 0.810, 0.790, 0.805]) / 4  # the built-in dataset's test split: 10,000
    assert (f"min effect δ = {math.sqrt(p * (1 - p) / 10_000):.4g}: one binomial standard error "
            "of the baseline's test_accuracy") in default
    text = STUDY + "[stats]\nmin_effect = 0.05\n"
    large = results_table(StoredStudy(text, runs))
    assert verdict_line(large, "l2").endswith("equivalent")
    assert "min effect δ = 0.05: set by the study file ([stats] min_effect)" in large
    spec = StoredStudy(text, runs).spec
    ranking = rank_variants(runs, min_effect=spec.stats.min_effect)
    assert ranking.row("l2").verdict.verdict == "equivalent"
    assert ranking.min_effect.value == 0.05


def test_the_default_min_effect_is_one_binomial_standard_error():
    runs = four_seeds(0.03, extra={"test_samples": 400.0})  # as runs record it
    ranking = rank_variants(runs, dataset="fashion_mnist")
    p = ranking.row("baseline").verdict.summary.mean
    assert ranking.min_effect.value == pytest.approx(math.sqrt(p * (1 - p) / 400))
    assert "n = 400 test samples" in ranking.min_effect.source


def test_the_min_effect_falls_back_to_zero_and_says_why():
    unknown = rank_variants(four_seeds(0.03), dataset="data.npz")
    assert unknown.min_effect.value == 0.0
    assert "the test set's size is unknown" in unknown.min_effect.source
    runs = [run(v, s, 0.5) for v in ("baseline", "l2") for s in range(3)]
    for record in runs:
        record.metrics["test_mse"] = record.metrics.pop("test_accuracy")
    other = rank_variants(runs, metric="test_mse", dataset="fashion_mnist")
    assert other.min_effect == MinEffect(0.0, other.min_effect.source)
    assert "test_mse is not a proportion" in other.min_effect.source


def test_two_seeds_give_no_verdict():
    runs = [run(v, s, 0.8 + (0.0006 if v == "l2" else 0.0) + s / 100)
            for v in ("baseline", "l2") for s in range(2)]
    assert rank_variants(runs).row("l2").verdict.verdict == "too few seeds"


def test_a_number_that_rounds_to_zero_shows_no_minus_sign():
    from reglab.study.report_table import format_number

    assert format_number(-2e-8) == "0.0000"
    assert format_number(-2e-8, sign=True) == "+0.0000"
    assert format_number(-0.00012) == "-0.0001" and format_number(0.5, 2, sign=True) == "+0.50"


def test_the_table_says_which_runs_diverged_or_failed():
    """A variant's row is over its finished seeds only; the row says how many diverged or
    failed, and a variant with no finished run is named under the table (both were silent:
    a setting that diverged on one seed in five looked as good as the others)."""
    import dataclasses

    runs = four_seeds(0.03)
    runs[-1] = dataclasses.replace(runs[-1], status="diverged")  # l2/seed=3
    text = STUDY + "[variants.hot]\nlearning_rate = 3.0\n[variants.warm]\nlearning_rate = 1.0\n"
    for s in range(4):
        runs.append(RunRecord(f"hot/seed={s}", "hot", {}, s, "p", {},
                              "diverged" if s else "failed", metrics={"test_accuracy": 0.2}))
    runs += [run("warm", s, 0.80) for s in range(3)]
    runs.append(RunRecord("warm/seed=3", "warm", {}, 3, "p", {}, "failed", metrics={}))
    table = results_table(StoredStudy(text, runs))
    assert verdict_line(table, "l2").endswith("(without 1 seed diverged)")
    assert verdict_line(table, "warm").endswith("(without 1 seed failed)")
    assert not verdict_line(table, "baseline").endswith(")")
    assert "not ranked (no finished run): hot (3 seeds diverged, 1 failed)" in table
    assert not any(line.startswith("hot ") for line in table.splitlines())


def test_a_setting_that_lost_seeds_is_never_chosen_as_the_best():
    """The best on validation is chosen among the settings whose every seed finished: one
    that diverged on three seeds of four is passed over, however good its survivor, and the
    table's last line names it; when every setting with validation data lost seeds nothing
    is chosen."""
    import dataclasses

    runs = [run("baseline", s, 0.80, val=0.80) for s in range(4)]
    runs += [run("hot", s, 0.95, val=0.95) for s in range(4)]
    runs += [run("l2", s, 0.85, val=0.85) for s in range(4)]
    runs = [dataclasses.replace(r, status="diverged") if r.variant == "hot" and r.seed else r
            for r in runs]
    ranking = rank_variants(runs)
    assert ranking.best == "l2"
    assert ranking.passed_over == (("hot", "3 seeds diverged"),)
    table = results_table(StoredStudy(STUDY + "[variants.hot]\nlearning_rate = 3.0\n", runs))
    assert table.rstrip().splitlines()[-1] == (
        "best on val_accuracy: l2 (test_accuracy 0.8500); passed over, better on validation "
        "but not every seed finished: hot (3 seeds diverged)")
    every = [dataclasses.replace(r, status="failed") if r.seed == 0 else r for r in runs]
    nothing = rank_variants(every)
    assert nothing.best is None
    assert [label for label, _ in nothing.passed_over] == ["l2", "baseline"]  # hot: no row
    assert rank_variants([r for r in runs if r.variant != "hot"]).passed_over == ()


def test_an_interval_without_spread_is_shown_as_a_dash_not_nan():
    """One seed (or identical differences' undefined interval) prints '—' in the table,
    never 'nan'."""
    runs = [run("baseline", 0, 0.80, val=0.8), run("l2", 0, 0.85, val=0.8)]
    table = results_table(StoredStudy(STUDY, runs))
    assert "nan" not in table
    assert "+0.0500 (—…—)" in verdict_line(table, "l2")


@pytest.mark.parametrize("line, label", [("train_size = 0.25", "train_size=0.25"),
                                         ("label_noise = 0.1", "label_noise=0.1"),
                                         ("train_size = 1.0", None)])
def test_a_regime_every_run_shares_is_said_above_the_table(line, label):
    # one value of a regime key is no axis (one table, no regime blocks), yet every number
    # in the table is of that regime; the default value is no regime at all
    text = STUDY.replace('dataset = "fashion_mnist"', f'dataset = "fashion_mnist"\n{line}')
    table = results_table(StoredStudy(text, four_seeds(0.03)))
    said = [row for row in table.splitlines() if row.startswith("data regime")]
    assert said == ([f"data regime {label} (every run)"] if label else [])
    assert table.splitlines()[1 if label else 0].startswith("variant ")


def test_a_loss_is_chosen_on_at_its_lowest():
    """A tuning whose objective is val_loss chooses the variant of the lowest validation
    loss (the largest had been taken: the direction was the ranked metric's)."""
    runs = [run("baseline", s, 0.80, val=0.80) for s in range(3)]
    runs += [run("l2", s, 0.82, val=0.90) for s in range(3)]
    for record in runs:
        record.metrics["val_loss"] = 0.3 if record.variant == "baseline" else 0.5
    assert rank_variants(runs, choose_on="val_loss").best == "baseline"
    assert rank_variants(runs, choose_on="val_accuracy").best == "l2"


def test_a_tuning_s_table_chooses_on_its_objective():
    from reglab.study import parse_study
    from reglab.study.report_table import chosen_on

    text = (EXAMPLES / "tune.toml").read_text()
    spec = parse_study("tune.toml", text)
    keys = metric_keys(spec.training.metrics)
    assert chosen_on(spec, keys) == spec.tune.objective
    assert chosen_on(parse_study("study.toml", STUDY), keys) == keys[1]
    loss = parse_study("tune.toml", text.replace(f'objective = "{spec.tune.objective}"',
                                                 'objective = "val_loss"'))
    assert chosen_on(loss, keys) == "val_loss"


def test_a_stand_in_baseline_is_said_above_the_regimes_tables():
    """No run of the baseline finished in any regime: each regime compares with the first
    variant that has finished runs, and the note saying so stands above the regimes' tables
    as above the one table (it had been left out with regimes)."""
    import dataclasses

    text = STUDY.replace('dataset = "fashion_mnist"',
                         'dataset = "fashion_mnist"\ntrain_size = [0.5, 1.0]')
    runs = []
    for size in (0.5, 1.0):
        for seed in range(3):
            for variant, test in (("baseline", 0.8), ("l2", 0.81 + seed / 100)):
                record = run(variant, seed, test, val=test)
                runs.append(dataclasses.replace(
                    record, run_id=f"{record.run_id}/train_size={size}",
                    regime={"train_size": size},
                    status="diverged" if variant == "baseline" else "done"))
    table = results_table(StoredStudy(text, runs))
    lines = table.splitlines()
    assert lines[0] == ("note: no run of the baseline 'baseline' finished (6 diverged); the "
                        "table compares with 'l2' instead")
    assert sum(line.startswith("data regime") for line in lines) == 2


def test_wide_characters_keep_the_columns_aligned():
    """A name in CJK (two terminal columns a character) or with combining marks had pushed
    its row's numbers off their column."""
    from reglab.study.report_table import padded

    assert padded("l2", 6) == "l2    "
    assert padded("\u65e5\u672c", 6) == "\u65e5\u672c  "  # 4 columns of 6
    assert padded("cafe\u0301", 6) == "cafe\u0301  "  # the accent takes none
    assert padded("\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35", 6) == \
        "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35  "  # Thai: two vowel marks take none
    assert padded("\u65e5", 4, right=True) == "  \u65e5"
    names = ["baseline", "dr\u00f8pout_\u65e5\u672c", "l2"]
    runs = [run(name, s, 0.80 + i / 100 + s / 1000, val=0.8) for i, name in enumerate(names)
            for s in range(3)]
    table = results_table(StoredStudy(STUDY.replace("[variants.l2]", "".join(
        f'[variants."{n}"]\ndropout = 0.1\n' for n in names[1:]) + "[variants.l2x]"), runs))
    import unicodedata

    def columns(text):
        return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
    rows = [line for line in table.splitlines() if line.split(" ")[0] in names]
    assert len(rows) == 3
    starts = {columns(line[:line.index("0.8")]) for line in rows}
    assert len(starts) == 1, rows  # every row's numbers start at one column


def test_small_errors_are_shown_to_their_own_digits_in_aligned_columns():
    """A regression's errors far below 1 (an MSE of 2e-5) showed as 0.0000, and a difference
    of -1.5e-5 as '+0.0000' beside 'better'. The values show four significant digits of the
    largest and the differences four of theirs; the columns widen to the longest number."""
    from reglab.study.report_table import decimals_for

    noise = [1e-7, -2e-7, 1.5e-7, -1e-7]
    runs = [error_run("baseline", s, 3.0e-5 + noise[s], 3e-5, 1e-6, "mse") for s in range(4)]
    runs += [error_run("l2", s, 1.5e-5 + noise[s] / 2, 2e-5, 1e-6, "mse") for s in range(4)]
    stored = StoredStudy(STUDY.replace('epochs = 1', 'epochs = 1\nloss = "mse"\n'
                                       'metrics = ["mse"]'), runs)
    table = results_table(stored)
    l2 = verdict_line(table, "l2")
    assert "0.00001499 (0.0000149–0.0000151)" in l2 and l2.endswith("better")
    assert "-0.00001499 (-0.0000151…-0.0000149)" in l2
    assert "+0.0000 " not in table and " 0.0000 " not in table
    rows = [line for line in table.splitlines() if line.split(" ")[0] in ("l2", "baseline")]
    header = next(line for line in table.splitlines() if line.startswith("variant "))
    # every row's mean ends where the header's column does
    end = header.index("test_mse (95% CI)") + len("test_mse (95% CI)")
    assert all(line[:end].endswith(")") for line in rows), [header, *rows]
    # proportions keep their four decimals; a difference far smaller than its values gets its
    # own digits; zeros and non-finite values change nothing
    assert decimals_for([0.8781, 0.75]) == 4 and decimals_for([0.0123]) == 5
    assert decimals_for([1234.5, 3.0]) == 4 and decimals_for([2.3e-5]) == 8
    assert decimals_for([0.0, math.nan, None]) == 4 and decimals_for([1e-30]) == 12
    assert decimals_for([2e-6], least=5) == 9
    assert decimals_for([-0.009, 0.05], significant=2) == 4  # the tutorial's differences
    assert decimals_for([1.5e-5], significant=2) == 6  # beside errors near 1
    assert decimals_for([np.float32(3e-6), True, "NaN"]) == 9  # numbers only, numpy's too


def test_without_a_metric_the_table_ranks_and_chooses_on_the_data_loss():
    """``metrics = []`` ranked on ``test_loss`` and chose on ``val_loss``, Keras's loss with
    the penalties added: a strong L2 whose data loss was about the baseline's was called
    'worse' by its penalty alone, and a sweep's choice always fell on its weakest point."""
    noise = [0.01, -0.02, 0.015, -0.01]
    runs = []
    for variant, penalty in (("baseline", 0.0), ("l2", 12.0)):
        for s in range(4):
            data_loss = 1.30 + noise[s] - (0.005 if variant == "l2" else 0.0)
            runs.append(RunRecord(
                f"{variant}/seed={s}", variant, {}, s, "p", {}, "done",
                metrics={"test_loss": data_loss + penalty, "test_data_loss": data_loss,
                         "train_data_loss": 1.0, "val_loss": 1.1 + penalty,
                         "val_data_loss": 1.1 - (0.01 if variant == "l2" else 0.0)}))
    stored = StoredStudy(STUDY.replace("epochs = 1", "epochs = 1\nmetrics = []"), runs)
    table = results_table(stored)
    assert "test_data_loss (95% CI)" in table and "best on val_data_loss: l2" in table
    assert not verdict_line(table, "l2").endswith("worse")
    assert verdict_line(table, "l2").split()[1] == "1.2938"  # its data loss, not 13.2938
