"""Tuning studies end to end: trials trained a population at a time, pruned, resumed after a
kill, and the chosen trial confirmed on fresh seeds."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from reglab.cli import main

pytestmark = pytest.mark.e2e

STUDY = """
name = "tiny-tune"
[data]
dataset = "data.npz"
validation_split = 0.25
[model]
input_shape = [6]
layers = [{ type = "Dense", units = 8, activation = "relu" },
          { type = "Dense", units = 3, activation = "softmax" }]
[training]
optimizer = { type = "Adam", learning_rate = 0.01 }
epochs = EPOCHS
batch_size = 16
[tune]
TUNE
[variants.baseline]
[variants.l2]
kernel_regularizer = { type = "L2", l2 = { log = [1e-5, 1e-1] } }
learning_rate = { log = [1e-3, 1e-1] }
[variants.dropout]
dropout = { linear = [0.0, 0.6] }
"""


def write_study(directory: Path, tune: str, epochs: int = 3, study: str = STUDY) -> Path:
    rng = np.random.default_rng(0)
    x = rng.random((160, 6))
    y = (x[:, 0] + x[:, 1] > 1).astype(np.int64) + (x[:, 2] > 0.8)
    np.savez(directory / "data.npz", x=x, y=y, x_test=x[:40], y_test=y[:40])
    path = directory / "study.toml"
    path.write_text(study.replace("EPOCHS", str(epochs)).replace("TUNE", tune))
    return path


def run(args) -> object:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result


def journal_trials(out: Path):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(out / "optuna.journal")))
    return optuna.load_study(study_name="reglab", storage=storage).get_trials(deepcopy=False)


def store_runs(out: Path) -> dict[str, tuple]:
    with sqlite3.connect(out / "study.db") as db:
        rows = db.execute("SELECT run_id, status, epochs_run, metrics FROM runs").fetchall()
    return {r[0]: (r[1], r[2], json.loads(r[3]) if r[3] else {}) for r in rows}


def stored_epochs(out: Path, run_id: str) -> list[dict]:
    from reglab.storage import SQLiteStore

    with SQLiteStore(out, read_only=True) as store:
        return store.epochs(run_id)


def test_trials_that_join_a_running_population_train_as_they_would_alone(tmp_path):
    """Two trials fill the population; when they end, two more join it at the next epoch.
    Every trial's epochs equal the same run trained alone, and the confirmation compares
    the chosen trial's settings with the baseline on fresh seeds."""
    import torch

    from reglab.engine import Population
    from reglab.study.build import build_member, load_study_data
    from reglab.study.spec import parse_study
    from reglab.tune import space

    study = write_study(tmp_path, 'trials = 4\nbatch = 2\nsampler = "random"\n'
                        'pruner = "none"\nconfirm_seeds = 3\nvariants = ["l2", "dropout"]')
    out = tmp_path / "out"
    result = run(["run", study, "--out", out, "--quiet", "--no-report"])
    assert result.exit_code == 0, result.output
    assert result.output.count("tuning: population of") == 1  # trials 2, 3 joined it
    trials = journal_trials(out)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    runs = store_runs(out)
    spec = parse_study(study)
    data = load_study_data(spec)
    for trial in trials:
        variant, point = space.from_params(spec, trial.params)
        (run_spec,) = space.trial_runs(spec, trial.number, variant, point)
        status, epochs_run, metrics = runs[run_spec.run_id]
        assert (status, epochs_run) == ("done", 3)
        alone = Population([build_member(spec, run_spec, (6,))], loss=spec.training.loss,
                           metrics=spec.training.metrics)
        history = alone.fit(data.x_train, data.y_train, batch_size=16, epochs=3,
                            validation_data=(data.x_val, data.y_val)).members[0].history
        logs = stored_epochs(out, run_spec.run_id)
        for key in ("loss", "val_loss", "val_accuracy"):
            np.testing.assert_allclose([e[key] for e in logs], history[key], rtol=1e-6,
                                       atol=1e-7, err_msg=f"trial {trial.number} {key}")
        # the trial's value is its kept weights' validation accuracy
        assert trial.value == pytest.approx(metrics["val_accuracy"])
        assert metrics["val_accuracy"] == pytest.approx(alone.evaluate(
            data.x_val, data.y_val)[0]["accuracy"])
    del torch
    best = max(trials, key=lambda t: t.value)
    variant, point = space.from_params(spec, best.params)
    confirmed = {r for r in runs if not r.startswith("trial=")}
    expected = {f"baseline/seed={s}" for s in (1, 2, 3)} | {
        f"{run.run_id}" for run in space.confirmation_plan(spec, variant, point).runs}
    assert confirmed == expected
    assert all(runs[r][0] == "done" for r in confirmed)
    shown = run(["show", out])
    assert f"chosen: trial {best.number} by the best on validation" in shown.output
    table = shown.output.split("\n\n", 1)[1]
    assert "trial=" not in table and table.count("baseline") >= 1


def test_pruned_trials_leave_the_population_and_save_their_epochs(tmp_path):
    study = write_study(tmp_path, 'trials = 12\nbatch = 4\nsampler = "random"\n'
                        'pruner = "successive_halving"\nconfirm_seeds = 2', epochs=6)
    out = tmp_path / "out"
    result = run(["run", study, "--out", out, "--quiet", "--no-report"])
    assert result.exit_code == 0, result.output
    trials = journal_trials(out)
    # (a trial drawn with another's values, the baseline's, trains nothing: same_as)
    pruned = [t for t in trials if t.state.name == "PRUNED" and "same_as" not in t.user_attrs]
    assert pruned, "successive halving pruned nothing among 12 random trials"
    runs = store_runs(out)
    saved = 0
    for trial in pruned:
        (run_id,) = [r for r in runs if r.startswith(f"trial={trial.number}/")]
        status, epochs_run, _ = runs[run_id]
        assert status == "pruned" and epochs_run < 6
        # pruned at the step it last reported: it trained no epoch after it
        assert epochs_run == max(trial.intermediate_values) + 1
        assert trial.user_attrs["model_epochs"] == epochs_run
        saved += 6 - epochs_run
    meta = run(["show", out]).output
    assert f"({saved} saved by pruning)" in meta
    assert len(trials) == 12


def test_a_model_epoch_budget_is_never_exceeded(tmp_path):
    study = write_study(tmp_path, 'model_epochs = 20\nbatch = 3\nsampler = "random"\n'
                        'pruner = "none"\nconfirm_seeds = 2', epochs=3)
    out = tmp_path / "out"
    assert run(["run", study, "--out", out, "--quiet", "--no-report"]).exit_code == 0
    trials = journal_trials(out)
    assert len(trials) == 6  # 6 × 3 = 18 model-epochs; a 7th would pass 20
    assert sum(t.user_attrs["model_epochs"] for t in trials) == 18


def test_a_kill_during_tuning_resumes_without_asking_again(tmp_path):
    """Killed while trials train, the rerun keeps every told trial, trains the interrupted
    ones again with the values they were given, asks only new ones (never the old values
    again), and ends with exactly the budget's trials."""
    study = write_study(tmp_path, 'trials = 16\nbatch = 2\nsampler = "tpe"\n'
                        'pruner = "median"\nconfirm_seeds = 2', epochs=20)

    def ready(out) -> bool:
        """Five trials told, and one training (it has reported an epoch)."""
        if not (out / "optuna.journal").is_file():
            return False
        try:
            trials = journal_trials(out)
        except Exception:  # written meanwhile
            return False
        return sum(t.state.is_finished() for t in trials) >= 5 and any(
            t.state.name == "RUNNING" and t.intermediate_values for t in trials)

    # A trial can end between the check and the kill (a slow machine reads the journal
    # slowly): then the kill interrupted nothing, and the scenario starts over, afresh.
    for attempt in range(3):
        out = tmp_path / f"out{attempt}"
        command = [sys.executable, "-m", "reglab.cli", "run", str(study), "--out", str(out),
                   "--quiet", "--no-report"]
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while not ready(out):
            assert child.poll() is None, "tuning ended before the kill"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        before = {t.number: (t.state.name, t.params, t.value) for t in journal_trials(out)}
        interrupted = [n for n, (state, _, _) in before.items() if state == "RUNNING"]
        if interrupted:
            break
    assert interrupted, "no trial was in progress at the kill, three times"
    rerun = subprocess.run(command, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    after = {t.number: (t.state.name, t.params, t.value) for t in journal_trials(out)}
    assert len(after) == 16
    for number, (state, params, value) in before.items():
        # the same values, not asked again (a kill between two draws leaves the rest)
        assert params.items() <= after[number][1].items()
        if state != "RUNNING":
            assert after[number] == (state, params, value)
        else:
            assert after[number][0] in ("COMPLETE", "PRUNED")
    # no continuous values drawn twice (a baseline trial has only its variant)
    drawn = [json.dumps(p, sort_keys=True) for _, p, _ in after.values() if len(p) > 1]
    assert len(set(drawn)) == len(drawn)
    runs = store_runs(out)
    assert all(status in ("done", "pruned", "stopped_early") for status, _, _ in runs.values())
    trained = [t for t in after if "same_as" not in journal_trials(out)[t].user_attrs]
    assert len([r for r in runs if r.startswith("trial=")]) == len(trained)


def test_tuning_refuses_worker_processes_and_checks_its_section(tmp_path):
    study = write_study(tmp_path, "trials = 2")
    result = CliRunner().invoke(main, ["run", str(study), "--out", str(tmp_path / "o"),
                                       "--workers", "2"])
    assert result.exit_code == 2
    assert "tuning study" in result.output and "--workers" in result.output
    # refused before the cluster is reached: no wait for an address that answers nothing
    start = time.monotonic()
    result = CliRunner().invoke(main, ["run", str(study), "--out", str(tmp_path / "o"),
                                       "--cluster", "tcp://127.0.0.1:1"])
    assert result.exit_code == 2
    assert "tuning study" in result.output and "cannot reach" not in result.output
    assert time.monotonic() - start < 5
    bad = write_study(tmp_path, 'trials = 0\nsampler = "grid"\nobjective = "val_auc"')
    result = CliRunner().invoke(main, ["validate", str(bad)])
    assert result.exit_code == 2
    assert "tune.trials: expected an int >= 1" in result.output
    assert "variants.l2.kernel_regularizer.l2: the grid sampler needs points" in result.output
    assert "tune.objective: expected a validation log of this study: val_loss, " \
        "val_accuracy" in result.output
    good = write_study(tmp_path, "trials = 3")
    result = CliRunner().invoke(main, ["validate", str(good)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("tuning 3 variants (3 searched values)")


PBT_STUDY = STUDY.replace('''[variants.dropout]
dropout = { linear = [0.0, 0.6] }
''', "")


def test_population_based_training_exploits_explores_and_confirms_its_schedule(tmp_path):
    """Eight trials train at once; every two epochs the worst quarter copies the best
    quarter's state and perturbs its values. The chosen trial's schedule (the values its
    weights were trained with) is retrained on fresh seeds."""
    study = write_study(tmp_path, 'trials = 8\nscheduler = "pbt"\nvariants = ["l2"]\n'
                        'pbt = { interval = 2, quantile = 0.25, factors = [0.5, 2.0] }\n'
                        'confirm_seeds = 2', epochs=6, study=PBT_STUDY)
    out = tmp_path / "out"
    result = run(["run", study, "--out", out, "--quiet", "--no-report"])
    assert result.exit_code == 0, result.output
    assert result.output.count("tuning: population of 8 trial(s)") == 1
    trials = journal_trials(out)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 8
    copies = [c for t in trials for c in t.user_attrs["copies"]]
    assert len(copies) == 2 * 2  # after epochs 1 and 3 (not after the last): 2 of 8 each
    bounds = {"kernel_regularizer.l2": (1e-5, 1e-1), "learning_rate": (1e-3, 1e-1)}

    def at(schedule, epoch):  # the values a schedule trains epoch `epoch` with
        return [values for start, values in schedule if start <= epoch][-1]
    for trial in trials:
        schedule = trial.user_attrs["schedule"]
        assert schedule[0][0] == 0
        assert schedule[0][1] == {p.split(":", 1)[1]: v for p, v in trial.params.items()} or \
            trial.user_attrs["copies"]  # its own first values, unless it copied another's
        if not trial.user_attrs["copies"]:
            assert len(schedule) == 1  # never copied: its values never changed
            continue
        last = trial.user_attrs["copies"][-1]
        assert last["epoch"] in (1, 3) and last["from"] != trial.number
        assert at(schedule, last["epoch"] + 1) == last["values"]
        before = at(schedule, last["epoch"])  # the copied trial's values, then perturbed
        for path, value in last["values"].items():
            low, high = bounds[path]
            options = [min(max(before[path] * f, low), high) for f in (0.5, 2.0)]
            assert value == pytest.approx(options[0]) or value == pytest.approx(options[1])
    runs = store_runs(out)
    chosen = json.loads(sqlite3.connect(out / "study.db").execute(
        "SELECT value FROM meta WHERE key = 'tuning'").fetchone()[0])["chosen"]
    best = trials[chosen["number"]]
    assert best.value == max(t.value for t in trials)
    confirm = [r for r in runs if r.startswith("l2[")]
    assert len(confirm) == 2
    with sqlite3.connect(out / "study.db") as db:
        stored = json.loads(db.execute("SELECT hyperparameters FROM runs WHERE run_id = ?",
                                       (confirm[0],)).fetchone()[0])
    schedule = best.user_attrs["schedule"]
    if len(schedule) > 1:
        assert stored["schedule"] == schedule
    assert stored["kernel_regularizer"]["l2"] == schedule[0][1]["kernel_regularizer.l2"]


def test_a_schedule_sets_its_values_from_its_epochs_on():
    from reglab.engine import Member, Population
    from reglab.layers import Dense, Dropout
    from reglab.optimizers import Adam
    from reglab.regularizers import L2
    from reglab.tune.pbt import ScheduleObserver

    dropout = Dropout(0.1)
    dropout.inserted_by = "dropout"  # as a study's `dropout` puts it in (study/build.py)
    population = Population([Member([Dense(4, input_shape=(3,), kernel_regularizer=L2(0.1)),
                                      dropout, Dense(2, activation="softmax")],
                                     Adam(0.01), seed=0)])
    seen = []

    class Read:
        def on_epoch_begin(self, epoch):
            seen.append((population.hyperparameter(0, "learning_rate"),
                         population.hyperparameter(0, "dense.kernel.l2"),
                         population.hyperparameter(0, "dropout.rate")))
    schedule = [[0, {"learning_rate": 0.01}],
                [2, {"learning_rate": 0.001, "kernel_regularizer.l2": 0.5, "dropout": 0.3}]]
    x = np.random.default_rng(0).random((20, 3)).astype("float32")
    population.fit(x, np.arange(20) % 2, epochs=4, batch_size=10,
                   observers=[ScheduleObserver({0: schedule}), Read()])
    assert seen == [(0.01, 0.1, 0.1), (0.01, 0.1, 0.1), (0.001, 0.5, 0.3), (0.001, 0.5, 0.3)]


def test_a_trial_drawn_with_values_already_tried_takes_their_result(tmp_path):
    """Two choices, eight trials: only two distinct trials train; the others, drawn with
    the same values (while the first ones train, or after), take their result."""
    study = write_study(tmp_path, 'trials = 8\nbatch = 4\nsampler = "random"\n'
                        'pruner = "none"\nconfirm_seeds = 2\nvariants = ["dropout"]',
                        study=STUDY.replace("dropout = { linear = [0.0, 0.6] }",
                                            "dropout = [0.1, 0.4]"))
    out = tmp_path / "out"
    result = run(["run", study, "--out", out, "--quiet", "--no-report"])
    assert result.exit_code == 0, result.output
    trials = journal_trials(out)
    assert len(trials) == 8 and all(t.state.name == "COMPLETE" for t in trials)
    trained = [t for t in trials if "same_as" not in t.user_attrs]
    assert len({json.dumps(t.params, sort_keys=True) for t in trained}) == len(trained) == 2
    for trial in trials:
        if "same_as" in trial.user_attrs:
            original = trials[trial.user_attrs["same_as"]]
            assert trial.params == original.params and trial.value == original.value
            assert trial.user_attrs["model_epochs"] == 0
            # its curve too: a pruner's n_startup_trials counts it as the same training
            assert trial.intermediate_values == original.intermediate_values != {}
    assert len([r for r in store_runs(out) if r.startswith("trial=")]) == 2
    assert "6 drew values already tried" in run(["show", out]).output


def test_a_trial_killed_between_two_draws_keeps_the_first_and_draws_the_rest(tmp_path):
    """The rerun finds a trial whose variant was drawn but not its values (a kill between
    two draws) and a stale lock file of Optuna's journal: the trial keeps its variant, draws
    the rest, trains; the lock is not waited for."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = write_study(tmp_path, 'trials = 2\nsampler = "random"\npruner = "none"\n'
                        'confirm_seeds = 2')
    out = tmp_path / "out"
    assert run(["run", study, "--out", out, "--quiet", "--no-report"]).exit_code == 0
    journal = optuna.load_study(study_name="reglab", storage=JournalStorage(
        JournalFileBackend(str(out / "optuna.journal"))))
    trial = journal.ask()
    trial.suggest_categorical("variant", ["baseline", "l2", "dropout"])  # then "killed"
    wanted = trial.params["variant"]
    if wanted == "baseline":  # make it one with values left to draw
        journal.tell(trial, state=optuna.trial.TrialState.FAIL)
        trial = journal.ask()
        while trial.suggest_categorical("variant", ["baseline", "l2", "dropout"]) == "baseline":
            journal.tell(trial, state=optuna.trial.TrialState.FAIL)
            trial = journal.ask()
        wanted = trial.params["variant"]
    (out / "optuna.journal.lock").write_text("")  # left by the killed writer
    started = time.monotonic()
    result = run(["run", study, "--out", out, "--quiet", "--no-report"])
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started < 20
    assert "1 interrupted trial(s) train again" in result.output, result.output[:600]
    resumed = journal_trials(out)[trial.number]
    assert resumed.state.name == "COMPLETE" and resumed.params["variant"] == wanted
    assert len(resumed.params) > 1  # its values, drawn on the rerun


GRID_STUDY = STUDY.replace('''[variants.l2]
kernel_regularizer = { type = "L2", l2 = { log = [1e-5, 1e-1] } }
learning_rate = { log = [1e-3, 1e-1] }
[variants.dropout]
dropout = { linear = [0.0, 0.6] }
''', '''[variants.sgd]
optimizer = { type = "SGD" }
learning_rate = LRS
dropout = [0.0, 0.3]
''')


def test_a_grid_is_searched_to_its_end_and_no_further(tmp_path):
    study = write_study(tmp_path, 'trials = 10\nsampler = "grid"\npruner = "none"\n'
                        'confirm_seeds = 2\nvariants = ["sgd"]',
                        study=GRID_STUDY.replace("LRS", "[0.01, 0.1]"))
    out = tmp_path / "out"
    result = run(["run", study, "--out", out, "--quiet", "--no-report"])
    assert result.exit_code == 0, result.output
    trials = journal_trials(out)
    assert len(trials) == 4  # the grid's 2 × 2 points, each once
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 4


def test_a_used_up_space_ends_the_asking_under_an_epoch_budget(tmp_path):
    """Only two distinct trials exist; a model-epoch budget that trials drawn again never
    spend does not keep the sampler asking for ever."""
    study = write_study(tmp_path, 'model_epochs = 300\nsampler = "random"\npruner = "none"\n'
                        'confirm_seeds = 2\nvariants = ["baseline", "sgd"]',
                        study=GRID_STUDY.replace("LRS", "0.05").replace(
                            "dropout = [0.0, 0.3]\n", ""))
    out = tmp_path / "out"
    result = run(["run", study, "--out", out, "--quiet", "--no-report"])
    assert result.exit_code == 0, result.output
    assert "the search space is used up" in result.output
    trained = [t for t in journal_trials(out) if "same_as" not in t.user_attrs]
    assert len(trained) == 2


def test_diverging_trials_are_stored_and_the_tuning_goes_on(tmp_path):
    """A learning rate of 1e38 diverges in its first epoch: that trial is stored as
    diverged and failed in Optuna (it reported nothing), the other is confirmed. When every
    trial diverges, the run says there is nothing to confirm."""
    study = write_study(tmp_path, 'trials = 4\nsampler = "grid"\npruner = "none"\n'
                        'confirm_seeds = 2\nvariants = ["sgd"]\nbatch = 4',
                        study=GRID_STUDY.replace("LRS", "[1e38, 0.05]"))
    out = tmp_path / "out"
    result = run(["run", study, "--out", out, "--quiet", "--no-report"])
    assert result.exit_code == 0, result.output
    trials = journal_trials(out)
    bad = [t for t in trials if t.params["sgd:learning_rate"] == 1e38]
    assert bad and all(t.state.name == "FAIL" and t.user_attrs["diverged"] for t in bad)
    # counted as diverged, not as failed or pruned, in the summary and its line
    assert f"0 pruned, {len(bad)} diverged, 0 failed trials" in result.output
    runs = store_runs(out)
    assert {runs[r][0] for r in runs if "learning_rate=1e+38" in r and
            r.startswith("trial=")} == {"diverged"}
    assert any(r.startswith("sgd[learning_rate=0.05") for r in runs)  # the confirmation
    only_bad = write_study(tmp_path, 'trials = 2\nsampler = "grid"\npruner = "none"\n'
                           'confirm_seeds = 2\nvariants = ["sgd"]',
                           study=GRID_STUDY.replace("LRS", "1e38"))
    result = CliRunner().invoke(main, ["run", str(only_bad), "--out", str(tmp_path / "bad"),
                                       "--quiet", "--no-report"])
    assert result.exit_code == 2
    assert "no trial completed (every one was pruned, diverged or failed)" in result.output
    assert all(t.state.name == "FAIL" for t in journal_trials(tmp_path / "bad"))


def test_pbt_sets_the_variant_s_dropout_not_the_base_model_s_own(tmp_path):
    """PBT's `dropout` is the rate of the Dropout layers the variant puts in; a Dropout of
    the base model keeps its rate."""
    from reglab.engine import Population
    from reglab.study.build import build_member
    from reglab.study.plan import RunSpec
    from reglab.study.spec import parse_study
    from reglab.tune.pbt import set_values

    study = write_study(tmp_path, 'trials = 2\nscheduler = "pbt"\nvariants = ["dropout"]',
                        study=STUDY.replace(
                            'layers = [{ type = "Dense", units = 8, activation = "relu" },',
                            'layers = [{ type = "Dense", units = 8, activation = "relu" },\n'
                            '          { type = "Dropout", rate = 0.1 },'))
    spec = parse_study(study)
    run = RunSpec("dropout", (("dropout", 0.2),), 0, {"dropout": 0.2})
    population = Population([build_member(spec, run, (6,))])
    set_values(population, 0, {"dropout": 0.45})
    rates = {name: population.hyperparameter(0, name)
             for name in population.hyperparameter_names() if name.endswith(".rate")}
    assert sorted(rates.values()) == [0.1, 0.45]


def test_a_larger_budget_goes_on_from_the_trials_told_and_confirms_the_new_choice(tmp_path):
    study = write_study(tmp_path, 'trials = 3\nbatch = 3\nsampler = "random"\n'
                        'pruner = "none"\nconfirm_seeds = 2', epochs=2)
    out = tmp_path / "out"
    first = run(["run", study, "--out", out, "--quiet", "--no-report"])
    assert first.exit_code == 0, first.output
    before = {t.number: (t.params, t.value) for t in journal_trials(out)}
    assert len(before) == 3
    from reglab.storage import RunRecord, SQLiteStore

    with SQLiteStore(out) as store:  # as if an earlier choice had been confirmed
        store.add_runs([RunRecord("dropout[dropout=0.123]/seed=3", "dropout",
                                  {"dropout": 0.123}, 3, "p", {}, "queued")])
    # Optuna's study.optimize called again: the told trials stay, three more are asked
    study.write_text(study.read_text().replace("trials = 3", "trials = 6"))
    again = run(["run", study, "--out", out, "--quiet", "--no-report"])
    assert again.exit_code == 0, again.output
    # the stray confirmation (and an earlier chosen trial's, where the choice moved) goes
    assert re.search(r"the chosen trial changed since the last run; the \d+ runs confirming "
                     r"the earlier one are removed", again.output), again.output
    after = {t.number: (t.params, t.value) for t in journal_trials(out)}
    assert len(after) == 6 and all(after[n] == before[n] for n in before)
    # "best so far" counts the trials told in the earlier session, as Optuna's best_value
    flagged = [(int(n), float(v)) for n, v in re.findall(
        r"trial (\d+): val_\w+ ([-\d.]+) \(best so far\)", again.output)]
    earlier_best = max(v for _, v in before.values())  # the objective is maximized here
    assert all(value > earlier_best for _, value in flagged), (again.output, earlier_best)
    assert [n for n, _ in flagged] == [n for n in sorted(after) if n >= 3 and after[n][1] > max(
        [earlier_best] + [after[m][1] for m in range(3, n)])]
    from reglab.study.spec import parse_study
    from reglab.tune import space
    from reglab.tune.selection import select

    with SQLiteStore(out, read_only=True) as store:
        stored = store.study()[1]
        chosen = store.get_meta("tuning")["chosen"]
        confirmed = {r.run_id for r in store.runs() if not r.run_id.startswith("trial=")}
    assert stored["tune"]["trials"] == 6 and "dropout[dropout=0.123]/seed=3" not in confirmed
    spec = parse_study(study)
    # the confirmation is the chosen trial's, whichever it is now: no earlier one left over
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna_study = optuna.load_study(study_name="reglab", storage=JournalStorage(
        JournalFileBackend(str(out / "optuna.journal"))))
    best = select(spec, optuna_study)
    assert best.number == chosen["number"]
    plan = space.confirmation_plan(spec, best.variant, best.point)
    assert confirmed == {r.run_id for r in plan.runs}
    # a lower budget keeps the trials told, and says so
    study.write_text(study.read_text().replace("trials = 6", "trials = 2"))
    lower = run(["run", study, "--out", out, "--quiet", "--no-report"])
    assert lower.exit_code == 0, lower.output
    assert "tuning: 6 trials were asked under an earlier, larger budget (tune.trials = 2 now); " \
        "all are kept and chosen among" in lower.output
    assert len(journal_trials(out)) == 6
    # population-based training's trials are the population it trains: not a budget
    pbt = write_study(tmp_path, 'trials = 4\nscheduler = "pbt"\nvariants = ["l2"]', epochs=2,
                      study=PBT_STUDY)
    assert "tune.trials" not in parse_study(pbt).resumable_keys()


@pytest.mark.parametrize("scheduler, advice", [
    ("", "Raise it and run again."),  # Optuna's budget may change on a resume
    ('scheduler = "pbt"\nvariants = ["l2"]\n', "Raise it and run again with --restart."),
])
def test_a_budget_spent_before_the_first_trial_says_how_to_go_on(tmp_path, scheduler, advice):
    study = write_study(tmp_path, f"{scheduler}trials = 4\nwall_time = 0.000001", epochs=2,
                        study=PBT_STUDY)
    out = tmp_path / "out"
    result = run(["run", study, "--out", out, "--quiet", "--no-report"])
    assert result.exit_code != 0
    assert "tuning: no trial was asked: the budget (tune.wall_time" in result.output
    assert advice in result.output
    # the advice holds: the larger budget resumes (Optuna) or starts over (PBT)
    study.write_text(study.read_text().replace("wall_time = 0.000001", "wall_time = 600"))
    again = run(["run", study, "--out", out, "--quiet", "--no-report",
                 *(["--restart"] if scheduler else [])])
    assert again.exit_code == 0, again.output


def test_without_a_test_set_the_chosen_trial_is_named_and_not_confirmed(tmp_path):
    """The confirmation's table ranks on test metrics: without a test set its runs were
    trained for a 'no table' line. They are not trained; the show, the table and the report
    say the choice stands unconfirmed and why."""
    study = write_study(tmp_path, 'trials = 3\nbatch = 3\nsampler = "random"\n'
                        'pruner = "none"\nconfirm_seeds = 2\nvariants = ["l2"]')
    rng = np.random.default_rng(0)
    x = rng.random((120, 6))
    np.savez(tmp_path / "data.npz", x=x, y=(x[:, 0] > 0.5).astype(np.int64))  # no test arrays
    out = tmp_path / "out"
    result = run(["run", study, "--out", out, "--quiet"])
    assert result.exit_code == 0, result.output
    runs = store_runs(out)
    from reglab.study.plan import is_trial_run

    assert runs and all(is_trial_run(run_id) for run_id in runs)  # no confirmation run
    shown = run(["show", out]).output
    assert "not confirmed: the data has no test set (give it data.test or " \
           "data.test_split to confirm it on fresh seeds)" in shown
    assert "confirmed on fresh seeds" not in shown and "no finished runs" not in shown
    page = (out / "report.html").read_text()
    assert "confirmation</td><td class=\"name\">none: the data has no test set" in page
    assert "(not confirmed: the data has no test set)" in page
