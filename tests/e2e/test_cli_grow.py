"""A study grown in place (more seeds, variants or sweep values): the runs stored stay, the
new ones train, and the store ends as a fresh run of the grown study would, bit for bit;
anything else changed is still another study."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from test_cli_study import _epochs_recorded, finished, write_study

from reglab.cli import main

pytestmark = pytest.mark.e2e


def grown(text: str) -> str:
    """The tiny study with a value more in the l2 sweep and an l1 variant among the others."""
    text = text.replace("l2 = [0.001, 0.1]", "l2 = [0.001, 0.01, 0.1]")
    return text.replace("[variants.dropout]", '[variants.l1]\nkernel_regularizer = '
                        '{ type = "L1", l1 = 0.001 }\n[variants.dropout]')


def stored_study(tmp_path):
    """``(study file, its store, a CliRunner)``: the tiny study run once."""
    study = write_study(tmp_path)
    out = tmp_path / "out"
    cli = CliRunner()
    assert cli.invoke(main, ["run", str(study), "--out", str(out), "--quiet",
                             "--no-report"]).exit_code == 0
    return study, out, cli


def epochs(out):
    import sqlite3

    with sqlite3.connect(out / "study.db") as db:
        return sorted(db.execute("SELECT run_id, epoch, metrics FROM epochs").fetchall())


def test_more_seeds_variants_and_sweep_values_train_only_the_new_runs(tmp_path):
    study = write_study(tmp_path)
    cli = CliRunner()
    out, reference = tmp_path / "out", tmp_path / "reference"
    first = cli.invoke(main, ["run", str(study), "--out", str(out), "--seeds", "2", "--quiet",
                              "--no-report"])
    assert first.exit_code == 0, first.output
    stored = finished(out)
    assert len(stored) == 10
    grown_study = tmp_path / "grown.toml"
    grown_study.write_text(grown(study.read_text()))
    again = cli.invoke(main, ["run", str(grown_study), "--out", str(out), "--seeds", "3",
                              "--no-report"])
    assert again.exit_code == 0, again.output
    assert ("extending the study: it adds seed 2, variant l1 and sweep values in l2: "
            "kernel_regularizer.l2; the 10 finished runs stored are kept") in again.output
    assert "21 runs" in again.output and "deleting" not in again.output
    after = finished(out)
    assert {run: after[run] for run in stored} == stored  # kept as they were
    fresh = cli.invoke(main, ["run", str(grown_study), "--out", str(reference), "--seeds", "3",
                              "--quiet", "--no-report"])
    assert fresh.exit_code == 0, fresh.output
    assert after == finished(reference) and len(after) == 21
    assert epochs(out) == epochs(reference)
    shown = cli.invoke(main, ["show", str(out)])
    assert shown.exit_code == 0 and "l1 " in shown.output


@pytest.mark.parametrize(("edit", "said"), [
    (lambda t: t.replace("epochs = 3", "epochs = 4"), "training.epochs"),
    (lambda t: t.replace("dropout = 0.3", "dropout = 0.4"), "variants.dropout.changes"),
    (lambda t: t.replace("l2 = [0.001, 0.1]", "l2 = [0.001, 0.2]"), "variants.l2"),
    (lambda t: t.replace("[variants.bn]\nbatch_norm = true\n", ""), "variants.bn (removed)"),
    (lambda t: t.replace("seeds = 3", "seeds = [0, 1, 5]"), "seeds"),
], ids=["epochs", "a-variant-s-settings", "a-sweep-value-replaced", "a-variant-removed",
        "a-seed-replaced"])
def test_a_study_changed_otherwise_is_still_another_study(tmp_path, edit, said):
    study, out, cli = stored_study(tmp_path)
    stored = finished(out)
    study.write_text(edit(study.read_text()) + "\n[variants.more]\nkernel_regularizer = "
                     '{ type = "L2", l2 = 0.5 }\n')  # grown too, which does not save it
    refused = cli.invoke(main, ["run", str(study), "--out", str(out), "--quiet",
                                "--no-report"])
    assert refused.exit_code == 2, refused.output
    assert "holds another study" in refused.output and said in refused.output
    assert "more seeds, variants or sweep values" in refused.output
    assert finished(out) == stored  # nothing lost


def test_a_study_killed_then_grown_goes_on_from_its_checkpoint(tmp_path):
    """The job killed mid-population keeps its checkpoint when the study grows: its runs go
    on from their last complete epoch, and the store ends as the grown study's fresh run."""
    import torch

    from reglab.study import checkpoints
    from reglab.study.runner import prepare_study
    study = write_study(tmp_path, epochs=16)
    grown_study = tmp_path / "grown.toml"
    grown_study.write_text(grown(study.read_text()))

    def command(path, out, seeds):
        return [sys.executable, "-m", "reglab.cli", "run", str(path), "--out", str(out),
                "--seeds", str(seeds), "--quiet", "--no-report"]
    subprocess.run(command(grown_study, tmp_path / "reference", 4), check=True,
                   stdout=subprocess.DEVNULL)
    out = tmp_path / "killed"
    child = subprocess.Popen(command(study, out, 3), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while max(_epochs_recorded(out).values(), default=0) < 5:
        assert child.poll() is None, "the study ended before the kill"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    (checkpoint,) = (out / "checkpoints").glob("*.pt")
    # the grown study takes the killed job's checkpoint as its own (not only a readable file)
    saved = torch.load(checkpoint, weights_only=False)
    plan = prepare_study(grown_study, seeds=4)
    runs = {run.run_id: run for run in plan.runs}
    job_runs = [runs[run_id] for run_id in saved["run_ids"]]
    assert checkpoints.load(str(checkpoint), saved["run_ids"], "cpu", plan.spec.job_fingerprint(
        [run.changes for run in job_runs])) is not None
    rerun = subprocess.run(command(grown_study, out, 4), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "extending the study: it adds seed 3, variant l1" in rerun.stdout
    assert "go on from their last complete epoch" in rerun.stdout
    assert finished(out) == finished(tmp_path / "reference")
    assert epochs(out) == epochs(tmp_path / "reference")


def test_a_study_run_again_with_fewer_seeds_says_how_to_go_on(tmp_path):
    study, out, cli = stored_study(tmp_path)
    stored = finished(out)
    refused = cli.invoke(main, ["run", str(study), "--out", str(out), "--seeds", "2",
                                "--quiet", "--no-report"])
    assert refused.exit_code == 2, refused.output
    assert "holds this study grown by seed 2" in refused.output
    assert "Run that study again to go on" in refused.output
    assert finished(out) == stored


@pytest.mark.parametrize("before", [True, False], ids=["new-run-first", "stored-run-first"])
def test_a_new_run_that_repeats_a_stored_one_takes_its_results(tmp_path, before):
    """A grown study's new variant repeats a stored run's settings: whichever comes first
    in the file, it is not trained again but stored with the stored run's results, and the
    store says so as a fresh run of the grown study does."""
    import json
    import sqlite3

    study, out, cli = stored_study(tmp_path)
    reference = tmp_path / "reference"
    twin = '[variants.l2one]\nkernel_regularizer = { type = "L2", l2 = 0.1 }\n'
    text = study.read_text()
    grown_study = tmp_path / "grown.toml"
    grown_study.write_text(text.replace("[variants.l2]", twin + "[variants.l2]") if before
                           else text + twin)
    again = cli.invoke(main, ["run", str(grown_study), "--out", str(out), "--no-report"])
    assert again.exit_code == 0, again.output
    assert "(3 the same as another run: trained once)" in again.output
    assert cli.invoke(main, ["run", str(grown_study), "--out", str(reference), "--quiet",
                             "--no-report"]).exit_code == 0
    assert finished(out) == finished(reference)

    def copies(directory):
        with sqlite3.connect(directory / "study.db") as db:
            (value,) = db.execute("SELECT value FROM meta WHERE key = 'copies'").fetchone()
        return json.loads(value)
    # the pairs are the same; which of the two is the copy depends on what was stored first
    assert {frozenset(pair) for pair in copies(out).items()} == \
        {frozenset(pair) for pair in copies(reference).items()}


@pytest.mark.parametrize("variant", ["label_smoothing = 0.1", "mixup = { alpha = 0.2 }"])
def test_a_new_variant_that_would_reshape_every_run_is_refused_saying_why(tmp_path, variant):
    """Label smoothing (or MixUp, CutMix) in one variant puts its layer in every run of the
    study, at 0 elsewhere: the runs stored without it would not be the grown study's."""
    study, out, cli = stored_study(tmp_path)
    stored = finished(out)
    key = variant.split()[0]
    study.write_text(study.read_text() + f"[variants.new]\n{variant}\n")
    refused = cli.invoke(main, ["run", str(study), "--out", str(out), "--quiet",
                                "--no-report"])
    assert refused.exit_code == 2, refused.output
    assert f"holds this study without {key}, which every run" in refused.output
    assert finished(out) == stored


def test_a_study_only_reordered_resumes_keeping_its_runs(tmp_path):
    study, out, cli = stored_study(tmp_path)
    stored = finished(out)
    text = study.read_text()
    bn = "[variants.bn]\nbatch_norm = true\n"
    study.write_text(text.replace(bn, "").replace("[variants.baseline]", bn + "[variants.baseline]")
                     .replace("seeds = 3", "seeds = [2, 0, 1]"))
    again = cli.invoke(main, ["run", str(study), "--out", str(out), "--no-report"])
    assert again.exit_code == 0, again.output
    assert ("resuming the study with its seeds or variants in another order; the 15 finished "
            "runs stored are kept") in again.output
    assert finished(out) == stored
