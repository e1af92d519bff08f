"""Data regimes in study files: ``[data] train_size`` and ``label_noise``, sweepable (no torch).

::

    [data]
    train_size = [1000, 3000, 10000, 50000]   # samples (an int) or a fraction (a float in (0, 1])
    label_noise = [0, 0.3]                    # a rate of wrong training labels, or
    # label_noise = { matrix = [[0.8, 0.2], [0.1, 0.9]] }   a class-confusion matrix
    noisy_validation = true                   # validation labels as noisy as training's (default)

Either key may be one value or a sweep (a list, or a grid ``{ log = [1000, 50000], n = 4 }``).
A key with two or more values is an *axis*: every variant × sweep point × seed runs once per
combination of the axes' values (a *regime*), and the regime is part of each run's name
(``train_size=1000,label_noise=0.3/dropout/seed=2``) and of its record. A single value is a
setting of every run. ``train_size = 1.0`` and ``label_noise = 0`` are the defaults: a study
that writes them is the same study as one that does not (same fingerprint and runs).

What each value means for a run's data is in :mod:`reglab.datasets.regimes` (stratified
nested subsets of the training split, left after the validation split; exact counts of
replaced labels), drawn with the run's seed; the test set is never changed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from typing import Any

from reglab.study.sweeps import format_value, is_number, is_sweep, sweep_values

#: the data keys that make regimes, in the order regimes are named and enumerated
REGIME_KEYS = ("train_size", "label_noise")
#: what a value of each key is, for error messages
EXPECTED = {
    "train_size": "an int >= 1 (training samples) or a number in (0, 1] (a fraction of the "
                  "training split)",
    "label_noise": "a number in [0, 1] (the rate of replaced training labels) or "
                   "{ matrix = [[...], ...] } (rows: true class, each a distribution over the "
                   "noisy class)",
}
ROW_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Regime:
    """A run's data: ``train_size`` (None: the whole training split; an int: samples; a
    float: a fraction) and ``label_noise`` (0.0: none; a rate; or a matrix as a tuple of row
    tuples), with ``noisy_validation`` (validation labels corrupted as training's)."""

    train_size: int | float | None = None
    label_noise: float | tuple = 0.0
    noisy_validation: bool = True

    @property
    def noisy(self) -> bool:
        return not (isinstance(self.label_noise, float) and self.label_noise == 0.0)

    @property
    def seeded(self) -> bool:
        """Whether the data depend on the run's seed (a subset, or noise; ``train_size =
        1.0``, the whole training split, is no subset)."""
        whole = self.train_size is None or (isinstance(self.train_size, float)
                                            and self.train_size == 1.0)
        return not whole or self.noisy


def format_regime_value(value: Any, key: str = "label_noise") -> str:
    """A regime value as run names show it: ``1000`` (samples), ``0.5`` and ``1.0``
    (fractions: a train_size float keeps its point), ``0.3`` (a rate), ``matrix-1a2b3c``."""
    if isinstance(value, (list, tuple)):
        text = json.dumps([[float(v) for v in row] for row in value])
        return f"matrix-{hashlib.sha256(text.encode()).hexdigest()[:6]}"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    text = format_value(value)
    if key == "train_size" and not any(c in text for c in ".en"):
        text += ".0"  # 1.0 is the whole split, 1 would be one sample
    return text


def regime_from_run_id(run_id: str) -> dict[str, Any]:
    """The regime a run id names (``train_size=1000,label_noise=0.3/dropout/seed=2`` →
    ``{'train_size': 1000, 'label_noise': 0.3}``), ``{}`` when it names none: for records
    whose store lost its ``regime`` column. A matrix keeps its label (``matrix-1a2b3c``)."""
    head = run_id.split("/", 1)[0]
    pairs = [part.split("=", 1) for part in head.split(",")] if "/" in run_id else []
    if not pairs or any(len(pair) != 2 or pair[0] not in REGIME_KEYS for pair in pairs):
        return {}
    regime: dict[str, Any] = {}
    for key, text in pairs:
        try:
            regime[key] = float(text) if "." in text or "e" in text or key != "train_size" \
                else int(text)
        except ValueError:
            regime[key] = text  # a matrix's label
    return regime


def regime_label(regime) -> str:
    """``train_size=1000,label_noise=0.3`` for a run's regime (pairs or a dict), '' for none."""
    pairs = dict(regime)
    return ",".join(f"{key}={format_regime_value(pairs[key], key)}" for key in REGIME_KEYS
                    if key in pairs)


def _as_matrix(node: dict, where: str, problems: list[str]) -> tuple | None:
    if set(node) != {"matrix"}:
        problems.append(f"{where}: expected {{ matrix = [[...], ...] }}. Got {node!r}.")
        return None
    rows = node["matrix"]
    square = (isinstance(rows, list) and len(rows) >= 2 and all(
        isinstance(row, list) and len(row) == len(rows) and all(is_number(v) for v in row)
        for row in rows))
    if not square:
        problems.append(f"{where}.matrix: expected a square matrix of numbers, one row per "
                        f"class (at least 2). Got {rows!r}.")
        return None
    bad = False
    for i, row in enumerate(rows):
        if any(v < 0 for v in row) or abs(sum(row) - 1.0) > ROW_TOLERANCE:
            problems.append(f"{where}.matrix[{i}]: expected numbers >= 0 that sum to 1 (the "
                            f"distribution of class {i}'s noisy label). Got {row!r}.")
            bad = True
    return None if bad else tuple(tuple(float(v) for v in row) for row in rows)


def _train_size(value: Any, where: str, problems: list[str]):
    if isinstance(value, int) and not isinstance(value, bool):
        if value >= 1:
            return value
    elif is_number(value):
        if 0 < value <= 1:
            return float(value)
        if value > 1 and float(value).is_integer():
            problems.append(f"{where}: a float is a fraction, expected in (0, 1]; for a number "
                            f"of samples write an int ({int(value)}). Got {value!r}.")
            return None
    problems.append(f"{where}: expected {EXPECTED['train_size']}. Got {value!r}.")
    return None


def _label_noise(value: Any, where: str, problems: list[str]):
    if isinstance(value, dict):
        return _as_matrix(value, where, problems)
    if is_number(value) and 0 <= value <= 1:
        return float(value)
    problems.append(f"{where}: expected {EXPECTED['label_noise']}. Got {value!r}.")
    return None


def _values(key: str, raw: Any, problems: list[str]) -> tuple:
    """The values of one regime key as written: one value, a list, or a grid."""
    where = f"data.{key}"
    check = _train_size if key == "train_size" else _label_noise
    if isinstance(raw, dict) and is_sweep(raw):  # a grid: { log = [low, high], n = N }
        points = sweep_values(raw, where, problems)
        bounds = next((raw[k] for k in ("log", "linear") if k in raw), None)
        if key == "train_size" and isinstance(bounds, list) and all(
                isinstance(b, int) and not isinstance(b, bool) for b in bounds):
            points = tuple(int(round(p)) for p in points)  # a grid of sample counts
        values = [check(p, f"{where}[{i}]", problems) for i, p in enumerate(points)]
    elif isinstance(raw, list):
        if not raw:
            problems.append(f"{where}: a sweep must have at least one point. Got [].")
        values = [check(v, f"{where}[{i}]", problems) for i, v in enumerate(raw)]
    else:
        values = [check(raw, where, problems)]
    names: dict[str, int] = {}
    for i, value in enumerate(values):
        if value is None:
            continue
        name = format_regime_value(value, key)
        if name in names:
            problems.append(f"{where}[{i}]: the value {value!r} is listed already, at "
                            f"[{names[name]}] (runs would be named alike). Expected distinct "
                            "values.")
        names.setdefault(name, i)
    return tuple(v for v in values if v is not None)


def check_regimes(data_raw: dict, problems: list[str]) -> dict[str, Any]:
    """The [data] regime keys as :class:`reglab.study.spec.DataSpec` arguments: each key's
    values (a single default value, ``train_size = 1.0`` or ``label_noise = 0``, is left out,
    so that the study is the one without it), and ``noisy_validation``."""
    out: dict[str, Any] = {}
    for key in REGIME_KEYS:
        if key not in data_raw:
            continue
        values = _values(key, data_raw[key], problems)
        default = 1.0 if key == "train_size" else 0.0
        if values == (default,) and not isinstance(values[0], int):
            continue
        if key == "label_noise":  # 0 is 0.0: a rate
            values = tuple(float(v) if isinstance(v, (int, float)) else v for v in values)
        out[key] = values
    if "noisy_validation" in data_raw:
        value = data_raw["noisy_validation"]
        if not isinstance(value, bool):
            problems.append(f"data.noisy_validation: expected true or false. Got {value!r}.")
        elif not value:
            out["noisy_validation"] = False
    return out


def regime_axes(data) -> dict[str, tuple]:
    """``{key: values}`` of the regime keys of a :class:`DataSpec` with two or more values."""
    return {key: getattr(data, key) for key in REGIME_KEYS if len(getattr(data, key)) > 1}


def fixed_regime_label(data) -> str:
    """``train_size=0.5`` for the regime keys a :class:`DataSpec` sets to one value other than
    the default (every run trains in that regime); '' for none."""
    return regime_label({key: getattr(data, key)[0] for key in REGIME_KEYS
                         if len(getattr(data, key)) == 1})


def regime_points(data) -> list[tuple[tuple[str, Any], ...]]:
    """Every combination of the axes' values, ``train_size`` outermost, in the file's order;
    ``[()]`` without axes."""
    axes = regime_axes(data)
    grids = [[(key, value) for value in values] for key, values in axes.items()]
    return [tuple(combination) for combination in itertools.product(*grids)]


def resolve_regime(data, regime=()) -> Regime:
    """The full :class:`Regime` of a run: the data spec's single values, its axes' values from
    ``regime`` (pairs or a dict)."""
    chosen = dict(regime)
    settings = {}
    for key in REGIME_KEYS:
        values = getattr(data, key)
        if key in chosen:
            value = chosen[key]
        elif len(values) == 1:
            value = values[0]
        else:
            continue
        if key == "label_noise" and isinstance(value, list):  # from JSON
            value = tuple(tuple(float(v) for v in row) for row in value)
        settings[key] = value
    return Regime(settings.get("train_size"), settings.get("label_noise", 0.0),
                  data.noisy_validation)

