"""The ranking behind the results table and the report: choices on validation, never on test."""

from __future__ import annotations

import math

from reglab.storage import RunRecord
from reglab.study.report_table import metric_keys, rank_variants, variant_label


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
    assert metric_keys(()) is None
