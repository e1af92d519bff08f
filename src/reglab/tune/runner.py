"""Tuning a study with Optuna, a population of trials at a time, then confirming the best.

1. Optuna's study lives in the study directory as a journal file (``optuna.journal``,
   Optuna's :class:`~optuna.storages.journal.JournalFileBackend`, safe under concurrent
   writers). Trials are asked in batches and trained together
   (:mod:`reglab.tune.trainer`); every trial's runs are runs of ``study.db`` like any other
   (named ``trial=N/...``), with their epochs.
2. A kill loses only the trials in progress: the rerun of the same command tells Optuna the
   trials whose runs the store had finished, trains the others again with the parameters
   they were given (nothing is asked twice), and goes on asking until the budget is spent.
3. The best trial is chosen on validation (or by the 1-SE rule), then confirmed: retrained
   on fresh seeds beside the baseline, with the paired verdict on test (the study's usual
   table and report, over those runs).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

from reglab.errors import ConfigError
from reglab.storage import RunRecord
from reglab.study.plan import is_trial_run
from reglab.tune import space
from reglab.tune.selection import select
from reglab.tune.spec import MAX_SAMPLER_SEED, MAX_TRIALS
from reglab.tune.trainer import (
    PendingTrial,
    TrialOutcome,
    TrialPopulation,
    objective_key,
    objective_name,
    structure_of,
)

JOURNAL = "optuna.journal"
#: trials in a row drawn with values already tried after which the space counts as used up
MAX_REPEATS = 100
#: members per population the batch size aims at when ``[tune] batch`` is 0: the engine's
#: throughput per model levels off around this width on a CPU (benchmarks/population.py);
#: a GPU keeps gaining well beyond it
TARGET_MEMBERS = {"cpu": 48, "cuda": 256}
STUDY_NAME = "reglab"


def journal_path(directory) -> Path:
    return Path(directory) / JOURNAL


def open_study(spec, directory, fresh: bool):
    """Optuna's study of this tuning, in the study directory (a fresh study starts a fresh
    journal)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = journal_path(directory)
    if fresh and path.exists():
        path.unlink()
    # The journal's writers take its lock file, and a killed one leaves it behind (Optuna
    # would wait 30 s before breaking it). The study's own lock (storage/lock.py) is held:
    # no other writer can be running, so a lock file here is stale. (Readers take none.)
    Path(f"{path}.lock").unlink(missing_ok=True)
    storage = JournalStorage(JournalFileBackend(str(path)))
    asked = sum(s.n_trials for s in optuna.study.get_all_study_summaries(storage)
                if s.study_name == STUDY_NAME)
    return optuna.create_study(study_name=STUDY_NAME, storage=storage,
                               sampler=make_sampler(spec, asked), pruner=make_pruner(spec),
                               direction=spec.tune.direction, load_if_exists=True)


def make_sampler(spec, asked: int = 0):
    """Optuna's sampler, seeded with ``[tune] sampler_seed`` and, when the study is resumed,
    with the number of trials asked before: a resumed sampler does not replay the random
    draws it made before the kill (which would ask the first trials' values again). The
    seed is kept in numpy's RandomState range, [0, 2**32), which Optuna's samplers seed."""
    import optuna

    tune = spec.tune
    seed = tune.sampler_seed if asked == 0 else \
        (tune.sampler_seed * 1_000_003 + asked) % (MAX_SAMPLER_SEED + 1)
    if tune.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if tune.sampler == "cmaes":
        # parameters CMA-ES cannot model (categoricals, a variant's own ranges) are drawn
        # by its independent sampler, as Optuna does
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if tune.sampler == "grid":
        return _GridSampler(space.grid_space(spec), seed=seed)
    # TPE with the constant liar: the trials of a batch are asked before any is told
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def _grid_sampler_class():
    import optuna

    class GridSampler(optuna.samplers.GridSampler):
        """Optuna's grid sampler, without its ``study.stop()`` when the grid is used up
        (which only works inside ``study.optimize``; the budget stops the asking here)."""

        def after_trial(self, study, trial, state, values) -> None:
            pass

    return GridSampler


def _GridSampler(*args, **kwargs):  # noqa: N802 - a class made on first use (Optuna's import)
    return _grid_sampler_class()(*args, **kwargs)


def make_pruner(spec):
    import optuna

    pruner, warmup = spec.tune.pruner, spec.tune.pruner_warmup
    if pruner == "median":
        return optuna.pruners.MedianPruner(n_warmup_steps=warmup or 0)
    if pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=warmup or "auto")
    if pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=warmup or 1,
                                              max_resource=spec.training.epochs)
    return optuna.pruners.NopPruner()


def batch_size(spec, device: str, parameters: int) -> int:
    """Trials per population: ``[tune] batch``, else as many as fill :data:`TARGET_MEMBERS`
    members, fewer when the members' weights and optimizer state (about 5 copies of the
    parameters each) would pass 1 GiB."""
    if spec.tune.batch:
        return spec.tune.batch
    per_trial = spec.tune.seeds
    members = TARGET_MEMBERS.get(device, TARGET_MEMBERS["cpu"])
    by_memory = (1 << 30) // max(1, parameters * 4 * 5)
    return max(1, min(members, by_memory) // per_trial)


class Budget:
    """What is left of the budget: trials asked, model-epochs (trained by finished trials
    and reserved by running ones), seconds of tuning (over every run of the command)."""

    def __init__(self, spec, study, wall_before: float):
        self.tune, self.epochs = spec.tune, spec.training.epochs
        self.per_trial = spec.tune.seeds * spec.training.epochs
        self.asked = len(study.get_trials(deepcopy=False))
        self.used = sum(t.user_attrs.get("model_epochs", 0)
                        for t in study.get_trials(deepcopy=False) if t.state.is_finished())
        self.reserved = 0
        self.wall_before = wall_before
        self.started = time.perf_counter()
        if spec.tune.sampler == "grid":
            self.grid = space.grid_size(spec)
        else:
            self.grid = None

    @property
    def wall(self) -> float:
        return self.wall_before + time.perf_counter() - self.started

    def allows_another(self) -> bool:
        tune = self.tune
        if self.asked >= (tune.trials if tune.trials is not None else MAX_TRIALS):
            return False
        if self.grid is not None and self.asked >= self.grid:
            return False
        if tune.model_epochs is not None and \
                self.used + self.reserved + self.per_trial > tune.model_epochs:
            return False
        return not (tune.wall_time is not None and self.wall >= tune.wall_time)

    def take(self) -> None:
        self.asked += 1
        self.reserved += self.per_trial

    def resume(self) -> None:
        """A trial asked before (resumed) holds its reservation again."""
        self.reserved += self.per_trial

    def release(self, model_epochs: int) -> None:
        self.reserved -= self.per_trial
        self.used += model_epochs


def tune_study(store, spec, data, device: str, fresh: bool, log, confirm) -> None:
    """Runs (or resumes) the tuning of ``spec`` into ``store``, then ``confirm(plan)``s the
    chosen trial (the runner trains the plan like a grid study's)."""
    if not fresh and not journal_path(store.directory).is_file() and trial_records(store):
        from reglab.errors import StoreError

        raise StoreError(f"{journal_path(store.directory)}: the tuning's Optuna journal is "
                         "missing, but the store holds its trials' runs; without it the "
                         "tuning cannot go on (its trials would be asked again). Restore the "
                         "file, or start over with --restart.")
    data = trial_data(spec, data)
    study = open_study(spec, store.directory, fresh)
    if data.y_val is not None:
        study.set_user_attr("validation_samples", int(len(data.y_val)))
    tuner = _Tuner(spec, data, device, store, study, log)
    tuner.run()
    summary = tuner.summary()
    chosen = select(spec, study)
    pbt = spec.tune.scheduler == "pbt"  # its budget is part of what it computes
    limit = spec.tune.trials
    if limit is not None and summary["asked"] > limit and not pbt:
        log(f"tuning: {summary['asked']} trials were asked under an earlier, larger budget "
            f"(tune.trials = {limit} now); all are kept and chosen among")
    if chosen is None:
        store.set_meta("tuning", summary)
        if not summary["asked"]:
            raise ConfigError("tuning: no trial was asked: the budget (tune.wall_time "
                              f"{spec.tune.wall_time!r} s) was spent before the first, so "
                              "there is nothing to confirm. Raise it and run again"
                              + (" with --restart." if pbt else "."))
        raise ConfigError("tuning: no trial completed (every one was pruned, diverged or "
                          "failed), so there is nothing to confirm. `reglab ls` lists the "
                          "trials' runs; " + ("raise the budget or widen the ranges, then run "
                          "with --restart." if pbt else "raise the budget and run again, or "
                          "widen the ranges and run with --restart."))
    summary["chosen"] = chosen.as_dict()
    store.set_meta("tuning", summary)
    log(f"tuning: {summary['trials']['complete']} complete, {summary['trials']['pruned']} "
        f"pruned, {summary['trials'].get('diverged', 0)} diverged, "
        f"{summary['trials']['failed']} failed trials, "
        f"{summary['model_epochs']:,} model-epochs ({summary['pruning_saved']:,} saved by "
        f"pruning); chosen: trial {chosen.number} ({chosen.rule}), "
        f"{objective_name(spec.tune.objective)} "
        f"{chosen.value:.4f}, {chosen.label}")
    if data.y_test is None:  # the confirmation's table ranks on the test set
        summary["unconfirmed"] = "the data has no test set"
        store.set_meta("tuning", summary)
        log("tuning: the data has no test set (give it data.test or data.test_split), so "
            "the chosen trial is not confirmed on fresh seeds: its table would rank on "
            "test metrics there are none of")
        return
    log(f"confirming on seeds {', '.join(map(str, spec.seeds))} against the baseline")
    schedule = None
    if spec.tune.scheduler == "pbt":
        schedule = study.trials[chosen.number].user_attrs.get("schedule")
    plan = space.confirmation_plan(spec, chosen.variant, chosen.point, schedule)
    planned = {run.run_id for run in plan.runs}
    stale = [r.run_id for r in store.runs() if not is_trial_run(r.run_id)
             and r.run_id not in planned]
    if stale:  # a larger budget chose another trial: the earlier one's confirmation goes
        store.delete_runs(stale)
        log(f"tuning: the chosen trial changed since the last run; the {len(stale)} runs "
            "confirming the earlier one are removed")
    confirm(plan)


def trial_data(spec, data):
    """The data the trials train and are judged on: with a data regime (``[data]
    train_size`` or ``label_noise``, one value each), one draw of it, the first trial seed's,
    for every trial and seed, so that trials share a population; the confirmation, a grid
    plan, draws each of its seeds' own."""
    from reglab.study.build import regime_data
    from reglab.study.plan import RunSpec
    from reglab.study.regimes import resolve_regime

    if not resolve_regime(spec.data).seeded:
        return data
    run = RunSpec(space.BASELINE, (), spec.tune.trial_seeds[0], {})
    return regime_data(spec, run, data)[0]


def _best_told(study, direction: str) -> float | None:
    """The best value of the study's complete trials (a resumed tuning's), or None."""
    import optuna

    values = [t.value for t in study.get_trials(
        deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)) if t.value is not None]
    if not values:
        return None
    return max(values) if direction == "maximize" else min(values)


class _Tuner:
    def __init__(self, spec, data, device, store, study, log):
        self.spec, self.data, self.device = spec, data, device
        self.store, self.study, self.log = store, study, log
        self.budget = Budget(spec, study, float(store.get_meta("tuning_wall_time", 0.0) or 0.0))
        self.waiting: list[PendingTrial] = []  # asked, not yet trained
        self.exhausted = False  # the sampler keeps drawing values already tried
        #: trial number -> trials drawn with its values, told its result when it ends
        self.duplicates: dict[int, list] = {}
        #: the trial first drawn with each set of values (a trial drawn with the same values
        #: takes its result): an index, so that asking is not a scan of every trial
        self.tried: dict[str, int] = {}
        for frozen in study.get_trials(deepcopy=False):
            if frozen.user_attrs.get("same_as") is None:
                self.tried.setdefault(_values_key(frozen.params), frozen.number)
        #: the best objective told so far, in earlier sessions too (Optuna's best_value)
        self.best: float | None = _best_told(study, self.spec.tune.direction)

    # -- asking -------------------------------------------------------------------------
    def _ask(self) -> PendingTrial | None:
        """A new trial to train; None when the budget ends first. A trial drawn with the
        values of another (a choice drawn again, the baseline drawn again) trains nothing:
        it takes that trial's result, at once or when that trial ends."""
        import optuna

        repeats = 0
        while self.budget.allows_another() and repeats < MAX_REPEATS:
            trial = self.study.ask()
            self.budget.take()
            variant, point = space.suggest(trial, self.spec)
            if self.spec.tune.scheduler == "pbt":  # exploring makes equal starts differ
                return self._pending(trial, variant, point)
            number = self.tried.setdefault(_values_key(trial.params), trial.number)
            if number == trial.number:
                return self._pending(trial, variant, point)
            same = self.study.get_trials(deepcopy=False)[number]
            repeats += 1
            trial.set_user_attr("same_as", same.number)
            if same.state == optuna.trial.TrialState.RUNNING:
                self.duplicates.setdefault(same.number, []).append(trial)
            else:
                self._tell_duplicate(trial, same.number)
        if repeats >= MAX_REPEATS:
            self.exhausted = True
            self.log(f"tuning: the sampler drew only values already tried in {MAX_REPEATS} "
                     "trials in a row: the search space is used up; no more trials are asked")
        return None

    def _tell_duplicate(self, trial, same: int) -> None:
        """Tells ``trial`` the result of trial ``same`` (already told), drawn with its
        values: its state, value and per-epoch values (a pruner then sees a repeat as the
        same training again, not as a finished trial without a curve: MedianPruner's
        ``n_startup_trials`` counts finished trials, its median the curves at each step)."""
        import optuna

        trial.set_user_attr("model_epochs", 0)
        original = self.study.get_trials(deepcopy=False)[same]
        for step, reported in sorted(original.intermediate_values.items()):
            trial.report(reported, step)
        if original.state == optuna.trial.TrialState.COMPLETE:
            self.study.tell(trial, original.value)
        else:
            self.study.tell(trial, state=original.state)
        self.budget.release(0)
        self.log(f"trial {trial.number}: the values of trial {trial.user_attrs['same_as']}, "
                 "whose result it takes (nothing trained)")

    def _pending(self, trial, variant, point) -> PendingTrial:
        pending = PendingTrial(trial, variant, point,
                               space.trial_runs(self.spec, trial.number, variant, point))
        population = f"tune-{structure_of(self.spec, pending)}"
        self.store.add_runs([RunRecord(run.run_id, run.variant, dict(run.point), run.seed,
                                       population, run.changes) for run in pending.runs])
        return pending

    def _resumed(self) -> list[PendingTrial]:
        """The trials a kill interrupted: told from the store when their runs had finished,
        else trained again with the parameters they were given."""
        import optuna

        resumed = []
        records = {r.run_id: r for r in self.store.runs()}
        running = self.study.get_trials(deepcopy=False,
                                        states=(optuna.trial.TrialState.RUNNING,))
        repeats = [t for t in running if t.user_attrs.get("same_as") is not None]
        for frozen in [t for t in running if t.user_attrs.get("same_as") is None]:
            trial = optuna.trial.Trial(self.study, frozen._trial_id)
            # values drawn before the kill come back as they were; a kill between two
            # draws leaves the rest to draw now
            variant, point = space.suggest(trial, self.spec)
            self.tried.setdefault(_values_key(trial.params), trial.number)
            pending = self._pending(trial, variant, point)
            stored = [records.get(run.run_id) for run in pending.runs]
            if all(r is not None and r.finished for r in stored):
                self._tell_stored(pending, stored)
            else:
                self.budget.resume()
                pending.reported = frozenset(frozen.intermediate_values)
                resumed.append(pending)
        # trials drawn with another's values take its result, read now (it may have been
        # told just above)
        trials = self.study.get_trials(deepcopy=False)
        for frozen in repeats:
            trial = optuna.trial.Trial(self.study, frozen._trial_id)
            same = trials[frozen.user_attrs["same_as"]]
            self.budget.resume()
            if same.state == optuna.trial.TrialState.RUNNING:
                self.duplicates.setdefault(same.number, []).append(trial)
            else:
                self._tell_duplicate(trial, same.number)
        if resumed:
            self.log(f"resuming: {len(resumed)} interrupted trial(s) train again with the "
                     "values they were given")
        return resumed

    def _tell_stored(self, pending: PendingTrial, records) -> None:
        statuses = {r.status for r in records}
        epochs = sum(r.epochs_run for r in records)
        if statuses & {"failed", "diverged"}:
            state = "diverged" if "diverged" in statuses else "failed"
        elif "pruned" in statuses:
            state = "pruned"
        else:
            state = "complete"
        values = [r.metrics.get(objective_key(self.spec.tune.objective)) for r in records]
        value = None
        if state == "complete":
            if all(v is not None and math.isfinite(v) for v in values):
                value = float(sum(values) / len(values))
            else:
                state = "failed"
        self.budget.resume()
        self._tell(TrialOutcome(pending, state, value, [], epochs), values)

    def _refill(self, structure: str, places: int) -> list[PendingTrial]:
        """Up to ``places`` trials of ``structure`` to join a running population; trials of
        other structures wait for their own (at most a population's worth)."""
        joining = [p for p in self.waiting if structure_of(self.spec, p) == structure][:places]
        for pending in joining:
            self.waiting.remove(pending)
        while len(joining) < places and len(self.waiting) < self.size and \
                self.budget.allows_another() and not self.exhausted:
            pending = self._ask()
            if pending is None:
                break
            if structure_of(self.spec, pending) == structure:
                joining.append(pending)
            else:
                self.waiting.append(pending)
        return joining

    # -- the loop -------------------------------------------------------------------------
    def run(self) -> None:
        from reglab.study.build import build_member

        probe = build_member(self.spec, space.corner_plan(self.spec).runs[0],
                             tuple(self.spec.input_shape))
        pbt = self.spec.tune.scheduler == "pbt"
        # population-based training trains every trial at once
        self.size = self.spec.tune.trials if pbt else batch_size(
            self.spec, self.device, _parameters(probe, self.spec))
        self.waiting = self._resumed()
        while True:
            while len(self.waiting) < self.size and self.budget.allows_another() and \
                    not self.exhausted:
                pending = self._ask()
                if pending is None:
                    break
                self.waiting.append(pending)
            if not self.waiting:
                break
            structure = structure_of(self.spec, self.waiting[0])
            batch = [p for p in self.waiting if structure_of(self.spec, p) == structure]
            batch = batch[: self.size]
            for pending in batch:
                self.waiting.remove(pending)
            self.log(f"tuning: population of {len(batch)} trial(s) ({len(batch) * self.spec.tune.seeds}"
                     f" members), trials asked {self.budget.asked}"
                     f"{f' of {self.spec.tune.trials}' if self.spec.tune.trials else ''}")
            scheduler = None
            if pbt:
                from reglab.tune.pbt import PBTScheduler

                scheduler = PBTScheduler(self.spec)
            population = TrialPopulation(self.spec, self.data, self.device, self._refill,
                                         self._tell, self._rows, self._start, scheduler)
            population.train(batch)

    def _rows(self, rows) -> None:
        self.store.record_epochs(rows)
        self.store.set_meta("tuning_wall_time", self.budget.wall)  # a kill keeps it

    def _start(self, runs) -> None:
        ids = [run.run_id for run in runs]
        self.store.reset_unfinished(ids)
        self.store.mark_running(ids)

    def _tell(self, outcome: TrialOutcome, seed_values: list | None = None) -> None:
        """Stores a finished trial's runs, then tells Optuna (a kill between the two is
        mended on resume, from the store)."""
        import optuna

        if seed_values is None:
            key = objective_key(self.spec.tune.objective)
            seed_values = [o.metrics.get(key) for o in outcome.outcomes]
        trial = outcome.pending.trial
        # the trial's attributes first: a kill before the tell leaves them for the rerun
        trial.set_user_attr("model_epochs", int(outcome.model_epochs))
        trial.set_user_attr("seed_values", [None if v is None or not math.isfinite(v)
                                            else float(v) for v in seed_values])
        if outcome.schedule is not None:
            trial.set_user_attr("schedule", outcome.schedule)
            trial.set_user_attr("copies", outcome.copies)
        if outcome.outcomes:
            self.store.finish_runs([dataclasses.replace(
                self.store.run(o.run_id), status=o.status, best_epoch=o.best_epoch,
                stopped_epoch=o.stopped_epoch, epochs_run=o.epochs_run, metrics=o.metrics,
                wall_time=o.wall_time, error=o.error) for o in outcome.outcomes])
        states = {"complete": optuna.trial.TrialState.COMPLETE,
                  "pruned": optuna.trial.TrialState.PRUNED,
                  "failed": optuna.trial.TrialState.FAIL}
        state = outcome.state
        if state == "diverged":
            # a diverged trial counts as pruned at its last value when it reported one, so
            # that the sampler learns to avoid its region (a failed trial teaches TPE nothing)
            trial.set_user_attr("diverged", True)
            frozen = self.study.get_trials(deepcopy=False)[trial.number]
            state = "pruned" if frozen.intermediate_values else "failed"
        if state == "complete":
            self.study.tell(trial, outcome.value)
        else:
            self.study.tell(trial, state=states[state])
        self.budget.release(outcome.model_epochs)
        for duplicate in self.duplicates.pop(trial.number, []):
            self._tell_duplicate(duplicate, trial.number)
        self.store.set_meta("tuning_wall_time", self.budget.wall)
        if outcome.state == "complete":
            better = self.best is None or (
                outcome.value > self.best if self.spec.tune.direction == "maximize"
                else outcome.value < self.best)
            if better:
                self.best = outcome.value
            self.log(f"trial {trial.number}: {objective_key(self.spec.tune.objective)} "
                     f"{outcome.value:.4f}"
                     f"{' (best so far)' if better else ''}  {_label(outcome.pending)}")
        elif outcome.outcomes:
            self.log(f"trial {trial.number}: {outcome.state} after "
                     f"{max(o.epochs_run for o in outcome.outcomes)} epoch(s)  "
                     f"{_label(outcome.pending)}")

    def summary(self) -> dict:
        import optuna

        trials = self.study.get_trials(deepcopy=False)
        # a diverged trial is counted as such, whatever Optuna was told (PRUNED at its last
        # value, or FAIL: see _tell), and saves nothing by pruning
        count = {name: sum(t.state == state and not t.user_attrs.get("diverged")
                           for t in trials) for name, state in (
            ("complete", optuna.trial.TrialState.COMPLETE),
            ("pruned", optuna.trial.TrialState.PRUNED),
            ("failed", optuna.trial.TrialState.FAIL))}
        count["diverged"] = sum(bool(t.user_attrs.get("diverged")) for t in trials)
        used = sum(t.user_attrs.get("model_epochs", 0) for t in trials)
        full = self.spec.tune.seeds * self.spec.training.epochs
        saved = sum(full - t.user_attrs.get("model_epochs", full) for t in trials
                    if t.state == optuna.trial.TrialState.PRUNED
                    and t.user_attrs.get("same_as") is None and not t.user_attrs.get("diverged"))
        same = sum(t.user_attrs.get("same_as") is not None for t in trials)
        return {"trials": count, "asked": len(trials), "same_values": same,
                "model_epochs": int(used),
                "pruning_saved": int(saved), "wall_time": self.budget.wall,
                "population_size": self.size, "journal": JOURNAL}


def _values_key(params: dict) -> str:
    """A trial's values as one comparable key."""
    import json

    return json.dumps(params, sort_keys=True, default=str)


def _label(pending: PendingTrial) -> str:
    from reglab.study.sweeps import format_value

    point = ", ".join(f"{path}={format_value(v)}" for path, v in pending.point)
    return f"{pending.variant}{f' ({point})' if point else ''}"


def _parameters(member, spec) -> int:
    """The member's parameter count (its layers built on the study's input shape)."""
    from reglab.engine.member import plan

    try:
        member_plan = plan([member])
        return sum(math.prod(w.spec.shape) for w in member_plan.weights)
    except Exception:  # the count only sizes the batch
        return 1_000_000


def trial_records(store) -> list:
    """The runs of a tuning's trials."""
    return [r for r in store.runs() if is_trial_run(r.run_id)]

