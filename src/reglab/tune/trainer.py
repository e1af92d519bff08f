"""Trains a population of tuning trials: pruned trials leave it, new trials join it.

Each trial is one member per tuning seed. After every epoch each running trial reports its
objective (the mean over its seeds) to Optuna as the intermediate value of that step (its
own epoch, counted from when it joined) and asks the pruner; a pruned trial's members stop
at once (their compute is saved), a trial whose members have all ended is finished: its
runs' final metrics are computed on their kept weights, stored, and the trial is told. Then
the freed places are filled: new trials asked from the tuner join the population at the
next epoch (the engine adds members between epochs; each trains exactly as it would alone,
its random streams starting at its own epoch 0), so the population stays full until the
budget ends. A trial asked for a population of another structure waits for its own.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from reglab.study.build import StudyData, build_member, population_members
from reglab.study.executors import EpochRows, RunOutcome
from reglab.study.plan import PopulationSpec, RunSpec

#: fit's epoch bound when trials join as others end: the population ends when it is empty
_OPEN_ENDED = 10**9


@dataclasses.dataclass
class PendingTrial:
    """A trial asked from Optuna (or resumed), with the runs it trains."""

    trial: Any  # optuna.trial.Trial
    variant: str
    point: tuple
    runs: list[RunSpec]
    #: steps Optuna holds already (a trial trained again after a kill): not reported again,
    #: and not pruned before it is past them (its pruner decided on them the first time)
    reported: frozenset = frozenset()

    @property
    def number(self) -> int:
        return self.trial.number


@dataclasses.dataclass
class TrialOutcome:
    """How a trial ended: ``state`` is 'complete', 'pruned', 'diverged' or 'failed'; ``value`` the
    objective of its kept weights (the mean over its seeds; None unless complete)."""

    pending: PendingTrial
    state: str
    value: float | None
    outcomes: list[RunOutcome]
    model_epochs: int
    #: population-based training: the values the trial's weights were trained with, from
    #: each epoch at which they changed, and the trials it copied (epoch, from, values)
    schedule: list | None = None
    copies: list | None = None


@dataclasses.dataclass
class _Running:
    pending: PendingTrial
    member_ids: list[int]
    pruned: bool = False
    failed: str | None = None
    started: float = dataclasses.field(default_factory=time.perf_counter)
    #: each member's last objective (a seed that stopped early keeps counting with it)
    last: dict = dataclasses.field(default_factory=dict)


def structure_of(spec, pending: PendingTrial) -> str:
    return pending.runs[0].structure_key(spec)


def objective_key(objective: str) -> str:
    """The log a trial is scored on: the objective, except that ``val_loss`` is scored
    without the penalty (``val_data_loss``): Keras's ``val_loss`` adds the regularizers'
    penalty, which would make every penalty strength look worse by itself."""
    return "val_data_loss" if objective == "val_loss" else objective


def objective_name(objective: str) -> str:
    """The objective as the outputs name it: what a trial is scored on
    (:func:`objective_key`), saying so where that is not the log of that name."""
    key = objective_key(objective)
    return key if key == objective else f"{key} ({objective} without the penalties)"


class TrialPopulation:
    """One population of trials of one structure (see the module docstring).

    ``refill(structure, places)`` returns up to ``places`` new trials of that structure to
    join (an empty list when the budget is spent); ``on_end(outcome)`` stores a finished
    trial and tells Optuna; ``on_rows`` receives every epoch's rows.
    """

    def __init__(self, spec, data: StudyData, device: str, refill: Callable,
                 on_end: Callable[[TrialOutcome], None], on_rows: Callable[[EpochRows], None],
                 on_start: Callable[[list[RunSpec]], None], scheduler=None):
        self.spec, self.data, self.device = spec, data, device
        self.refill, self.on_end, self.on_rows, self.on_start = refill, on_end, on_rows, on_start
        self.tune = spec.tune
        #: a PBTScheduler (reglab.tune.pbt) that exploits and explores between epochs
        self.scheduler = scheduler

    def train(self, trials: list[PendingTrial]) -> None:
        from reglab.engine import Population

        spec, data = self.spec, self.data
        structure = structure_of(spec, trials[0])
        runs = [run for pending in trials for run in pending.runs]
        members, augment, images = population_members(
            spec, PopulationSpec(structure, tuple(runs)), data)
        self.images = images
        self.shape = data.image_shape if images else tuple(spec.input_shape)
        x_fit = data.x_train.reshape(len(data.x_train), *self.shape) if images else data.x_train
        x_val = data.x_val.reshape(len(data.x_val), *self.shape) if images else data.x_val
        self.x_fit, self.x_val = x_fit, x_val
        self.x_test = None if data.x_test is None else (
            data.x_test.reshape(len(data.x_test), *self.shape) if images else data.x_test)
        self.population = Population(members, loss=spec.training.loss,
                                     metrics=spec.training.metrics, device=self.device,
                                     keep_freed_memory=True)
        self.capacity = len(members)
        self.structure = structure
        self.run_of: dict[int, RunSpec] = {}
        self.running: list[_Running] = []
        self._join(trials, first_id=0)
        if self.scheduler is not None:
            self.scheduler.start(self.running)
        self.population.fit(x_fit, data.y_train, batch_size=spec.training.batch_size,
                            epochs=_OPEN_ENDED, validation_data=(x_val, data.y_val),
                            augment=augment, observers=[self])
        # fit ends without an epoch's end when every member left diverged in one epoch
        for entry in list(self.running):
            if any(population_result.status == "diverged" for population_result in
                   (self.population.results[m] for m in entry.member_ids)):
                entry.failed = "diverged"
            self.running.remove(entry)
            self.on_end(self._outcome(entry))

    # -- membership -------------------------------------------------------------------
    def _join(self, trials: list[PendingTrial], first_id: int) -> None:
        member_id = first_id
        for pending in trials:
            ids = list(range(member_id, member_id + len(pending.runs)))
            for m, run in zip(ids, pending.runs):
                self.run_of[m] = run
            self.running.append(_Running(pending, ids))
            self.on_start(pending.runs)
            member_id += len(ids)

    def _add(self, trials: list[PendingTrial]) -> None:
        members = [build_member(self.spec, run, self.shape, self.images)
                   for pending in trials for run in pending.runs]
        first = self.population.add_members(members)[0]
        self._join(trials, first)

    # -- observer hooks ---------------------------------------------------------------
    def on_epoch_end(self, epoch: int, logs_by_member: dict[int, dict]) -> None:
        population = self.population
        self.on_rows([(self.run_of[m].run_id, population.results[m].epochs_run - 1, logs)
                      for m, logs in logs_by_member.items()])
        objective = objective_key(self.tune.objective)
        epochs = self.spec.training.epochs
        for entry in self.running:
            results = [population.results[m] for m in entry.member_ids]
            if any(r.status == "diverged" for r in results):
                entry.failed = "diverged"
            present = [m for m in entry.member_ids if m in logs_by_member]
            for m in present:  # a member's own epochs are done: it stops
                if population.results[m].epochs_run >= epochs:
                    population.stop_requested.add(m)
                value = logs_by_member[m].get(objective)
                if value is not None and math.isfinite(value):
                    entry.last[m] = value
            if entry.failed or not present or not entry.last:
                continue
            step = max(population.results[m].epochs_run for m in present) - 1
            if step in entry.pending.reported or step <= max(entry.pending.reported,
                                                             default=-1):
                continue  # told before a kill: the pruner decided on it then
            entry.pending.trial.report(float(np.mean(list(entry.last.values()))), step)
            still = [m for m in present if m not in population.stop_requested
                     and population.results[m].status == "running"]
            if still and entry.pending.trial.should_prune():
                entry.pruned = True
                population.stop_requested.update(still)
        for entry in self.running:
            if entry.failed:
                population.stop_requested.update(
                    m for m in entry.member_ids if m in logs_by_member)
        if self.scheduler is not None:
            training = [e for e in self.running if not e.failed]
            self.scheduler.after_epoch(population, training, epoch, logs_by_member, objective)

    def on_epoch_complete(self, epoch: int) -> None:
        population = self.population
        present = set(population.state.member_ids)
        ended = [e for e in self.running if not any(m in present for m in e.member_ids)]
        if ended:
            self.running = [e for e in self.running if e not in ended]
            for entry in ended:
                self.on_end(self._outcome(entry))
                # its weights are read and stored: the engine keeps nothing more of it
                population.discard_members(entry.member_ids)
        if self.scheduler is not None:
            return  # population-based training's trials all start together, none joins
        free = self.capacity - sum(len(e.member_ids) for e in self.running)
        per_trial = len(self.spec.tune.trial_seeds)
        if free >= per_trial:
            joining = self.refill(self.structure, free // per_trial)
            if joining:
                self._add(joining)

    # -- outcomes ---------------------------------------------------------------------
    def _outcome(self, entry: _Running) -> TrialOutcome:
        from reglab.study.metrics import final_metrics

        population = self.population
        runs = [self.run_of[m] for m in entry.member_ids]
        results = [population.results[m] for m in entry.member_ids]
        # the trial's own population, with the kept weights (after early stopping's
        # restore, SWA, EMA), evaluated on every split like any run of a study
        members = [build_member(self.spec, run, self.shape, self.images) for run in runs]
        from reglab.engine import Population

        alone = Population(members, loss=self.spec.training.loss,
                           metrics=self.spec.training.metrics, device=self.device)
        lineage = None
        if self.scheduler is not None:  # evaluated with the values it trained with last
            from reglab.tune.pbt import set_values

            lineage = self.scheduler.lineages[entry.pending.number]
        for i, m in enumerate(entry.member_ids):
            alone.set_member_weights(i, population.member_weights(m))
            if lineage is not None:
                set_values(alone, i, lineage.values)
        metrics = final_metrics(alone, self.data, self.x_fit, self.x_val, self.x_test)
        wall = time.perf_counter() - entry.started
        epochs = self.spec.training.epochs
        if entry.failed:
            state = "diverged" if entry.failed == "diverged" else "failed"
        elif entry.pruned:
            state = "pruned"
        else:
            state = "complete"
        outcomes = []
        for i, (run, result) in enumerate(zip(runs, results)):
            if result.status == "diverged":
                status = "diverged"
            elif entry.failed:
                status = "failed"
            elif result.status == "stopped_early":
                status = "stopped_early"
            elif entry.pruned and result.epochs_run < epochs:
                status = "pruned"
            else:
                status = "done"
            outcomes.append(RunOutcome(
                run.run_id, status, result.epochs_run, result.best_epoch, result.stopped_epoch,
                metrics[i], wall / len(runs),
                error="a member of the trial diverged" if status == "failed" else None))
        value = None
        if state == "complete":
            key = objective_key(self.tune.objective)
            values = [metrics[i].get(key) for i in range(len(runs))]
            if all(v is not None and math.isfinite(v) for v in values):
                value = float(np.mean(values))
            else:
                state = "failed"
        model_epochs = sum(r.epochs_run for r in results)
        schedule = copies = None
        if lineage is not None:
            schedule, copies = lineage.schedule(), lineage.copies
        return TrialOutcome(entry.pending, state, value, outcomes, model_epochs, schedule,
                            copies)
