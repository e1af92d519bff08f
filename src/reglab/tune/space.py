"""A tuning study's search space: from an Optuna trial to the runs it trains, and back.

Parameter names: ``variant`` (a categorical over the candidate variants, present when
there are several) and ``<variant>:<path>`` for each searched value, so that the space is
conditional on the variant (Optuna's define-by-run samplers handle that) and two variants'
ranges never share a name.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

from reglab.study.plan import RunSpec, StudyPlan, group_runs
from reglab.study.spec import StudySpec, VariantSpec
from reglab.study.sweeps import set_path
from reglab.tune.spec import BASELINE, SearchDimension

VARIANT_PARAM = "variant"


def param_name(variant: str, path: str) -> str:
    return f"{variant}:{path}"


def candidates(spec: StudySpec) -> list[VariantSpec]:
    by_name = {v.name: v for v in spec.variants}
    return [by_name[name] for name in spec.tune.variants]


def suggest(trial, spec: StudySpec) -> tuple[str, tuple[tuple[str, Any], ...]]:
    """Draws a trial's variant and values (define-by-run); returns ``(variant, point)``."""
    variants = candidates(spec)
    if len(variants) > 1:
        name = trial.suggest_categorical(VARIANT_PARAM, [v.name for v in variants])
    else:
        name = variants[0].name
    variant = next(v for v in variants if v.name == name)
    return name, tuple((d.path, _suggest(trial, param_name(name, d.path), d))
                       for d in variant.search)


def _suggest(trial, name: str, dimension: SearchDimension):
    if dimension.kind == "choice":
        return trial.suggest_categorical(name, list(dimension.choices))
    if dimension.kind == "int":
        return trial.suggest_int(name, int(dimension.low), int(dimension.high))
    return trial.suggest_float(name, dimension.low, dimension.high,
                               log=dimension.kind == "log")


def from_params(spec: StudySpec, params: dict[str, Any]) -> tuple[str, tuple]:
    """``(variant, point)`` of a trial whose parameters were drawn before (a resumed
    trial, or the best one)."""
    variants = candidates(spec)
    name = params.get(VARIANT_PARAM, variants[0].name)
    variant = next(v for v in variants if v.name == name)
    return name, tuple((d.path, params[param_name(name, d.path)]) for d in variant.search)


def grid_space(spec: StudySpec) -> dict[str, list]:
    """The grid sampler's search space (one candidate with ranges, see ``check_tune``)."""
    space: dict[str, list] = {}
    variants = candidates(spec)
    if len(variants) > 1:
        space[VARIANT_PARAM] = [v.name for v in variants]
    for variant in variants:
        for d in variant.search:
            space[param_name(variant.name, d.path)] = list(d.grid())
    return space


def grid_size(spec: StudySpec) -> int:
    size = 1
    for values in grid_space(spec).values():
        size *= len(values)
    return size


def changes_at(spec: StudySpec, variant: str, point) -> dict[str, Any]:
    """The variant's changes with the point's values filled in."""
    changes = copy.deepcopy(next(v for v in spec.variants if v.name == variant).changes)
    for path, value in point:
        set_path(changes, path, value)
    return changes


def trial_runs(spec: StudySpec, number: int, variant: str, point) -> list[RunSpec]:
    """A trial's runs: one per tuning seed, named ``trial=N/variant[...]/seed=S``."""
    changes = changes_at(spec, variant, point)
    return [RunSpec(variant, tuple(point), seed, changes, trial=number)
            for seed in spec.tune.trial_seeds]


def confirmation_plan(spec: StudySpec, variant: str, point, schedule=None) -> StudyPlan:
    """The baseline (the study's ``baseline`` variant, else the base model) and the chosen
    trial's settings on the fresh seeds, grouped into populations as a grid study's runs.

    ``schedule`` (population-based training's ``[[epoch, {path: value}], ...]``): the chosen
    runs start with its first values and take the others from their epochs on."""
    baseline = next((v for v in spec.variants if v.name == BASELINE), None)
    baseline_changes = copy.deepcopy(baseline.changes) if baseline is not None else {}
    if schedule:
        first = schedule[0][1]
        point = tuple((path, first[path]) for path, _ in point)
    chosen = changes_at(spec, variant, point)
    if schedule and len(schedule) > 1:
        chosen["schedule"] = schedule
    runs = []
    for seed in spec.seeds:
        runs.append(RunSpec(BASELINE, (), seed, baseline_changes))
        if variant != BASELINE:  # when the baseline won, it is confirmed alone
            runs.append(RunSpec(variant, tuple(point), seed, chosen))
    return group_runs(spec, runs)


def corner_plan(spec: StudySpec) -> StudyPlan:
    """Every candidate variant at each end of its ranges (and each choice), one seed: what
    ``reglab validate`` builds and checks against the data before tuning starts."""
    runs = []
    names = set()
    for variant in [*candidates(spec), *(v for v in spec.variants if v.name == BASELINE)]:
        if variant.name in names:
            continue
        names.add(variant.name)
        axes = [[(d.path, value) for value in d.corners] for d in variant.search]
        for point in itertools.islice(itertools.product(*axes), 64):
            runs.append(RunSpec(variant.name, tuple(point), spec.tune.trial_seeds[0],
                                changes_at(spec, variant.name, point)))
    return group_runs(spec, runs)


def describe(spec: StudySpec) -> str:
    """``tuning 3 variants (4 searched values), budget 60 trials, 1 seed per trial; the best
    confirmed on 5 fresh seeds``."""
    from reglab.tune.trainer import objective_name

    tune = spec.tune
    variants = candidates(spec)
    dims = sum(len(v.search) for v in variants)
    budget = [f"{tune.trials} trials" if tune.trials else "",
              f"{tune.model_epochs:,} model-epochs" if tune.model_epochs else "",
              f"{tune.wall_time:g} s" if tune.wall_time else ""]
    return (f"tuning {len(variants)} variant{'s' if len(variants) != 1 else ''} "
            f"({dims} searched value{'s' if dims != 1 else ''}) on {objective_name(tune.objective)} "
            f"({tune.direction}), sampler {tune.sampler}, pruner {tune.pruner}; budget "
            f"{' or '.join(b for b in budget if b)} (the first reached); {tune.seeds} seed"
            f"{'s' if tune.seeds != 1 else ''} per trial; the best confirmed against the "
            f"baseline on {len(spec.seeds)} fresh seeds")
