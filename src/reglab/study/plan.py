"""From a study to runs and populations: variants x sweep points x seeds.

Every run is one member of a population. Runs whose models share one structure
(the same layers, batch normalization on or off, the same augmentation, the same
optimizer class) train together; penalties, dropout rates, learning rates and early
stopping are values and may differ inside a population. Every model gets a Dropout
layer after each hidden layer (rate 0 where the variant has none), so that dropout
on and off share a population. Planning imports no torch.

With data regimes (``[data] train_size``, ``label_noise``: :mod:`reglab.study.regimes`),
every variant × sweep point × seed runs once per regime. A population's members see one
set of training inputs, and a regime's data depend on the run's seed (its subset, its noisy
labels), so runs of such a regime train in one population per seed (a seed's members still
share the first layer's GEMM; measured on this CPU, five single-seed populations cost within
5 % of one population of the five seeds). Regimes that differ only in their label noise see
the same inputs: their runs of one seed share a population, each member with its own labels
(:class:`reglab.engine.PerMember`).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from typing import Any

from reglab.study.regimes import regime_axes, regime_label, regime_points, resolve_regime
from reglab.study.spec import CLIPPINGS, StudySpec, StudySpecError, VariantSpec
from reglab.study.sweeps import MAX_RUNS, format_value, set_path

#: how the names of a tuning trial's runs start
TRIAL_PREFIX = "trial="


def is_trial_run(run_id: str) -> bool:
    """Whether a run is one of a tuning's trials (not ranked with the study's variants)."""
    return run_id.startswith(TRIAL_PREFIX)


@dataclass(frozen=True)
class RunSpec:
    """One training run: a variant at one sweep point, with one seed."""

    variant: str
    point: tuple[tuple[str, Any], ...]  # (sweep path, value) pairs, in the file's order
    seed: int
    changes: dict[str, Any]  # the variant's changes with this point's values filled in
    #: a tuning trial's number (None: a run of a grid, or of a tuning's confirmation)
    trial: int | None = None
    #: the data regime's axes: (key, value) pairs of the [data] keys swept (() without)
    regime: tuple[tuple[str, Any], ...] = ()

    @property
    def run_id(self) -> str:
        """A stable name: ``l2_path[kernel_regularizer.l2=1e-05]/seed=3``; a tuning trial's
        runs start with ``trial=N/`` (a variant's name holds no '=', so no grid run does),
        and the runs of a data regime with it: ``train_size=1000,label_noise=0.3/...``."""
        point = ",".join(f"{path}={format_value(value)}" for path, value in self.point)
        prefix = "" if self.trial is None else f"{TRIAL_PREFIX}{self.trial}/"
        if self.regime:
            prefix += f"{regime_label(self.regime)}/"
        return f"{prefix}{self.variant}{f'[{point}]' if point else ''}/seed={self.seed}"

    def structure_key(self, spec: StudySpec, data: bool = True) -> str:
        """What makes two runs unable to share a population (see the module docstring):
        their structure and, with ``data``, their training data (the regime, and the seed
        when the regime's data depend on it)."""
        optimizer = run_optimizer(spec, self.changes)
        structural_options = {k: v for k, v in optimizer.items()
                              if isinstance(v, bool) or k == "ema_overwrite_frequency"}
        # which gradient clipping (not its threshold, which is each member's own) is part
        # of a population's structure
        structural_options.update({k: "set" for k in CLIPPINGS if optimizer.get(k) is not None})
        key = {
            "batch_norm": bool(self.changes.get("batch_norm", False)),
            "augment": self.changes.get("augment"),
            "optimizer": [str(optimizer.get("type", "")).lower(), structural_options],
            "kernel_constraint": (self.changes.get("kernel_constraint") or {}).get("type"),
        }
        if data:  # keys added only with regimes: the populations of a study without stay
            # the regime's inputs: its labels' noise is each member's own (PerMember)
            inputs = tuple(pair for pair in self.regime if pair[0] != "label_noise")
            if inputs:
                key["regime"] = regime_label(inputs)
            noise_axis = any(key_ == "label_noise" for key_, _ in self.regime)
            if noise_axis or resolve_regime(spec.data, self.regime).seeded:
                key["data_seed"] = self.seed
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]

    def training_key(self, spec: StudySpec) -> str:
        """What decides how a run trains: its population, its settings, its seed and its data
        regime (and a tuning trial's number: trials are never merged). Two runs with one key
        train bit for bit alike (a member trains as it would alone), so a study trains the
        first and gives the other its results (``twins``)."""
        key = [self.structure_key(spec), self.changes, self.seed, list(self.regime), self.trial]
        return json.dumps(key, sort_keys=True, default=repr)


def run_optimizer(spec: StudySpec, changes: dict[str, Any]) -> dict[str, Any]:
    """The optimizer's table for a run: the study's or the variant's, with the variant's
    ``learning_rate``, ``ema`` (Keras's ``use_ema`` arguments) and ``swa`` folded in."""
    optimizer = changes.get("optimizer", spec.training.optimizer)
    optimizer = {"type": optimizer} if isinstance(optimizer, str) else dict(optimizer)
    if "learning_rate" in changes:
        optimizer["learning_rate"] = changes["learning_rate"]
    ema = changes.get("ema")
    if ema is not None:
        optimizer["use_ema"] = True
        for key, argument in (("momentum", "ema_momentum"),
                              ("overwrite_frequency", "ema_overwrite_frequency")):
            if key in ema:
                optimizer[argument] = ema[key]
    swa = changes.get("swa")
    if swa is not None:
        optimizer["swa_start"] = int(swa.get("start", 0))
    return optimizer


@dataclass(frozen=True)
class PopulationSpec:
    key: str
    runs: tuple[RunSpec, ...]


@dataclass(frozen=True)
class StudyPlan:
    spec: StudySpec
    runs: tuple[RunSpec, ...]
    #: the runs that train (a twin is in none)
    populations: tuple[PopulationSpec, ...]
    #: run id -> the id of the run it repeats (the same settings, seed and data: a sweep's
    #: point equal to another variant), in the order of ``runs``; the repeated run trains
    #: once and its twins get its results
    twins: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """``9 variants × 5 seeds = 45 runs in 3 populations`` (sweep points counted)."""
        points = sum(len(_points(v)) for v in self.spec.variants)
        variants = len(self.spec.variants)
        what = (f"{variants} variants" if points == variants
                else f"{variants} variants ({points} points with sweeps)")
        regimes = len(regime_points(self.spec.data))
        if regimes > 1:
            axes = " × ".join(f"{len(v)} {k}" for k, v in regime_axes(self.spec.data).items())
            what += f" × {regimes} data regimes ({axes})"
        twins = (f" ({len(self.twins)} the same as another run: trained once)"
                 if self.twins else "")
        return (f"{what} × {len(self.spec.seeds)} seeds = {len(self.runs)} runs{twins} in "
                f"{len(self.populations)} population{'s' if len(self.populations) != 1 else ''}")


def _check_unique_names(spec: StudySpec, runs: list[RunSpec]) -> None:
    seen: dict[str, RunSpec] = {}
    for run in runs:
        other = seen.setdefault(run.run_id, run)
        if other is not run:
            raise StudySpecError(spec.source or spec.name, [
                f"variants.{run.variant}: two runs would both be named {run.run_id!r} (sweep "
                f"points {dict(other.point)} and {dict(run.point)}: values that agree to "
                "6 significant digits, or a value listed twice). Make the sweep's values "
                "distinct."])


def _points(variant: VariantSpec) -> list[tuple[tuple[str, float], ...]]:
    if not variant.sweeps:
        return [()]
    grids = [[(s.path, v) for v in s.values] for s in variant.sweeps]
    return [tuple(combination) for combination in itertools.product(*grids)]


def plan_study(spec: StudySpec) -> StudyPlan:
    """Expands the study into runs (in file order) and groups them into populations.

    Raises:
        StudySpecError: the plan would exceed :data:`MAX_RUNS`, or two runs would get one
            name (sweep values equal to the 6 significant digits their names show).
    """
    counts = [math.prod(len(s.values) for s in v.sweeps) for v in spec.variants]
    regimes = regime_points(spec.data)
    total = sum(counts) * len(spec.seeds) * len(regimes)
    if total > MAX_RUNS:
        in_regimes = f" × {len(regimes)} data regimes" if len(regimes) > 1 else ""
        raise StudySpecError(spec.source or spec.name, [
            f"the study plans {total:,} runs ({sum(counts):,} variant points × "
            f"{len(spec.seeds):,} seeds{in_regimes}); the limit is {MAX_RUNS:,}. Use fewer "
            "seeds or sweep points."])
    runs = []
    for regime in regimes:  # one regime after the other: the table's groups, in order
        for variant in spec.variants:
            for point in _points(variant):
                changes = copy.deepcopy(variant.changes)
                for path, value in point:
                    set_path(changes, path, value)
                for seed in spec.seeds:
                    runs.append(RunSpec(variant.name, point, seed, changes, regime=regime))
    _check_unique_names(spec, runs)
    return group_runs(spec, runs)


def group_runs(spec: StudySpec, runs: list[RunSpec]) -> StudyPlan:
    """The plan of ``runs``: grouped into populations by structure key.

    Within a population, runs are ordered seed by seed (in the order seeds first appear,
    the given order within a seed): the members of a seed group are then adjacent, so the
    first layer's shared GEMM reads and writes their kernels as one block
    (layers/shared_input.py), and shards cut whole seeds. A run that repeats an earlier
    one (:meth:`RunSpec.training_key`) joins no population: it is a twin."""
    groups: dict[str, list[RunSpec]] = {}
    first: dict[str, str] = {}  # training key -> the first run's id
    twins: dict[str, str] = {}
    for run in runs:
        leader = first.setdefault(run.training_key(spec), run.run_id)
        if leader != run.run_id:
            twins[run.run_id] = leader
            continue
        groups.setdefault(run.structure_key(spec), []).append(run)
    order = {seed: i for i, seed in enumerate(dict.fromkeys(r.seed for r in runs))}
    populations = tuple(PopulationSpec(key, tuple(sorted(group, key=lambda r: order[r.seed])))
                        for key, group in groups.items())
    return StudyPlan(spec, tuple(runs), populations, twins)
