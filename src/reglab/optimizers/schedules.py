"""Keras 3's learning-rate schedules: ``keras.optimizers.schedules``, the same names,
arguments, defaults and formulas.

A schedule passed as an optimizer's ``learning_rate`` gives the rate of each step from the
number of steps taken before it (Keras's ``optimizer.iterations``: 0 at the first step). As
in Keras the formulas run in float32; :meth:`LearningRateSchedule.__call__` returns a
``numpy.float32``. In a population each member's schedule follows its own step count.

Example:
    >>> schedule = ExponentialDecay(0.1, decay_steps=100, decay_rate=0.5)
    >>> float(schedule(100)), float(schedule(200))
    (0.05000000074505806, 0.02500000037252903)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from reglab.errors import ConfigError, unknown_name

f32 = np.float32


def _number(owner: str, name: str, value: Any, positive: bool = False,
            non_negative: bool = False) -> float:
    ok = isinstance(value, (int, float, np.floating, np.integer)) and \
        not isinstance(value, bool) and math.isfinite(value)
    if not ok or (positive and value <= 0) or (non_negative and value < 0):
        wanted = ("a finite number > 0" if positive else "a finite number >= 0"
                  if non_negative else "a finite number")
        raise ConfigError(f"{owner}: '{name}' must be {wanted}. Got {value!r}.")
    return value


def _rate(owner: str, name: str, value: Any) -> float:
    """A learning rate the schedule starts from or reaches: a finite number >= 0."""
    return _number(owner, name, value, non_negative=True)


class LearningRateSchedule:
    """Base class: a subclass defines ``__call__(step)`` (the rate at ``step``, the steps
    taken before this one) and, to be saved with a model, ``get_config``."""

    def __call__(self, step):
        raise NotImplementedError(f"Learning rate schedule '{type(self).__name__}' must "
                                  "override `__call__(self, step)`.")

    def get_config(self) -> dict[str, Any]:
        raise NotImplementedError(f"Learning rate schedule '{type(self).__name__}' must "
                                  "override `get_config()` in order to be serializable.")

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LearningRateSchedule:
        return cls(**config)

    def rate(self, step: int) -> float:
        """The rate at ``step`` as a float, checked: what the engine uses."""
        value = self(step)
        try:
            value = float(np.asarray(value, dtype=np.float64))
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"{type(self).__name__}: the learning rate at step {step} must "
                              f"be a finite number >= 0. Got {self(step)!r}.")
        return value

    def __repr__(self) -> str:
        try:
            args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        except NotImplementedError:
            args = ""
        return f"{type(self).__name__}({args})"


class _RateDecay(LearningRateSchedule):
    """The arguments of ExponentialDecay and InverseTimeDecay, and their progress
    ``step / decay_steps`` (floored with ``staircase``)."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name=None):
        owner = type(self).__name__
        self.initial_learning_rate = _rate(owner, "initial_learning_rate",
                                           initial_learning_rate)
        self.decay_steps = _number(owner, "decay_steps", decay_steps, positive=True)
        self.decay_rate = _number(owner, "decay_rate", decay_rate, non_negative=True)
        self.staircase = bool(staircase)
        self.name = owner if name is None else name

    def _progress(self, step):
        p = f32(step) / f32(self.decay_steps)
        return np.floor(p) if self.staircase else p

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase, "name": self.name}


class ExponentialDecay(_RateDecay):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)`` (the exponent floored
    with ``staircase``)."""

    def __call__(self, step):
        return f32(self.initial_learning_rate) * np.power(f32(self.decay_rate),
                                                          self._progress(step))


class PiecewiseConstantDecay(LearningRateSchedule):
    """``values[0]`` while ``step <= boundaries[0]``, ``values[1]`` while ``step <=
    boundaries[1]``, ..., ``values[-1]`` after the last boundary."""

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        owner = type(self).__name__
        for key, given in (("boundaries", boundaries), ("values", values)):
            if isinstance(given, (str, bytes)) or not hasattr(given, "__iter__"):
                raise ConfigError(f"{owner}: '{key}' must be a list of numbers. "
                                  f"Got {given!r}.")
        boundaries, values = list(boundaries), list(values)
        if len(boundaries) != len(values) - 1:
            raise ConfigError(f"{owner}: the length of 'boundaries' should be 1 less than the "
                              f"length of 'values'. Got boundaries={boundaries} of length "
                              f"{len(boundaries)}, and values={values} of length "
                              f"{len(values)}.")
        for i, b in enumerate(boundaries):
            _number(owner, f"boundaries[{i}]", b)
        for i, v in enumerate(values):
            _rate(owner, f"values[{i}]", v)
        if any(b >= c for b, c in zip(boundaries, boundaries[1:])):
            raise ConfigError(f"{owner}: 'boundaries' must be strictly increasing. "
                              f"Got {boundaries}.")
        self.boundaries, self.values, self.name = boundaries, values, name

    def __call__(self, step):
        for boundary, value in zip(self.boundaries, self.values):
            if step <= boundary:
                return f32(value)
        return f32(self.values[-1])

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


class PolynomialDecay(LearningRateSchedule):
    """From ``initial_learning_rate`` to ``end_learning_rate`` in ``decay_steps``:
    ``(initial - end) * (1 - step / decay_steps) ** power + end`` (with ``cycle``, over the
    first multiple of ``decay_steps`` not below ``step``; else ``end`` after it)."""

    def __init__(self, initial_learning_rate, decay_steps, end_learning_rate=0.0001,
                 power=1.0, cycle=False, name="PolynomialDecay"):
        owner = type(self).__name__
        self.initial_learning_rate = _rate(owner, "initial_learning_rate",
                                           initial_learning_rate)
        self.decay_steps = _number(owner, "decay_steps", decay_steps, positive=True)
        self.end_learning_rate = _rate(owner, "end_learning_rate", end_learning_rate)
        self.power = _number(owner, "power", power)
        self.cycle = bool(cycle)
        self.name = name

    def __call__(self, step):
        step, decay_steps = f32(step), f32(self.decay_steps)
        if self.cycle:
            multiplier = f32(1.0) if step == 0 else np.ceil(step / f32(self.decay_steps))
            decay_steps = decay_steps * multiplier
        else:
            step = min(step, decay_steps)
        p = step / decay_steps
        initial, end = f32(self.initial_learning_rate), f32(self.end_learning_rate)
        return (initial - end) * np.power(f32(1) - p, f32(self.power)) + end

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "end_learning_rate": self.end_learning_rate,
                "power": self.power, "cycle": self.cycle, "name": self.name}


class InverseTimeDecay(_RateDecay):
    """``initial_learning_rate / (1 + decay_rate * step / decay_steps)`` (the quotient
    floored with ``staircase``)."""

    def __call__(self, step):
        return f32(self.initial_learning_rate) / (f32(1) + f32(self.decay_rate)
                                                  * self._progress(step))


def _cosine(fraction):
    return f32(0.5) * (f32(1.0) + np.cos(f32(math.pi) * fraction))


class CosineDecay(LearningRateSchedule):
    """A cosine from the rate to ``alpha`` times it in ``decay_steps``; with
    ``warmup_target``, first a straight line from ``initial_learning_rate`` to it in
    ``warmup_steps``, then the cosine from ``warmup_target``."""

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay",
                 warmup_target=None, warmup_steps=0):
        owner = type(self).__name__
        self.initial_learning_rate = _rate(owner, "initial_learning_rate",
                                           initial_learning_rate)
        self.decay_steps = _number(owner, "decay_steps", decay_steps, positive=True)
        self.alpha = _number(owner, "alpha", alpha)
        self.name = name
        self.warmup_target = None if warmup_target is None else _rate(
            owner, "warmup_target", warmup_target)
        self.warmup_steps = _number(owner, "warmup_steps", warmup_steps, non_negative=True)
        if self.warmup_target is not None and self.warmup_steps <= 0:
            raise ConfigError(f"{owner}: 'warmup_steps' must be > 0 with a 'warmup_target'. "
                              f"Got {warmup_steps!r}.")

    def _decay(self, step, start):
        alpha = f32(self.alpha)
        decayed = (f32(1) - alpha) * _cosine(step / f32(self.decay_steps)) + alpha
        return start * decayed

    def __call__(self, step):
        step, initial = f32(step), f32(self.initial_learning_rate)
        decay_steps = f32(self.decay_steps)
        if self.warmup_target is None:
            return self._decay(min(step, decay_steps), initial)
        target, warmup = f32(self.warmup_target), f32(self.warmup_steps)
        step = min(step, decay_steps + warmup)
        if step < warmup:
            return (target - initial) * (step / warmup) + initial
        return self._decay(step - warmup, target)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "alpha": self.alpha, "name": self.name,
                "warmup_target": self.warmup_target, "warmup_steps": self.warmup_steps}


class CosineDecayRestarts(LearningRateSchedule):
    """Cosine decay with warm restarts (SGDR): a first cosine over ``first_decay_steps``,
    each next one ``t_mul`` times longer and starting ``m_mul`` times lower."""

    def __init__(self, initial_learning_rate, first_decay_steps, t_mul=2.0, m_mul=1.0,
                 alpha=0.0, name="SGDRDecay"):
        owner = type(self).__name__
        self.initial_learning_rate = _rate(owner, "initial_learning_rate",
                                           initial_learning_rate)
        self.first_decay_steps = _number(owner, "first_decay_steps", first_decay_steps,
                                         positive=True)
        self.t_mul = _number(owner, "t_mul", t_mul, positive=True)
        self.m_mul = _number(owner, "m_mul", m_mul)
        self.alpha = _number(owner, "alpha", alpha)
        self.name = name

    def __call__(self, step):
        fraction = f32(step) / f32(self.first_decay_steps)
        t_mul = f32(self.t_mul)
        if t_mul == 1:
            restart = np.floor(fraction)
            fraction = fraction - restart
        else:
            restart = np.floor(np.log(f32(1) - fraction * (f32(1) - t_mul)) / np.log(t_mul))
            done = (f32(1) - np.power(t_mul, restart)) / (f32(1) - t_mul)
            fraction = (fraction - done) / np.power(t_mul, restart)
        cosine = np.power(f32(self.m_mul), restart) * _cosine(fraction)
        alpha = f32(self.alpha)
        return f32(self.initial_learning_rate) * ((f32(1) - alpha) * cosine + alpha)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "first_decay_steps": self.first_decay_steps, "t_mul": self.t_mul,
                "m_mul": self.m_mul, "alpha": self.alpha, "name": self.name}


_BY_NAME = {cls.__name__: cls for cls in (ExponentialDecay, PiecewiseConstantDecay,
                                          PolynomialDecay, InverseTimeDecay, CosineDecay,
                                          CosineDecayRestarts)}


NAMES = tuple(sorted(_BY_NAME))


def built_in(schedule) -> type | None:
    """The schedule's class when it is one of this module's, else None."""
    cls = _BY_NAME.get(type(schedule).__name__)
    return cls if cls is type(schedule) else None


def serialize(schedule: LearningRateSchedule) -> dict[str, Any]:
    """Keras's serialized form (``module``, ``class_name``, ``config``)."""
    return {"module": "keras.optimizers.schedules", "class_name": type(schedule).__name__,
            "config": schedule.get_config(), "registered_name": None}


def deserialize(config: dict[str, Any], where: str = "schedules.deserialize"
                ) -> LearningRateSchedule:
    """A schedule from :func:`serialize`'s form (Keras's), built-in classes only."""
    name = config.get("class_name") if isinstance(config, dict) else None
    cls = _BY_NAME.get(name)
    if cls is None:
        raise unknown_name(where, "learning-rate schedule", name, _BY_NAME)
    inner = config.get("config", {})
    if not isinstance(inner, dict):
        raise ConfigError(f"{where}: a schedule's 'config' must be a table. Got {inner!r}.")
    try:
        return cls.from_config(inner)
    except TypeError as error:
        raise ConfigError(f"{where}: the arguments do not fit {name}: {error}. "
                          f"Got {inner!r}.") from None
