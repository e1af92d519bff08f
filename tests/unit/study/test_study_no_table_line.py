"""What ``reglab show`` says instead of the table, when no run ranks: why."""

from __future__ import annotations

from types import SimpleNamespace

from reglab.study.report_table import _why_no_table


def _run(status, metrics=None):
    return SimpleNamespace(status=status, metrics=metrics)


def test_the_line_says_why_no_run_ranks():
    assert _why_no_table([], "test_accuracy") == "no finished runs with test_accuracy yet"
    assert _why_no_table([_run("pending"), _run("done", {"val_accuracy": 0.5})],
                         "test_accuracy").startswith("no table: the 1 finished run(s) have no "
                                                     "test_accuracy (the study has no test set")
    assert _why_no_table([_run("diverged"), _run("diverged")], "test_accuracy") == (
        "no table: every run diverged (2 of 2); see `reglab ls` for each run's status")
    assert "every run diverged or failed (2 of 2)" in _why_no_table(
        [_run("diverged"), _run("failed")], "test_accuracy")
    assert _why_no_table([_run("diverged"), _run("pending")], "test_accuracy") == \
        "no finished runs with test_accuracy yet"


def test_a_replaced_baseline_is_said():
    from reglab.study.report_table import baseline_replaced

    runs = [SimpleNamespace(status="diverged", run_id="baseline/seed=0", variant="baseline",
                            point={}),
            SimpleNamespace(status="done", run_id="calm/seed=0", variant="calm", point={})]
    assert baseline_replaced(runs, "baseline", "calm") == (
        "note: no run of the baseline 'baseline' finished (1 diverged); the table compares "
        "with 'calm' instead\n")
    assert baseline_replaced(runs, "baseline", "baseline") == ""
    assert baseline_replaced(runs[1:], "baseline", "calm") == ""  # no baseline variant
