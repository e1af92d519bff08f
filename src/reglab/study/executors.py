r"""Executors: what trains a population and hands its records back to the driver.

An executor never touches the store; the driver (:func:`reglab.study.runner.run_study`)
writes everything. Every executor follows one protocol, :class:`Executor`: it cuts a
population into jobs (``shards``), takes the study's data once (``preload``), and ``run``\ s
a list of jobs, calling back on the driver's thread when a job (re)starts and as epochs end,
and yielding each job's outcomes (or the exception it raised) as it ends. Two kinds:

* :class:`InProcessExecutor` trains one population at a time in this process; epochs are
  reported as they end.
* :class:`reglab.study.dask_executor.DaskExecutor` trains several jobs at once on a Dask
  cluster (a local one of ``--workers`` processes, or one at an address), the study's
  populations cut into shards so that the workers stay busy (:mod:`reglab.study.sharding`);
  epochs are streamed to the driver as they end.

Members are independent inside a population, so a shard trains each member as the whole
population would (the engine's per-member results do not depend on the other members, and
random streams are keyed by seed, not by position).
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from reglab.study import checkpoints
from reglab.study.plan import PopulationSpec
from reglab.study.spec import StudySpec
from reglab.utils import interrupts

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


def failed_outcomes(job: PopulationJob, error: BaseException) -> list[RunOutcome]:
    """Every run of ``job`` failed with ``error`` (its message and a short traceback)."""
    import traceback

    message = f"{type(error).__name__}: {error}"
    detail = "".join(traceback.format_exception(error, limit=5))
    return [RunOutcome(run.run_id, "failed", 0, None, None, {}, 0.0, message + "\n" + detail)
            for run in job.population.runs]


#: ``(population index, job)``: what the driver hands an executor
IndexedJob = tuple[int, "PopulationJob"]
#: what ``Executor.run`` yields as each job ends: its outcomes, or the exception it raised
JobResult = tuple[int, "PopulationJob", "list[RunOutcome] | BaseException"]


class Executor(Protocol):
    """What the driver needs of an executor."""

    #: whether the driver should log each job's end (the in-process executor shows
    #: progress bars instead)
    reports_completion: bool

    def shards(self, populations: Sequence[PopulationSpec], device: str = "cpu",
               whole: Sequence[bool] | None = None) -> list[list[PopulationSpec]]:
        """The jobs each of a study's populations (or parts of one: what it still has to
        train) is cut into, its runs in seed order, to train on ``device``; a part marked
        ``whole`` (a killed job with a checkpoint) is one job as it is."""
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

    def shards(self, populations: Sequence[PopulationSpec], device: str = "cpu",
               whole: Sequence[bool] | None = None) -> list[list[PopulationSpec]]:
        return [[population] for population in populations]

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
                interrupts.reraise_if_interrupted(error)  # unless it was Ctrl-C, transformed
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
        from reglab.study.build import population_data, population_members
        from reglab.study.metrics import final_metrics, first_kernel

        spec, runs = job.spec, job.population.runs
        # the population's data regime: its training subset and labels (the data loaded
        # for the study, unchanged, without one)
        data, facts = population_data(spec, job.population, self._load(spec))
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
        study = spec.job_fingerprint([run.changes for run in runs])
        # (a checkpoint of a reglab from before job fingerprints names the study's work)
        saved = checkpoints.load(job.checkpoint, [run.run_id for run in runs], job.device,
                                 (study, spec.work_fingerprint()))
        observer = _EpochObserver(runs, on_epoch, progress, spec.training.epochs,
                                  job.checkpoint, saved["rows"] if saved else [], study)
        observers = [observer]
        schedules = {i: run.changes["schedule"] for i, run in enumerate(runs)
                     if run.changes.get("schedule")}
        if schedules:  # a population-based training's schedule, confirmed on fresh seeds
            from reglab.tune.pbt import ScheduleObserver

            observers.insert(0, ScheduleObserver(schedules))
        result = population.fit(
            x_fit, data.y_train, batch_size=spec.training.batch_size, epochs=spec.training.epochs,
            validation_data=None if x_val is None else (x_val, data.y_val), augment=augment,
            observers=observers, resume=saved["population"] if saved else None)
        metrics = final_metrics(population, data, x_fit, x_val, x_test)
        for member, values in metrics.items():
            values.update(facts[member])
        wall = time.perf_counter() - started
        return [RunOutcome(run.run_id, m.status, m.epochs_run, m.best_epoch, m.stopped_epoch,
                           metrics[i], wall / len(runs), kernel=first_kernel(population, i))
                for i, (run, m) in enumerate(zip(runs, result.members))]


class _EpochObserver:
    """Hands each epoch's logs to the driver, and tells the progress display."""

    def __init__(self, runs, on_epoch, progress, epochs, checkpoint=None, rows=(), study=""):
        self.runs, self.on_epoch, self.progress, self.epochs = runs, on_epoch, progress, epochs
        self.checkpoint, self.study = checkpoint, study
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
        if self.checkpoint is None:
            return
        try:
            checkpoints.save(self.checkpoint, [run.run_id for run in self.runs],
                             self.population.checkpoint(), self.rows, self.study)
        except OSError as error:  # the runs are not at fault: train on without checkpoints
            warnings.warn(f"cannot write the checkpoint {self.checkpoint} ({error}); this "
                          "population trains on without checkpoints (a kill would restart "
                          "it from its beginning).", stacklevel=2)
            self.checkpoint = None
