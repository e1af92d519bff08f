"""SQLiteStore: round trips, resume semantics, immutability, atomicity and kill safety."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import reglab.storage.sqlite_store as sqlite_store
from reglab.errors import ConfigError, DataError
from reglab.storage import FINISHED, RunRecord, SQLiteStore

FP = "f" * 64
STUDY = json.dumps({"name": "demo", "seeds": [0, 1]}, sort_keys=True)


def make_run(i: int, **kw) -> RunRecord:
    return RunRecord(
        run_id=f"l2_path[kernel_regularizer.l2={10.0**-i}]/seed={i}",
        variant="l2_path",
        point={"kernel_regularizer.l2": 10.0**-i},
        seed=i,
        population="pop0" if i % 2 == 0 else "pop1",
        hyperparameters={"kernel_regularizer": {"l2": 10.0**-i}, "layers": [1, 2]},
        **kw,
    )


def finished(run: RunRecord, status: str = "done", **kw) -> RunRecord:
    values = dict(
        best_epoch=2,
        stopped_epoch=None,
        epochs_run=3,
        metrics={"val_loss": 0.25, "loss": 0.2},
        wall_time=1.5,
    )
    values.update(kw)
    return RunRecord(
        run.run_id,
        run.variant,
        run.point,
        run.seed,
        run.population,
        run.hyperparameters,
        status=status,
        **values,
    )


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "out")
    s.init_study(FP, STUDY)
    yield s
    s.close()


# -- setup ----------------------------------------------------------------------------------


def test_creates_directory_and_db_with_pragmas(tmp_path):
    with SQLiteStore(tmp_path / "a" / "b") as s:
        assert (tmp_path / "a" / "b" / "study.db").is_file()
        conn = s._conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
    # reopening keeps one schema-version row
    with SQLiteStore(tmp_path / "a" / "b") as s:
        assert s._conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 1


def test_rejects_file_as_directory_and_unknown_schema(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="must be a directory"):
        SQLiteStore(tmp_path / "f")
    SQLiteStore(tmp_path / "d").close()
    conn = sqlite3.connect(tmp_path / "d" / "study.db")
    with conn:
        conn.execute("UPDATE schema_version SET version = 99")
    conn.close()
    with pytest.raises(DataError, match="schema version must be 1. Got 99"):
        SQLiteStore(tmp_path / "d")


def test_closed_store_refuses(tmp_path):
    s = SQLiteStore(tmp_path)
    s.close()
    s.close()  # idempotent
    with pytest.raises(ConfigError, match="closed"):
        s.runs()


def test_storage_imports_no_torch():
    code = "import sys, reglab.storage; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- the study and resume -------------------------------------------------------------------


def test_init_study_first_resume_and_other(tmp_path):
    s = SQLiteStore(tmp_path)
    assert s.study() is None
    assert s.init_study(FP, STUDY) is True
    assert s.study() == (FP, {"name": "demo", "seeds": [0, 1]})
    assert s.init_study(FP, STUDY) is False
    s.add_runs([make_run(0)])
    with pytest.raises(
        ConfigError,
        match=r"holds another study \(fingerprint ffffffffffff…, "
        r"name 'demo'; changed: name, seeds\)\. Run with --restart to start over, "
        r"or use another --out directory\.",
    ):
        s.init_study("a" * 64, json.dumps({"name": "other"}))
    assert s.study()[0] == FP and len(s.runs()) == 1  # untouched
    s.close()


def test_restart_wipes_everything(store):
    store.add_runs([make_run(0), make_run(1)])
    store.mark_running([make_run(0).run_id])
    store.record_epochs([(make_run(0).run_id, 0, {"loss": 1.0})])
    store.set_meta("device", "cpu")
    assert store.init_study("b" * 64, json.dumps({"name": "new"}), restart=True) is True
    assert store.study() == ("b" * 64, {"name": "new"})
    assert store.runs() == []
    assert store.epochs(make_run(0).run_id) == []
    assert store.get_meta("device") is None
    store.add_runs([make_run(5)])
    assert [r.run_id for r in store.runs()] == [make_run(5).run_id]


def test_init_study_rejects_non_json(tmp_path):
    with SQLiteStore(tmp_path) as s, pytest.raises(ConfigError, match="must be JSON text"):
        s.init_study(FP, "{not json")


# -- runs -----------------------------------------------------------------------------------


def test_add_runs_round_trip_in_insertion_order(store):
    runs = [make_run(i) for i in (3, 1, 2, 0)]
    store.add_runs(runs)
    assert store.runs() == runs
    assert store.run(runs[1].run_id) == runs[1]
    with pytest.raises(DataError, match="no run with this id. Got 'nope'"):
        store.run("nope")


def test_add_runs_is_idempotent(store):
    store.add_runs([make_run(0), make_run(1)])
    store.mark_running([make_run(0).run_id])
    changed = RunRecord(make_run(0).run_id, "other", {}, 99, "popX", {})
    store.add_runs([changed, make_run(2), make_run(1)])
    got = store.runs()
    assert [r.run_id for r in got] == [make_run(i).run_id for i in (0, 1, 2)]
    assert got[0].variant == "l2_path" and got[0].status == "running"  # untouched


def test_add_runs_only_queued(store):
    with pytest.raises(DataError, match="must be 'queued'. Got 'done'"):
        store.add_runs([make_run(0), finished(make_run(1))])
    assert store.runs() == []


def test_run_record_validates_status():
    with pytest.raises(ConfigError, match="'status' must be one of .* Got 'finished'"):
        make_run(0, status="finished")
    assert finished(make_run(0)).finished and not make_run(0).finished


def test_runs_filter_by_status(store):
    store.add_runs([make_run(i) for i in range(4)])
    store.mark_running([make_run(1).run_id, make_run(2).run_id])
    store.finish_runs([finished(make_run(2), "diverged")])
    assert [r.seed for r in store.runs("queued")] == [0, 3]
    assert [r.seed for r in store.runs("running")] == [1]
    assert [r.seed for r in store.runs(("running", "diverged"))] == [1, 2]
    assert [r.seed for r in store.runs(FINISHED)] == [2]
    assert store.runs(()) == []
    with pytest.raises(ConfigError, match="'status' must be among .* Got 'runing'"):
        store.runs("runing")


def test_mark_running_only_from_queued(store):
    store.add_runs([make_run(0), make_run(1)])
    store.mark_running([make_run(0).run_id])
    store.finish_runs([finished(make_run(0))])
    store.mark_running([make_run(0).run_id, make_run(1).run_id])
    assert [r.status for r in store.runs()] == ["done", "running"]
    with pytest.raises(DataError, match="no run with this id"):
        store.mark_running(["ghost"])


# -- epochs ---------------------------------------------------------------------------------


def test_record_epochs_many_runs_in_one_call(store):
    runs = [make_run(i) for i in range(5)]
    store.add_runs(runs)
    store.mark_running([r.run_id for r in runs])
    rows = [
        (r.run_id, e, {"loss": 1.0 / (e + 1), "val_loss": r.seed + e})
        for e in range(3)
        for r in runs
    ]
    store.record_epochs(rows)
    for r in runs:
        assert store.epochs(r.run_id) == [
            {"epoch": e, "loss": 1.0 / (e + 1), "val_loss": r.seed + e} for e in range(3)
        ]
        assert store.run(r.run_id).epochs_run == 3
    # out-of-order epochs come back ordered
    store.record_epochs([(runs[0].run_id, 5, {"loss": 0.1}), (runs[0].run_id, 4, {"loss": 0.2})])
    assert [e["epoch"] for e in store.epochs(runs[0].run_id)] == [0, 1, 2, 4, 5]


def test_record_epochs_refuses_bad_rows(store):
    store.add_runs([make_run(0), make_run(1)])
    rid = make_run(0).run_id
    store.record_epochs([(rid, 0, {"loss": 1.0})])
    with pytest.raises(DataError, match="already has epoch 0"):
        store.record_epochs([(rid, 1, {"loss": 1.0}), (rid, 0, {"loss": 2.0})])
    with pytest.raises(DataError, match="no run with this id. Got 'ghost'"):
        store.record_epochs([(rid, 1, {}), ("ghost", 0, {})])
    with pytest.raises(DataError, match="without an 'epoch' key"):
        store.record_epochs([(rid, 1, {"epoch": 3})])
    with pytest.raises(DataError, match=r"must be \(run_id, epoch, metrics\)"):
        store.record_epochs([(rid, 1)])
    assert store.epochs(rid) == [{"epoch": 0, "loss": 1.0}]  # nothing partial


def test_record_epochs_refuses_finished_run(store):
    store.add_runs([make_run(0), make_run(1)])
    store.finish_runs([finished(make_run(1), "failed", error="boom")])
    with pytest.raises(
        DataError,
        match=r"run '.*seed=1' must not be finished .* "
        r"Got status 'failed'",
    ):
        store.record_epochs(
            [(make_run(0).run_id, 0, {"loss": 1.0}), (make_run(1).run_id, 0, {"loss": 1.0})]
        )
    assert store.epochs(make_run(0).run_id) == []


def test_nan_and_inf_metrics_round_trip(store):
    store.add_runs([make_run(0)])
    rid = make_run(0).run_id
    store.record_epochs([(rid, 0, {"loss": float("nan"), "val_loss": float("inf")})])
    store.finish_runs([finished(make_run(0), "diverged", metrics={"loss": float("nan")})])
    (epoch,) = store.epochs(rid)
    assert math.isnan(epoch["loss"]) and epoch["val_loss"] == math.inf
    assert math.isnan(store.run(rid).metrics["loss"])


def test_non_finite_metrics_are_standard_json_that_sqlite_reads(store):
    store.add_runs([make_run(0)])
    rid = make_run(0).run_id
    store.record_epochs([(rid, 0, {"loss": float("nan"), "val_loss": float("-inf"),
                                   "accuracy": 0.5})])
    store.finish_runs([finished(make_run(0), "diverged", metrics={"loss": float("inf")})])
    with sqlite3.connect(store.path) as conn:  # SQLite's JSON functions refuse a bare NaN
        got = conn.execute("SELECT json_extract(metrics, '$.loss'), "
                           "json_extract(metrics, '$.val_loss'), "
                           "json_extract(metrics, '$.accuracy') FROM epochs").fetchone()
        final = conn.execute("SELECT json_extract(metrics, '$.loss') FROM runs").fetchone()
    assert got == ("NaN", "-Infinity", 0.5) and final == ("Infinity",)


def test_a_store_written_with_bare_nan_tokens_still_reads(store):
    store.add_runs([make_run(0)])
    rid = make_run(0).run_id
    store.record_epochs([(rid, 0, {"loss": 1.0})])
    with sqlite3.connect(store.path) as conn:  # as stores before standard JSON were written
        conn.execute("UPDATE epochs SET metrics = ?", ('{"loss": NaN, "val_loss": Infinity}',))
    (epoch,) = store.epochs(rid)
    assert math.isnan(epoch["loss"]) and epoch["val_loss"] == math.inf


# -- finishing ------------------------------------------------------------------------------


def test_finish_runs_round_trip(store):
    store.add_runs([make_run(0), make_run(1)])
    store.mark_running([make_run(0).run_id, make_run(1).run_id])
    done = finished(make_run(0), "stopped_early", stopped_epoch=7, best_epoch=4, epochs_run=8)
    failed = finished(make_run(1), "failed", metrics={}, error="CUDA OOM", wall_time=None)
    store.finish_runs([done, failed])
    assert store.runs() == [done, failed]


def test_finished_runs_are_immutable(store):
    store.add_runs([make_run(0)])
    store.finish_runs([finished(make_run(0))])
    with pytest.raises(DataError, match=r"run '.*seed=0' is already finished \(status 'done'\)"):
        store.finish_runs([finished(make_run(0), "failed", error="again")])
    assert store.run(make_run(0).run_id) == finished(make_run(0))
    # the same run twice in one call is refused too
    store.add_runs([make_run(1)])
    with pytest.raises(DataError, match="already finished"):
        store.finish_runs([finished(make_run(1)), finished(make_run(1), "failed")])
    assert store.run(make_run(1).run_id).status == "queued"


def test_finish_as_copies_copies_epochs_outcome_and_kernel_of_finished_sources(store):
    import numpy as np

    runs = [make_run(i) for i in range(5)]
    store.add_runs(runs)
    store.mark_running([runs[0].run_id, runs[1].run_id])
    store.record_epochs([(runs[0].run_id, e, {"loss": 1.0 / (e + 1)}) for e in range(3)])
    store.record_epochs([(runs[1].run_id, 0, {"loss": 9.0})])
    kernel = np.arange(6, dtype=np.float32).reshape(2, 3)
    source = finished(runs[0], "stopped_early", stopped_epoch=3, best_epoch=1, epochs_run=3)
    store.finish_runs([source], kernels={runs[0].run_id: ("dense", kernel)})
    copies = {runs[2].run_id: runs[0].run_id,   # a finished source: copied
              runs[3].run_id: runs[1].run_id,   # a running source: left for later
              runs[4].run_id: runs[0].run_id}
    assert store.finish_as_copies(copies) == [runs[2].run_id, runs[4].run_id]
    for twin in (runs[2], runs[4]):
        record = store.run(twin.run_id)
        assert record.run_id == twin.run_id and record.seed == twin.seed  # identity kept
        assert (record.status, record.best_epoch, record.stopped_epoch, record.epochs_run,
                record.metrics, record.wall_time) == ("stopped_early", 1, 3, 3,
                                                      source.metrics, source.wall_time)
        assert store.epochs(twin.run_id) == store.epochs(runs[0].run_id)
        layer, array = store.kernel(twin.run_id)
        assert layer == "dense" and np.array_equal(array, kernel)
    assert store.run(runs[3].run_id).status == "queued" and store.epochs(runs[3].run_id) == []
    assert store.get_meta("copies") == {runs[2].run_id: runs[0].run_id,
                                        runs[4].run_id: runs[0].run_id}
    # finished copies are immutable like any finished run; a second call changes nothing
    store.finish_runs([finished(runs[1], "failed", error="boom", metrics={})])
    assert store.finish_as_copies(copies) == [runs[3].run_id]
    assert store.run(runs[3].run_id).error == "boom" and store.epochs(runs[3].run_id) == [
        {"epoch": 0, "loss": 9.0}]
    assert store.kernel(runs[3].run_id) is None
    assert store.finish_as_copies(copies) == []
    assert store.get_meta("copies") == copies
    with pytest.raises(DataError, match="finish_as_copies: no run with this id"):
        store.finish_as_copies({runs[0].run_id: "nope/seed=0"})


def test_finish_runs_needs_final_status(store):
    store.add_runs([make_run(0)])
    with pytest.raises(DataError, match="must be one of done, .* Got 'running'"):
        store.finish_runs([make_run(0, status="running")])
    with pytest.raises(DataError, match="no run with this id"):
        store.finish_runs([finished(make_run(9))])


def test_reset_unfinished(store):
    runs = [make_run(i) for i in range(4)]
    store.add_runs(runs)
    store.mark_running([r.run_id for r in runs[:3]])
    store.record_epochs([(r.run_id, e, {"loss": 1.0}) for r in runs[:3] for e in range(2)])
    store.finish_runs([finished(runs[1])])
    assert store.reset_unfinished() == [runs[0].run_id, runs[2].run_id]
    assert [r.status for r in store.runs()] == ["queued", "done", "queued", "queued"]
    assert store.epochs(runs[0].run_id) == [] and store.epochs(runs[2].run_id) == []
    assert store.run(runs[0].run_id).epochs_run == 0
    assert len(store.epochs(runs[1].run_id)) == 2  # finished runs keep their epochs
    assert store.reset_unfinished() == []


# -- metadata -------------------------------------------------------------------------------


def test_meta_round_trip(store):
    assert store.get_meta("versions") is None
    assert store.get_meta("versions", {}) == {}
    store.set_meta("versions", {"torch": "2.13.0", "reglab": "0.1.0"})
    store.set_meta("wall_time", {"pop0": 1.5})
    store.set_meta("wall_time", {"pop0": 1.5, "pop1": 2.0})
    assert store.get_meta("versions") == {"reglab": "0.1.0", "torch": "2.13.0"}
    assert store.get_meta("wall_time") == {"pop0": 1.5, "pop1": 2.0}
    with pytest.raises(DataError, match="must be JSON-serialisable"):
        store.set_meta("bad", object())
    with pytest.raises(ConfigError, match="'key' must be a str"):
        store.set_meta(1, 2)


def test_numpy_numbers_are_stored_as_plain_numbers(store):
    np = pytest.importorskip("numpy")
    run = RunRecord("r", "v", {}, np.int64(3), "p", {})
    store.add_runs([run])
    store.finish_runs(
        [
            RunRecord(
                "r", "v", {}, 3, "p", {}, status="done", best_epoch=np.int64(2),
                epochs_run=np.int32(4), wall_time=np.float32(1.5),
            )
        ]
    )  # fmt: skip
    got = store.run("r")
    assert (got.seed, got.best_epoch, got.epochs_run, got.wall_time) == (3, 2, 4, 1.5)
    assert type(got.seed) is int and type(got.best_epoch) is int


def test_docstring_examples():
    import doctest

    import reglab.storage.records as records

    for module in (records, sqlite_store):
        assert doctest.testmod(module).failed == 0


def test_dicts_stored_as_sorted_json(store):
    store.add_runs([RunRecord("r", "v", {"b": 1, "a": 2}, 0, "p", {"z": 1, "y": {"d": 1, "c": 2}})])
    raw = store._conn.execute("SELECT point, hyperparameters FROM runs").fetchone()
    assert raw == ('{"a": 2, "b": 1}', '{"y": {"c": 2, "d": 1}, "z": 1}')


def test_the_regime_round_trips_and_stores_from_before_it_stay_readable(tmp_path):
    with SQLiteStore(tmp_path / "new") as store:
        store.add_runs([RunRecord("train_size=40/b/seed=0", "b", {}, 0, "p", {},
                                  regime={"train_size": 40, "label_noise": 0.3}),
                        RunRecord("b/seed=0", "b", {}, 0, "p", {})])
        assert [r.regime for r in store.runs()] == [{"label_noise": 0.3, "train_size": 40}, {}]
    old = tmp_path / "old"  # a store written before the regime column existed
    old.mkdir()
    with sqlite3.connect(old / "study.db") as db:
        for statement in sqlite_store._SCHEMA:
            db.execute(statement.replace(",\n        regime TEXT NOT NULL DEFAULT '{}')", ")"))
        db.execute("INSERT INTO schema_version (version) VALUES (1)")
        db.execute("INSERT INTO study VALUES (1, ?, ?)", (FP, STUDY))
        db.execute("INSERT INTO runs (run_id, variant, point, seed, population, "
                   "hyperparameters, status) VALUES ('b/seed=0', 'b', '{}', 0, 'p', '{}', "
                   "'queued')")
        assert "regime" not in {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    with SQLiteStore(old, read_only=True) as store:  # read as it is: nothing written
        assert store.run("b/seed=0").regime == {} and store.runs()[0].regime == {}
    with sqlite3.connect(old / "study.db") as db:
        assert "regime" not in {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    with SQLiteStore(old) as store:  # opened to write (a resume): the column is added
        assert store.init_study(FP, STUDY) is False
        assert store.runs()[0].regime == {}
        store.add_runs([RunRecord("b/seed=1", "b", {}, 1, "p", {})])
        assert [r.run_id for r in store.runs()] == ["b/seed=0", "b/seed=1"]


# -- atomicity and concurrency --------------------------------------------------------------


def failing_dumps(monkeypatch, fail_at: int, on_fail=None):
    """Makes the store's JSON encoder raise on its ``fail_at``-th call: a crash mid-write."""
    real = sqlite_store._dumps
    calls = {"n": 0}

    def dumps(value):
        calls["n"] += 1
        if calls["n"] == fail_at:
            if on_fail is not None:
                on_fail()
            raise RuntimeError("simulated crash")
        return real(value)

    monkeypatch.setattr(sqlite_store, "_dumps", dumps)


def test_crash_inside_record_epochs_leaves_nothing(store, monkeypatch, tmp_path):
    runs = [make_run(i) for i in range(3)]
    store.add_runs(runs)
    other = SQLiteStore(tmp_path / "out")
    seen = {}
    # the 5th row fails after 4 inserts; meanwhile another connection sees none of them
    failing_dumps(
        monkeypatch,
        5,
        on_fail=lambda: seen.update(n=sum(len(other.epochs(r.run_id)) for r in runs)),
    )
    with pytest.raises(RuntimeError, match="simulated crash"):
        store.record_epochs([(r.run_id, e, {"loss": 1.0}) for e in range(2) for r in runs])
    assert seen == {"n": 0}
    assert all(store.epochs(r.run_id) == [] for r in runs)
    assert all(other.epochs(r.run_id) == [] for r in runs)
    other.close()


def test_crash_inside_finish_runs_leaves_nothing(store, monkeypatch):
    store.add_runs([make_run(0), make_run(1)])
    store.mark_running([make_run(0).run_id, make_run(1).run_id])
    inside = {}
    # 3 JSON fields per run: the 6th encoding is the second run's, after the first run's
    # UPDATE, which the transaction itself still sees
    failing_dumps(
        monkeypatch, 6, on_fail=lambda: inside.update(status=store.run(make_run(0).run_id).status)
    )
    with pytest.raises(RuntimeError, match="simulated crash"):
        store.finish_runs([finished(make_run(0)), finished(make_run(1))])
    assert inside == {"status": "done"}  # the first run was written, then rolled back
    assert [r.status for r in store.runs()] == ["running", "running"]
    monkeypatch.undo()
    store.finish_runs([finished(make_run(0)), finished(make_run(1))])  # still possible
    assert [r.status for r in store.runs()] == ["done", "done"]


def test_crash_inside_add_runs_leaves_nothing(store, monkeypatch):
    failing_dumps(monkeypatch, 7)  # 3 dumps per run: fails within the third run
    with pytest.raises(RuntimeError):
        store.add_runs([make_run(i) for i in range(4)])
    assert store.runs() == []


def test_second_store_sees_committed_data(store, tmp_path):
    store.add_runs([make_run(0)])
    store.record_epochs([(make_run(0).run_id, 0, {"loss": 0.5})])
    store.set_meta("device", "cuda:0")
    with SQLiteStore(tmp_path / "out") as other:
        assert other.init_study(FP, STUDY) is False
        assert [r.run_id for r in other.runs()] == [make_run(0).run_id]
        assert other.run(make_run(0).run_id).epochs_run == 1
        assert other.epochs(make_run(0).run_id) == [{"epoch": 0, "loss": 0.5}]
        assert other.get_meta("device") == "cuda:0"
        other.finish_runs([finished(make_run(0))])
    assert store.run(make_run(0).run_id).status == "done"


CHILD = textwrap.dedent("""
    import sys
    from reglab.storage import RunRecord, SQLiteStore

    store = SQLiteStore(sys.argv[1])
    store.init_study("f" * 64, '{"name": "kill"}')
    ids = [f"run{i}" for i in range(8)]
    store.add_runs([RunRecord(i, "v", {}, 0, "p", {}) for i in ids])
    store.mark_running(ids)
    epoch = 0
    while True:
        store.record_epochs([(i, epoch, {"loss": 1.0 / (epoch + 1), "pad": "x" * 200})
                             for i in ids])
        if epoch == 0:
            print("ready", flush=True)
        epoch += 1
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_mid_write_leaves_consistent_db(tmp_path):
    out = tmp_path / "killed"
    src = Path(sqlite_store.__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(out)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL

    with SQLiteStore(out) as store:
        conn = store._conn
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        rows = conn.execute("SELECT run_id, epoch, metrics FROM epochs").fetchall()
        per_epoch: dict[int, set] = {}
        for run_id, epoch, metrics in rows:
            assert json.loads(metrics) == {"loss": 1.0 / (epoch + 1), "pad": "x" * 200}
            per_epoch.setdefault(epoch, set()).add(run_id)
        n = len(per_epoch)
        assert n >= 1
        # whole transactions only: epochs 0..n-1, each with all eight runs
        assert sorted(per_epoch) == list(range(n))
        assert all(ids == {f"run{i}" for i in range(8)} for ids in per_epoch.values())
        assert {r.epochs_run for r in store.runs()} == {n}
        # and the study resumes
        assert store.init_study("f" * 64, '{"name": "kill"}') is False
        assert len(store.reset_unfinished()) == 8
        assert conn.execute("SELECT COUNT(*) FROM epochs").fetchone()[0] == 0


def test_kernels_round_trip_with_finish(store):
    import numpy as np

    store.add_runs([make_run(0), make_run(1)])
    kernel = np.arange(12, dtype=np.float64).reshape(3, 4) / 7
    store.finish_runs([finished(make_run(0))], kernels={make_run(0).run_id: ("dense", kernel)})
    layer, back = store.kernel(make_run(0).run_id)
    assert layer == "dense" and back.dtype == np.float32 and back.shape == (3, 4)
    np.testing.assert_array_equal(back, kernel.astype(np.float32))
    assert store.kernel(make_run(1).run_id) is None


def test_kernel_of_a_run_not_finished_in_the_call_writes_nothing(store):
    import numpy as np

    store.add_runs([make_run(0), make_run(1)])
    with pytest.raises(DataError, match=r"'kernels' has run '.*seed=1', which is not among"):
        store.finish_runs([finished(make_run(0))],
                          kernels={make_run(1).run_id: ("dense", np.zeros(2))})
    assert store.run(make_run(0).run_id).status == "queued"
    assert store.kernel(make_run(1).run_id) is None


def test_restart_deletes_kernels(store):
    import numpy as np

    store.add_runs([make_run(0)])
    store.finish_runs([finished(make_run(0))], kernels={make_run(0).run_id: ("d", np.ones(3))})
    store.init_study("another", '{"name": "other"}', restart=True)
    assert store.kernel(make_run(0).run_id) is None


def test_reset_unfinished_of_chosen_runs(store):
    runs = [make_run(i) for i in range(3)]
    store.add_runs(runs)
    store.mark_running([r.run_id for r in runs])
    store.record_epochs([(r.run_id, 0, {"loss": 1.0}) for r in runs])
    assert store.reset_unfinished([runs[2].run_id, runs[0].run_id, "unknown"]) == \
        [runs[0].run_id, runs[2].run_id]
    assert [r.status for r in store.runs()] == ["queued", "running", "queued"]
    assert store.epochs(runs[0].run_id) == [] and len(store.epochs(runs[1].run_id)) == 1


# -- the files a store leaves -----------------------------------------------------------------


def files(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def test_a_closed_store_is_one_file_that_read_only_opening_leaves_alone(tmp_path):
    out = tmp_path / "out"
    with SQLiteStore(out) as store:
        store.init_study(FP, STUDY)
        store.add_runs([make_run(0)])
        assert "study.db-wal" in files(out)  # WAL while it is open for writing
    assert files(out) == {"study.db"}
    with sqlite3.connect(out / "study.db") as conn:  # back to a rollback journal
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    before = (out / "study.db").read_bytes()
    with SQLiteStore(out, read_only=True) as store:
        assert [r.run_id for r in store.runs()] == [make_run(0).run_id]
    assert files(out) == {"study.db"} and (out / "study.db").read_bytes() == before


def test_a_writer_closing_beside_another_leaves_the_wal_to_the_last(tmp_path):
    first, second = SQLiteStore(tmp_path), SQLiteStore(tmp_path)
    first.init_study(FP, STUDY)
    first.close()  # the other still has it open: no journal switch, no wait
    second.add_runs([make_run(1)])
    second.close()
    assert files(tmp_path) == {"study.db"}
    with SQLiteStore(tmp_path, read_only=True) as store:
        assert [r.run_id for r in store.runs()] == [make_run(1).run_id]


@pytest.mark.parametrize("wal", [b"", b"frames" * 1000, None])
@pytest.mark.parametrize("read_only", [False, True])
def test_an_empty_study_db_is_damage_named_and_left_as_it_is(tmp_path, read_only, wal):
    (tmp_path / "study.db").write_bytes(b"")
    if wal is not None:  # SQLite deletes a WAL beside an empty file when it opens it
        (tmp_path / "study.db-wal").write_bytes(wal)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(sqlite_store.StoreError, match=r"study.db: not a usable reglab store "
                                                      r"\(an empty file, 0 bytes"):
        SQLiteStore(tmp_path, read_only=read_only)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def _sqlite_finds(path: Path) -> str:
    """SQLite's own verdict on a file: 'ok', 'rows' (quick_check reports problems as rows)
    or 'error' (it raises)."""
    try:
        with sqlite3.connect(f"{path.as_uri()}?immutable=1", uri=True) as conn:
            return "ok" if conn.execute("PRAGMA quick_check").fetchall() == [("ok",)] else "rows"
    except sqlite3.Error:
        return "error"


def test_a_cut_store_is_refused_wherever_sqlite_finds_damage(tmp_path):
    with SQLiteStore(tmp_path / "whole") as store:
        store.init_study(FP, STUDY)
        store.add_runs([make_run(i) for i in range(60)])
        store.record_epochs([(make_run(i).run_id, 0, {"loss": 0.5, "pad": "y" * 100})
                             for i in range(60)])
    whole = (tmp_path / "whole" / "study.db").read_bytes()
    verdicts = set()
    for cut in (1, 510, 2037, 4073, 5091, len(whole) // 2):
        directory = tmp_path / f"cut{cut}"
        directory.mkdir()
        db = directory / "study.db"
        db.write_bytes(whole[:-cut])
        verdict = _sqlite_finds(db)
        verdicts.add(verdict)
        for read_only in (True, False):
            if verdict == "ok":
                SQLiteStore(directory, read_only=read_only).close()
                continue
            with pytest.raises(sqlite_store.StoreError, match="not a usable reglab store"):
                SQLiteStore(directory, read_only=read_only)
            assert db.read_bytes() == whole[:-cut] and files(directory) == {"study.db"}
    assert "rows" in verdicts and "error" in verdicts  # both kinds of damage were met


@pytest.mark.parametrize("failure", [KeyboardInterrupt, sqlite3.DatabaseError])
def test_a_failed_read_never_removes_the_files_of_a_writer_that_opened_meanwhile(
        tmp_path, monkeypatch, failure):
    from reglab.storage import StudyLock

    with SQLiteStore(tmp_path) as store:
        store.init_study(FP, STUDY)
    assert files(tmp_path) == {"study.db"}
    lock = StudyLock(tmp_path).acquire()  # as `reglab run` holds it while it writes
    writer = []
    real_check = SQLiteStore._check_schema

    def writer_opens_then_the_read_fails(self, conn):
        real_check(self, conn)
        if self.read_only and not writer:
            writer.append(SQLiteStore(tmp_path))  # its -wal and -shm appear now
            raise failure("the read fails after the writer opened")

    monkeypatch.setattr(SQLiteStore, "_check_schema", writer_opens_then_the_read_fails)
    with pytest.raises((KeyboardInterrupt, sqlite_store.StoreError)):
        SQLiteStore(tmp_path, read_only=True)
    monkeypatch.undo()
    assert {"study.db-wal", "study.db-shm"} <= files(tmp_path)
    writer[0].add_runs([make_run(3)])  # committed into the WAL every reader uses
    with SQLiteStore(tmp_path, read_only=True) as reader:
        assert [r.run_id for r in reader.runs()] == [make_run(3).run_id]
    writer[0].close()
    lock.release()


def test_a_read_only_store_is_named_as_such_not_as_damage(tmp_path):
    with SQLiteStore(tmp_path) as store:
        message = str(store._unusable(sqlite3.OperationalError(
            "attempt to write a readonly database")))
        damaged = str(store._unusable(sqlite3.DatabaseError("database disk image is malformed")))
    assert "cannot write to the store" in message and "read-only here" in message
    assert "not a usable" not in message
    assert "not a usable reglab store (database disk image is malformed)" in damaged


def test_an_intact_store_sqlite_cannot_open_for_writing_is_not_called_damaged(tmp_path):
    """A directory that refuses SQLite's journal (read-only, immutable) makes SQLite say
    "unable to open database file" of an intact store: it is named as not writable, with
    what reads it; a file that is no database, opened so, is still called unusable."""
    with SQLiteStore(tmp_path) as store:
        store.add_runs([make_run(1)])
        intact = str(store._unusable(sqlite3.OperationalError("unable to open database file")))
    assert "cannot write to the store (unable to open database file)" in intact
    assert "`show` and `ls` read it as it is" in intact and "not a usable" not in intact
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "study.db").write_bytes(b"not sqlite at all" * 100)
    fake = SQLiteStore.__new__(SQLiteStore)
    fake.path = junk / "study.db"
    damaged = str(fake._unusable(sqlite3.OperationalError("unable to open database file")))
    assert "not a usable reglab store (unable to open database file)" in damaged


def test_an_intact_store_a_full_disk_keeps_from_writing_is_not_called_damaged(tmp_path,
                                                                            monkeypatch):
    """On a full disk SQLite's open of an intact store fails as "disk I/O error": the store
    had been called not usable and the user told to move it away (review 116). It is said
    to read intact, with the bytes free and what to do; junk is still called unusable."""
    with SQLiteStore(tmp_path) as store:
        store.add_runs([make_run(1)])
        monkeypatch.setattr(sqlite_store.shutil, "disk_usage",
                            lambda path: shutil._ntuple_diskusage(400 * 1024, 392 * 1024, 8192))
        intact = str(store._unusable(sqlite3.OperationalError("disk I/O error")))
    assert "cannot write to the store (disk I/O error; 8,192 bytes free on its device; " \
        "the disk may be full)" in intact
    assert "reads intact" in intact and "free some space and run the same command again" \
        in intact and "not a usable" not in intact
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "study.db").write_bytes(b"not sqlite at all" * 100)
    fake = SQLiteStore.__new__(SQLiteStore)
    fake.path, fake.directory = junk / "study.db", junk
    damaged = str(fake._unusable(sqlite3.OperationalError("disk I/O error")))
    assert "not a usable reglab store (disk I/O error)" in damaged


def test_stale_temporaries_are_removed_when_the_store_exists_too(tmp_path):
    with SQLiteStore(tmp_path) as store:
        store.init_study(FP, STUDY)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = tmp_path / f".study.db.{dead}.tmp"
    os.link(tmp_path / "study.db", stale)  # a kill just after linking the new store in
    os.utime(stale, (time.time() - 120, time.time() - 120))
    with SQLiteStore(tmp_path) as store:
        assert store.init_study(FP, STUDY) is False
    assert files(tmp_path) == {"study.db"}


@pytest.mark.parametrize("read_only", [False, True])
def test_a_damaged_wal_mode_file_gets_no_wal_or_shm_beside_it(tmp_path, read_only):
    with SQLiteStore(tmp_path / "src") as store:
        store.init_study(FP, STUDY)
        store.add_runs([make_run(i) for i in range(40)])
        store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        whole = (tmp_path / "src" / "study.db").read_bytes()
    assert whole[18:20] == b"\x02\x02"  # the header says WAL: SQLite reads it through -shm
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "study.db").write_bytes(whole[:4096])
    with pytest.raises(sqlite_store.StoreError, match="not a usable reglab store"):
        SQLiteStore(damaged, read_only=read_only)
    assert files(damaged) == {"study.db"}
    assert (damaged / "study.db").read_bytes() == whole[:4096]


def test_a_store_whose_tables_are_all_in_its_wal_still_opens(tmp_path):
    # a store made by an earlier version and killed before its first checkpoint: study.db
    # only a header page, beside a write-ahead log that holds every table
    source = tmp_path / "source"
    source.mkdir()
    writer = sqlite3.connect(source / "study.db", isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("BEGIN")
    for statement in sqlite_store._SCHEMA:
        writer.execute(statement)
    writer.execute("INSERT INTO schema_version VALUES (1)")
    writer.execute("INSERT INTO study VALUES (1, ?, ?)", (FP, STUDY))
    writer.execute("COMMIT")
    killed = tmp_path / "killed"
    killed.mkdir()
    for name in ("study.db", "study.db-wal"):  # what a kill leaves: no checkpoint
        (killed / name).write_bytes((source / name).read_bytes())
    writer.close()
    with sqlite3.connect(f"{(killed / 'study.db').as_uri()}?immutable=1", uri=True) as main:
        assert main.execute("SELECT name FROM sqlite_master").fetchall() == []  # no WAL read
    with SQLiteStore(killed, read_only=True) as store:
        assert store.runs() == []
    with SQLiteStore(killed) as store:
        assert store.init_study(FP, STUDY) is False  # the same study: it resumes


def test_a_new_store_appears_whole_and_kills_leave_no_empty_study_db(tmp_path, monkeypatch):
    # a kill while the schema is written leaves only a temporary file, which the next
    # attempt (or a later one, once its maker is gone) removes
    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sqlite_store.os, "link", killed)
    with pytest.raises(KeyboardInterrupt):
        SQLiteStore(tmp_path)
    assert "study.db" not in files(tmp_path)
    monkeypatch.undo()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = tmp_path / f".study.db.{dead}.tmp"
    stale.write_bytes(b"half")
    os.utime(stale, (time.time() - 120, time.time() - 120))
    alive = tmp_path / f".study.db.{os.getppid()}.tmp"  # a live process's: not touched
    alive.write_bytes(b"being written")
    with SQLiteStore(tmp_path) as store:
        assert store.init_study(FP, STUDY) is True
    assert files(tmp_path) == {"study.db", alive.name}


def test_a_store_made_meanwhile_by_another_process_is_used_not_replaced(tmp_path, monkeypatch):
    real_link = os.link
    with SQLiteStore(tmp_path / "other") as other:
        other.init_study(FP, STUDY)

    def other_process_first(source, target):
        os.replace(tmp_path / "other" / "study.db", target)
        return real_link(source, target)  # raises FileExistsError, as the race would

    monkeypatch.setattr(sqlite_store.os, "link", other_process_first)
    with SQLiteStore(tmp_path) as store:
        assert store.init_study(FP, STUDY) is False  # theirs, with their study in it
    assert not [p for p in files(tmp_path) if p.endswith(".tmp")]


def test_json_damaged_inside_a_sound_file_is_named_not_called_a_bug(store):
    from reglab.errors import StoreError

    run = make_run(0)
    store.add_runs([run])
    store.record_epochs([(run.run_id, 0, {"loss": 0.5})])
    store.set_meta("device", "cpu")
    conn = sqlite3.connect(store.path)
    conn.execute("UPDATE epochs SET metrics = '{\"loss\": 0.5' WHERE run_id = ?", (run.run_id,))
    conn.execute("UPDATE runs SET hyperparameters = 'not json' WHERE run_id = ?", (run.run_id,))
    conn.execute("UPDATE meta SET value = '{' WHERE key = 'device'")
    conn.commit()
    conn.close()
    place = re.escape(str(store.path))
    with pytest.raises(StoreError, match=place + r": run '.*seed=0', epoch 0, column metrics "
                                              r"is damaged .*--restart"):
        store.epochs(run.run_id)
    with pytest.raises(StoreError, match=place + r": run '.*seed=0', column hyperparameters"):
        store.runs()
    with pytest.raises(StoreError, match=place + r": meta 'device' is damaged"):
        store.get_meta("device")


KILLED_WRITE = textwrap.dedent("""
    import os, sqlite3, sys
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("PRAGMA cache_size=1")  # the journal is written before the pages are
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE epochs SET metrics = metrics || ' '")
    conn.execute("DELETE FROM runs")
    os._exit(0)  # killed mid-transaction: no rollback, no unlock
""")


def _kill_mid_write(out: Path) -> None:
    """A store closed (so in a rollback journal, as while a writer opens or closes it), then a
    process killed in the middle of a write to it: a hot study.db-journal."""
    subprocess.run([sys.executable, "-c", KILLED_WRITE, str(out / "study.db")], check=True)
    assert (out / "study.db-journal").stat().st_size > 0


@pytest.mark.parametrize("read_only", [True, False])
def test_a_write_killed_in_a_rollback_journal_is_rolled_back_on_opening(tmp_path, read_only):
    out = tmp_path / "out"
    runs = [make_run(i) for i in range(3)]
    with SQLiteStore(out) as store:
        store.init_study(FP, STUDY)
        store.add_runs(runs)
        store.record_epochs([(r.run_id, e, {"loss": 0.5 + e}) for r in runs for e in range(4)])
    _kill_mid_write(out)
    with SQLiteStore(out, read_only=read_only) as store:  # was: "read-only here" for both
        assert [r.run_id for r in store.runs()] == [r.run_id for r in runs]
        assert store.epochs(runs[1].run_id)[2] == {"epoch": 2, "loss": 2.5}
        assert store._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert files(out) == {"study.db"}


def test_a_killed_write_on_a_store_that_cannot_be_written_is_named(tmp_path, monkeypatch):
    out = tmp_path / "out"
    with SQLiteStore(out) as store:
        store.init_study(FP, STUDY)
        store.add_runs([make_run(0)])
    _kill_mid_write(out)
    # where the directory cannot be written the rollback fails (root writes anywhere: the
    # rollback is skipped instead)
    monkeypatch.setattr(SQLiteStore, "_roll_back_killed_write", lambda self: None)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    for read_only in (True, False):
        with pytest.raises(sqlite_store.StoreError, match=r"unfinished write of a killed "
                                                          r"process \(study.db-journal\)"):
            SQLiteStore(out, read_only=read_only)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_changed_study_names_the_variants_that_changed():
    before = {"name": "t", "variants": [{"name": "base", "changes": {}},
                                        {"name": "l2", "changes": {"l2": 0.01}},
                                        {"name": "gone", "changes": {}}]}
    after = {"name": "t", "variants": [{"name": "l2", "changes": {"l2": 0.02}},
                                       {"name": "base", "changes": {}},
                                       {"name": "new", "changes": {}}]}
    assert sqlite_store._changed_keys(json.dumps(before), json.dumps(after)) == [
        "variants.l2.changes.l2", "variants.gone (removed)", "variants.new (added)",
        "variants (their order)"]
    assert sqlite_store._changed_keys(json.dumps(before), json.dumps(before)) == []


@pytest.mark.parametrize("column, value, message", [
    ("metrics", "[1, 2]", r"column metrics is damaged \(JSON list, where reglab writes an object"),
    ("metrics", '{"test_accuracy": "abc"}',
     r"column metrics is damaged \('test_accuracy' is 'abc', where reglab writes a number"),
    ("point", '"x"', r"column point is damaged \(JSON str"),
    ("hyperparameters", "[]", r"column hyperparameters is damaged \(JSON list"),
])
def test_run_json_of_the_wrong_kind_is_named_as_damage(tmp_path, column, value, message):
    with SQLiteStore(tmp_path) as store:
        store.init_study(FP, STUDY)
        store.add_runs([make_run(0)])
    with sqlite3.connect(tmp_path / "study.db") as conn:
        conn.execute(f"UPDATE runs SET {column} = ?", (value,))
    with SQLiteStore(tmp_path, read_only=True) as store:
        with pytest.raises(sqlite_store.StoreError, match=message):
            store.runs()


def test_a_damaged_study_record_is_named_before_a_writer_touches_the_store(tmp_path):
    with SQLiteStore(tmp_path) as store:
        store.init_study(FP, STUDY)
    with sqlite3.connect(tmp_path / "study.db") as conn:
        conn.execute("UPDATE study SET canonical_json = 'not json'")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(sqlite_store.StoreError, match=r"the study's record .* is damaged"):
        SQLiteStore(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    with SQLiteStore(tmp_path, read_only=True) as store:
        with pytest.raises(sqlite_store.StoreError, match=r"the study's record .* is damaged"):
            store.study()


@pytest.mark.parametrize("read_only", [False, True])
def test_a_study_db_that_is_a_directory_is_named_as_such(tmp_path, read_only):
    """`show` had said 'not a study directory (it has no study.db)' and `run` 'not a usable
    reglab store (disk I/O error)'; neither said what was in the way."""
    (tmp_path / "study.db" / "inside").mkdir(parents=True)
    with pytest.raises(sqlite_store.StoreError, match=r"study.db: expected the study's store, "
                                                      r"a file. Got a directory"):
        SQLiteStore(tmp_path, read_only=read_only)
    assert [p.name for p in (tmp_path / "study.db").iterdir()] == ["inside"]
