"""Executors: what trains a population and hands its records back to the driver.

An executor never touches the store; the driver (:func:`reglab.study.runner.run_study`)
writes everything. Two kinds:

* :class:`InProcessExecutor` trains one population at a time in this process and reports
  each epoch as it ends (``train``).
* :class:`ProcessPoolExecutor` trains several jobs at once in worker processes, one torch
  thread pool each (``submit`` returns a future of the job's outcomes and epoch rows), and
  cuts each population into one shard per worker so that the workers stay busy. Members are
  independent inside a population, so a shard trains each member as the whole population
  would (the engine's per-member results do not depend on the other members, and random
  streams are keyed by seed, not by position).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import os
import time
from collections.abc import Callable
from typing import Any

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


class InProcessExecutor:
    """Trains a population in this process with the population engine."""

    def __init__(self):
        self._data = {}

    def preload(self, spec: StudySpec, data) -> None:
        """Uses ``data`` (already loaded and checked) for ``spec``'s jobs."""
        self._data = {spec.data: data}

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

    def submit(self, job: PopulationJob) -> concurrent.futures.Future:
        return self._pool.submit(_train_in_worker, job)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
