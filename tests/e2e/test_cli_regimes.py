"""Data regimes end to end: a study file with the default regime is today's study (same runs,
ids, fingerprint, results); a study over regimes trains each run on its seed's subset and
noisy labels, ranks every regime against its own baseline, and reports the regime panels."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_cli_study import STUDY, write_study

from reglab.cli import main

pytestmark = pytest.mark.e2e

REGIMES = """
name = "regimes"
seeds = 3
[data]
dataset = "data.npz"
validation_split = 0.2
train_size = [40, 0.5]
label_noise = [0, 0.4]
[model]
input_shape = [6]
layers = [{ type = "Dense", units = 8, activation = "relu" },
          { type = "Dense", units = 3, activation = "softmax" }]
[training]
optimizer = { type = "Adam", learning_rate = 0.01 }
epochs = 3
batch_size = 16
[variants.baseline]
[variants.dropout]
dropout = 0.3
[variants.bn]
batch_norm = true
"""


def stored(out: Path) -> tuple[str, list[tuple]]:
    with sqlite3.connect(out / "study.db") as db:
        fingerprint = db.execute("SELECT fingerprint FROM study").fetchone()[0]
        rows = db.execute("SELECT run_id, population, status, metrics, regime FROM runs "
                          "ORDER BY seq").fetchall()
    return fingerprint, rows


def run(study: Path, out: Path, *options: str):
    result = CliRunner().invoke(main, ["run", str(study), "--out", str(out), "--quiet",
                                       *options])
    assert result.exit_code == 0, result.output
    return result


def test_the_default_regime_written_out_is_today_s_study(tmp_path):
    study = write_study(tmp_path, epochs=2)
    run(study, tmp_path / "today", "--no-report")
    written = tmp_path / "written.toml"
    written.write_text(STUDY.replace("EPOCHS", "2").replace(
        "validation_split = 0.25", "validation_split = 0.25\ntrain_size = 1.0\nlabel_noise = 0"
                                   "\nnoisy_validation = true"))
    run(written, tmp_path / "written", "--no-report")
    today, same = stored(tmp_path / "today"), stored(tmp_path / "written")
    assert same == today  # fingerprint, run ids, populations, statuses, metrics: equal
    assert all(row[4] == "{}" for row in today[1])


@pytest.fixture(scope="module")
def regimes_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("regimes")
    write_study(root)  # data.npz: 96 samples of 3 classes, 32 of them the test set
    rng = np.random.default_rng(1)
    x = rng.random((300, 6))
    y = (x[:, 0] + x[:, 1] > 1).astype(np.int64) + (x[:, 2] > 0.8)
    np.savez(root / "data.npz", x=x, y=y, x_test=x[:80], y_test=y[:80])
    study = root / "regimes.toml"
    study.write_text(REGIMES)
    checked = CliRunner().invoke(main, ["validate", str(study)])
    assert checked.exit_code == 0, checked.output
    assert checked.output.splitlines()[1:] == [  # one line per regime, not per population
        f"  data regime train_size={size},label_noise={noise}: 9 runs in 6 populations"
        for size in ("40", "0.5") for noise in ("0", "0.4")]
    out = root / "out"
    result = run(study, out)
    assert "3 variants × 4 data regimes (2 train_size × 2 label_noise) × 3 seeds = 36 runs in " \
           "12 populations" in result.output  # the noise levels of a size share populations
    return out


def test_each_run_trains_on_its_regime_and_is_stored_with_it(regimes_dir):
    _, rows = stored(regimes_dir)
    assert len(rows) == 36 and {row[2] for row in rows} == {"done"}
    by_id = {row[0]: row for row in rows}
    first = by_id["train_size=40,label_noise=0/baseline/seed=0"]
    assert json.loads(first[4]) == {"train_size": 40, "label_noise": 0.0}
    noisy = json.loads(by_id["train_size=0.5,label_noise=0.4/dropout/seed=2"][3])
    assert noisy["train_samples"] == 120  # half of the 240 left after validation
    assert noisy["label_noise_rate"] == pytest.approx(48 / 120)
    assert noisy["val_label_noise_rate"] == pytest.approx(24 / 60)
    assert noisy["test_samples"] == 80  # one test set for every regime
    # a regime's data depend on the seed: one population per (training subset, seed), the
    # noise levels of a subset in it, each member with its own labels
    populations: dict[str, set] = {}
    for run_id, population, *_ in rows:
        size, noise = run_id.split("/")[0].split(",")
        populations.setdefault(population, set()).add((size, noise, run_id.rsplit("=", 1)[1]))
    assert len(populations) == 12
    assert all(len({(size, seed) for size, _, seed in v}) == 1 and
               {noise for _, noise, _ in v} == {"label_noise=0", "label_noise=0.4"}
               for v in populations.values())


def test_noise_levels_sharing_a_population_train_as_in_populations_of_their_own(
        regimes_dir, monkeypatch):
    """Each member trains on its own labels exactly as in a population of its regime alone
    (bit for bit): the same inputs, batches, noise streams and labels."""
    from reglab.study.plan import RunSpec

    keyed = RunSpec.structure_key

    def apart(self, spec, data=True):  # the plan before sharing: a population per regime
        noise = dict(self.regime).get("label_noise", "")
        return keyed(self, spec, data) + (f"-noise{noise}" if data else "")
    monkeypatch.setattr(RunSpec, "structure_key", apart)
    out = regimes_dir.parent / "apart"
    result = run(regimes_dir.parent / "regimes.toml", out)
    assert "36 runs in 24 populations" in result.output
    _, shared_rows = stored(regimes_dir)
    _, apart_rows = stored(out)
    shared = {row[0]: json.loads(row[3]) for row in shared_rows}
    apart_metrics = {row[0]: json.loads(row[3]) for row in apart_rows}
    assert shared.keys() == apart_metrics.keys()
    for run_id, metrics in shared.items():
        assert metrics == apart_metrics[run_id], run_id


def test_the_table_ranks_each_regime_against_its_own_baseline(regimes_dir):
    from reglab.storage import SQLiteStore
    from reglab.study.report_table import rank_regimes

    shown = CliRunner().invoke(main, ["show", str(regimes_dir)])
    assert shown.exit_code == 0, shown.output
    headers = [line for line in shown.output.splitlines() if line.startswith("data regime ")]
    assert headers == [
        "data regime train_size=40,label_noise=0 (40 training samples):",
        "data regime train_size=40,label_noise=0.4 (40 training samples, 40.0 % of their "
        "labels replaced):",
        "data regime train_size=0.5,label_noise=0 (120 training samples):",
        "data regime train_size=0.5,label_noise=0.4 (120 training samples, 40.0 % of their "
        "labels replaced):"]
    assert "Holm-corrected at α = 0.05 within its data regime" in shown.output
    with SQLiteStore(regimes_dir, read_only=True) as store:
        records = store.runs()
    rankings = rank_regimes(records)
    assert [r.label for r in rankings] == [h.split()[2] for h in headers]
    for regime in rankings:  # Δ paired by seed against the same regime's baseline (numpy)
        mine = [r for r in records if r.regime == regime.regime]
        base = {r.seed: r.metrics["test_accuracy"] for r in mine if r.variant == "baseline"}
        for row in regime.ranking.rows:
            if row.label == "baseline":
                continue
            differences = [r.metrics["test_accuracy"] - base[r.seed] for r in mine
                           if r.variant == row.label]
            assert row.verdict.comparison.mean_difference == pytest.approx(np.mean(differences))
    blocks = shown.output.split("data regime ")[1:]
    assert all(block.count("baseline") >= 2 for block in blocks)  # a baseline row each


def test_the_report_draws_the_regime_panels_and_groups_the_tables(regimes_dir):
    from reglab.report.collect import collect
    from reglab.report.regimes import regime_records

    html = (regimes_dir / "report.html").read_text()
    assert '<section id="regimes">' in html and 'href="#regimes"' in html
    assert html.count('<h3 id="regime-') == 4
    plots = {p.name for p in (regimes_dir / "plots").glob("*.png")}
    assert {"regimes-delta.png", "regimes-gap.png",
            "learning-curves-accuracy-train-size-40-label-noise-0-4.png"} <= plots
    results = collect(regimes_dir)
    records = regime_records(results)
    assert {p.x for p in records} == {40, 120}
    assert {p.line for p in records} == {"noise 0", "noise 0.4"}
    dropout = next(p for p in records if p.label == "dropout" and p.x == 40
                   and p.line == "noise 0.4")
    view = next(r for r in results.regimes if r.label == "train_size=40,label_noise=0.4")
    comparison = view.ranking.row("dropout").verdict.comparison
    assert dropout.delta == comparison.mean_difference
    assert (dropout.delta_low, dropout.delta_high) == (comparison.ci_low, comparison.ci_high)


def test_two_worker_processes_give_the_same_results(regimes_dir, tmp_path):
    """Each Dask worker cuts its job's regime from the data itself: the runs equal one
    process's bit for bit."""
    out = tmp_path / "workers"
    run(regimes_dir.parent / "regimes.toml", out, "--workers", "2", "--no-report")
    expected, got = stored(regimes_dir), stored(out)
    assert got[0] == expected[0]
    assert sorted(got[1]) == sorted(expected[1])
