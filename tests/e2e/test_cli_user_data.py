"""A study of the user's own CSV gets a test set, standardized features, and verdicts."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from reglab.cli import main

pytestmark = pytest.mark.e2e

STUDY = """
name = "csv"
seeds = 3
[data]
dataset = "train.csv"
DATA
validation_split = 0.2
standardize = true
[model]
input_shape = [4]
layers = [{ type = "Dense", units = 16, activation = "relu" },
          { type = "Dense", units = 3, activation = "softmax" }]
[training]
optimizer = { type = "Adam", learning_rate = 0.01 }
epochs = 2
batch_size = 16
[variants.baseline]
[variants.l2]
kernel_regularizer = { type = "L2", l2 = 0.001 }
[variants.dropout]
dropout = 0.3
"""


def write_csv(path: Path, rows: int, seed: int) -> None:
    """Three learnable classes in four features on very different scales (thousands,
    thousandths, a large offset, and noise), the label column in the middle."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, rows)
    x = np.stack([rng.normal(1000.0 * y, 300.0), rng.normal(0.001 * y, 0.0003),
                  1e5 + rng.normal(10.0 * y, 3.0), rng.normal(0.0, 1.0, rows)], axis=1)
    lines = ["width,depth,label,height,noise"]
    lines += [f"{a!r},{b!r},{int(k)},{c!r},{d!r}" for (a, b, c, d), k in zip(x.tolist(), y)]
    path.write_text("\n".join(lines) + "\n")


def run_and_show(study: Path, out: Path, *options: str) -> str:
    cli = CliRunner()
    validated = cli.invoke(main, ["validate", str(study)])
    assert validated.exit_code == 0, validated.output
    ran = cli.invoke(main, ["run", str(study), "--out", str(out), "--quiet", "--no-report",
                            *options])
    assert ran.exit_code == 0, ran.output
    shown = cli.invoke(main, ["show", str(out)])
    assert shown.exit_code == 0, shown.output
    assert "no finished runs with test_accuracy yet" not in shown.output
    assert "test_accuracy (95% CI)" in shown.output and "verdict" in shown.output
    rows = {line.split()[0]: line for line in shown.output.splitlines() if line.strip()}
    assert "baseline" in rows["baseline"].split()[-1]
    for variant in ("l2", "dropout"):  # three paired seeds: a verdict, not "too few seeds"
        assert variant in rows and "too few seeds" not in rows[variant], shown.output
    return shown.output


def metrics(out: Path) -> dict[str, dict]:
    with sqlite3.connect(out / "study.db") as db:
        return {r: json.loads(m) for r, m in db.execute("SELECT run_id, metrics FROM runs")}


def test_a_csv_study_with_a_held_out_split_gets_verdicts(tmp_path):
    write_csv(tmp_path / "train.csv", 300, seed=0)
    study = tmp_path / "study.toml"
    study.write_text(STUDY.replace("DATA", "test_split = 0.25"))
    shown = run_and_show(study, tmp_path / "out")
    assert "n = 75 test samples" in shown  # round(300 × 0.25), the same for every run
    found = metrics(tmp_path / "out").values()
    assert len(found) == 9 and all(m["test_samples"] == 75 for m in found)
    # standardized features: the scales do not stop the network from learning in 2 epochs
    assert np.mean([m["test_accuracy"] for m in found]) > 0.6


def test_a_csv_study_with_a_separate_test_file_gets_verdicts(tmp_path):
    write_csv(tmp_path / "train.csv", 240, seed=0)
    write_csv(tmp_path / "test.csv", 60, seed=1)
    study = tmp_path / "study.toml"
    study.write_text(STUDY.replace("DATA", 'test = "test.csv"'))
    shown = run_and_show(study, tmp_path / "out")
    assert "n = 60 test samples" in shown
    # worker processes read the test file and standardize alike: the same results
    run_and_show(study, tmp_path / "workers", "--workers", "2")
    alone, sharded = metrics(tmp_path / "out"), metrics(tmp_path / "workers")
    assert len(alone) == 9
    for run_id, values in alone.items():
        for key in ("test_accuracy", "test_loss", "val_accuracy", "test_samples"):
            assert sharded[run_id][key] == values[key], (run_id, key)


def test_a_regression_csv_is_refused_an_accuracy_and_stored_without_one(tmp_path):
    """Accuracy (the default metric) over a regression's targets scored 0 for every run and
    ranked the zeros; now the study says so before training. With metrics = [] the runs
    are stored with their losses, and no calibration error (it is of class probabilities)."""
    write_regression_csv(tmp_path / "train.csv", 200, seed=0)
    regression = STUDY.replace("DATA", 'test_split = 0.25\nlabel_column = "target"') \
        .replace('units = 3, activation = "softmax"', "units = 1") \
        .replace("epochs = 2", 'epochs = 2\nloss = "mse"')
    study = tmp_path / "study.toml"
    study.write_text(regression)
    cli = CliRunner()
    refused = cli.invoke(main, ["validate", str(study)])
    assert refused.exit_code == 2
    assert "training.metrics: 'accuracy' scores class labels; the data's targets are not " \
        "class labels" in refused.output
    study.write_text(regression.replace("epochs = 2", "epochs = 2\nmetrics = []"))
    ran = cli.invoke(main, ["run", str(study), "--out", str(tmp_path / "out"), "--quiet",
                            "--no-report"])
    assert ran.exit_code == 0, ran.output
    found = metrics(tmp_path / "out").values()
    assert len(found) == 9
    assert all("test_loss" in m and "test_ece" not in m for m in found)


@pytest.mark.parametrize("metrics_line, ranked", [('metrics = ["mae"]', "test_mae"),
                                                  ("metrics = []", "test_data_loss")])
def test_a_regression_study_is_ranked_on_its_error_lower_being_better(tmp_path, metrics_line,
                                                                      ranked):
    write_regression_csv(tmp_path / "train.csv", 240, seed=1)
    regression = STUDY.replace("DATA", 'test_split = 0.25\nlabel_column = "target"') \
        .replace('units = 3, activation = "softmax"', "units = 1") \
        .replace("epochs = 2", f'epochs = 4\nloss = "mse"\n{metrics_line}') \
        .replace("dropout = 0.3", "dropout = 0.6")
    study = tmp_path / "study.toml"
    study.write_text(regression)
    cli = CliRunner()
    ran = cli.invoke(main, ["run", str(study), "--out", str(tmp_path / "out"), "--quiet"])
    assert ran.exit_code == 0, ran.output
    shown = cli.invoke(main, ["show", str(tmp_path / "out")])
    assert shown.exit_code == 0, shown.output
    table = shown.output
    assert f"{ranked} (95% CI)" in table and "not a proportion" in table
    rows = [line.split()[0] for line in table.splitlines()[1:4]]
    values = {name: metrics_mean(tmp_path / "out", name, ranked) for name in rows}
    assert list(values.values()) == sorted(values.values())  # the lowest error first
    assert f"best on val_{ranked.removeprefix('test_')}:" in table
    report = (tmp_path / "out" / "report.html").read_text()
    assert f"test {ranked.removeprefix('test_')} (95 % CI)" in report
    assert "gap, test − train" in report


def write_regression_csv(path: Path, n: int, seed: int) -> None:
    """``n`` rows of four features and a linear target (column 'target', the third)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    target = x @ np.array([0.5, -1.0, 2.0, 0.0]) + rng.normal(0, 0.1, n)
    lines = ["a,b,target,c,d"] + [f"{a!r},{b!r},{t!r},{c!r},{d!r}"
                                  for (a, b, c, d), t in zip(x.tolist(), target.tolist())]
    path.write_text("\n".join(lines) + "\n")


def metrics_mean(out, variant, key):
    found = [m[key] for run_id, m in metrics(out).items() if run_id.startswith(variant + "/")]
    return sum(found) / len(found)
