"""The CLI end to end on a tiny study: file -> database -> table, resume, refusal, kill -9."""

from __future__ import annotations

import json
import os
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
name = "tiny"
seeds = 3
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
[variants.baseline]
[variants.l2]
kernel_regularizer = { type = "L2", l2 = [0.001, 0.1] }
[variants.dropout]
dropout = 0.3
[variants.bn]
batch_norm = true
"""


def write_study(directory: Path, epochs: int = 3) -> Path:
    rng = np.random.default_rng(0)
    x = rng.random((96, 6))
    y = (x[:, 0] + x[:, 1] > 1).astype(np.int64) + (x[:, 2] > 0.8)
    np.savez(directory / "data.npz", x=x, y=y, x_test=x[:32], y_test=y[:32])
    path = directory / "study.toml"
    path.write_text(STUDY.replace("EPOCHS", str(epochs)))
    return path


def finished(out: Path) -> dict[str, tuple]:
    with sqlite3.connect(out / "study.db") as db:
        rows = db.execute("SELECT run_id, status, metrics FROM runs").fetchall()
    return {r[0]: (r[1], r[2]) for r in rows if r[1] in ("done", "stopped_early", "diverged",
                                                          "failed")}


def test_run_show_ls_resume_and_refuse(tmp_path):
    study = write_study(tmp_path)
    out = tmp_path / "out"
    cli = CliRunner()
    result = cli.invoke(main, ["validate", str(study)])
    assert result.exit_code == 0, result.output
    assert "4 variants (5 points with sweeps) × 3 seeds = 15 runs in 2 populations" in result.output
    result = cli.invoke(main, ["run", str(study), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "verdict" in result.output and "baseline" in result.output
    assert (out / "report.html").is_file()  # a study of flat vectors: no augmentation grid
    first = finished(out)
    assert len(first) == 15
    again = cli.invoke(main, ["run", str(study), "--out", str(out), "--quiet", "--no-report"])
    assert again.exit_code == 0, again.output
    assert finished(out) == first  # nothing retrained, nothing duplicated
    shown = cli.invoke(main, ["show", str(out)])
    assert shown.exit_code == 0 and "test_accuracy (95% CI)" in shown.output
    # the default minimum effect, from the 32 test samples the runs recorded
    assert "one binomial standard error of the baseline's test_accuracy" in shown.output
    assert "n = 32 test samples" in shown.output
    listed = cli.invoke(main, ["ls", str(out)])
    assert listed.output.count("done") + listed.output.count("stopped_early") == 15
    study.write_text(study.read_text().replace("epochs = 3", "epochs = 4"))
    refused = cli.invoke(main, ["run", str(study), "--out", str(out), "--quiet", "--no-report"])
    assert refused.exit_code == 2 and "holds another study" in refused.output
    assert "changed: training.epochs" in refused.output
    assert finished(out) == first  # nothing lost


def test_a_malformed_study_writes_nothing(tmp_path):
    study = write_study(tmp_path)
    study.write_text(study.read_text().replace("dropout = 0.3", "dropuot = 0.3"))
    result = CliRunner().invoke(main, ["run", str(study), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "Did you mean 'dropout'" in result.output
    assert not (tmp_path / "out").exists()


def _tagged_processes(tag: str) -> list[int]:
    """Live processes whose environment carries ``REGLAB_TEST_TAG=tag``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and f"REGLAB_TEST_TAG={tag}".encode() in \
                    (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def _cmdline(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:200].decode()
    except OSError:  # gone meanwhile
        return None


@pytest.mark.parametrize("workers", [1, 2])
def test_kill_9_then_rerun_gives_the_uninterrupted_result(tmp_path, workers):
    study = write_study(tmp_path, epochs=6)
    tag = f"{os.getpid()}-{workers}"
    env = {**os.environ, "REGLAB_TEST_TAG": tag}

    def command(out):
        return [sys.executable, "-m", "reglab.cli", "run", str(study), "--out", str(out),
                "--quiet", "--no-report", "--workers", str(workers)]
    # The reference runs the same way (same process settings, same thread count).
    subprocess.run(command(tmp_path / "reference"), check=True, stdout=subprocess.DEVNULL,
                   env=env)
    expected = finished(tmp_path / "reference")
    out = tmp_path / "killed"
    kills = 0
    # Killed once the store holds this many epoch rows (early, midway, late): mid-job, in one
    # process as on a local Dask cluster (whose rows stream in as epochs end).
    for rows in (1, 30, 60):
        child = subprocess.Popen(command(out), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 120
        while child.poll() is None and sum(_epochs_recorded(out).values()) < rows:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            kills += 1
        child.wait()
        deadline = time.monotonic() + 30  # worker processes die with the driver
        while _tagged_processes(tag) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = {pid: _cmdline(pid) for pid in _tagged_processes(tag)}
        left = {pid: line for pid, line in left.items() if line is not None}
        assert left == {}, f"processes outlived the killed driver (killed at {rows} epoch rows)"
    assert kills >= 1, "no kill landed: the study finished before the first one"
    rerun = subprocess.run(command(out), capture_output=True, text=True, env=env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    with sqlite3.connect(out / "study.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert finished(out) == expected


def _epochs_recorded(out: Path) -> dict[str, int]:
    """Per run, the epochs in the store now (read-only, beside the writer)."""
    if not (out / "study.db").is_file():
        return {}
    try:
        with sqlite3.connect(f"file:{out / 'study.db'}?mode=ro", uri=True) as db:
            rows = db.execute("SELECT run_id, COUNT(*) FROM epochs GROUP BY run_id").fetchall()
    except sqlite3.Error:
        return {}
    return dict(rows)


@pytest.mark.parametrize("at_epoch", [3, 11])
def test_a_kill_mid_population_loses_at_most_one_epoch(tmp_path, at_epoch):
    """Killed while a population is in its epochs, the rerun goes on from the population's
    last complete epoch (its checkpoint) and ends as an uninterrupted run, bit for bit;
    the epochs trained again are at most one."""
    import torch

    study = write_study(tmp_path, epochs=16)

    def command(out):
        return [sys.executable, "-m", "reglab.cli", "run", str(study), "--out", str(out),
                "--quiet", "--no-report"]
    subprocess.run(command(tmp_path / "reference"), check=True, stdout=subprocess.DEVNULL)
    expected = finished(tmp_path / "reference")
    out = tmp_path / "killed"
    child = subprocess.Popen(command(out), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while max(_epochs_recorded(out).values(), default=0) < at_epoch:
        assert child.poll() is None, "the study ended before the kill"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL  # the kill landed while it trained
    recorded = max(_epochs_recorded(out).values())
    (checkpoint,) = (out / "checkpoints").glob("*.pt")
    saved = torch.load(checkpoint, weights_only=False)
    complete = saved["population"]["epoch"] + 1  # epochs the checkpoint holds
    assert 0 <= recorded - complete <= 1  # trained again after the kill: at most one epoch
    rerun = subprocess.run(command(out), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "go on from their last complete epoch" in rerun.stdout
    assert finished(out) == expected
    assert not (out / "checkpoints").exists()  # removed with their finished populations


@pytest.mark.parametrize(("signum", "status", "said"), [
    (signal.SIGINT, 130, "interrupted: what was saved is kept"),
    # kill, a job scheduler's stop at its time limit, docker stop: it ended the process at
    # once (-15), with multiprocessing's leaked-semaphore warning
    (signal.SIGTERM, 143, "terminated (SIGTERM): what was saved is kept"),
], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_exits_130_keeping_what_was_saved_and_the_rerun_finishes(tmp_path, signum,
                                                                         status, said):
    """Ctrl-C (SIGINT) is not "runs failed" (1) nor an error (2): 130, as a shell reports an
    interrupted command, with a line saying the same command goes on (SIGTERM: 143). The
    study trains long enough after its second epoch (about 5 s here) for the interrupt to
    land while it still trains, on a loaded machine too (with 40 epochs it once finished
    first)."""
    study = write_study(tmp_path, epochs=200)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "reglab.cli", "run", str(study), "--out", str(out),
               "--quiet", "--no-report"]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    deadline = time.monotonic() + 120
    while max(_epochs_recorded(out).values(), default=0) < 2:
        assert child.poll() is None, "the study ended before the interrupt"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    # (once, on a loaded machine, the store's reads failed until the study had ended, and
    # the signal reached a finished process: said as that, not as a lost interrupt)
    assert child.poll() is None, "the study ended before the interrupt"
    child.send_signal(signum)
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == status, stderr[-3000:]
    assert said in stderr and "Traceback" not in stderr and "leaked" not in stderr
    assert max(_epochs_recorded(out).values()) >= 2
    rerun = subprocess.run(command, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    statuses = [status for status, _ in finished(out).values()]
    assert len(statuses) == 15 and "failed" not in statuses  # every run of the plan


def test_ctrl_c_that_torch_turns_into_a_runtime_error_still_stops_the_study(tmp_path):
    """Ctrl-C during a checkpoint's write comes out of torch's writer as a RuntimeError
    ('unexpected pos'); the study took it for a failing run, retried its runs in halves and
    trained to the end, exiting 0 (seen under load). Now it stops, as Ctrl-C."""
    from interrupt_helpers import interrupt_turned_into
    from reglab.study.runner import InProcessExecutor, run_study

    class InterruptedWhileSaving(InProcessExecutor):
        calls = []

        def train(self, job, on_epoch=None, progress=None):
            InterruptedWhileSaving.calls.append(len(job.population.runs))
            interrupt_turned_into(RuntimeError)

    study = write_study(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run_study(study, tmp_path / "out", executor=InterruptedWhileSaving(),
                  log=lambda *_: None)
    assert InterruptedWhileSaving.calls == [12]  # no retry in halves
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert not [status for status, _ in finished(tmp_path / "out").values()]  # none failed


def test_a_checkpoint_the_full_disk_cannot_hold_is_said_and_the_runs_train_on(tmp_path,
                                                                               monkeypatch):
    """torch's writer reports a disk that filled up as a RuntimeError ('unexpected pos');
    the study took it for failing runs, retried them in halves and recorded them failed
    for good (only --restart retrained them). Now it is the disk's error, as an OSError
    from the checkpoint's write is: said, and the population trains on without
    checkpoints; no run fails."""
    import torch

    from reglab.study.runner import run_study

    real_save, calls = torch.save, []

    def full_disk(obj, stream, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the second checkpoint
            stream.write(b"PK")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos "
                               "206784 vs 206712")
        return real_save(obj, stream, *args, **kwargs)

    study, out = write_study(tmp_path), tmp_path / "out"
    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.warns(UserWarning, match="cannot write the checkpoint .*cannot write the "
                      "study's checkpoint \\(.* bytes free on its device: the disk may be "
                      "full\\).*trains on without checkpoints"):
        store = run_study(study, out, log=lambda *_: None)
    assert {r.status for r in store.runs()} <= {"done", "stopped_early"}
    assert not list(out.rglob("*.partial"))


def test_a_job_that_the_system_fails_stops_the_study_unrecorded_and_the_rerun_goes_on(
        tmp_path):
    """An OSError out of a job (a full disk, a file system gone read-only) is the place's
    fault, not the runs': the study stops, as a kill would stop it (no retry in halves, no
    run recorded failed), and the same command goes on."""
    import errno

    from reglab.study.runner import InProcessExecutor, run_study

    class DiskFull(InProcessExecutor):
        calls = []

        def train(self, job, on_epoch=None, progress=None):
            DiskFull.calls.append(len(job.population.runs))
            raise OSError(errno.ENOSPC, "No space left on device", "somewhere")

    study, out = write_study(tmp_path), tmp_path / "out"
    with pytest.raises(OSError, match="No space left on device"):
        run_study(study, out, executor=DiskFull(), log=lambda *_: None)
    assert DiskFull.calls == [12]  # no retry in halves
    assert not finished(out)  # none recorded failed
    store = run_study(study, out, log=lambda *_: None)
    assert {r.status for r in store.runs()} <= {"done", "stopped_early"}


def test_checkpoint_write_error_names_the_file_and_the_room_left(tmp_path):
    from reglab.study.checkpoints import CheckpointWriteError

    error = CheckpointWriteError(tmp_path / "checkpoints" / "p-0.pt")
    assert isinstance(error, OSError) and error.filename.endswith("p-0.pt")
    assert "bytes free on its device" in error.strerror


def test_a_failing_run_is_recorded_and_the_rest_of_the_study_goes_on(tmp_path):
    """One run raises wherever it trains: its population is retried in halves, and only that
    run is recorded as failed, with its error; every other run finishes."""
    from reglab.study.runner import InProcessExecutor, run_study

    class Flaky(InProcessExecutor):
        calls = []

        def train(self, job, on_epoch=None, progress=None):
            Flaky.calls.append(len(job.population.runs))
            if any(run.run_id == "bn/seed=1" for run in job.population.runs):
                raise RuntimeError("out of memory (simulated)")
            return super().train(job, on_epoch, progress)

    study = write_study(tmp_path)
    store = run_study(study, tmp_path / "out", executor=Flaky(), log=lambda *_: None)
    statuses = {r.run_id: r.status for r in store.runs()}
    assert statuses.pop("bn/seed=1") == "failed"
    assert set(statuses.values()) <= {"done", "stopped_early"}
    (failed,) = [r for r in store.runs() if r.status == "failed"]
    assert "out of memory (simulated)" in failed.error and store.epochs(failed.run_id) == []
    for run_id in statuses:  # the retried runs have each epoch once
        assert [e["epoch"] for e in store.epochs(run_id)] == list(
            range(store.run(run_id).epochs_run))
    assert Flaky.calls == [12, 3, 1, 2, 1, 1]  # the bn population of 3: halves [bn/0], [1, 2]


def test_worker_processes_give_the_in_process_results(tmp_path):
    """A local Dask cluster of two worker processes, each population cut into two shards:
    the same runs, statuses, epochs and metrics as in one process, bit for bit (one torch
    thread on both sides: a member's arithmetic does not depend on who shares its population)."""
    import json

    from reglab.study.dask_executor import DaskExecutor
    from reglab.study.runner import prepare_study, run_study

    study = write_study(tmp_path)
    import torch

    assert torch.get_num_threads() == 1  # as the workers below
    reference_store = run_study(study, tmp_path / "one", log=lambda *_: None)
    reference = {r.run_id: r for r in reference_store.runs()}
    executor = DaskExecutor(workers=2, threads=1)
    try:
        (shards,) = executor.shards([prepare_study(study).populations[0]])
        assert [len(s.runs) for s in shards] == [6, 6]
        assert [sorted({r.seed for r in s.runs}) for s in shards] == [[0, 1], [1, 2]]
        store = run_study(study, tmp_path / "two", executor=executor, log=lambda *_: None)
    finally:
        executor.close()
    runs = {r.run_id: r for r in store.runs()}
    assert runs.keys() == reference.keys()
    for run_id, record in runs.items():
        expected = reference[run_id]
        assert (record.status, record.epochs_run, record.best_epoch) == \
            (expected.status, expected.epochs_run, expected.best_epoch), run_id
        assert record.metrics == expected.metrics, run_id
        assert store.epochs(run_id) == reference_store.epochs(run_id), run_id
    assert json.dumps(sorted(store.get_meta("population_wall_time"))) == json.dumps(
        sorted({r.population for r in runs.values()}))


MIXING_STUDY = """
name = "mixing"
seeds = 2
[data]
dataset = "images.npz"
validation_split = 0.25
[model]
input_shape = [6, 6, 1]
layers = [{ type = "Flatten" }, { type = "Dense", units = 3, activation = "softmax" }]
[training]
epochs = 2
batch_size = 16
[variants.baseline]
[variants.mixup]
mixup = { alpha = [0.2, 0.4] }
[variants.cutmix]
cutmix = { factor = 1.0 }
[variants.smooth]
label_smoothing = 0.1
"""


def test_mixup_cutmix_and_label_smoothing_in_a_study_share_one_population(tmp_path):
    from reglab.study.build import population_members
    from reglab.study.runner import prepare_study, run_study

    rng = np.random.default_rng(0)
    x = rng.random((64, 6, 6, 1))
    y = (x[:, :3].mean(axis=(1, 2, 3)) > 0.5).astype(np.int64) + (x[:, 0, 0, 0] > 0.8)
    np.savez(tmp_path / "images.npz", x=x, y=y, x_test=x[:16], y_test=y[:16])
    study = tmp_path / "study.toml"
    study.write_text(MIXING_STUDY)
    plan = prepare_study(study)
    assert len(plan.populations) == 1 and len(plan.runs) == 10
    members, _, _ = population_members(plan.spec, plan.populations[0], _FakeData())
    values = {m.name: [type(layer).__name__ + str(layer.values()) for layer in m.layers[:3]]
              for m in members}
    assert values["mixup[mixup.alpha=0.4]/seed=1"] == [
        "MixUp{'alpha': 0.4}", "CutMix{'factor': 0.0}", "LabelSmoothing{'smoothing': 0.0}"]
    assert values["smooth/seed=0"][2] == "LabelSmoothing{'smoothing': 0.1}"
    store = run_study(study, tmp_path / "out", log=lambda *_: None)
    assert {r.status for r in store.runs()} == {"done"}
    assert all("test_accuracy" in r.metrics for r in store.runs())


class _FakeData:
    image_shape = (6, 6, 1)


def test_a_bfloat16_study_says_its_precision_in_the_store_show_and_report(tmp_path):
    study = write_study(tmp_path, epochs=1)
    study.write_text(study.read_text().replace("batch_size = 16",
                                               'batch_size = 16\nprecision = "bfloat16"'))
    out = tmp_path / "out"
    cli = CliRunner()
    result = cli.invoke(main, ["run", str(study), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert len(finished(out)) == 15
    with sqlite3.connect(out / "study.db") as db:
        stored = dict(db.execute("SELECT key, value FROM meta").fetchall())
    assert json.loads(stored["precision"]) == "bfloat16"
    shown = cli.invoke(main, ["show", str(out)])
    assert "precision: bfloat16" in shown.output
    html = (out / "report.html").read_text()
    assert "bfloat16 compute, float32 weights" in html


def test_a_stopped_study_lists_no_run_as_running_and_shows_partial_results(tmp_path):
    """Runs wait queued until their population starts; after a stop, `ls` says which runs
    were interrupted (no `reglab run` holds the directory) and `show` says the table is
    partial, naming the variants still missing runs."""
    from reglab.study.runner import InProcessExecutor, run_study

    study = write_study(tmp_path)
    out = tmp_path / "out"
    at_start = []

    class StoppedInTheSecond(InProcessExecutor):
        def train(self, job, on_epoch=None, progress=None):
            with sqlite3.connect(out / "study.db") as db:
                at_start.append(dict(db.execute(
                    "SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall()))
            if len(at_start) == 2:
                raise KeyboardInterrupt
            return super().train(job, on_epoch, progress)

    with pytest.raises(KeyboardInterrupt):
        run_study(study, out, executor=StoppedInTheSecond(), log=lambda *_: None)
    first = at_start[0]["running"]
    assert at_start[0] == {"running": first, "queued": 15 - first}  # the second waits
    done = len(finished(out))
    assert done == first and 0 < done < 15
    cli = CliRunner()
    listed = cli.invoke(main, ["ls", str(out)]).output
    assert "running" not in listed
    assert listed.count("interrupted") + listed.count("queued") == 15 - done
    shown = cli.invoke(main, ["show", str(out)])
    assert shown.exit_code == 0
    assert shown.output.startswith(f"partial results: {15 - done} of 15 runs not finished (")
    rerun = cli.invoke(main, ["run", str(study), "--out", str(out), "--quiet", "--no-report"])
    assert rerun.exit_code == 0, rerun.output
    assert not rerun.output.startswith("partial results") and len(finished(out)) == 15


def test_an_averaging_that_would_never_start_is_refused_before_training(tmp_path):
    """swa.start at or after the epochs (the study's, or --epochs's) would train the variant
    as it is without SWA, and rank a technique that never ran as 'equivalent'."""
    study = write_study(tmp_path, epochs=4)
    study.write_text(study.read_text() + "[variants.swa]\nswa = { start = [1, 3, 5] }\n")
    cli = CliRunner()
    result = cli.invoke(main, ["validate", str(study)])
    assert result.exit_code == 2
    assert "variants.swa[swa.start=5].swa.start: expected an epoch the runs train (0 to 3" \
        in result.output and "Got 5" in result.output and "start=3]" not in result.output
    shorter = cli.invoke(main, ["run", str(study), "--epochs", "2", "--out",
                                str(tmp_path / "out"), "--quiet"])
    assert shorter.exit_code == 2 and "start=3]" in shorter.output \
        and "(0 to 1," in shorter.output
    assert not (tmp_path / "out" / "study.db").exists()  # refused before anything is written
    study.write_text(study.read_text().replace("[1, 3, 5]", "[1, 3]"))
    assert cli.invoke(main, ["validate", str(study)]).exit_code == 0


def test_a_study_resumed_with_another_thread_count_says_so(tmp_path):
    """The thread count each job trains with is stored; a study that goes on with another
    says its next runs may differ in their last bits (bit for bit needs the same count)."""
    import torch

    from reglab.storage import SQLiteStore
    from reglab.study.runner import InProcessExecutor, run_study

    study = write_study(tmp_path)
    out = tmp_path / "out"
    started = []

    class StoppedInTheSecond(InProcessExecutor):
        def train(self, job, on_epoch=None, progress=None):
            started.append(job)
            if len(started) == 2:
                raise KeyboardInterrupt
            return super().train(job, on_epoch, progress)

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with pytest.raises(KeyboardInterrupt):
            run_study(study, out, executor=StoppedInTheSecond(), log=lambda *_: None)
        with SQLiteStore(out, read_only=True) as store:
            assert store.get_meta("threads") == 1
        torch.set_num_threads(2)
        said = []
        run_study(study, out, log=said.append)
    finally:
        torch.set_num_threads(threads)
    notes = [line for line in said if "torch thread" in line]
    assert notes == ["note: the study trained with 1 torch thread(s) per job and goes on with "
                     "2: the runs trained from now may differ from an uninterrupted study's "
                     "in their last bits (bit for bit needs the same thread count; "
                     "OMP_NUM_THREADS or --workers set it)"]
    with SQLiteStore(out, read_only=True) as store:
        assert store.get_meta("threads") == 2
    again = []
    run_study(study, out, log=again.append)  # finished: nothing goes on, nothing to say
    assert not [line for line in again if "torch thread" in line]


def test_another_thread_count_is_said_when_only_a_checkpoint_was_trained(tmp_path):
    """Killed in its first population, after a checkpoint but before any run finished: the
    runs in progress go on from it with another thread count, which is said (it had been
    said only once some run had finished)."""
    import torch

    from reglab.study.runner import InProcessExecutor, run_study

    study = write_study(tmp_path, epochs=6)
    out = tmp_path / "out"

    class KilledAfterACheckpoint(InProcessExecutor):
        def train(self, job, on_epoch=None, progress=None):
            def stop(*args, **kwargs):
                on_epoch(*args, **kwargs)
                if list((out / "checkpoints").glob("*.pt")):
                    raise KeyboardInterrupt
            return super().train(job, stop, progress)

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with pytest.raises(KeyboardInterrupt):
            run_study(study, out, executor=KilledAfterACheckpoint(), log=lambda *_: None)
        from reglab.storage import FINISHED, SQLiteStore

        with SQLiteStore(out, read_only=True) as store:
            assert not any(run.status in FINISHED for run in store.runs())
        torch.set_num_threads(2)
        said = []
        run_study(study, out, log=said.append)
    finally:
        torch.set_num_threads(threads)
    assert [line for line in said if "torch thread" in line] == [
        "note: the study trained with 1 torch thread(s) per job and goes on with 2: the runs "
        "trained from now may differ from an uninterrupted study's in their last bits (bit for "
        "bit needs the same thread count; OMP_NUM_THREADS or --workers set it)"]


def test_a_damaged_checkpoint_is_said_and_its_population_starts_again(tmp_path):
    """A checkpoint cut short (a disk filled, a copy broken) cannot be read: the rerun says
    so, where it had said the population went on from it, and the study ends as an
    uninterrupted one."""
    from reglab.study.runner import InProcessExecutor, run_study

    study = write_study(tmp_path, epochs=6)
    run_study(study, tmp_path / "reference", log=lambda *_: None)
    out = tmp_path / "out"

    class KilledAfterTheThirdEpoch(InProcessExecutor):
        def train(self, job, on_epoch=None, progress=None):
            def stop(*args, **kwargs):
                if on_epoch is not None:
                    on_epoch(*args, **kwargs)
                if list((out / "checkpoints").glob("*.pt")) and stop.calls > 2:
                    raise KeyboardInterrupt
                stop.calls += 1
            stop.calls = 0
            return super().train(job, stop, progress)

    with pytest.raises(KeyboardInterrupt):
        run_study(study, out, executor=KilledAfterTheThirdEpoch(), log=lambda *_: None)
    (checkpoint,) = (out / "checkpoints").glob("*.pt")
    checkpoint.write_bytes(checkpoint.read_bytes()[:len(checkpoint.read_bytes()) // 2])
    said = []
    run_study(study, out, log=said.append)
    assert "resuming: 1 checkpoint(s) cannot be read (damaged): those populations start " \
           "again from their first epoch" in said
    assert not any("go on from their last complete epoch" in line for line in said)
    assert finished(out) == finished(tmp_path / "reference")
