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
