"""Every class of bad input or misuse ends in one clear error line and a non-zero exit,
through the real command line, with nothing lost and nothing written where nothing should be.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_cli_study import STUDY, finished, write_study

from reglab.cli import main
from reglab.storage import StudyLock

pytestmark = pytest.mark.e2e


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def tree(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` with the hash of its bytes."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def assert_clean_error(result, *fragments, code=2):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    """A tiny study run to the end once (1 epoch), for the commands that read a store."""
    root = tmp_path_factory.mktemp("finished")
    study = write_study(root, epochs=1)
    result = invoke("run", study, "--out", root / "out", "--quiet", "--no-report")
    assert result.exit_code == 0, result.output
    return root, study, root / "out"


# -- the study file ------------------------------------------------------------------------

def test_a_binary_file_as_the_study(tmp_path):
    study = tmp_path / "study.toml"
    study.write_bytes(bytes(range(256)) * 4)
    for command in (["validate", study], ["run", study, "--out", tmp_path / "out"]):
        assert_clean_error(invoke(*command), "not a text file", "is not UTF-8")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("how", ["file", "option"])
def test_an_absurd_number_of_seeds_is_refused_before_planning(tmp_path, how):
    study = write_study(tmp_path)
    if how == "file":
        study.write_text(study.read_text().replace("seeds = 3", "seeds = 1000000000"))
        result = invoke("validate", study)
        assert_clean_error(result, "seeds: at most 10000 seeds. Got 1000000000.")
    else:
        result = invoke("validate", study, "--seeds", 10**9)
        assert result.exit_code == 2 and "--seeds" in result.output


def test_a_plan_beyond_the_run_limit_names_its_count(tmp_path):
    study = write_study(tmp_path)
    study.write_text(study.read_text().replace("seeds = 3", "seeds = 5000").replace(
        "l2 = [0.001, 0.1]", "l2 = { log = [1e-5, 1e-1], n = 30 }"))
    result = invoke("validate", study)
    assert_clean_error(result, "the study plans 165,000 runs (33 variant points × 5,000 seeds); "
                               "the limit is 100,000")


@pytest.mark.parametrize("change,fragment", [
    # a value the study file fixes, checked only when the model is built
    ('{ type = "Dense", units = 8, activation = "relu" }',
     'every variant: Dense: \'activation\': unknown activation \'relux\''),
    ('optimizer = { type = "Adam", learning_rate = 0.01 }',
     "every variant: Adam: 'beta_1' must be a float in the range [0.0, 1.0). Got 2.0."),
], ids=["activation", "optimizer"])
def test_values_that_fail_at_build_time_fail_validate_and_run_once(tmp_path, change, fragment):
    study = write_study(tmp_path)
    text = study.read_text()
    broken = {"activation": change.replace('"relu"', '"relux"'),
              "optimizer": change.replace("0.01", "0.01, beta_1 = 2.0")}
    key = "activation" if "units" in change else "optimizer"
    study.write_text(text.replace(change, broken[key]))
    for command in (["validate", study], ["run", study, "--out", tmp_path / "out", "--quiet"]):
        result = invoke(*command)
        assert_clean_error(result, fragment)
    assert not (tmp_path / "out").exists()  # failed before anything was written


@pytest.mark.parametrize("problem", ["labels", "input_shape", "ragged_csv"])
def test_data_that_cannot_fit_the_model_fails_before_training(tmp_path, problem):
    study = write_study(tmp_path)
    if problem == "labels":
        rng = np.random.default_rng(0)
        x = rng.random((40, 6))
        np.savez(tmp_path / "data.npz", x=x, y=np.arange(40) % 7, x_test=x, y_test=np.zeros(40))
        fragment = "labels must lie in [0, 2]"
    elif problem == "input_shape":
        study.write_text(study.read_text().replace("input_shape = [6]", "input_shape = [2, 4]"))
        fragment = "model.input_shape: [2, 4] (8 values per sample) does not match"
    else:
        (tmp_path / "data.csv").write_text("a,b,label\n1,2,0\n3,4\n5,6,1\n")
        study.write_text(study.read_text().replace('"data.npz"', '"data.csv"').replace(
            "input_shape = [6]", "input_shape = [2]"))
        fragment = "line 3 must have 3 fields like the header. Got 2"
    result = invoke("validate", study)
    assert_clean_error(result, fragment)
    result = invoke("run", study, "--out", tmp_path / "out", "--quiet")
    assert_clean_error(result, fragment)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["l2[kernel_regularizer.l2=0.001]", "a/b", "x" * 65,
                                  "two words"])
def test_variant_names_that_would_clash_or_break_files_are_refused(tmp_path, name):
    study = write_study(tmp_path)
    study.write_text(study.read_text() + f'[variants."{name}"]\ndropout = 0.1\n')
    assert_clean_error(invoke("validate", study), f"variants.{name!r}: a variant's name must be")


@pytest.mark.parametrize("name", ["../escaped", "", "..", "runs/../../x"])
def test_a_study_name_that_would_put_the_store_outside_runs_is_refused(tmp_path, monkeypatch,
                                                                       name):
    work = tmp_path / "work"
    work.mkdir()
    study = write_study(work)
    study.write_text(study.read_text().replace('name = "tiny"', f'name = "{name}"'))
    monkeypatch.chdir(work)  # the default store is runs/<name>, relative to here
    expected = ("cannot be its default output directory runs/<name>", "Give --out DIR") \
        if name else ("name: a study's name must be a string of 1 to 128 characters",)
    assert_clean_error(invoke("run", study, "--quiet"), *expected)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["data.npz", "study.toml", "work"]
    if name:  # a label all the same: with --out the study runs
        result = invoke("run", study, "--quiet", "--no-report", "--out", work / "out")
        assert result.exit_code == 0, result.output


def test_a_study_without_a_baseline_variant_says_which_it_compares_with(tmp_path):
    study = write_study(tmp_path)
    result = invoke("validate", study)
    assert result.exit_code == 0 and "note:" not in result.output
    study.write_text(study.read_text().replace("[variants.baseline]", "[variants.plain]"))
    result = invoke("validate", study)
    assert result.exit_code == 0, result.output
    assert "note: no variant is named 'baseline': the others are compared with the first, " \
           "'plain'" in result.output


def test_sweep_points_with_one_name_are_refused(tmp_path):
    study = write_study(tmp_path)
    study.write_text(study.read_text().replace("l2 = [0.001, 0.1]",
                                               "l2 = [0.001, 0.0010000001]"))
    assert_clean_error(invoke("validate", study), "two runs would both be named",
                       "'l2[kernel_regularizer.l2=0.001]/seed=0'")


# -- the output directory and its store -------------------------------------------------

def test_out_below_a_file(tmp_path):
    study = write_study(tmp_path)
    (tmp_path / "afile").write_text("x")
    result = invoke("run", study, "--out", tmp_path / "afile" / "out", "--quiet")
    assert_clean_error(result, "cannot create the study directory", "a file is in the way")


@pytest.mark.parametrize("out", ["", "   "])
def test_an_empty_out_is_refused_before_anything_is_written(tmp_path, monkeypatch, out):
    """``--out ""`` (an unset variable in a script) had written the study's store, lock,
    report and plots into the current directory (review 116)."""
    study = write_study(tmp_path, epochs=1)
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    assert_clean_error(invoke("run", study, "--out", out), "Invalid value for '--out'",
                       "expected a directory. Got")
    assert list(here.iterdir()) == []


def test_the_command_line_says_a_warning_in_one_line(tmp_path):
    """A warning (here Keras's fallback for an unknown EarlyStopping mode) had printed as
    Python shows it: the file and line, UserWarning, and the source line (review 116)."""
    study = write_study(tmp_path, epochs=1)
    study.write_text(study.read_text().replace(
        "dropout = 0.3", 'dropout = 0.3\nearly_stopping = { monitor = "val_loss", '
                         'mode = "maximum" }'))
    done = subprocess.run([sys.executable, "-m", "reglab.cli", "validate", str(study)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "warning: EarlyStopping mode maximum is unknown, fallback to auto mode.\n" \
        in done.stderr
    assert "UserWarning" not in done.stderr and ".py:" not in done.stderr, done.stderr


@pytest.mark.parametrize("command", ["show", "ls", "report"])
def test_read_only_commands_on_a_directory_that_is_not_a_study(tmp_path, command):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("mine")
    before = tree(empty)
    assert_clean_error(invoke(command, empty), f"{empty}: not a study directory")
    assert tree(empty) == before


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty_tables", "empty_file"])
@pytest.mark.parametrize("command", ["run", "show", "ls", "report"])
def test_a_damaged_store_is_named_and_left_as_it_is(finished_study, tmp_path, damage, command):
    _, study, out = finished_study
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    db = copy / "study.db"
    if damage == "garbage":
        db.write_bytes(os.urandom(8192))
    elif damage == "truncated":
        data = db.read_bytes()
        db.write_bytes(data[: len(data) // 3])
    elif damage == "empty_file":
        db.write_bytes(b"")
    else:
        import sqlite3
        with sqlite3.connect(db) as conn:
            conn.execute("DROP TABLE schema_version")
    for sidecar in ("study.db-wal", "study.db-shm"):
        (copy / sidecar).unlink(missing_ok=True)
    before, files = db.read_bytes(), tree(copy)
    args = ["run", study, "--out", copy, "--quiet", "--no-report"] if command == "run" \
        else [command, copy]
    result = invoke(*args)
    assert_clean_error(result, f"{db}: not a usable reglab store", "left as it is")
    assert db.read_bytes() == before
    after = tree(copy)
    if command == "run":  # it held the study's lock, whose file says who holds it
        assert after.pop("study.lock") and files.pop("study.lock")
    assert after == files  # nothing beside it either (no -wal or -shm)
    assert not (copy / "report.html").exists() or command != "report"


@pytest.mark.parametrize("command", ["show", "report"])
def test_a_stored_text_that_is_not_utf8_is_a_damaged_store_not_a_retry(finished_study,
                                                                       tmp_path, command):
    # bits flipped inside a row's text (not the file's structure): SQLite reads it, Python
    # cannot decode it
    import sqlite3

    _, _, out = finished_study
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    with sqlite3.connect(copy / "study.db") as conn:
        for table in ("runs", "epochs"):  # (show reads the runs', report both)
            conn.execute(f"UPDATE {table} SET metrics = CAST(X'7B22ff22' AS TEXT) WHERE "
                         f"rowid = (SELECT MIN(rowid) FROM {table})")
    result = invoke(command, copy)
    assert_clean_error(result, "the study's store cannot be read", "left as it is")
    assert "Retry" not in result.output


def test_show_and_ls_never_write(finished_study):
    _, _, out = finished_study
    before = tree(out)
    assert not [name for name in before if name.startswith("study.db-")]  # one file at rest
    for command in ("show", "ls"):
        result = invoke(command, out)
        assert result.exit_code == 0, result.output
    assert tree(out) == before


def test_a_second_run_on_a_directory_in_use_refuses_naming_the_holder(tmp_path):
    study = write_study(tmp_path, epochs=1)
    out = tmp_path / "out"
    out.mkdir()
    with StudyLock(out):
        result = invoke("run", study, "--out", out, "--quiet", "--no-report")
    assert_clean_error(result, "in use by another `reglab run`", f"pid {os.getpid()}")
    assert not (out / "study.db").exists()  # the lock comes first: the store is not touched


def test_a_killed_holder_never_blocks_the_rerun(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from reglab.storage import StudyLock; "
        f"lock = StudyLock({str(out)!r}).acquire(); print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(Exception, match="in use by another"):
        StudyLock(out).acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    deadline = time.time() + 5
    while True:  # the kernel drops the dead holder's lock at once
        try:
            StudyLock(out).acquire().release()
            break
        except Exception:
            assert time.time() < deadline
            time.sleep(0.05)
    study = write_study(tmp_path, epochs=1)
    result = invoke("run", study, "--out", out, "--quiet", "--no-report")
    assert result.exit_code == 0, result.output


def test_the_same_study_named_from_another_directory_resumes(finished_study, tmp_path):
    root, study, out = finished_study
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = finished(copy)
    cwd = os.getcwd()
    try:
        os.chdir(root)  # the study file by a relative name, the data beside it
        result = invoke("run", "study.toml", "--out", copy, "--quiet", "--no-report")
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output
    assert "holds another study" not in result.output
    assert finished(copy) == before  # recognised: nothing retrained


def test_changed_data_is_another_study(finished_study, tmp_path):
    root, _, out = finished_study
    work = tmp_path / "work"
    shutil.copytree(root, work, ignore=shutil.ignore_patterns("out"))
    shutil.copytree(out, work / "out")
    with np.load(work / "data.npz") as archive:
        arrays = dict(archive)
    arrays["x"] = arrays["x"][::-1].copy()
    np.savez(work / "data.npz", **arrays)
    result = invoke("run", work / "study.toml", "--out", work / "out", "--quiet", "--no-report")
    assert_clean_error(result, "holds another study")


# -- runs that fail ------------------------------------------------------------------------

def test_failed_runs_make_run_exit_non_zero_and_say_how_many(tmp_path, monkeypatch):
    from reglab.study import executors

    original = executors.InProcessExecutor.train

    def flaky(self, job, on_epoch=None, progress=None):
        if any(run.run_id == "dropout/seed=2" for run in job.population.runs):
            raise RuntimeError("simulated crash")
        return original(self, job, on_epoch, progress)

    monkeypatch.setattr(executors.InProcessExecutor, "train", flaky)
    study = write_study(tmp_path, epochs=1)
    result = invoke("run", study, "--out", tmp_path / "out", "--quiet", "--no-report")
    assert_clean_error(result, "1 of 15 runs failed", "dropout/seed=2", "simulated crash",
                       code=1)
    assert len(finished(tmp_path / "out")) == 15  # the others are saved


def test_a_configuration_error_in_training_is_not_bisected(tmp_path, monkeypatch):
    """An error of reglab's own (configuration, data) does not depend on which runs train
    together: the population's runs fail once, without retrying them in halves."""
    from reglab.errors import DataError
    from reglab.study import executors

    calls = []

    def broken(self, job, on_epoch=None, progress=None):
        calls.append(len(job.population.runs))
        raise DataError("data: simulated mismatch")

    monkeypatch.setattr(executors.InProcessExecutor, "train", broken)
    study = write_study(tmp_path, epochs=1)
    result = invoke("run", study, "--out", tmp_path / "out", "--quiet", "--no-report")
    assert_clean_error(result, "15 of 15 runs failed", "simulated mismatch", code=1)
    assert calls == [12, 3]  # each population once


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a GPU is here")
def test_device_cuda_without_cuda_fails_at_once(tmp_path):
    study = write_study(tmp_path, epochs=1)
    result = invoke("run", study, "--out", tmp_path / "out", "--device", "cuda", "--quiet")
    assert_clean_error(result, "--device cuda: torch sees no CUDA device here")
    assert not (tmp_path / "out").exists()


def test_the_study_text_is_the_tiny_study():
    assert "seeds = 3" in STUDY  # the replacements above rely on it


def test_an_absurd_number_of_workers_is_refused(tmp_path):
    study = write_study(tmp_path, epochs=1)
    result = invoke("run", study, "--out", tmp_path / "out", "--workers", 100000)
    assert_clean_error(result, "--workers: at most", "Got 100000.")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["show", "ls", "report"])
def test_a_store_holding_a_study_this_version_cannot_read(tmp_path, command):
    from reglab.storage import SQLiteStore

    with SQLiteStore(tmp_path / "odd") as store:
        store.init_study("abc", '{"name": "from elsewhere"}')
    result = invoke(command, tmp_path / "odd")
    if command == "ls":  # lists runs without reading the study: none
        assert result.exit_code == 0 and result.output == ""
    else:
        assert_clean_error(result, "not a study this version of reglab can read")


def test_an_unexpected_error_is_one_line_with_exit_3(tmp_path, monkeypatch):
    from reglab.study import runner

    def broken(*args, **kwargs):
        raise KeyError("simulated bug")

    monkeypatch.setattr(runner, "prepare_study", broken)
    result = invoke("validate", write_study(tmp_path))
    assert_clean_error(result, "unexpected KeyError", "REGLAB_DEBUG=1", code=3)


def test_workers_and_cluster_together_are_refused(tmp_path):
    study = write_study(tmp_path, epochs=1)
    result = invoke("run", study, "--out", tmp_path / "out", "--workers", 2, "--cluster",
                    "tcp://127.0.0.1:1")
    assert_clean_error(result, "--workers and --cluster: give one")
    assert not (tmp_path / "out").exists()


def test_ls_names_the_ranked_metric_and_a_closed_pipe_ends_it_quietly(finished_study):
    """`reglab ls` shows the test value of the metric the table ranks on; when its reader
    leaves (`reglab ls DIR | head -1`) it ends with 141 (128 + SIGPIPE, as a shell reports
    it) and no 'error: Broken pipe' line."""
    _, _, out = finished_study
    listed = invoke("ls", out)
    assert listed.exit_code == 0 and "test accuracy 0." in listed.output
    read, write = os.pipe()
    os.close(read)  # the reader has left before the first line
    process = subprocess.run([sys.executable, "-m", "reglab.cli", "ls", str(out)],
                             stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    os.close(write)
    assert process.returncode == 141, process.stderr
    assert process.stderr == ""


@pytest.mark.parametrize("where", ["make_context", "invoke"])
def test_ctrl_c_while_click_reads_the_arguments_exits_130_not_1(monkeypatch, where):
    """Ctrl-C before a command's own handling (click reading the arguments, or handing them
    on) had ended with click's 'Aborted!' and status 1, which `run` gives for failed runs;
    it ends as Ctrl-C inside a command does: 130 and reglab's line."""
    import click

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(click.Group, where, interrupted)
    result = invoke("info")
    assert result.exit_code == 130, result.output
    assert "interrupted: what was saved is kept" in result.output
    assert "Aborted!" not in result.output
    # inside another program (here CliRunner) its Ctrl-C stays as it was: ignoring further
    # ones is for a process that ends (the processes a test starts had inherited it)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("in_the_way", ["plots", "report.html"])
def test_a_report_whose_place_is_taken_says_what_is_in_the_way(finished_study, tmp_path,
                                                                in_the_way):
    """A file where the plots' directory goes, a directory where the page goes: said before
    any drawing, by name (it had been a FileExistsError, or an IsADirectoryError naming a
    temporary file)."""
    _, _, out = finished_study
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "plots", ignore_errors=True)
    (copy / "report.html").unlink(missing_ok=True)
    if in_the_way == "plots":
        (copy / "plots").write_text("mine")
        expected = f"{copy / 'plots'}: expected the directory of the report's plots. Got a file"
    else:
        (copy / "report.html").mkdir()
        expected = f"{copy / 'report.html'}: expected the report's page, a file. Got a directory"
    result = invoke("report", copy)
    assert result.exit_code != 0 and expected in result.output, result.output
    assert "Traceback" not in result.output and ".tmp" not in result.output
    assert (copy / in_the_way).is_file() == (in_the_way == "plots")
