"""The ``[tune]`` section of a study file, and the search ranges inside its variants.

In a tuning study, a value of a variant may be a search dimension instead of a number:

* ``{ log = [low, high] }``: a float drawn on a log scale (Optuna's ``suggest_float(log=True)``);
* ``{ linear = [low, high] }``: a float on a linear scale;
* ``{ int = [low, high] }``: an integer (both ends included);
* ``[a, b, c]``: one of the listed values (categorical);
* ``{ log = [low, high], n = 9 }`` (or ``linear``): one of the grid's ``n`` points, as in a
  grid study; the ``grid`` sampler needs every dimension to be one of these or a list.

Which variant a trial trains is itself a categorical dimension when more than one variant
is a candidate. ``[tune]`` sets the rest::

    [tune]
    objective = "val_accuracy"   # an epoch log of the validation split
    direction = "maximize"       # default: maximize accuracies, minimize losses
    trials = 60                  # budget: trials, model_epochs and/or wall_time (seconds)
    seeds = 1                    # seeds per trial (0, 1, ...)
    confirm_seeds = 5            # fresh seeds the best trial is confirmed on
    sampler = "tpe"              # tpe | random | cmaes | grid (Optuna's)
    pruner = "median"            # median | successive_halving | hyperband | none
    pruner_warmup = 5            # epochs before a trial may be pruned (default: the pruner's)
    batch = 0                    # trials per population (0: chosen from the model)
    select = "best"              # best | one_se
    one_se = "kernel_regularizer.l2"   # with select = "one_se": the strength that orders
    variants = ["l2", "dropout"] # the candidates (default: every variant)

Parsing imports neither torch nor Optuna.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reglab.study.sweeps import is_number

TUNE_KEYS = ("objective", "direction", "trials", "model_epochs", "wall_time", "seeds",
             "confirm_seeds", "sampler", "sampler_seed", "pruner", "batch", "select", "one_se",
             "variants", "scheduler", "pbt", "pruner_warmup")
SCHEDULERS = ("optuna", "pbt")
PBT_KEYS = ("interval", "quantile", "factors", "resample")
#: the values population-based training can change while members train (reglab.tune.pbt)
PERTURBABLE = ("dropout", "stochastic_depth", "kernel_regularizer.l1", "kernel_regularizer.l2",
               "bias_regularizer.l1", "bias_regularizer.l2", "learning_rate", "ema.momentum")
SAMPLERS = ("tpe", "random", "cmaes", "grid")
PRUNERS = ("median", "successive_halving", "hyperband", "none")
DIRECTIONS = ("maximize", "minimize")
SELECTIONS = ("best", "one_se")
RANGE_KINDS = ("log", "linear", "int")
#: the variant that trials are confirmed against; it has no search dimensions
BASELINE = "baseline"
#: the most trials one tuning study may ask for (each is a run in the store)
MAX_TRIALS = 10_000
#: the largest sampler_seed: Optuna's samplers seed numpy's RandomState, which takes [0, 2**32)
MAX_SAMPLER_SEED = 2**32 - 1
#: the most points a grid sampler's grid may have (Optuna lists them all)
MAX_GRID_POINTS = 100_000


@dataclass(frozen=True)
class SearchDimension:
    """One searched value of a variant: where it sits (a dotted path) and its range.

    ``kind`` is 'log', 'linear' or 'int' (``low``..``high``), or 'choice' (``choices``)."""

    path: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    choices: tuple = ()

    @property
    def corners(self) -> tuple:
        """The values a study file is checked at: both ends, or every choice."""
        if self.kind == "choice":
            return self.choices
        if self.kind == "int":
            return (int(self.low), int(self.high))
        return (self.low, self.high)

    @property
    def discrete(self) -> bool:
        return self.kind in ("choice", "int")

    @property
    def points(self) -> int:
        """How many values :meth:`grid` gives (without making them)."""
        if self.kind == "choice":
            return len(self.choices)
        return max(0, int(self.high) - int(self.low) + 1)

    def grid(self) -> tuple:
        """Every value, for the grid sampler (ints: every integer in the range)."""
        if self.kind == "choice":
            return self.choices
        if self.kind == "int":
            return tuple(range(int(self.low), int(self.high) + 1))
        raise ValueError(f"{self.path}: a continuous range has no grid")


@dataclass(frozen=True)
class TuneSpec:
    """The ``[tune]`` section, checked (see the module docstring)."""

    objective: str = "val_accuracy"
    direction: str = "maximize"
    trials: int | None = None
    model_epochs: int | None = None
    wall_time: float | None = None
    seeds: int = 1
    confirm_seeds: int = 5
    sampler: str = "tpe"
    sampler_seed: int = 0
    pruner: str = "median"
    #: epochs a trial trains before it may be pruned (None: the pruner's own default; the
    #: median pruner's n_warmup_steps, the halving pruners' min_resource)
    pruner_warmup: int | None = None
    batch: int = 0
    select: str = "best"
    one_se: str = ""
    variants: tuple[str, ...] = ()
    #: 'optuna' (trials asked, pruned, told) or 'pbt' (population-based training of
    #: ``trials`` trials at once, their first values drawn by the sampler)
    scheduler: str = "optuna"
    pbt_interval: int = 5
    pbt_quantile: float = 0.25
    pbt_factors: tuple[float, ...] = (0.8, 1.25)
    pbt_resample: float = 0.25

    @property
    def trial_seeds(self) -> tuple[int, ...]:
        return tuple(range(self.seeds))

    @property
    def fresh_seeds(self) -> tuple[int, ...]:
        """The confirmation's seeds: the ones after the trials' seeds, never used in tuning."""
        return tuple(range(self.seeds, self.seeds + self.confirm_seeds))


def default_direction(objective: str) -> str:
    """'minimize' for a loss or an error (``val_loss``, ``val_mae``: Keras's rule, as
    :func:`reglab.monitors.direction` reads it), else 'maximize'."""
    from reglab.errors import ConfigError
    from reglab.monitors import direction

    name = objective.removeprefix("val_")
    if name.endswith("error"):  # mean_squared_error...
        return "minimize"
    try:
        return "minimize" if direction(name) == "min" else "maximize"
    except ConfigError:  # a log Keras's rule cannot place: maximized unless the file says
        return "maximize"


def is_search_range(value: Any) -> bool:
    """A tuning dimension written as a table (``{ log = [...] }``, ``{ int = [...] }``...)."""
    return isinstance(value, dict) and any(k in value for k in (*RANGE_KINDS, "n"))


def is_search_value(value: Any) -> bool:
    return is_search_range(value) or (isinstance(value, list) and bool(value))


def search_dimension(value: Any, path: str, where: str, problems: list[str]
                     ) -> SearchDimension | None:
    """The dimension written at ``where``; records a problem (and returns None) when it is
    not one."""
    if isinstance(value, list):
        if not value or not all(is_number(v) or isinstance(v, (str, bool)) for v in value):
            problems.append(f"{where}: a list of choices holds numbers, strings or booleans, "
                            f"at least one. Got {value!r}.")
            return None
        # as Optuna compares them: 1, 1.0 and true are one choice
        if len({v if isinstance(v, str) else float(v) for v in value}) != len(value):
            problems.append(f"{where}: the choices must be distinct (1, 1.0 and true are one "
                            f"value). Got {value!r}.")
            return None
        return SearchDimension(path, "choice", choices=tuple(value))
    kinds = [k for k in RANGE_KINDS if k in value]
    unknown = sorted(set(value) - {*RANGE_KINDS, "n"})
    if len(kinds) != 1 or unknown:
        problems.append(f"{where}: a search range is {{ log = [low, high] }}, "
                        f"{{ linear = [low, high] }} or {{ int = [low, high] }} (with n = N for "
                        f"a grid of N points). Got {value!r}.")
        return None
    kind = kinds[0]
    bounds = value[kind]
    if (not isinstance(bounds, list) or len(bounds) != 2
            or not all(is_number(b) for b in bounds)):
        problems.append(f"{where}.{kind}: expected [low, high]. Got {bounds!r}.")
        return None
    low, high = float(bounds[0]), float(bounds[1])
    if low > high:
        problems.append(f"{where}.{kind}: low must be <= high. Got [{bounds[0]}, {bounds[1]}].")
        return None
    if kind == "log" and low <= 0:
        problems.append(f"{where}.log: bounds must be > 0. Got [{bounds[0]}, {bounds[1]}].")
        return None
    if kind == "int":
        if not all(isinstance(b, int) for b in bounds):
            problems.append(f"{where}.int: expected two ints. Got {bounds!r}.")
            return None
        if "n" in value:
            problems.append(f"{where}.n: an int range holds every int in it; n is for log and "
                            f"linear grids. Got n = {value['n']!r}.")
            return None
        return SearchDimension(path, "int", low, high)
    if "n" not in value:
        return SearchDimension(path, kind, low, high)
    n = value["n"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        problems.append(f"{where}.n: a grid needs n >= 1 points. Got {n!r}.")
        return None
    from reglab.study.sweeps import sweep_values

    points = sweep_values(value, where, problems)
    if len(set(points)) != len(points):
        problems.append(f"{where}: a grid of n = {n} points between equal bounds repeats one "
                        f"value. Got {value!r}; use a single value or n = 1.")
        return None
    return SearchDimension(path, "choice", choices=points)


def check_tune(raw: Any, variants: dict[str, list[SearchDimension]], problems: list[str],
               top_seeds: bool) -> TuneSpec | None:
    """Checks the ``[tune]`` table against the study's variants (name -> its dimensions)."""
    def add(message):
        problems.append(message)

    if not isinstance(raw, dict):
        add(f"tune: expected a table. Got {raw!r}.")
        return None
    from reglab.errors import did_you_mean

    for key in raw:
        if key not in TUNE_KEYS:
            add(f"tune: unknown key {key!r}.{did_you_mean(key, TUNE_KEYS)} Expected one of: "
                f"{', '.join(sorted(TUNE_KEYS))}.")
    if top_seeds:
        add("seeds: a tuning study sets its seeds in [tune]: 'seeds' per trial and "
            "'confirm_seeds' for the confirmation of the best trial. Remove the top-level "
            "'seeds'.")
    out: dict[str, Any] = {}
    objective = raw.get("objective", "val_accuracy")
    if not isinstance(objective, str) or not objective.startswith("val_") or objective == "val_":
        add("tune.objective: expected a validation log such as 'val_accuracy' or 'val_loss' "
            f"(trials are chosen on validation, never on test). Got {objective!r}.")
        objective = "val_accuracy"
    out["objective"] = objective
    direction = raw.get("direction", default_direction(objective))
    if direction not in DIRECTIONS:
        add(f"tune.direction: expected 'maximize' or 'minimize'. Got {direction!r}.")
        direction = "maximize"
    out["direction"] = direction

    def count(key, minimum, maximum=None):
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (
                maximum is not None and value > maximum):
            bound = f" and <= {maximum:,}" if maximum is not None else ""
            add(f"tune.{key}: expected an int >= {minimum}{bound}. Got {value!r}.")
            return None
        return value

    for key, minimum, maximum in (("trials", 1, MAX_TRIALS), ("model_epochs", 1, None),
                                  ("seeds", 1, 100), ("confirm_seeds", 2, 1000),
                                  ("batch", 0, None), ("sampler_seed", 0, MAX_SAMPLER_SEED),
                                  ("pruner_warmup", 1, None)):
        if key in raw:
            value = count(key, minimum, maximum)
            if value is not None:
                out[key] = value
    if "wall_time" in raw:
        value = raw["wall_time"]
        if not is_number(value) or value <= 0:
            add(f"tune.wall_time: expected seconds > 0. Got {value!r}.")
        else:
            out["wall_time"] = float(value)
    if not any(k in raw for k in ("trials", "model_epochs", "wall_time")):
        add("tune: expected a budget: 'trials', 'model_epochs' or 'wall_time' (seconds), "
            "or several (tuning ends at the first one reached). Got none.")
    for key, allowed in (("sampler", SAMPLERS), ("pruner", PRUNERS), ("select", SELECTIONS)):
        if key in raw:
            value = raw[key]
            if value not in allowed:
                add(f"tune.{key}: expected one of {', '.join(map(repr, allowed))}. Got "
                    f"{value!r}.{did_you_mean(str(value), allowed)}")
            else:
                out[key] = value

    names = list(variants)
    candidates = raw.get("variants", names)
    if not isinstance(candidates, list) or not candidates or not all(
            isinstance(c, str) for c in candidates) or len(set(candidates)) != len(candidates):
        add(f"tune.variants: expected a list of distinct variant names. Got {candidates!r}.")
        candidates = names
    for name in candidates:
        if name not in variants:
            add(f"tune.variants: no variant {name!r}.{did_you_mean(name, names)} Expected "
                f"names from: {', '.join(names)}.")
    candidates = [c for c in candidates if c in variants]
    out["variants"] = tuple(candidates)
    if BASELINE in variants and variants[BASELINE]:
        add(f"variants.{BASELINE}: the baseline is what the best trial is confirmed against, "
            "so it has fixed values. Got search dimensions at "
            f"{', '.join(d.path for d in variants[BASELINE])}; move them to another variant.")
    if not any(variants[c] for c in candidates) and len(candidates) < 2:
        add("tune: nothing to search: expected a search range in a candidate variant (such as "
            "l2 = { log = [1e-6, 1e-2] }) or at least two candidate variants.")
    if out.get("sampler") == "grid":
        for name in candidates:
            size = 1
            for dim in variants[name]:
                if not dim.discrete:
                    add(f"variants.{name}.{dim.path}: the grid sampler needs points; expected "
                        "a list, an int range or a range with n. Got a continuous range.")
                else:
                    size *= dim.points
            if size > MAX_GRID_POINTS:  # Optuna's grid sampler lists every point
                add(f"variants.{name}: the grid sampler's grid would have {size:,} points; "
                    f"expected at most {MAX_GRID_POINTS:,}. Use narrower int ranges or fewer "
                    "choices.")
        ranged = [c for c in candidates if variants[c]]
        if len(candidates) > 1 and ranged:
            add("tune.sampler: the grid sampler searches one variant's grid; a grid over "
                "several variants is a study without [tune] (every point of every variant). "
                f"Got {len(candidates)} candidate variants ({', '.join(candidates)}), "
                f"{len(ranged)} with ranges ({', '.join(ranged)}); name one with "
                f'tune.variants = ["{ranged[0]}"].')
    scheduler = raw.get("scheduler", "optuna")
    if scheduler not in SCHEDULERS:
        add(f"tune.scheduler: expected 'optuna' or 'pbt'. Got {scheduler!r}.")
    elif scheduler == "pbt":
        out["scheduler"] = "pbt"
        _check_pbt(raw, out, variants, candidates, add)
    elif "pbt" in raw:
        add("tune.pbt: used only with scheduler = 'pbt'. Got pbt without it.")
    if "pruner_warmup" in raw and out.get("pruner", "median") == "none":
        add("tune.pruner_warmup: there is no pruner to warm up (pruner = 'none'"
            f"{' under population-based training' if scheduler == 'pbt' else ''}). Got "
            f"pruner_warmup = {raw['pruner_warmup']!r}.")
    if out.get("select") == "one_se":
        strength = raw.get("one_se")
        searched = {d.path for c in candidates for d in variants[c]
                    if d.kind != "choice" or all(is_number(v) for v in d.choices)}
        if not isinstance(strength, str) or strength not in searched:
            add("tune.one_se: the 1-SE rule picks the strongest regularization within one "
                "standard error of the best; expected the path of a searched strength "
                f"({', '.join(sorted(searched)) or 'none searched'}). Got {strength!r}.")
        else:
            out["one_se"] = strength
    elif "one_se" in raw:
        add("tune.one_se: used only with select = 'one_se'. Got one_se without it.")
    return TuneSpec(**out)


def _check_pbt(raw: dict, out: dict, variants: dict, candidates: list[str], add) -> None:
    """The settings of population-based training (``pbt = { ... }``) and what it needs."""
    from reglab.errors import did_you_mean

    table = raw.get("pbt", {})
    if not isinstance(table, dict):
        add(f"tune.pbt: expected a table {{ interval, quantile, factors, resample }}. "
            f"Got {table!r}.")
        table = {}
    for key in table:
        if key not in PBT_KEYS:
            add(f"tune.pbt: unknown key {key!r}.{did_you_mean(key, PBT_KEYS)} Expected one "
                f"of: {', '.join(PBT_KEYS)}.")
    interval = table.get("interval", 5)
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
        add(f"tune.pbt.interval: expected an int >= 1 (epochs between exploits). "
            f"Got {interval!r}.")
    else:
        out["pbt_interval"] = interval
    quantile = table.get("quantile", 0.25)
    if not is_number(quantile) or not 0 < quantile <= 0.5:
        add(f"tune.pbt.quantile: expected a number in (0, 0.5]. Got {quantile!r}.")
    else:
        out["pbt_quantile"] = float(quantile)
    factors = table.get("factors", [0.8, 1.25])
    if not isinstance(factors, list) or not factors or not all(
            is_number(f) and f > 0 for f in factors):
        add(f"tune.pbt.factors: expected a list of numbers > 0. Got {factors!r}.")
    else:
        out["pbt_factors"] = tuple(float(f) for f in factors)
    resample = table.get("resample", 0.25)
    if not is_number(resample) or not 0 <= resample <= 1:
        add(f"tune.pbt.resample: expected a number in [0, 1]. Got {resample!r}.")
    else:
        out["pbt_resample"] = float(resample)
    if "trials" not in raw:
        add("tune.trials: population-based training trains 'trials' trials at once; "
            "expected it. Got none.")
    if raw.get("pruner", "none") != "none":
        add(f"tune.pruner: population-based training replaces pruning; expected none. "
            f"Got {raw['pruner']!r}.")
    out["pruner"] = "none"
    if raw.get("batch", 0):
        add("tune.batch: population-based training trains all its 'trials' at once; "
            f"expected no batch. Got {raw['batch']!r}.")
    if raw.get("select", "best") != "best":
        add("tune.select: population-based training confirms its best trial's schedule; "
            f"expected 'best'. Got {raw['select']!r}.")
    if len(candidates) != 1:
        add(f"tune.variants: population-based training perturbs one variant's values; "
            f"expected one candidate. Got {len(candidates)}: {', '.join(candidates)}.")
        return
    for dim in variants[candidates[0]]:
        if dim.path not in PERTURBABLE:
            add(f"variants.{candidates[0]}.{dim.path}: population-based training changes "
                f"values while members train; expected one of {', '.join(PERTURBABLE)}. "
                f"Got {dim.path!r}.")
        elif dim.kind == "choice" and not all(is_number(c) for c in dim.choices):
            add(f"variants.{candidates[0]}.{dim.path}: population-based training sets "
                f"numbers; expected numeric choices. Got {list(dim.choices)!r}.")

