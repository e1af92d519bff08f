r"""Executors: what trains a population and hands its records back to the driver.

An executor never touches the store; the driver (:func:`reglab.study.runner.run_study`)
writes everything. Every executor follows one protocol, :class:`Executor`: it cuts a
population into jobs (``shards``), takes the study's data once (``preload``), and ``run``\ s
a list of jobs, calling back on the driver's thread when a job (re)starts and as epochs end,
and yielding each job's outcomes (or the exception it raised) as it ends. Three kinds:

* :class:`InProcessExecutor` trains one population at a time in this process; epochs are
  reported as they end.
* :class:`ProcessPoolExecutor` trains several jobs at once in worker processes, one torch
  thread pool each, and cuts each population into one shard per worker so that the workers
  stay busy; a job's epochs are reported when it returns.
* :class:`reglab.study.dask_executor.DaskExecutor` does the same on a Dask cluster, epochs
  streamed to the driver as they end.

Members are independent inside a population, so a shard trains each member as the whole
population would (the engine's per-member results do not depend on the other members, and
random streams are keyed by seed, not by position).
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import dataclasses
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from reglab.study import checkpoints
from reglab.study.plan import PopulationSpec
from reglab.study.spec import StudySpec

EpochRows = list[tuple[str, int, dict]]


@dataclasses.dataclass
class PopulationJob:
    """One population (or shard of one) to train."""

    spec: StudySpec
    population: PopulationSpec
    device: str = "cpu"
    #: where the job checkpoints after every epoch and resumes from (None: no checkpoints)
    checkpoint: str | None = None


@dataclasses.dataclass
class RunOutcome:
    run_id: str
    status: str
    epochs_run: int
    best_epoch: int | None
    stopped_epoch: int | None
    metrics: dict
    wall_time: float
    error: str | None = None
    kernel: tuple[str, Any] | None = None  # (layer name, the first weight layer's kernel)


#: ``(population index, job)``: what the driver hands an executor
IndexedJob = tuple[int, "PopulationJob"]
#: what ``Executor.run`` yields as each job ends: its outcomes, or the exception it raised
JobResult = tuple[int, "PopulationJob", "list[RunOutcome] | BaseException"]


class Executor(Protocol):
    """What the driver needs of an executor."""

    #: whether the driver should log each job's end (the in-process executor shows
    #: progress bars instead)
    reports_completion: bool

    def shards(self, population: PopulationSpec) -> list[PopulationSpec]:
        """The jobs one population is cut into (its runs, in seed order)."""
        ...

    def preload(self, spec: StudySpec, data) -> None:
        """The study's data, loaded and checked by the driver."""
        ...

    def run(self, jobs: list[IndexedJob], populations: int,
            on_rows: Callable[[EpochRows], None], on_start: Callable[[PopulationJob], None],
            progress_factory: Callable | None = None) -> Iterator[JobResult]:
        """Trains ``jobs``; calls ``on_start(job)`` before a job's first row (again if the
        job starts over elsewhere) and ``on_rows(rows)`` as epochs end, on the caller's
        thread; yields each job's result as it ends."""
        ...

    def close(self) -> None:
        ...


class InProcessExecutor:
    """Trains a population in this process with the population engine."""

    reports_completion = False

    def __init__(self):
        self._data = {}

    @property
    def data(self):
        """The data preloaded last (None before)."""
        return next(iter(self._data.values()), None)

    def shards(self, population: PopulationSpec) -> list[PopulationSpec]:
        return [population]

    def preload(self, spec: StudySpec, data) -> None:
        """Uses ``data`` (already loaded and checked) for ``spec``'s jobs."""
        self._data = {spec.data: data}

    def run(self, jobs, populations, on_rows, on_start, progress_factory=None):
        for index, job in jobs:
            progress = progress_factory(index, populations, len(job.population.runs)) \
                if progress_factory else None
            on_start(job)
            try:
                result = self.train(job, on_epoch=on_rows, progress=progress)
            except Exception as error:  # the driver retries its runs to find the failing ones
                result = error
            finally:
                if progress is not None and hasattr(progress, "close"):
                    progress.close()
            yield index, job, result

    def close(self) -> None:
        pass

    def _load(self, spec: StudySpec):
        from reglab.study.build import load_study_data

        key = spec.data
        if key not in self._data:
            self._data = {key: load_study_data(spec)}
        return self._data[key]

    def train(self, job: PopulationJob, on_epoch: Callable[[EpochRows], None] | None = None,
              progress: Any = None) -> list[RunOutcome]:
        from reglab.engine import Population
        from reglab.study.build import population_members
        from reglab.study.metrics import final_metrics, first_kernel

        spec, runs = job.spec, job.population.runs
        data = self._load(spec)
        members, augment, images = population_members(spec, job.population, data)

        def shaped(x):
            return None if x is None or not images else x.reshape(len(x), *data.image_shape)
        x_fit = shaped(data.x_train) if images else data.x_train
        x_val = shaped(data.x_val) if images else data.x_val
        x_test = shaped(data.x_test) if images else data.x_test
        # A study owns its process: glibc may keep freed memory for the next step.
        population = Population(members, loss=spec.training.loss,
                                metrics=spec.training.metrics, device=job.device,
                                keep_freed_memory=True)
        started = time.perf_counter()
        saved = checkpoints.load(job.checkpoint, [run.run_id for run in runs], job.device)
        observer = _EpochObserver(runs, on_epoch, progress, spec.training.epochs,
                                  job.checkpoint, saved["rows"] if saved else [])
        result = population.fit(
            x_fit, data.y_train, batch_size=spec.training.batch_size, epochs=spec.training.epochs,
            validation_data=None if x_val is None else (x_val, data.y_val), augment=augment,
            observers=[observer], resume=saved["population"] if saved else None)
        metrics = final_metrics(population, data, x_fit, x_val, x_test)
        wall = time.perf_counter() - started
        return [RunOutcome(run.run_id, m.status, m.epochs_run, m.best_epoch, m.stopped_epoch,
                           metrics[i], wall / len(runs), kernel=first_kernel(population, i))
                for i, (run, m) in enumerate(zip(runs, result.members))]


class _EpochObserver:
    """Hands each epoch's logs to the driver, and tells the progress display."""

    def __init__(self, runs, on_epoch, progress, epochs, checkpoint=None, rows=()):
        self.runs, self.on_epoch, self.progress, self.epochs = runs, on_epoch, progress, epochs
        self.checkpoint = checkpoint
        #: every epoch row of this job so far (a resumed job's come from its checkpoint)
        self.rows: EpochRows = list(rows)

    def on_train_begin(self, population):
        self.population = population
        if self.rows and self.on_epoch is not None:
            self.on_epoch(list(self.rows))  # the epochs before the checkpoint, once more

    def on_epoch_end(self, epoch, logs_by_member):
        rows = [(self.runs[m].run_id, epoch, logs) for m, logs in logs_by_member.items()]
        self.rows.extend(rows)
        if self.on_epoch is not None:
            self.on_epoch(rows)
        if self.progress is not None:
            best = max((logs.get("val_accuracy", float("nan")) for logs in
                        logs_by_member.values()), default=float("nan"))
            self.progress(epoch + 1, self.epochs, len(logs_by_member), best)


    def on_epoch_complete(self, epoch):
        if self.checkpoint is not None:
            checkpoints.save(self.checkpoint, [run.run_id for run in self.runs],
                             self.population.checkpoint(), self.rows)


# ---- worker processes -------------------------------------------------------------------------

_WORKER: InProcessExecutor | None = None


def _die_with_parent() -> None:
    """Linux: the worker gets SIGKILL when the driver dies (a `kill -9` leaves no orphans)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _start_worker(threads: int, driver: int) -> None:
    global _WORKER
    _die_with_parent()
    if os.getppid() != driver:  # the driver died before the signal was armed
        os._exit(1)
    import torch

    torch.set_num_threads(threads)
    _WORKER = InProcessExecutor()


def _train_in_worker(job: PopulationJob) -> tuple[list[RunOutcome], EpochRows]:
    rows: EpochRows = []
    outcomes = _WORKER.train(job, on_epoch=rows.extend)
    return outcomes, rows


class ProcessPoolExecutor:
    """Trains jobs in ``workers`` processes (spawned), ``threads`` torch threads each.

    Args:
        workers: how many populations (or shards) train at once.
        threads: torch threads per worker; default: the CPUs divided among the workers.
    """

    def __init__(self, workers: int, threads: int | None = None):
        from reglab.errors import ConfigError

        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"ProcessPoolExecutor: 'workers' must be an int >= 1. "
                              f"Got {workers!r}.")
        self.workers = workers
        self.threads = threads or max(1, (os.cpu_count() or 1) // workers)
        self._pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker, initargs=(self.threads, os.getpid()))

    def shards(self, population: PopulationSpec) -> list[PopulationSpec]:
        """The population cut into ``workers`` shards of near-equal size, runs ordered by seed
        (so that members sharing a seed, which share batches and augmentation draws, mostly
        stay together; a seed split across shards draws its batches in each, identically)."""
        runs = sorted(population.runs, key=lambda run: run.seed)
        count = min(self.workers, len(runs))
        bounds = [round(i * len(runs) / count) for i in range(count + 1)]
        return [PopulationSpec(population.key, tuple(runs[lo:hi]))
                for lo, hi in zip(bounds[:-1], bounds[1:])]

    reports_completion = True
    data = None  # workers load the data themselves

    def preload(self, spec: StudySpec, data) -> None:
        self.data = data  # for the driver's in-process retries; workers load their own

    def run(self, jobs, populations, on_rows, on_start, progress_factory=None):
        """Submits every job (largest first); a job's rows arrive when it returns."""
        from reglab.errors import ReglabError

        futures = {}
        for index, job in sorted(jobs, key=lambda item: -len(item[1].population.runs)):
            futures[self.submit(job)] = (index, job)
        for future in concurrent.futures.as_completed(futures):
            index, job = futures[future]
            try:
                outcomes, rows = future.result()
            except concurrent.futures.process.BrokenProcessPool as error:
                # A worker died (killed, out of memory, crashed): its job and every job still
                # queued stay unfinished, to train again on the next run of the same command.
                raise ReglabError(
                    f"a worker process died ({error}); the finished runs are saved and the "
                    "others go on when the same command runs again (with fewer --workers "
                    "if memory ran out).") from error
            except Exception as error:
                yield index, job, error
            else:
                on_start(job)
                on_rows(rows)
                yield index, job, outcomes

    def submit(self, job: PopulationJob) -> concurrent.futures.Future:
        """A future of the job's ``(outcomes, epoch rows)``."""
        return self._pool.submit(_train_in_worker, job)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
