"""A study on a Dask cluster: the same results as in one process, bit for bit; a worker
killed mid-job costs nothing; a scheduler that cannot be reached is a clear error."""

from __future__ import annotations

import contextlib
import http.server
import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_cli_study import finished, write_study

from reglab.cli import main

pytestmark = pytest.mark.e2e

DASK = str(Path(sys.executable).parent / "dask")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reference(tmp_path, epochs=3):
    study = write_study(tmp_path, epochs=epochs)
    result = CliRunner().invoke(main, ["run", str(study), "--out", str(tmp_path / "reference"),
                                       "--quiet", "--no-report"])
    assert result.exit_code == 0, result.output
    return study, finished(tmp_path / "reference")


def start_cluster(workers: int = 2) -> tuple[str, subprocess.Popen, subprocess.Popen]:
    """A scheduler and single-threaded workers started with Dask's own commands, as a user
    would start them: ``(address, scheduler, workers)``."""
    address = f"tcp://127.0.0.1:{free_port()}"
    port = address.rsplit(":", 1)[1]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    scheduler = subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", port,
                                  "--no-dashboard"], **quiet)
    count = workers
    workers = subprocess.Popen([DASK, "worker", address, "--nworkers", str(count),
                                "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"],
                               **quiet)
    from distributed import Client

    with Client(address, timeout=30) as client:
        client.wait_for_workers(count, timeout=60)
    return address, scheduler, workers


def stop(*processes: subprocess.Popen) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def cli_cluster():
    address, scheduler, workers = start_cluster()
    try:
        yield address
    finally:
        stop(workers, scheduler)


def test_a_study_on_a_cluster_started_with_dask_commands_equals_one_process(tmp_path,
                                                                            cli_cluster):
    study, expected = reference(tmp_path)
    out = tmp_path / "cluster"
    run = subprocess.run([sys.executable, "-m", "reglab.cli", "run", str(study), "--out",
                          str(out), "--cluster", cli_cluster, "--quiet", "--no-report"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "runs done" in run.stdout
    assert finished(out) == expected


@pytest.mark.parametrize("address", ["unused", "http://127.0.0.1:1", "bogus:xx"])
def test_an_unreachable_scheduler_is_a_clear_error_and_writes_nothing(tmp_path, monkeypatch,
                                                                       address):
    from reglab.study import dask_executor

    monkeypatch.setattr(dask_executor, "CONNECT_TIMEOUT_S", 1)
    study = write_study(tmp_path)
    if address == "unused":
        address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    result = CliRunner().invoke(main, ["run", str(study), "--out", str(tmp_path / "out"),
                                       "--cluster", address, "--quiet"])
    assert result.exit_code == 2, result.output
    assert f"--cluster {address}: cannot reach a Dask scheduler there" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("address", "why"), [
    ("tcp://localhost:notaport", "the port 'notaport' is no number"),
    ("tcp://127.0.0.1:373890", "the port 373890 is out of range (1 to 65535)"),
    ("tcp://127.0.0.1", "the address has no port (tcp://HOST:PORT)"),
    ("tcp://::1:8786", "an IPv6 host goes in brackets (tcp://[::1]:8786)"),
    ("tcp://:8786", "the address has no host (tcp://HOST:PORT)"),
])
def test_an_address_no_scheduler_can_have_is_named_at_once(tmp_path, monkeypatch, address,
                                                           why):
    """Said before any connection is tried (a port above 65535 had waited out the timeout;
    a port that is no number had been called a server of another protocol)."""
    from reglab.study import dask_executor

    def never(address):
        raise AssertionError("a connection was tried")
    monkeypatch.setattr(dask_executor, "_check_scheduler", never)
    study = write_study(tmp_path)
    result = CliRunner().invoke(main, ["run", str(study), "--out", str(tmp_path / "out"),
                                       "--cluster", address, "--quiet"])
    assert result.exit_code == 2, result.output
    assert f"--cluster {address}: cannot reach a Dask scheduler there (ValueError: {why})" \
        in result.output
    assert not (tmp_path / "out").exists()


class _Silent(socketserver.BaseRequestHandler):
    """Accepts a connection and says nothing until the other side gives up."""

    def handle(self):
        self.request.settimeout(30)
        with contextlib.suppress(OSError):
            while self.request.recv(1024):
                pass


class _AnswersHttp(socketserver.BaseRequestHandler):
    """Answers any connection at once as a proxy does (nginx, envoy): Dask reads the reply's
    first bytes as a frame length of exabytes (a MemoryError)."""

    def handle(self):
        with contextlib.suppress(OSError):
            self.request.sendall(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n"
                                 b"connection: close\r\n\r\n")


def test_a_server_that_answers_in_another_protocol_is_named_not_taken_for_memory(
        tmp_path):
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _AnswersHttp) as listening:
        listening.daemon_threads = True
        threading.Thread(target=listening.serve_forever, daemon=True).start()
        address = f"tcp://127.0.0.1:{listening.server_address[1]}"
        result = CliRunner().invoke(main, ["run", str(write_study(tmp_path)), "--out",
                                           str(tmp_path / "out"), "--cluster", address,
                                           "--quiet"])
        listening.shutdown()
    assert result.exit_code == 2, result.output
    assert f"--cluster {address}: cannot reach a Dask scheduler there" in result.output
    assert "does not speak Dask's protocol" in result.output
    assert "out of memory" not in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("server", ["http", "silent"])
def test_a_server_that_is_no_dask_scheduler_is_a_clear_error_in_bounded_time(
        tmp_path, monkeypatch, server):
    # Dask's Client alone waits without a limit for the handshake such a server never sends
    from reglab.study import dask_executor

    monkeypatch.setattr(dask_executor, "CONNECT_TIMEOUT_S", 1)
    handler = http.server.SimpleHTTPRequestHandler if server == "http" else _Silent
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler) as listening:
        listening.daemon_threads = True
        threading.Thread(target=listening.serve_forever, daemon=True).start()
        address = f"tcp://127.0.0.1:{listening.server_address[1]}"
        study = write_study(tmp_path)
        start = time.monotonic()
        result = CliRunner().invoke(main, ["run", str(study), "--out", str(tmp_path / "out"),
                                           "--cluster", address, "--quiet"])
        elapsed = time.monotonic() - start
        listening.shutdown()
    assert result.exit_code == 2, result.output
    assert f"--cluster {address}: cannot reach a Dask scheduler there" in result.output
    assert "no Dask handshake within 2 s" in result.output
    assert elapsed < 20
    assert not (tmp_path / "out").exists()


def test_a_workers_address_is_not_taken_for_a_schedulers(tmp_path, cli_cluster):
    from distributed import Client

    with Client(cli_cluster, timeout=30) as client:
        worker = sorted(client.scheduler_info()["workers"])[0]
    study = write_study(tmp_path)
    result = CliRunner().invoke(main, ["run", str(study), "--out", str(tmp_path / "out"),
                                       "--cluster", worker, "--quiet"])
    assert result.exit_code == 2, result.output
    assert "a Dask Worker answers there, not a scheduler" in result.output
    assert not (tmp_path / "out").exists()


def test_a_worker_killed_mid_job_costs_nothing(tmp_path):
    """A local cluster of two worker processes; one is SIGKILLed once epochs are in the
    store: its job runs again (from its checkpoint) on a worker, and the study ends as in one
    process, every epoch stored once."""
    from reglab.study.dask_executor import DaskExecutor
    from reglab.study.runner import run_study

    study, expected = reference(tmp_path, epochs=12)
    out = tmp_path / "killed"
    executor = DaskExecutor(workers=2, threads=1)
    outcome = {}

    def drive():
        try:
            run_study(study, out, executor=executor, log=lambda *_: None).close()
        except BaseException as error:  # noqa: BLE001 - reported below
            outcome["error"] = error

    driver = threading.Thread(target=drive)
    try:
        pids = executor.client.run(os.getpid)
        driver.start()
        wait_for_epochs(out, driver.is_alive)
        busy = [address for address, keys in executor.client.processing().items() if keys]
        assert busy, "no worker was training at the kill"
        os.kill(pids[busy[0]], signal.SIGKILL)  # a worker with a job in hand
        driver.join(timeout=300)
        assert not driver.is_alive()
    finally:
        executor.close()
    assert "error" not in outcome, outcome.get("error")
    assert executor.restarts >= 1  # the killed worker's job started again elsewhere
    assert finished(out) == expected
    import sqlite3

    with sqlite3.connect(out / "study.db") as db:
        counts = db.execute("SELECT run_id, COUNT(*), MAX(epoch) FROM epochs "
                            "GROUP BY run_id").fetchall()
    assert all(count == top + 1 for _, count, top in counts)  # no epoch lost or twice


def wait_for_epochs(out: Path, running) -> None:
    """Until the store holds an epoch row, while ``running()``; then it must still run."""
    deadline = time.monotonic() + 120
    while not _rows(out) and running():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert running(), "the study ended before the kill"


def _rows(out: Path) -> int:
    import sqlite3

    if not (out / "study.db").is_file():
        return 0
    try:
        with sqlite3.connect(f"file:{out / 'study.db'}?mode=ro", uri=True) as db:
            return db.execute("SELECT COUNT(*) FROM epochs").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_a_killed_scheduler_stops_the_study_clearly_and_the_rerun_finishes_it(tmp_path):
    study, expected = reference(tmp_path, epochs=12)
    out = tmp_path / "out"

    def command(address):
        return [sys.executable, "-m", "reglab.cli", "run", str(study), "--out", str(out),
                "--cluster", address, "--quiet", "--no-report"]
    address, scheduler, workers = start_cluster()
    try:
        driver = subprocess.Popen(command(address), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        wait_for_epochs(out, lambda: driver.poll() is None)
        scheduler.send_signal(signal.SIGKILL)
        _, stderr = driver.communicate(timeout=120)
    finally:
        stop(workers, scheduler)
    assert driver.returncode == 2, stderr[-2000:]
    assert f"lost the Dask scheduler at {address}" in stderr
    assert "Traceback" not in stderr
    import sqlite3

    with sqlite3.connect(out / "study.db") as db:
        statuses = {row[0] for row in db.execute("SELECT status FROM runs")}
    assert "failed" not in statuses and "running" not in statuses  # nothing blamed on runs
    address, scheduler, workers = start_cluster()
    try:
        rerun = subprocess.run(command(address), capture_output=True, text=True, timeout=300)
    finally:
        stop(workers, scheduler)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert finished(out) == expected


def test_auto_precision_is_measured_on_a_worker_of_a_cluster_at_an_address(cli_cluster,
                                                                          monkeypatch):
    from reglab.layers import products
    from reglab.study import precision
    from reglab.study.dask_executor import DaskExecutor

    def not_here(dtype):
        raise AssertionError("measured in the driver")

    monkeypatch.setattr(products, "native_half_products", not_here)  # the driver's only
    executor = DaskExecutor(address=cli_cluster)
    try:
        chosen = executor.choose_precision("cpu")
    finally:
        executor.close()
    assert isinstance(chosen, precision.Choice)
    assert chosen.precision in ("float32", "bfloat16") and "CPU" in chosen.reason


def test_cuda_jobs_need_a_worker_that_offers_a_gpu(tmp_path, cli_cluster):
    study = write_study(tmp_path, epochs=1)
    result = CliRunner().invoke(main, ["run", str(study), "--out", str(tmp_path / "out"),
                                       "--cluster", cli_cluster, "--device", "cuda", "--quiet"])
    assert result.exit_code == 2, result.output
    assert f"--device cuda with --cluster {cli_cluster}: no worker there offers a GPU" in \
        result.output
    assert "Traceback" not in result.output


def test_a_worker_of_a_dask_cli_cluster_killed_mid_job_costs_nothing(tmp_path, cli_cluster):
    """The same with workers started by `dask worker`: the killed worker's nanny starts it
    again, the scheduler reruns its job (from the start: such workers need not see the
    study directory), and the study ends as in one process."""
    from distributed import Client

    study, expected = reference(tmp_path, epochs=12)
    out = tmp_path / "out"
    with Client(cli_cluster, timeout=30) as client:
        pids = client.run(os.getpid)
    driver = subprocess.Popen([sys.executable, "-m", "reglab.cli", "run", str(study), "--out",
                               str(out), "--cluster", cli_cluster, "--quiet", "--no-report"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_epochs(out, lambda: driver.poll() is None)
    os.kill(sorted(pids.values())[0], signal.SIGKILL)
    _, stderr = driver.communicate(timeout=300)
    assert driver.returncode == 0, stderr[-3000:]
    assert finished(out) == expected


def test_the_only_worker_killed_mid_job_costs_nothing(tmp_path):
    """One worker holds the scattered file data and trains: killed, its nanny starts it
    again without the data; the driver sends the data again and resubmits the job."""
    from distributed import Client

    study, expected = reference(tmp_path, epochs=12)
    out = tmp_path / "out"
    address, scheduler, workers = start_cluster(workers=1)
    try:
        with Client(address, timeout=30) as client:
            (pid,) = client.run(os.getpid).values()
        driver = subprocess.Popen([sys.executable, "-m", "reglab.cli", "run", str(study),
                                   "--out", str(out), "--cluster", address, "--quiet",
                                   "--no-report"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        wait_for_epochs(out, lambda: driver.poll() is None)
        os.kill(pid, signal.SIGKILL)
        _, stderr = driver.communicate(timeout=300)
    finally:
        stop(workers, scheduler)
    assert driver.returncode == 0, stderr[-3000:]
    assert finished(out) == expected


def _fail_on_workers(run_id):
    """Runs on each worker: its jobs raise when they hold ``run_id`` (a run that fails by
    itself wherever it trains)."""
    from reglab.study import executors

    original = executors.InProcessExecutor.train

    def train(self, job, on_epoch=None, progress=None):
        if any(run.run_id == run_id for run in job.population.runs):
            raise RuntimeError(f"simulated crash of {run_id}")
        return original(self, job, on_epoch, progress)
    executors.InProcessExecutor.train = train


def test_a_run_that_fails_on_the_cluster_is_found_there_and_alone_recorded_failed(tmp_path):
    import cloudpickle

    from reglab.study.dask_executor import DaskExecutor
    from reglab.study.runner import run_study

    study = write_study(tmp_path, epochs=2)
    executor = DaskExecutor(workers=2, threads=1)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        executor.client.run(_fail_on_workers, "dropout/seed=2")
        store = run_study(study, tmp_path / "out", executor=executor, log=lambda *_: None)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        executor.close()
    statuses = {r.run_id: r.status for r in store.runs()}
    assert statuses.pop("dropout/seed=2") == "failed"
    assert set(statuses.values()) <= {"done", "stopped_early"}
    (failed,) = [r for r in store.runs() if r.status == "failed"]
    assert "simulated crash of dropout/seed=2" in failed.error
    store.close()


def test_ctrl_c_with_worker_processes_is_one_line_and_the_rerun_finishes(tmp_path):
    """Ctrl-C reaches the terminal's whole process group: the driver answers it (exit 130,
    one line) and the local cluster's workers, started with it ignored, print no Dask
    traceback of their own; the same command then finishes the study as in one process."""
    study, expected = reference(tmp_path, epochs=12)
    out = tmp_path / "interrupted"
    command, process, output = _interrupted_with_workers(study, out, presses=1)
    assert process.returncode == 130, output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    assert "interrupted: what was saved is kept" in output
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert finished(out) == expected


def test_ctrl_c_pressed_again_while_the_cluster_closes_stays_one_line(tmp_path):
    """A user who presses Ctrl-C three times: the second and third come while the first's
    cleanup closes the local cluster. The close goes on (they are ignored meanwhile), so
    the command still ends with one line and 130; they had cut the close short, and Dask's
    close at exit printed its traceback (KeyboardInterrupt), or the signal ended it."""
    _, process, output = _interrupted_with_workers(write_study(tmp_path, epochs=12),
                                                   tmp_path / "interrupted", presses=3)
    assert process.returncode == 130, output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    assert output.count("interrupted: what was saved is kept") == 1, output


def _interrupted_with_workers(study, out, presses: int):
    """``(command, process, output)``: ``reglab run --workers 2`` in its own process group,
    given ``presses`` Ctrl-C (0.25 s apart) to the whole group, as a terminal gives them,
    once an epoch is stored."""
    command = [sys.executable, "-m", "reglab.cli", "run", str(study), "--out", str(out),
               "--quiet", "--no-report", "--workers", "2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        wait_for_epochs(out, lambda: process.poll() is None)
        for press in range(presses):
            time.sleep(0.25 if press else 0)
            os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return command, process, output
