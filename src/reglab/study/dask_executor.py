"""Training a study's jobs on a Dask cluster.

:class:`DaskExecutor` follows :class:`reglab.study.executors.Executor`: each job (a
population, or a shard of one) is one Dask task that trains it with the in-process
executor on a worker. The driver alone writes the store; workers need no shared file
system:

* **Data**: a built-in dataset is loaded by each worker by its name (from the worker's own
  copy or cache, as the driver does); a file dataset is scattered once from the driver, which
  has loaded and checked it, so the file need not exist on the workers.
* **Epochs** stream to the driver as they end (the worker's ``log_event`` on a topic of this
  study, the driver's ``subscribe_topic``), so the store and the progress stay current; when
  a job ends its task also returns all its rows, and the driver stores those as the job's
  record (a row that arrived twice, or late, changes nothing).
* **Faults**: a worker that dies mid-job has its task rerun by the scheduler on another
  worker (Dask's own retry of lost tasks); the job says when it starts, and the driver then
  drops the rows of the attempt before. On a local cluster (``--workers``-style, started
  here) the rerun goes on from the job's last checkpoint in the study directory; on a
  cluster at an address, whose workers need not see that directory, it starts over. A job that raises by itself is handed back as
  failed (the driver retries its runs in halves, in process, to find the failing ones). A
  scheduler that cannot be reached is a :class:`~reglab.errors.ReglabError` naming it, with
  nothing written.
"""

from __future__ import annotations

import contextlib
import queue
import time
import uuid

from reglab.errors import ReglabError
from reglab.study import precision, sharding
from reglab.study.executors import InProcessExecutor, PopulationJob, failed_outcomes
from reglab.study.plan import PopulationSpec
from reglab.study.spec import BUILTIN_DATASETS, StudySpec
from reglab.utils import interrupts
from reglab.utils.quick_exit import freeze_at_exit

#: how long the driver waits for a scheduler before saying it cannot be reached
CONNECT_TIMEOUT_S = 10
#: how long a local cluster's worker waits for a scheduler that went away
DEATH_TIMEOUT_S = 5
#: how long a study waits on a cluster that has no worker left
NO_WORKERS_S = 120


def _job_key(job: PopulationJob) -> str:
    return f"{job.population.key}:{job.population.runs[0].run_id}:{len(job.population.runs)}"


def _train_on_worker(job: PopulationJob, topic: str, data, threads: int, ours: bool):
    """A Dask task: trains ``job`` on this worker, telling the driver as it goes; ``ours``:
    the worker is a process of the local cluster the driver started."""
    import torch
    from distributed import get_worker

    worker = get_worker()
    executor = getattr(worker, "_reglab_executor", None)
    if executor is None:
        torch.set_num_threads(threads)
        executor = worker._reglab_executor = InProcessExecutor()
        if ours:  # a process reglab owns ends ~1 s sooner (utils/quick_exit.py)
            freeze_at_exit()
    if data is not None:
        executor.preload(job.spec, data)
    key = _job_key(job)
    worker.log_event(topic, {"kind": "start", "job": key})
    rows = []

    def on_epoch(epoch_rows):
        rows.extend(epoch_rows)
        worker.log_event(topic, {"kind": "rows", "job": key, "rows": epoch_rows})
    outcomes = executor.train(job, on_epoch=on_epoch)
    return outcomes, rows


@contextlib.contextmanager
def _sigint_held():
    """SIGINT blocked in this thread while the block runs, so that the threads it starts
    inherit it blocked, and the processes they start too (a signal mask survives ``exec``):
    the cluster's workers then never see a Ctrl-C. A Ctrl-C meanwhile is noted (by this
    process's other threads, or held for this one) and raised as ``KeyboardInterrupt``
    when the block ends. In the main thread only (elsewhere signals cannot be set and
    nothing changes); without ``pthread_sigmask``, SIGINT is ignored instead, and the
    workers inherit that (a Ctrl-C in the block is then lost). A SIGTERM the CLI raises
    (utils/interrupts.py) is noted likewise and raised after the block, not blocked."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if not hasattr(signal, "pthread_sigmask"):
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
        return
    # multiprocessing's resource tracker unblocks SIGINT in the thread that starts it (at
    # the first process the cluster spawns): started first, before the block
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    noted = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: noted.append(signum))
    # SIGTERM (raised as Terminated by the CLI) is noted too, not raised mid-start (a cluster
    # half started fails its own close at exit); not blocked: the workers must keep
    # answering the SIGTERM that stops them
    terminate = signal.getsignal(signal.SIGTERM)
    if callable(terminate):
        signal.signal(signal.SIGTERM, lambda signum, frame: noted.append(signum))
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # a held one is noted
        signal.signal(signal.SIGINT, previous)
        if callable(terminate):
            signal.signal(signal.SIGTERM, terminate)
    if signal.SIGTERM in noted:
        terminate(signal.SIGTERM, None)  # raises as it would have
    if noted:
        raise KeyboardInterrupt


def _check_address(address: str) -> None:
    """Raises ValueError, at once, for an address no scheduler can have: a port that is no
    number, or out of 1..65535 (``tcp://host:port``; Dask's other schemes as Dask parses
    them)."""
    from distributed.comm.addressing import parse_address, parse_host_port

    scheme, location = parse_address(address)
    if scheme not in ("tcp", "tls", "ws", "wss"):
        return
    if location.count(":") > 1 and not location.startswith("["):
        raise ValueError("an IPv6 host goes in brackets (tcp://[::1]:8786)")
    try:
        host, port = parse_host_port(location)
    except ValueError:
        port = location.rsplit(":", 1)[-1] if ":" in location else None
        raise ValueError(f"the port {port!r} is no number" if port else
                         "the address has no port (tcp://HOST:PORT)") from None
    if not 0 < port < 65536:
        raise ValueError(f"the port {port} is out of range (1 to 65535)")
    if not host:
        raise ValueError("the address has no host (tcp://HOST:PORT)")


def _check_scheduler(address: str) -> None:
    """Asks what answers at ``address`` who it is, within the connect timeout (twice for the
    whole exchange); raises TimeoutError when nothing answers as Dask does (Dask's own
    ``Client`` waits without a limit for a handshake a server of another kind never sends),
    ValueError when a Dask process that is not a scheduler (a worker) answers. In a thread of
    its own, with an event loop of its own (a caller may be running one)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from distributed.comm import connect

    async def identity():
        comm = await connect(address, timeout=CONNECT_TIMEOUT_S)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    async def spoken():
        try:
            return await identity()
        except (OSError, asyncio.TimeoutError):
            raise
        except Exception as error:  # noqa: BLE001 - a reply in another protocol
            # (an HTTP server's "HTTP/1.1 400" read as a frame length: a MemoryError)
            raise ValueError(f"what answers there does not speak Dask's protocol (its reply "
                             f"read as Dask's gave {type(error).__name__})") from None

    async def bounded():
        try:
            return await asyncio.wait_for(spoken(), CONNECT_TIMEOUT_S * 2)
        except asyncio.TimeoutError:
            raise TimeoutError(f"no Dask handshake within {CONNECT_TIMEOUT_S * 2} s; is a "
                               "Dask scheduler listening on that port?") from None

    with ThreadPoolExecutor(1) as pool:
        reply = pool.submit(asyncio.run, bounded()).result()
    kind = reply.get("type") if isinstance(reply, dict) else None
    if kind != "Scheduler":
        raise ValueError(f"a Dask {kind or 'process'} answers there, not a scheduler")


class DaskExecutor:
    """Trains jobs on a Dask cluster: a running scheduler at ``address``
    (``tcp://host:port``), or a local cluster of ``workers`` processes started here.

    Args:
        address: the scheduler's address; None for a local cluster.
        workers: processes of the local cluster (ignored with ``address``).
        threads: torch threads per job; default: each worker's threads (the local cluster:
            the CPUs divided among the workers).
    """

    reports_completion = True

    def __init__(self, address: str | None = None, workers: int = 2, threads: int | None = None):
        #: whether jobs train on this machine (a local cluster): the driver checks the device
        self.trains_here = address is None
        import os

        from distributed import Client, LocalCluster

        self._cluster = None
        if address is None:
            per_worker = threads or max(1, (os.cpu_count() or 1) // workers)
            # memory_limit 0: a study's process keeps freed memory for reuse (see
            # engine/allocator.py), which Dask's memory monitor would take for a leak.
            # The workers are started with Ctrl-C blocked (a process started so keeps it
            # blocked): Ctrl-C reaches the whole terminal's process group, and the driver
            # alone answers it, closing the cluster; the workers' own KeyboardInterrupts
            # printed two Dask tracebacks over the driver's one line. A Ctrl-C while the
            # cluster starts is raised once it has started (ignoring it there lost it, and
            # the study ran to its end).
            try:
                with _sigint_held():
                    self._cluster = LocalCluster(
                        n_workers=workers, threads_per_worker=1, processes=True,
                        host="127.0.0.1", dashboard_address="127.0.0.1:0", silence_logs=50,
                        memory_limit=0, death_timeout=DEATH_TIMEOUT_S,
                        env={"OMP_NUM_THREADS": str(per_worker),
                             "MKL_CBWR": os.environ.get("MKL_CBWR", "AUTO,STRICT")})
            except KeyboardInterrupt:  # a Ctrl-C held while the cluster started
                if self._cluster is not None:
                    _uninterrupted(self._cluster.close)
                raise
            address = self._cluster.scheduler_address
        try:
            if self._cluster is None:
                _check_address(address)
                _check_scheduler(address)
            self.client = Client(address, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError, TypeError) as error:
            if self._cluster is not None:
                self._cluster.close()
            raise ReglabError(f"--cluster {address}: cannot reach a Dask scheduler there "
                              f"({type(error).__name__}: {error}). Give its address as "
                              "tcp://HOST:PORT, and start one there (`dask scheduler`, then "
                              f"`dask worker tcp://HOST:PORT`); nothing was written.") from None
        self.address = address
        info = self.client.scheduler_info()["workers"]
        if not info:
            try:
                self.client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S * 6)
            except (OSError, TimeoutError) as error:
                self.close()
                raise ReglabError(f"--cluster {address}: the scheduler has no workers (none "
                                  f"joined in {CONNECT_TIMEOUT_S * 6} s: {error}). Start some "
                                  f"with `dask worker {address}`; nothing was written.") \
                    from None
            info = self.client.scheduler_info()["workers"]
        self.worker_addresses = sorted(info)
        self.worker_threads = sorted(w["nthreads"] for w in info.values())
        self.threads = threads or (max(1, (os.cpu_count() or 1) // workers)
                                   if self._cluster is not None else self.worker_threads[0])
        self.data = None
        self._scattered = None
        #: jobs that started again after their first start (a worker died under them)
        self.restarts = 0

    # -- the protocol ---------------------------------------------------------------------

    def shards(self, populations, device: str = "cpu", whole=None) -> list[list[PopulationSpec]]:
        """Cuts for the whole study (:mod:`reglab.study.sharding`): a population into at
        most one shard per worker process (per GPU slot for ``cuda`` on a cluster at an
        address), runs in seed order, where that keeps a worker busy; a small population
        beside larger ones stays whole, as does a part marked ``whole`` (a killed job with
        a checkpoint, in its own order)."""
        slots = self._slots({"cuda": {"GPU": 1}} if device == "cuda" and self._cluster is None
                            else {})
        return sharding.plan_cuts(populations, slots, whole)

    def choose_precision(self, device: str):
        """What ``precision = "auto"`` means where the jobs train, with their torch threads:
        measured here for a local cluster (the same CPU), else on one of the cluster's
        workers (a broken or empty cluster stops the study as training would)."""
        if self._cluster is not None:
            return precision.choose(device, threads=self.threads)
        future = self.client.submit(precision.choose, device, self.threads, pure=False,
                                    resources=self._device_resources({device}).get(device),
                                    key=f"reglab-precision-{uuid.uuid4().hex[:8]}")
        alone_since, checked = None, time.monotonic()
        try:
            while not future.done():
                time.sleep(0.05)
                if time.monotonic() - checked > 5 and self.client.status == "running":
                    checked = time.monotonic()
                    alone_since = self._check_workers(alone_since)
            try:
                return future.result()
            except Exception as error:  # noqa: BLE001 - sorted out below
                interrupts.reraise_if_interrupted(error)
                self._cluster_failure(error, 'measuring what precision = "auto" means there')
                raise
        finally:
            future.release()

    def preload(self, spec: StudySpec, data) -> None:
        """A file dataset is scattered to the workers once; a built-in one each worker loads."""
        self.data = data
        self._scattered = None if spec.data.dataset in BUILTIN_DATASETS else \
            self.client.scatter(data, broadcast=True)

    def run(self, jobs, populations, on_rows, on_start, progress_factory=None):
        topic = f"reglab-{uuid.uuid4().hex}"
        events: queue.Queue = queue.Queue()
        self.client.subscribe_topic(topic, lambda event: events.put(event[1]))
        resources = self._device_resources({job.device for _, job in jobs})
        by_key: dict[str, PopulationJob] = {}  # every job and part of a job submitted
        futures: dict = {}  # future -> (index, the job as the driver gave it, the part)
        collected: dict[int, list] = {}  # id(job) -> outcomes of its parts so far
        parts_left: dict[int, int] = {}  # id(job) -> parts still training
        places = iter(range(10**9))

        # Placement: at most one job per worker process at a time (a job's torch threads are
        # its worker's threads; a worker with several Dask threads would otherwise run as
        # many jobs, each asking for all of them), or per GPU slot for --device cuda; the
        # rest wait here, in order, and go to the cluster as jobs end.
        waiting: list = []
        capacity = self._slots(resources)

        def submit(index, job, part):
            if len(futures) >= capacity:
                waiting.append((index, job, part))
                return
            # Checkpoints are files in the study directory: only workers of a cluster started
            # here share it; elsewhere a job that starts over starts from its beginning.
            part = PopulationJob(part.spec, part.population, part.device,
                                 checkpoint=part.checkpoint if self._cluster is not None
                                 else None)
            by_key[_job_key(part)] = part
            # The jobs go round the workers, free to move when their worker is gone.
            place = next(places) % len(self.worker_addresses)
            future = self.client.submit(
                _train_on_worker, part, topic, self._scattered, self.threads,
                self._cluster is not None, pure=False,
                resources=resources.get(part.device),
                workers=None if resources else [self.worker_addresses[place]],
                allow_other_workers=True, key=f"reglab-{_job_key(part)}-{uuid.uuid4().hex[:8]}")
            futures[future] = (index, job, part)

        for index, job in sorted(jobs, key=lambda item: -sharding.job_cost(item[1].population)):
            collected[id(job)], parts_left[id(job)] = [], 1
            submit(index, job, job)
        finished: set[str] = set()
        started: set[str] = set()

        def drain():
            while True:
                try:
                    event = events.get_nowait()
                except queue.Empty:
                    return
                part = by_key.get(event.get("job"))
                if part is None or event["job"] in finished:
                    continue  # a late row of a part already stored
                if event["kind"] == "start":
                    if event["job"] in started:
                        self.restarts += 1
                    started.add(event["job"])
                    on_start(part)
                elif event["kind"] == "rows":
                    try:
                        on_rows([tuple(row) for row in event["rows"]])
                    except ReglabError:
                        pass  # a row of an attempt before; the part's return value decides

        alone_since = None  # when the cluster was last seen without a worker
        checked = time.monotonic()
        try:
            while futures or waiting:
                while waiting and len(futures) < capacity:
                    submit(*waiting.pop(0))
                done = [future for future in futures if future.done()]
                if not done:
                    time.sleep(0.05)
                    if time.monotonic() - checked > 5 and self.client.status == "running":
                        checked = time.monotonic()
                        alone_since = self._check_workers(alone_since)
                drain()
                for future in done:
                    index, job, part = futures.pop(future)
                    key = _job_key(part)
                    try:
                        outcomes, rows = future.result()
                    except Exception as error:  # noqa: BLE001 - sorted out below
                        interrupts.reraise_if_interrupted(error)
                        outcomes, more = self._after_error(error, index, job, part, submit)
                        if outcomes is None:
                            parts_left[id(job)] += more
                            continue  # submitted again, or in halves
                    else:
                        on_start(part)  # the task's own rows are the part's record
                        on_rows([tuple(row) for row in rows])
                    finally:
                        future.release()
                    finished.add(key)
                    collected[id(job)].extend(outcomes)
                    parts_left[id(job)] -= 1
                    if parts_left[id(job)] == 0:
                        yield index, job, collected.pop(id(job))
        finally:
            try:  # the client may be closed already (a lost scheduler)
                self.client.unsubscribe_topic(topic)
                for future in futures:
                    future.cancel()
            except Exception:  # noqa: BLE001 - cleanup must not hide the error in flight
                pass

    def _slots(self, resources: dict) -> int:
        """How many jobs the cluster trains at once: its worker processes, or its GPUs."""
        workers = self.client.scheduler_info()["workers"].values()
        if resources:
            return max(1, int(sum(w.get("resources", {}).get("GPU", 0) for w in workers)))
        return max(1, len(workers))

    def _check_workers(self, alone_since: float | None) -> float | None:
        """Tasks wait forever on a cluster without workers: after ``NO_WORKERS_S`` without
        one, the study stops (the runs stay queued)."""
        if self.client.nthreads():
            return None
        now = time.monotonic()
        if alone_since is not None and now - alone_since > NO_WORKERS_S:
            raise ReglabError(f"the Dask cluster at {self.address} has had no workers for "
                              f"{NO_WORKERS_S} s; the finished runs are saved, the others go on "
                              "when the same command runs again with workers there.")
        return alone_since if alone_since is not None else now

    def _after_error(self, error, index, job, part, submit):
        """What a part that raised becomes, as ``(outcomes, parts added)``: a lost scheduler
        or a broken cluster stops the study (:class:`ReglabError`, the runs stay queued);
        lost data (its workers died) is sent again and the part resubmitted ``(None, 0)``;
        otherwise the part's own failure: its runs are retried in halves on the cluster
        ``(None, 1)`` until each failing run is alone, and comes back failed."""
        self._cluster_failure(error, "training")
        if _cancelled(error):  # the scattered data went with its workers: send it again
            if self._scattered is not None:
                self._scattered = self.client.scatter(self.data, broadcast=True)
            self.restarts += 1
            submit(index, job, part)
            return None, 0
        runs = part.population.runs
        if len(runs) == 1 or isinstance(error, ReglabError):
            return failed_outcomes(part, error), 0
        for half in (runs[: len(runs) // 2], runs[len(runs) // 2:]):
            submit(index, job, PopulationJob(
                part.spec, PopulationSpec(part.population.key, tuple(half)), part.device))
        return None, 1

    def _cluster_failure(self, error: BaseException, doing: str) -> None:
        """Raises the :class:`ReglabError` that stops the study when ``error`` (raised by a
        task ``doing`` something) says the scheduler is lost or the cluster cannot run
        reglab's tasks; returns for a task's own failure."""
        if self.client.status != "running":
            raise ReglabError(f"lost the Dask scheduler at {self.address} ({error}); the "
                              "finished runs are saved, the others go on when the same "
                              "command runs again.") from None
        name = type(error).__name__
        if name == "KilledWorker":
            raise ReglabError(f"the Dask workers at {self.address} kept dying while {doing} "
                              f"({error}); the finished runs are saved, the others go on when "
                              "the same command runs again.") from None
        if isinstance(error, (ImportError, AttributeError)) or name in _CLUSTER_ERRORS:
            raise ReglabError(f"the Dask workers at {self.address} cannot train reglab's jobs "
                              f"({name}: {error}): install the same reglab, torch and data on "
                              "them; the runs stay queued.") from None

    def _device_resources(self, devices: set[str]) -> dict[str, dict]:
        """``--device cuda`` jobs need a worker that offers a GPU (``dask worker ...
        --resources GPU=1``, one per GPU), and take one; a local cluster's workers share
        this machine's devices."""
        if "cuda" not in devices or self._cluster is not None:
            return {}
        offered = [w.get("resources", {}).get("GPU", 0)
                   for w in self.client.scheduler_info()["workers"].values()]
        if not any(offered):
            raise ReglabError(f"--device cuda with --cluster {self.address}: no worker there "
                              "offers a GPU. Start the GPU machines' workers with `dask worker "
                              f"{self.address} --resources GPU=1`; the runs stay queued.")
        return {"cuda": {"GPU": 1}}

    def close(self) -> None:
        """Closes the client and the local cluster, with Ctrl-C ignored meanwhile: one
        pressed again while a first one's cleanup closes them cut the close short, left the
        cluster to Dask's close at exit and printed its traceback."""
        _uninterrupted(self.client.close)
        if self._cluster is not None:
            _uninterrupted(self._cluster.close)


def _uninterrupted(close) -> None:
    """``close()`` with SIGINT ignored while it runs (the handler before put back after), in
    the main thread; elsewhere (no signals to set) just the call."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        close()
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        close()
    finally:
        signal.signal(signal.SIGINT, previous)


#: errors of a worker's environment, not of a run (by name: Dask may not rebuild the class)
_CLUSTER_ERRORS = ("ModuleNotFoundError", "DatasetNotFoundError", "PicklingError",
                   "UnpicklingError", "CommClosedError")


def _cancelled(error: BaseException) -> bool:
    """A future cancelled by the scheduler (its data or its worker went away)."""
    import asyncio
    import concurrent.futures

    return isinstance(error, (asyncio.CancelledError, concurrent.futures.CancelledError))
