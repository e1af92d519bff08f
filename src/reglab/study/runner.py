"""Running a study: plan, train each population, record every epoch, resume after a kill.

The driver owns the store; an executor (:mod:`reglab.study.executors`) trains a
population and hands back its records. In process, each epoch is recorded as it ends;
with worker processes, a job's epochs are recorded when it returns. Either way every job
checkpoints after each epoch (:mod:`reglab.study.checkpoints`), so a kill loses at most
the epoch in progress: the rerun of the same command goes on from there.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import sqlite3
import time
from pathlib import Path

from reglab.errors import ConfigError, ReglabError
from reglab.storage.records import FINISHED
from reglab.study import checkpoints, extension, precision
from reglab.study.executors import (
    Executor,
    InProcessExecutor,
    PopulationJob,
    RunOutcome,
    failed_outcomes,
)
from reglab.study.plan import PopulationSpec, StudyPlan, plan_study
from reglab.study.spec import MAX_EPOCHS, MAX_SEEDS, StudySpec, StudySpecError, parse_study
from reglab.utils import interrupts

__all__ = ["InProcessExecutor", "prepare_study", "run_study"]


def first_seeds(listed: tuple[int, ...], count: int) -> tuple[int, ...]:
    """``--seeds count`` over the file's seeds: its first ``count``, then (where it lists
    fewer) the smallest seeds it does not list; ``seeds = 5`` lists 0..4, so ``--seeds 3``
    gives 0, 1, 2 and ``--seeds 7`` 0..6."""
    chosen = list(listed[:count])
    taken, candidate = set(chosen), 0
    while len(chosen) < count:
        if candidate not in taken:
            chosen.append(candidate)
            taken.add(candidate)
        candidate += 1
    return tuple(chosen)


def _with_overrides(spec: StudySpec, seeds: int | None, epochs: int | None) -> StudySpec:
    for name, value, largest in (("seeds", seeds, MAX_SEEDS), ("epochs", epochs, MAX_EPOCHS)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or not 1 <= value <= largest):  # as the CLI's options
            raise StudySpecError(spec.source or spec.name, [
                f"--{name} {value!r}: expected an int in [1, {largest:,}]."])
    if seeds is not None and spec.tune is not None:  # the confirmation's fresh seeds
        tune = dataclasses.replace(spec.tune, confirm_seeds=seeds)
        spec = dataclasses.replace(spec, tune=tune, seeds=tune.fresh_seeds)
    elif seeds is not None:
        spec = dataclasses.replace(spec, seeds=first_seeds(spec.seeds, seeds))
    if epochs is not None:
        spec = dataclasses.replace(spec, training=dataclasses.replace(spec.training,
                                                                      epochs=epochs))
        tune = spec.tune
        if tune is not None and tune.model_epochs is not None and \
                tune.model_epochs < tune.seeds * epochs:  # the file's check, at these epochs
            raise StudySpecError(spec.source or spec.name, [
                f"--epochs {epochs}: one trial takes {tune.seeds} seed(s) × {epochs} epochs = "
                f"{tune.seeds * epochs} model-epochs, more than the budget "
                f"tune.model_epochs = {tune.model_epochs}: no trial could run. Expected at "
                f"most {tune.model_epochs // tune.seeds} epochs, or a larger budget."])
        if tune is not None and tune.pruner_warmup is not None and tune.pruner_warmup >= epochs:
            raise StudySpecError(spec.source or spec.name, [
                f"--epochs {epochs}: tune.pruner_warmup = {tune.pruner_warmup} leaves no "
                f"epoch after which a trial may be pruned. Expected more than "
                f"{tune.pruner_warmup} epochs."])
    return spec


def prepare_study(study_file: str | Path, seeds: int | None = None,
                  epochs: int | None = None) -> StudyPlan:
    """Parses and plans; the command-line overrides become part of the study. A tuning
    study's plan holds each candidate variant at the ends of its ranges: what is built and
    checked before tuning starts."""
    spec = _with_overrides(parse_study(study_file), seeds, epochs)
    if spec.tune is not None:
        from reglab.tune.space import corner_plan

        return corner_plan(spec)
    return plan_study(spec)


def check_executor(study_file, plan: StudyPlan, elsewhere: bool) -> None:
    """Refuses to train a tuning study on worker processes or a cluster (``elsewhere``),
    before any is started or reached."""
    if plan.spec.tune is not None and elsewhere:
        raise ConfigError(f"{study_file}: a tuning study ([tune]) trains its trials in this "
                          "process, a population at a time; --workers and --cluster are for "
                          "grid studies. Run it without them.")


def run_study(study_file: str | Path, out: str | Path, seeds: int | None = None,
              epochs: int | None = None, device: str = "cpu", restart: bool = False,
              executor=None, progress_factory=None, log=print):
    """Runs (or resumes) a study into ``out``; returns the store.

    ``executor``: any :class:`~reglab.study.executors.Executor`: the
    :class:`~reglab.study.executors.InProcessExecutor` (the default: one population at a
    time), or a :class:`~reglab.study.dask_executor.DaskExecutor` (a local cluster of
    worker processes, or a cluster at an address); the caller closes it.
    """
    from reglab.storage import SQLiteStore, StudyLock
    from reglab.study.build import check_study

    if device == "cuda" and getattr(executor, "trains_here", True):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("--device cuda: torch sees no CUDA device here (torch "
                              f"{torch.__version__}, built {'with' if torch.version.cuda else 'without'}"
                              " CUDA). Run on the CPU (the default) or on a machine with a GPU.")
    plan = prepare_study(study_file, seeds, epochs)
    check_executor(study_file, plan,
                   not isinstance(executor, (InProcessExecutor, type(None))))
    data = check_study(plan)  # what can fail before training fails here, once
    # the lock first: the store is created, probed and opened by its one writer only
    SQLiteStore.make_directory(Path(out))
    lock = StudyLock(out).acquire()
    try:
        store = SQLiteStore(out)
    except BaseException:
        lock.release()
        raise
    try:
        with interrupts.noted():  # Ctrl-C stays Ctrl-C (reglab/utils/interrupts.py)
            return _run_locked(study_file, plan, data, store, device, restart, executor,
                               progress_factory, log)
    except BaseException:
        store.close()
        raise
    finally:
        lock.release()


def _run_locked(study_file, plan: StudyPlan, data, store, device, restart, executor,
                progress_factory, log):
    spec = plan.spec
    counts = store.run_counts() if restart else {}
    if counts:
        log(f"--restart: deleting the {sum(counts.values())} runs stored in "
            f"{store.directory} ({sum(counts.get(s, 0) for s in FINISHED)} finished) and "
            "starting over")
    canonical = spec.canonical_json()
    added: list[extension.Extension] = []

    def grows(stored) -> bool:  # more seeds, variants or points: the stored runs stay
        found = extension.extension(stored, json.loads(canonical))
        added.extend([found] if found else [])
        return found is not None

    try:
        fresh = store.init_study(spec.fingerprint(), canonical, restart=restart,
                                 resumable=spec.resumable_keys(),
                                 grows=grows if spec.tune is None else None)
    except ConfigError:
        _explain_refusal(store, spec, canonical)
        raise
    if added:
        finished = sum(store.run_counts().get(status, 0) for status in FINISHED)
        log((f"extending the study: it adds {added[0].describe()}" if added[0].adds else
             "resuming the study with its seeds or variants in another order")
            + (f"; the {finished} finished runs stored are kept" if finished else ""))
    if fresh:
        checkpoints.remove_all_but(store.directory, set())  # a fresh study: none of its own
    if fresh and counts:  # started over: the old study's report goes with its runs
        from reglab.report import remove_report

        remove_report(store.directory)
    # Interrupted runs lose their epoch rows here; a job that resumes from its checkpoint
    # records them again (the checkpoint holds them), then goes on.
    interrupted = store.reset_unfinished()
    if interrupted:
        log(f"resuming: {len(interrupted)} interrupted runs")
    import torch

    store.set_meta("versions", {"python": platform.python_version(), "torch": torch.__version__,
                                "reglab": __import__("reglab").__version__})
    store.set_meta("device", device)
    _note_threads(store, executor, device, fresh, log)
    chosen = precision.resolve(spec.training.precision,
                               None if fresh else store.get_meta("precision"), device,
                               getattr(executor, "choose_precision", None))
    if chosen is not None:  # "auto": the study trains in the precision chosen, recorded
        log(f"precision auto: {chosen.precision} ({chosen.reason})")
        if chosen.measured:
            store.set_meta("precision_reason", chosen.reason)
        spec = precision.with_precision(spec, chosen.precision)
        plan = dataclasses.replace(plan, spec=spec)
        note = precision.widened_note(chosen.precision) if device == "cpu" and getattr(
            executor, "trains_here", True) else None
        if note:  # a choice kept from a start on another CPU
            log(note)
    store.set_meta("precision", spec.training.precision)
    store.set_meta("data_location", spec.data.location)
    store.set_meta("study_file", {"path": str(study_file), "text": Path(study_file).read_text()})
    executor = executor or InProcessExecutor()
    executor.preload(spec, data)
    if spec.tune is None:
        train_plan(store, plan, executor, device, progress_factory, log)
    else:
        from reglab.tune.runner import tune_study

        tune_study(store, spec, data, device, fresh, log, confirm=lambda confirmation:
                   train_plan(store, confirmation, executor, device, progress_factory, log))
    return store


def _explain_refusal(store, spec: StudySpec, canonical: str) -> None:
    """Says why a study near the stored one is another study, rather than only what
    changed: it would have grown the stored one but for a study-wide key (a new variant's
    MixUp, say), or the stored one is this study grown (a study run once with more seeds,
    say by a mistyped ``--seeds``), and how to go on then."""
    try:
        stored = store.study()
    except ReglabError:  # a damaged record: the store's own refusal says it
        return
    if stored is None or spec.tune is not None:
        return
    new = json.loads(canonical)
    reshaped = extension.reshaping(stored[1], new)
    if reshaped and extension.extension(stored[1], new, study_wide=False) is not None:
        raise ConfigError(
            f"{store.directory}: holds this study without {', '.join(reshaped)}, which every "
            "run of a study takes once a variant sets it (at 0 where its variant has none): "
            "the runs stored were trained otherwise, so this is another study. Run with "
            "--restart to start over, or use another --out directory.")
    back = extension.extension(new, stored[1])
    if back is not None:
        raise ConfigError(
            f"{store.directory}: holds this study grown by {back.describe()} (run with "
            "another study file or --seeds). Run that study again to go on from its runs, "
            "or --restart to start over with this one (deleting them), or use another "
            "--out directory.")


def _note_threads(store, executor, device: str, fresh: bool, log) -> None:
    """Records the torch threads each job trains with on the CPU (meta ``threads``); says
    so when a resumed study goes on with another count: its float32 sums may then be cut
    otherwise, and the runs trained from now differ from an uninterrupted study's in their
    last bits (the finished ones stay as they are)."""
    if device != "cpu":
        return
    import torch

    threads = getattr(executor, "threads", None) or torch.get_num_threads()
    before = None if fresh else store.get_meta("threads")
    counts = store.run_counts()
    finished = sum(counts.get(status, 0) for status in FINISHED)
    # trained already: a finished run, or a checkpoint of runs in progress (they go on)
    trained = finished > 0 or checkpoints.any_held(store.directory)
    if before is not None and before != threads and trained and \
            finished < sum(counts.values()):
        log(f"note: the study trained with {before} torch thread(s) per job and goes on with "
            f"{threads}: the runs trained from now may differ from an uninterrupted study's "
            "in their last bits (bit for bit needs the same thread count; OMP_NUM_THREADS "
            "or --workers set it)")
    store.set_meta("threads", threads)


def train_plan(store, plan: StudyPlan, executor: Executor, device: str, progress_factory,
               log) -> None:
    """Adds the plan's runs to the store (those already there are kept) and trains those not
    finished, each job going on from its checkpoint when it has one."""
    from reglab.storage import FINISHED, RunRecord

    spec = plan.spec
    population_of = {run.run_id: population.key
                     for population in plan.populations for run in population.runs}
    population_of.update({twin: population_of[run] for twin, run in plan.twins.items()})
    store.add_runs([RunRecord(run.run_id, run.variant, dict(run.point), run.seed,
                              population_of[run.run_id], run.changes, regime=dict(run.regime))
                    for run in plan.runs])  # in the study file's order
    # A twin takes its run's results (here those a killed study finished before it could),
    # and a run takes a stored twin's (a grown study's new run that repeats a stored one)
    done = {r.run_id for r in store.runs(status=FINISHED)}
    if plan.twins:
        done.update(store.finish_as_copies(plan.twins))
        done.update(store.finish_as_copies({run: twin for twin, run in plan.twins.items()
                                            if twin in done and run not in done}))
    jobs = []  # (population index, job)
    for index, shard in _cut(store, plan, executor, device, done):
        jobs.append((index, PopulationJob(spec, shard, device, checkpoints.path_for(
            store.directory, shard.key, [run.run_id for run in shard.runs]))))
    checkpoints.remove_all_but(store.directory, {job.checkpoint for _, job in jobs})
    found = [job for _, job in jobs if Path(job.checkpoint).is_file()]
    resumable = [job for job in found if checkpoints.readable(job.checkpoint)]
    if resumable:
        log(f"resuming: {len(resumable)} population(s) go on from their last complete epoch")
    if len(found) > len(resumable):
        log(f"resuming: {len(found) - len(resumable)} checkpoint(s) cannot be read (damaged): "
            "those populations start again from their first epoch")
    _run_jobs(store, executor, jobs, len(plan.populations), progress_factory, log, plan.twins)
    checkpoints.remove_all_but(store.directory, set())  # every job is over


def _cut(store, plan: StudyPlan, executor: Executor, device: str,
         done: set[str]) -> list[tuple[int, PopulationSpec]]:
    """The shards of the runs not ``done``, in population order: a shard with a checkpoint
    in the study directory (a killed study's job) goes on as it was cut; the executor cuts
    the rest for the whole study (so a resume whose other pending runs would be cut
    otherwise loses no job's progress)."""
    held = checkpoints.held(store.directory)
    kept, rest = [], []  # (population index, population or shard)
    for index, population in enumerate(plan.populations):
        left = {run.run_id: run for run in population.runs if run.run_id not in done}
        for path, run_ids in held.items():
            if all(run_id in left for run_id in run_ids) and \
                    path == checkpoints.path_for(store.directory, population.key, run_ids):
                kept.append((index, PopulationSpec(population.key,
                                                   tuple(left.pop(r) for r in run_ids))))
        if left:
            rest.append((index, dataclasses.replace(population, runs=tuple(
                run for run in population.runs if run.run_id in left))))
    parts = [part for _, part in kept + rest]
    cut = executor.shards(parts, device, whole=[True] * len(kept) + [False] * len(rest))
    shards = [(index, shard) for (index, _), pieces in zip(kept + rest, cut)
              for shard in pieces]
    return sorted(shards, key=lambda item: item[0])  # stable: kept shards first


def _run_jobs(store, executor: Executor, jobs, populations: int, progress_factory, log,
              twins: dict[str, str] | None = None) -> None:
    """Hands every job to the executor and stores what comes back: epoch rows as they end,
    each job's outcomes when it ends (and its runs' ``twins``' copies of them); a job that
    raised has its runs retried here, in halves, to find those that fail by themselves."""
    # a job's runs are marked running when it starts (on_start), queued until then
    def restarted(job: PopulationJob) -> None:
        """A job (re)starts: its runs keep no rows from an attempt before (a worker that died)."""
        ids = [run.run_id for run in job.population.runs]
        store.reset_unfinished(ids)
        store.mark_running(ids)

    # jobs that raised are retried in this process (by the executor itself when it is one)
    retry = executor if isinstance(executor, InProcessExecutor) else None
    try:
        for index, job, result in executor.run(jobs, populations, on_rows=store.record_epochs,
                                               on_start=restarted,
                                               progress_factory=progress_factory):
            _store_result(store, executor, retry, index, job, result, populations, log)
            if twins:
                ids = {run.run_id for run in job.population.runs}
                store.finish_as_copies({twin: run for twin, run in twins.items() if run in ids})
    except ReglabError:
        # The executor cannot go on (a worker process died, the cluster went away): the
        # unfinished runs wait, queued, for the next run of the same command.
        store.reset_unfinished()
        raise


def _store_result(store, executor, retry, index, job, result, populations, log) -> None:
    if isinstance(result, BaseException):
        if retry is None:
            retry = InProcessExecutor()
            retry.preload(job.spec, executor.data)
        started = time.perf_counter()
        outcomes = _bisect_failure(store, retry, job, result, index, log)
        wall = time.perf_counter() - started
    else:
        outcomes = result
        wall = sum(o.wall_time for o in outcomes)
    _finish(store, job, outcomes, wall)
    if executor.reports_completion:
        log(f"population {index + 1}/{populations}: {len(job.population.runs)} runs done")


def _bisect_failure(store, executor, job: PopulationJob, error: BaseException, index: int,
                    log) -> list[RunOutcome]:
    """A population raised: its runs train again in halves until each failing run is alone,
    so that only runs that fail by themselves are recorded as failed (members are
    independent, so a run trains the same in a smaller population)."""
    if isinstance(error, (sqlite3.Error, OSError)):
        # the store or the disk failed (full, gone, read-only), not the runs: retrying would
        # not help, and the runs stop unrecorded, as a kill leaves them, to go on next time
        raise error
    runs = job.population.runs
    if len(runs) == 1 or isinstance(error, ReglabError):
        # One run, or an error of the configuration or the data (reglab's own errors), which
        # does not depend on which runs train together: the runs fail once, as they are.
        store.reset_unfinished([run.run_id for run in runs])  # no partial epochs kept
        return _failed(job, error, index, log)
    log(f"population {index + 1}: {type(error).__name__}: {error}; retrying its {len(runs)} "
        "runs in halves to find the failing ones")
    store.reset_unfinished([run.run_id for run in runs])
    outcomes = []
    for half in (runs[: len(runs) // 2], runs[len(runs) // 2:]):
        part = PopulationJob(job.spec, dataclasses.replace(job.population, runs=half),
                             job.device)
        store.mark_running([run.run_id for run in half])
        try:
            outcomes += executor.train(part, on_epoch=store.record_epochs)
        except Exception as part_error:
            interrupts.reraise_if_interrupted(part_error)
            outcomes += _bisect_failure(store, executor, part, part_error, index, log)
    return outcomes


def _failed(job: PopulationJob, error: BaseException, index: int, log) -> list[RunOutcome]:
    log(f"population {index + 1} failed: {type(error).__name__}: {error}")
    return failed_outcomes(job, error)


def _finish(store, job: PopulationJob, outcomes: list[RunOutcome], wall: float) -> None:
    """Writes a job's outcomes (one transaction) and adds its wall time to its population's;
    the job's checkpoint is then of no more use."""
    records = {r.run_id: r for r in store.runs()}
    store.finish_runs([dataclasses.replace(
        records[o.run_id], status=o.status, best_epoch=o.best_epoch,
        stopped_epoch=o.stopped_epoch, epochs_run=o.epochs_run, metrics=o.metrics,
        wall_time=o.wall_time, error=o.error) for o in outcomes],
        kernels={o.run_id: o.kernel for o in outcomes if o.kernel is not None})
    walls = store.get_meta("population_wall_time", {}) or {}
    walls[job.population.key] = walls.get(job.population.key, 0.0) + wall
    store.set_meta("population_wall_time", walls)
    checkpoints.remove(job.checkpoint)
