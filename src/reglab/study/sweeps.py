"""Sweeps in study files: any number may be a list of values or a grid.

``l2 = [1e-4, 1e-3]`` is two points; ``l2 = { log = [1e-5, 1e-1], n = 9 }`` is nine
points evenly spaced in log10; ``{ linear = [0.1, 0.5], n = 5 }`` is evenly spaced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: the most runs one study may plan (a plan is held in memory, and so is its store's index);
#: a grid of more points than this is refused before its points are made
MAX_RUNS = 100_000

GRID_KEYS = ("log", "linear")


@dataclass(frozen=True)
class SweepSpec:
    """One swept value: where it sits in the variant (a dotted path) and its points."""

    path: str
    values: tuple[float, ...]


def set_path(tree: dict, path: str, value: Any) -> None:
    """Sets ``tree``'s value at a dotted ``path`` (``kernel_regularizer.l2``) in place."""
    keys = path.split(".")
    for key in keys[:-1]:
        tree = tree[key]
    tree[keys[-1]] = value


def format_value(value: Any) -> str:
    """A sweep or search value as run names show it: numbers to 6 significant digits."""
    # -0.0 as 0 (the same setting: two points 0.0 and -0.0 are one value listed twice)
    return f"{value + 0:.6g}" if is_number(value) else str(value)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_real(value: Any) -> bool:
    """An int or float, finite or not (a sweep's point, checked for finiteness later)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_sweep(value: Any) -> bool:
    return (isinstance(value, list) and bool(value) and all(_is_real(v) for v in value)) or (
        isinstance(value, dict) and any(k in value for k in (*GRID_KEYS, "n")))


def sweep_values(value: Any, where: str, problems: list[str]) -> tuple[float, ...]:
    """The points of a sweep; records a problem (and returns ()) when it has none."""
    if isinstance(value, list):
        if not value:
            problems.append(f"{where}: a sweep must have at least one point. Got [].")
        bad = [f"{where}[{i}]: expected a finite number. Got {v!r}."
               for i, v in enumerate(value) if not math.isfinite(v)]
        problems.extend(bad)
        if bad:
            return ()
        # a list of ints stays ints (swa.start = [5, 10], patience = [2, 5]: settings that
        # take an int); any float makes every point a float
        return tuple(value) if all(isinstance(v, int) for v in value) else \
            tuple(float(v) for v in value)
    kinds = [k for k in GRID_KEYS if k in value]
    unknown = sorted(set(value) - {*GRID_KEYS, "n"})
    if len(kinds) != 1 or unknown:
        problems.append(f"{where}: a grid is {{ log = [low, high], n = N }} or "
                        f"{{ linear = [low, high], n = N }}. Got {value!r}.")
        return ()
    kind = kinds[0]
    bounds, n = value[kind], value.get("n")
    if (not isinstance(bounds, list) or len(bounds) != 2
            or not all(is_number(b) for b in bounds)):
        problems.append(f"{where}.{kind}: expected [low, high], two finite numbers. "
                        f"Got {bounds!r}.")
        return ()
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        problems.append(f"{where}.n: expected a whole number of points >= 1 (an int, such "
                        f"as 5). Got {n!r}.")
        return ()
    if n > MAX_RUNS:  # every point is at least one run
        problems.append(f"{where}.n: at most {MAX_RUNS:,} points (a study plans at most "
                        f"{MAX_RUNS:,} runs). Got {n:,}.")
        return ()
    low, high = float(bounds[0]), float(bounds[1])
    if low > high:
        problems.append(f"{where}.{kind}: low must be <= high. Got [{low}, {high}].")
        return ()
    if kind == "log":
        if low <= 0:
            problems.append(f"{where}.log: bounds must be > 0. Got [{low}, {high}].")
            return ()
        if n == 1:
            return (low,)
        a, b = math.log10(low), math.log10(high)
        return tuple(10 ** (a + (b - a) * i / (n - 1)) for i in range(n))
    if n == 1:
        return (low,)
    return tuple(low + (high - low) * i / (n - 1) for i in range(n))
