"""Runs that repeat another run (a sweep's point equal to another variant, the same seed) train
once; the repeat, its twin, gets the trained run's epochs, outcome and kernel."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from reglab.cli import main
from reglab.study import parse_study
from reglab.study.plan import plan_study

pytestmark = pytest.mark.e2e

STUDY = """
name = "twins"
seeds = 2
[data]
dataset = "data.npz"
validation_split = 0.25
[model]
input_shape = [6]
layers = [{ type = "Dense", units = 8, activation = "relu" },
          { type = "Dense", units = 3, activation = "softmax" }]
[training]
optimizer = { type = "Adam", learning_rate = 0.01 }
epochs = 3
batch_size = 16
VARIANTS
"""

WITH_TWINS = """
[variants.baseline]
[variants.l2]
kernel_regularizer = { type = "L2", l2 = 0.1 }
[variants.l2_path]
kernel_regularizer = { type = "L2", l2 = [0.001, 0.1] }
"""


def write(directory: Path, variants: str) -> Path:
    rng = np.random.default_rng(0)
    x = rng.random((96, 6))
    y = (x[:, 0] + x[:, 1] > 1).astype(np.int64) + (x[:, 2] > 0.8)
    np.savez(directory / "data.npz", x=x, y=y, x_test=x[:32], y_test=y[:32])
    path = directory / "study.toml"
    path.write_text(STUDY.replace("VARIANTS", variants))
    return path


def rows(out: Path) -> dict[str, dict]:
    with sqlite3.connect(out / "study.db") as db:
        runs = db.execute("SELECT run_id, status, best_epoch, epochs_run, metrics FROM runs")
        result = {run_id: {"status": status, "best_epoch": best, "epochs_run": count,
                           "metrics": json.loads(metrics)}
                  for run_id, status, best, count, metrics in runs.fetchall()}
        for run_id, epoch, metrics in db.execute("SELECT run_id, epoch, metrics FROM epochs"):
            result[run_id].setdefault("epochs", {})[epoch] = json.loads(metrics)
        for run_id, data in db.execute("SELECT run_id, data FROM kernels"):
            result[run_id]["kernel"] = data
    return result


def test_a_run_equal_to_another_trains_once_and_gets_its_results(tmp_path):
    study = write(tmp_path, WITH_TWINS)
    plan = plan_study(parse_study(study))
    assert plan.twins == {"l2_path[kernel_regularizer.l2=0.1]/seed=0": "l2/seed=0",
                          "l2_path[kernel_regularizer.l2=0.1]/seed=1": "l2/seed=1"}
    trained = [run.run_id for population in plan.populations for run in population.runs]
    assert len(trained) == 6 and not set(plan.twins) & set(trained)
    out = tmp_path / "out"
    checked = CliRunner().invoke(main, ["validate", str(study)])
    assert checked.exit_code == 0, checked.output
    assert ("  population 1: 6 runs (baseline, l2, l2_path)\n  not trained: 2 runs repeat "
            "another run's settings and seed and take its results (l2_path)") in checked.output
    result = CliRunner().invoke(main, ["run", str(study), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert ("3 variants (4 points with sweeps) × 2 seeds = 8 runs (2 the same as another run: "
            "trained once) in 1 population") in result.output
    page = (out / "report.html").read_text()
    assert "6 (+2 twins)" in page and "(2 the same as another run: trained once)" in page
    with sqlite3.connect(out / "study.db") as db:  # as a store from before twins: all trained
        db.execute("DELETE FROM meta WHERE key = 'copies'")
    assert CliRunner().invoke(main, ["report", str(out)]).exit_code == 0
    page = (out / "report.html").read_text()
    assert "+2 twins" not in page and "the same as another run" not in page and "<td>8</td>" in page
    stored = rows(out)
    assert len(stored) == 8 and all(r["status"] == "done" for r in stored.values())
    for twin, run in plan.twins.items():
        assert stored[twin] == stored[run] and len(stored[twin]["epochs"]) == 3
        assert "kernel" in stored[twin]
    # the twin's results are those it gets trained in a study where it repeats no run
    alone_dir = tmp_path / "alone"
    alone_dir.mkdir()
    alone = write(alone_dir, "[variants.baseline]\n[variants.l2_path]\n"
                  'kernel_regularizer = { type = "L2", l2 = [0.001, 0.1] }\n')
    result = CliRunner().invoke(main, ["run", str(alone), "--out", str(alone_dir / "out"),
                                       "--quiet", "--no-report"])
    assert result.exit_code == 0, result.output
    assert "(" not in result.output.splitlines()[0].split("runs")[1]  # no twins there
    separate = rows(alone_dir / "out")
    for twin in plan.twins:
        for epoch, metrics in separate[twin]["epochs"].items():
            for name, value in metrics.items():
                assert stored[twin]["epochs"][epoch][name] == pytest.approx(value, rel=1e-6), (
                    twin, epoch, name)


def test_a_twin_left_unfinished_by_a_kill_is_finished_without_training(tmp_path, monkeypatch):
    study = write(tmp_path, WITH_TWINS)
    out = tmp_path / "out"
    cli = CliRunner()
    from reglab.study.executors import InProcessExecutor

    trained = []
    train = InProcessExecutor.train
    monkeypatch.setattr(InProcessExecutor, "train", lambda self, job, *a, **k: (
        trained.append(job), train(self, job, *a, **k))[1])
    assert cli.invoke(main, ["run", str(study), "--out", str(out), "--quiet",
                             "--no-report"]).exit_code == 0
    assert len(trained) == 1 and len(trained[0].population.runs) == 6
    before = rows(out)
    twin = "l2_path[kernel_regularizer.l2=0.1]/seed=1"
    with sqlite3.connect(out / "study.db") as db:  # as a kill after its run's job finished
        db.execute("DELETE FROM epochs WHERE run_id = ?", (twin,))
        db.execute("DELETE FROM kernels WHERE run_id = ?", (twin,))
        db.execute("UPDATE runs SET status = 'queued', epochs_run = 0, metrics = '{}', "
                   "best_epoch = NULL WHERE run_id = ?", (twin,))
    trained.clear()
    result = cli.invoke(main, ["run", str(study), "--out", str(out), "--no-report"])
    assert result.exit_code == 0, result.output
    assert rows(out) == before and trained == []  # finished as a copy, nothing trained again
