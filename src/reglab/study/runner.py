"""Running a study: plan, train each population, record every epoch, resume after a kill.

The driver owns the store; an executor trains one population and hands back its
records (the in-process executor also reports each epoch as it ends, so that a kill
loses at most the epochs of the population in training, which restarts from its start).
"""

from __future__ import annotations

import dataclasses
import platform
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reglab.study.plan import PopulationSpec, StudyPlan, plan_study
from reglab.study.spec import StudySpec, parse_study

EpochRows = list[tuple[str, int, dict]]


@dataclasses.dataclass
class PopulationJob:
    spec: StudySpec
    population: PopulationSpec
    device: str = "cpu"


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
        population = Population(members, loss=spec.training.loss,
                                metrics=spec.training.metrics, device=job.device)
        started = time.perf_counter()
        observer = _EpochObserver(runs, on_epoch, progress, spec.training.epochs)
        result = population.fit(
            x_fit, data.y_train, batch_size=spec.training.batch_size, epochs=spec.training.epochs,
            validation_data=None if x_val is None else (x_val, data.y_val), augment=augment,
            observers=[observer])
        metrics = final_metrics(population, data, x_fit, x_val, x_test)
        wall = time.perf_counter() - started
        return [RunOutcome(run.run_id, m.status, m.epochs_run, m.best_epoch, m.stopped_epoch,
                           metrics[i], wall / len(runs), kernel=first_kernel(population, i))
                for i, (run, m) in enumerate(zip(runs, result.members))]


class _EpochObserver:
    """Hands each epoch's logs to the driver, and tells the progress display."""

    def __init__(self, runs, on_epoch, progress, epochs):
        self.runs, self.on_epoch, self.progress, self.epochs = runs, on_epoch, progress, epochs

    def on_train_begin(self, population):
        self.population = population

    def on_epoch_end(self, epoch, logs_by_member):
        rows = [(self.runs[m].run_id, epoch, logs) for m, logs in logs_by_member.items()]
        if self.on_epoch is not None:
            self.on_epoch(rows)
        if self.progress is not None:
            best = max((logs.get("val_accuracy", float("nan")) for logs in
                        logs_by_member.values()), default=float("nan"))
            self.progress(epoch + 1, self.epochs, len(logs_by_member), best)


def _with_overrides(spec: StudySpec, seeds: int | None, epochs: int | None) -> StudySpec:
    if seeds is not None:
        spec = dataclasses.replace(spec, seeds=tuple(range(seeds)))
    if epochs is not None:
        spec = dataclasses.replace(spec, training=dataclasses.replace(spec.training,
                                                                      epochs=epochs))
    return spec


def prepare_study(study_file: str | Path, seeds: int | None = None,
                  epochs: int | None = None) -> StudyPlan:
    """Parses and plans; the command-line overrides become part of the study."""
    return plan_study(_with_overrides(parse_study(study_file), seeds, epochs))


def run_study(study_file: str | Path, out: str | Path, seeds: int | None = None,
              epochs: int | None = None, device: str = "cpu", restart: bool = False,
              executor=None, progress_factory=None, log=print):
    """Runs (or resumes) a study into ``out``; returns the store."""
    from reglab.storage import RunRecord, SQLiteStore

    plan = prepare_study(study_file, seeds, epochs)
    spec = plan.spec
    store = SQLiteStore(out)
    store.init_study(spec.fingerprint(), spec.canonical_json(), restart=restart)
    store.add_runs([RunRecord(run.run_id, run.variant, dict(run.point), run.seed, population.key,
                              run.changes)
                    for population in plan.populations for run in population.runs])
    interrupted = store.reset_unfinished()
    if interrupted:
        log(f"resuming: {len(interrupted)} interrupted runs restart from their start")
    import torch

    store.set_meta("versions", {"python": platform.python_version(), "torch": torch.__version__,
                                "reglab": __import__("reglab").__version__})
    store.set_meta("device", device)
    store.set_meta("study_file", {"path": str(study_file), "text": Path(study_file).read_text()})
    executor = executor or InProcessExecutor()
    done = {r.run_id for r in store.runs(status=("done", "stopped_early", "diverged", "failed"))}
    for index, population in enumerate(plan.populations):
        pending = tuple(run for run in population.runs if run.run_id not in done)
        if not pending:
            continue
        job = PopulationJob(spec, dataclasses.replace(population, runs=pending), device)
        store.mark_running([run.run_id for run in pending])
        progress = progress_factory(index, len(plan.populations), len(pending)) \
            if progress_factory else None
        started = time.perf_counter()
        try:
            outcomes = executor.train(job, on_epoch=store.record_epochs, progress=progress)
        except Exception as error:  # a failed population: its runs are recorded as failed
            message = f"{type(error).__name__}: {error}"
            log(f"population {index + 1} failed: {message}")
            outcomes = [RunOutcome(run.run_id, "failed", 0, None, None, {}, 0.0,
                                   message + "\n" + traceback.format_exc(limit=5))
                        for run in pending]
        finally:
            if progress is not None and hasattr(progress, "close"):
                progress.close()
        records = {r.run_id: r for r in store.runs()}
        store.finish_runs([dataclasses.replace(
            records[o.run_id], status=o.status, best_epoch=o.best_epoch,
            stopped_epoch=o.stopped_epoch, epochs_run=o.epochs_run, metrics=o.metrics,
            wall_time=o.wall_time, error=o.error) for o in outcomes],
            kernels={o.run_id: o.kernel for o in outcomes if o.kernel is not None})
        walls = store.get_meta("population_wall_time", {}) or {}
        walls[population.key] = time.perf_counter() - started
        store.set_meta("population_wall_time", walls)
    return store
