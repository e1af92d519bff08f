"""Population-based training (Jaderberg et al. 2017) inside one population.

Every ``interval`` epochs the trials are ranked on the objective of that epoch (the mean over
a trial's seeds). Each trial in the bottom ``quantile`` *exploits* a trial drawn from the top
``quantile``: its members take that trial's training state (weights, optimizer slots and
steps: :meth:`reglab.engine.Population.copy_member`, seed by seed) and its values; then it
*explores*: each range's value is multiplied by one of ``factors`` drawn at random (clipped
to the range; ints rounded), each list's value is drawn again with probability
``resample``. The members keep their own seeds and random streams.

Every trial's effective schedule, the values its weights were trained with at each epoch
(its own, and before a copy those of the trial it copied), is kept: the chosen trial's is
retrained on fresh seeds for the confirmation (its changes carry ``schedule``, applied
between epochs by :class:`ScheduleObserver`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np

from reglab.tune.spec import PERTURBABLE

#: a searched value's path -> how the engine's hyperparameter names end (each layer's or
#: weight's value is set), or the optimizer's name
_ENGINE_SUFFIX = {
    "dropout": ".rate", "stochastic_depth": ".rate",
    "kernel_regularizer.l1": ".kernel.l1", "kernel_regularizer.l2": ".kernel.l2",
    "bias_regularizer.l1": ".bias.l1", "bias_regularizer.l2": ".bias.l2",
}
_OPTIMIZER = {"learning_rate": "learning_rate", "ema.momentum": "ema_momentum"}
assert set(PERTURBABLE) == {*_ENGINE_SUFFIX, *_OPTIMIZER}


def engine_names(population, path: str) -> list[str]:
    """The names :meth:`Population.set_hyperparameter` takes for a study's value ``path``."""
    if path in _OPTIMIZER:
        return [_OPTIMIZER[path]]
    suffix = _ENGINE_SUFFIX[path]
    if path in ("dropout", "stochastic_depth"):  # the layers the variant's key puts in
        return [f"{lp.canonical_name}{suffix}" for lp in population.plan.layers
                if getattr(lp.layer, "inserted_by", None) == path]
    return [n for n in population.hyperparameter_names() if n.endswith(suffix)]


def set_values(population, member_id: int, values: dict) -> None:
    for path, value in values.items():
        for name in engine_names(population, path):
            population.set_hyperparameter(member_id, name, float(value))


@dataclass
class Lineage:
    """A trial's values now, and the values its weights were trained with, epoch by epoch."""

    values: dict
    epochs: list[dict] = field(default_factory=list)
    copies: list[dict] = field(default_factory=list)  # {"epoch", "from", "values"}

    def schedule(self) -> list[list]:
        """``[[epoch, {path: value}], ...]``: the values from each epoch at which they change."""
        out: list[list] = []
        for epoch, values in enumerate(self.epochs):
            if not out or out[-1][1] != values:
                out.append([epoch, dict(values)])
        return out


class PBTScheduler:
    """Exploit and explore between the epochs of a :class:`~reglab.tune.trainer.TrialPopulation`."""

    def __init__(self, spec):
        tune = spec.tune
        self.interval, self.quantile = tune.pbt_interval, tune.pbt_quantile
        self.factors, self.resample = tune.pbt_factors, tune.pbt_resample
        self.direction = tune.direction
        self.dimensions = {d.path: d for name in tune.variants
                           for v in spec.variants if v.name == name for d in v.search}
        self.rng = np.random.default_rng(tune.sampler_seed)
        self.epochs = spec.training.epochs
        self.lineages: dict[int, Lineage] = {}

    def start(self, entries) -> None:
        for entry in entries:
            self.lineages[entry.pending.number] = Lineage(dict(entry.pending.point))

    def after_epoch(self, population, trials, epoch: int, logs_by_member: dict,
                    objective: str) -> None:
        """Records the epoch's values; every ``interval`` epochs, exploits and explores."""
        for entry in trials:
            lineage = self.lineages[entry.pending.number]
            lineage.epochs.append(dict(lineage.values))
        if (epoch + 1) % self.interval or epoch + 1 >= self.epochs:
            return
        scored = []
        for entry in trials:
            if any(population.results[m].status != "running" or m in population.stop_requested
                   for m in entry.member_ids):
                continue  # ending now (stopped early, diverged): neither copied nor copying
            values = [logs_by_member[m].get(objective) for m in entry.member_ids
                      if m in logs_by_member]
            values = [v for v in values if v is not None and math.isfinite(v)]
            if values and len(values) == len(entry.member_ids):
                scored.append((float(np.mean(values)), entry))
        if len(scored) < 2:
            return
        sign = -1.0 if self.direction == "maximize" else 1.0
        scored.sort(key=lambda pair: (sign * pair[0], pair[1].pending.number))  # best first
        cut = max(1, int(math.floor(len(scored) * self.quantile)))
        top, bottom = scored[:cut], scored[-cut:]
        for _, loser in bottom:
            _, winner = top[int(self.rng.integers(len(top)))]
            if winner is loser:
                continue
            for source, target in zip(winner.member_ids, loser.member_ids):
                population.copy_member(source, target)
            won = self.lineages[winner.pending.number]
            lost = self.lineages[loser.pending.number]
            lost.epochs = copy.deepcopy(won.epochs)
            lost.values = self._explore(won.values)
            lost.copies.append({"epoch": epoch, "from": winner.pending.number,
                                "values": dict(lost.values)})
            for target in loser.member_ids:
                set_values(population, target, lost.values)

    def _explore(self, values: dict) -> dict:
        out = {}
        for path, value in values.items():
            dimension = self.dimensions[path]
            if dimension.kind == "choice":
                if self.rng.random() < self.resample:
                    value = dimension.choices[int(self.rng.integers(len(dimension.choices)))]
            else:
                value = value * self.factors[int(self.rng.integers(len(self.factors)))]
                value = min(max(value, dimension.low), dimension.high)
                if dimension.kind == "int":
                    value = int(round(value))
            out[path] = value
        return out


class ScheduleObserver:
    """Applies runs' schedules (``changes["schedule"]``) between epochs: member ``m`` takes
    the values of its schedule's entry for epoch ``e + 1`` at the end of epoch ``e``."""

    def __init__(self, schedules: dict[int, list]):
        self.schedules = {m: {int(e): v for e, v in s} for m, s in schedules.items()}

    def on_train_begin(self, population):
        """Sets each member's values for the epoch it starts at (0, or where a resumed fit
        goes on: a checkpoint keeps the optimizer's values, not the layers')."""
        self.population = population
        for member_id, schedule in self.schedules.items():
            start = population.results[member_id].epochs_run
            due = [e for e in schedule if e <= start]
            if start and due:
                set_values(population, member_id, schedule[max(due)])

    def on_epoch_end(self, epoch, logs_by_member):
        for member_id, schedule in self.schedules.items():
            values = schedule.get(epoch + 1)
            if values and member_id in logs_by_member:
                set_values(self.population, member_id, values)
