"""Keras 3's optimizers: their arguments and defaults, and their update math.

The math is written once, for a population's stacked weights ``(P, ...)``: a single
model is a population of one. Each member's hyperparameters reach the math through
:class:`OptimizerMembers`, as floats (Adam's fused kernel, called per group of equal
members on each member's own slices) or as per-member tensors shaped to broadcast along
a weight's member axis. Updates are in place, under ``torch.no_grad()``. Keras's
``use_ema`` arguments and reglab's ``swa_start`` are accepted by every optimizer; the
engine's update chain does the averaging.
"""

from __future__ import annotations

import inspect
import math
import numbers
import re
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reglab import native
from reglab.errors import ConfigError, UnknownArgumentError, unknown_name
from reglab.native import adam as native_adam
from reglab.native import pending_gradient
from reglab.optimizers import schedules
from reglab.optimizers.schedules import LearningRateSchedule
from reglab.regularizers.penalty import add_penalty_gradient_

Value = float | torch.Tensor

#: Keras's gradient clipping arguments, every optimizer's (at most one set)
CLIPPINGS = ("clipnorm", "clipvalue", "global_clipnorm")
FLOAT32_MAX = 3.4028234663852886e38


def _optional_count(owner: str, name: str, value: Any, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"{owner}: '{name}' must be None or an int >= {minimum}. "
                          f"Got {value!r}.")
    return int(value)


def _check(owner: str, name: str, value: Any, lo: float, hi: float = math.inf,
           lo_open: bool = False, hi_open: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
    if not ok:
        if math.isinf(hi):  # no upper bound: the bound that matters is finiteness
            wanted = f"a finite float {'>' if lo_open else '>='} {lo}"
        else:
            left, right = ("(" if lo_open else "["), (")" if hi_open else "]")
            wanted = f"a float in the range {left}{lo}, {hi}{right}"
        raise ConfigError(f"{owner}: '{name}' must be {wanted}. Got {value!r}.")
    return float(value)


def _fused_adam_available(device: torch.device) -> bool:
    return hasattr(torch, "_fused_adam_") and device.type in ("cpu", "cuda")


def _fuses_stacked(device: torch.device) -> bool:
    """Whether the fused Adam kernel may take a population's stacked tensors at once
    (off the CPU; see ``Adam._apply_fused``)."""
    return device.type != "cpu"


def _bias_corrected_rate(lr: Value, b1: Value, b2: Value, step, dtype: torch.dtype) -> Value:
    """Adam's ``lr * sqrt(1 - b2**t) / (1 - b1**t)``, computed in float64 whatever the
    inputs (floats, or per-member tensors), then cast to ``dtype``."""
    if not any(isinstance(v, torch.Tensor) for v in (lr, b1, b2, step)):
        return lr * (1 - b2**step) ** 0.5 / (1 - b1**step)

    def f64(v):
        return v.to(torch.float64) if isinstance(v, torch.Tensor) else torch.tensor(
            float(v), dtype=torch.float64)

    lr, b1, b2, step = map(f64, (lr, b1, b2, step))
    alpha = lr * (1 - b2.pow(step)) ** 0.5 / (1 - b1.pow(step))
    return alpha.to(dtype)


def _by_coefficient(decay: list[list[float] | None] | None, count: int, positions: list[int]
                    ) -> dict[float, list[tuple[int, list[int]]]]:
    """The ``count`` params' rows at ``positions`` grouped by their coupled-decay
    coefficient (``decay[i][p]``, 0.0 where ``decay`` or ``decay[i]`` is None), as
    ``{coefficient: [(param index, positions), ...]}`` in param order."""
    if decay is None:
        return {0.0: [(i, positions) for i in range(count)]}
    calls: dict[float, list[tuple[int, list[int]]]] = {}
    for i in range(count):
        if decay[i] is None:
            calls.setdefault(0.0, []).append((i, positions))
            continue
        chosen: dict[float, list[int]] = {}
        for p in positions:
            chosen.setdefault(decay[i][p], []).append(p)
        for c, ps in chosen.items():
            calls.setdefault(c, []).append((i, ps))
    return calls


def _add_sign_parts(params: list[torch.Tensor], grads: list[torch.Tensor],
                    sign: list[list[float] | None] | None) -> None:
    """Adds ``s * sign(param)`` (``sign``: per param, each member's ``s``, or None) to the
    gradients: what a step given ``sign`` adds before the rest of its arithmetic."""
    if sign is None:
        return
    if len(sign) != len(params):
        raise ValueError(f"sign needs one entry per param ({len(params)}); got {len(sign)}.")
    for param, grad, coefficients in zip(params, grads, sign):
        if coefficients is not None:
            add_penalty_gradient_(grad, param, torch.tensor(
                coefficients, dtype=param.dtype, device=param.device), 0.0)



class LearningRateValue(float):
    """An optimizer's learning rate as read from ``optimizer.learning_rate``: a float that
    also answers Keras's variable methods, ``assign(value)`` (sets the optimizer's rate,
    checked as setting ``learning_rate`` is; refused for a schedule's) and ``numpy()``.
    Unlike Keras's variable it is the value when read: read the property again after an
    ``assign``. Pickled or copied, a plain float."""

    def __new__(cls, value: float, optimizer: Optimizer):
        self = super().__new__(cls, value)
        self._optimizer = optimizer
        return self

    def assign(self, value) -> None:
        self._optimizer.learning_rate = float(np.asarray(value))

    def numpy(self) -> np.ndarray:
        return np.asarray(float(self), dtype=np.float32)  # a 0-d array, as Keras's

    @property
    def value(self) -> float:
        return float(self)

    def __reduce__(self):
        return (float, (float(self),))

class OptimizerMembers:
    """What an optimizer needs to know of the members it updates: each member's
    hyperparameters (floats) and steps taken (after this step's increment), and the same
    as per-member values shaped for a weight (see :mod:`reglab.engine.values`)."""

    def __init__(self, floats: list[dict[str, float]], steps: list[int], dtype: torch.dtype,
                 device: torch.device):
        self.floats, self.steps, self.dtype, self.device = floats, steps, dtype, device
        self._cache: dict[tuple, Any] = {}

    def __len__(self) -> int:
        return len(self.floats)

    def forget(self) -> None:
        """Drops what was derived from the hyperparameters (after a schedule changed them)."""
        self._cache.clear()

    def value(self, name: str, ndim: int) -> Value:
        """Hyperparameter ``name`` of every member as ``(P, 1, ..., 1)`` (or ``0.0``)."""
        key = (name, ndim)
        if key not in self._cache:
            from reglab.engine.values import member_values

            self._cache[key] = member_values([hp[name] for hp in self.floats], self.dtype,
                                             self.device, ndim)
        return self._cache[key]

    def groups(self, names: tuple[str, ...]) -> dict[tuple, list[int]]:
        """The members' positions grouped by equal hyperparameters ``names`` and step, keyed
        ``(*values, step)``; in one pass over the members only when they differ (the
        hyperparameters are read once: a change of one rebuilds this object)."""
        keyed = self._cache.get(("groups", names))
        if keyed is None:
            values = [tuple(hp[name] for name in names) for hp in self.floats]
            uniform = bool(values) and values.count(values[0]) == len(values)
            keyed = self._cache[("groups", names)] = (values, uniform)
        values, uniform = keyed
        steps = self.steps
        if uniform and steps.count(steps[0]) == len(steps):
            return {(*values[0], steps[0]): list(range(len(steps)))}
        groups: dict[tuple, list[int]] = {}
        for p, (hp, step) in enumerate(zip(values, steps)):
            groups.setdefault((*hp, step), []).append(p)
        return groups

    def step(self, ndim: int):
        """The members' steps: an int when they agree, else a ``(P, 1, ..., 1)`` tensor."""
        if all(s == self.steps[0] for s in self.steps):
            return self.steps[0]
        return torch.tensor(self.steps, dtype=torch.float64, device=self.device).view(
            -1, *([1] * (ndim - 1)))


#: the arguments every Keras 3 optimizer's config has, in its order, after name and rate
_KERAS_BASE_KEYS = ("weight_decay", "clipnorm", "global_clipnorm", "clipvalue", "use_ema",
                    "ema_momentum", "ema_overwrite_frequency", "loss_scale_factor",
                    "gradient_accumulation_steps")

#: Keras 3's optimizer arguments not supported yet: what they do, and what to do instead
_NOT_YET = {
    "gradient_accumulation_steps": (
        "Keras 3's gradient accumulation",
        "A batch_size that many times larger averages the same gradients per update (the "
        "loss is a batch mean), with fewer, larger steps."),
    "loss_scale_factor": (
        "Keras 3's static loss scaling",
        "For float16 training, LossScaleOptimizer (or the 'mixed_float16' policy, which "
        "compile wraps in one) scales the loss dynamically; in float32 a static scale "
        "changes nothing but rounding."),
}


def _legacy_arguments(owner: str, kwargs: dict) -> None:
    """Keras 3's arguments an optimizer here has not: ``name`` is taken and ignored (Keras
    names its variables with it), ``loss_scale_factor`` and ``gradient_accumulation_steps``
    taken when None (a Keras config's), ``decay`` (Keras 2's learning-rate decay, in older
    tutorials' ``SGD(lr, decay=1e-6)``) ignored with Keras's warning; any other is refused
    by name, as Keras refuses an argument it does not know."""
    kwargs.pop("name", None)  # Keras's name for its variables; reglab keeps none
    for key in ("loss_scale_factor", "gradient_accumulation_steps"):  # Keras 3's, unset
        if key in kwargs and kwargs[key] is None:
            del kwargs[key]
    for key, (what, instead) in _NOT_YET.items():
        if key in kwargs:
            raise UnknownArgumentError(
                f"{owner}: '{key}' ({what}) is not supported yet; only None is taken. Got "
                f"{key}={kwargs[key]!r}. {instead}")
    if kwargs.pop("decay", None) is not None:
        warnings.warn(f"{owner}: argument `decay` is no longer supported and will be ignored "
                      "(Keras 3; a schedule such as "
                      "reglab.optimizers.schedules.InverseTimeDecay decays the learning rate).",
                      UserWarning, stacklevel=_caller_level())
    if kwargs:
        raise UnknownArgumentError(
            f"{owner}: argument(s) not recognized: {sorted(kwargs)}. Got "
            + ", ".join(f"{k}={v!r}" for k, v in sorted(kwargs.items())) + ".")


def _caller_level() -> int:
    """The ``stacklevel`` of the first frame outside this package's constructors (a
    subclass's ``__init__`` chain is of any depth)."""
    here = str(Path(__file__).parent)
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(here):
        frame, level = frame.f_back, level + 1
    return level


class Optimizer:
    """Base class. ``weight_decay`` is Keras's decoupled decay, applied before the step.

    The population interface: :meth:`slots` names the per-weight state (each slot a
    tensor shaped like the weight, member axis first, zero at the start), :meth:`apply`
    updates the stacked weights of every member in place, and :meth:`step_size` gives
    each weight's effective step size after an update (for proximal steps). Each member
    is updated by the same arithmetic whoever shares its population.
    """

    name = "optimizer"
    #: the ``re`` pattern of weight names that decoupled weight decay skips (None: none),
    #: set by :meth:`exclude_from_weight_decay`
    _decay_excluded: str | None = None
    _built = False

    @property
    def built(self) -> bool:
        """Whether a model has made the optimizer's state (Keras's ``optimizer.built``): at
        the model's first ``fit``, ``evaluate``, ``train_on_batch`` or ``test_on_batch``, or
        when it is loaded compiled; a model's summary counts its numbers from then on."""
        return self._built

    @built.setter
    def built(self, value: bool) -> None:
        self._built = bool(value)

    def __init__(self, learning_rate: float, weight_decay: float | None = None,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None,
                 use_ema: bool = False, ema_momentum: float = 0.99,
                 ema_overwrite_frequency: int | None = None, swa_start: int | None = None,
                 **kwargs):
        owner = type(self).__name__
        _legacy_arguments(owner, kwargs)
        if isinstance(learning_rate, LearningRateSchedule):
            self._learning_rate = learning_rate
        else:
            if callable(learning_rate):
                raise ConfigError(f"{owner}: 'learning_rate' must be a float or a "
                                  "reglab.optimizers.schedules.LearningRateSchedule (a callable "
                                  "of the step: subclass LearningRateSchedule). Got "
                                  f"{learning_rate!r}.")
            self.learning_rate = learning_rate
        self.weight_decay = None if weight_decay is None else _check(
            owner, "weight_decay", weight_decay, 0.0)
        clips = {"clipnorm": clipnorm, "clipvalue": clipvalue, "global_clipnorm": global_clipnorm}
        if sum(v is not None for v in clips.values()) > 1:
            raise ConfigError(f"{owner}: only one of 'clipnorm', 'clipvalue' and "
                              f"'global_clipnorm' can be set (as in Keras). Got "
                              + ", ".join(f"{k}={v!r}" for k, v in clips.items()) + ".")
        for key, value in clips.items():
            # Keras ignores 0 and negative values; here they are refused: None is no clipping.
            # The engine's float32 must hold the threshold.
            setattr(self, key, None if value is None else _check(
                owner, key, value, 0.0, FLOAT32_MAX, lo_open=True))
        self.use_ema = bool(use_ema)
        self.ema_momentum = _check(owner, "ema_momentum", ema_momentum, 0.0, 1.0)
        self.ema_overwrite_frequency = _optional_count(owner, "ema_overwrite_frequency",
                                                       ema_overwrite_frequency, minimum=1)
        self.swa_start = _optional_count(owner, "swa_start", swa_start, minimum=0)

    #: reads the steps taken by the member this optimizer trains (set by the model that
    #: trains it); None before training
    _steps_reader: Callable[[], int] | None = None

    @property
    def iterations(self) -> int:
        """Keras's: the steps taken so far (by the model this optimizer trains; 0 before)."""
        return 0 if self._steps_reader is None else int(self._steps_reader())

    @property
    def learning_rate(self) -> float:
        """The learning rate; with a schedule, its rate at :attr:`iterations` (as Keras).
        A float rate reads as Keras's variable does: ``float(...)``, ``.numpy()`` and
        ``.assign(new_rate)`` (the same as setting this property)."""
        value = self._learning_rate
        if isinstance(value, LearningRateSchedule):
            value = value.rate(self.iterations)  # read only: assign() says so
        return LearningRateValue(value, self)

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        if isinstance(self.__dict__.get("_learning_rate"), LearningRateSchedule):
            raise TypeError(f"{type(self).__name__}: this optimizer was created with a "
                            "LearningRateSchedule as its 'learning_rate', hence its learning "
                            "rate is not settable (as in Keras). Create it with a float "
                            "'learning_rate' to set it.")
        # 0 is a rate (a warm-up's first epoch, a frozen step), as Keras takes it
        self._learning_rate = _check(type(self).__name__, "learning_rate", value, 0.0)

    @property
    def schedule(self) -> LearningRateSchedule | None:
        """The learning-rate schedule the optimizer was created with, or None."""
        value = self._learning_rate
        return value if isinstance(value, LearningRateSchedule) else None

    @property
    def clipping(self) -> str | None:
        """Which of Keras's gradient clippings is set (``'clipnorm'``, ``'clipvalue'``,
        ``'global_clipnorm'``), or None. See :mod:`reglab.engine.clipping`."""
        for key in CLIPPINGS:
            if getattr(self, key, None) is not None:
                return key
        return None

    # -- population interface -------------------------------------------------
    def hyperparameters(self) -> dict[str, float]:
        """The values that may differ between members of one population (``swa_start`` is
        one: ``inf`` for a member that does not average; the clipping threshold another,
        its kind being part of the structure)."""
        values = {"learning_rate": float(self.learning_rate),
                  "weight_decay": self.weight_decay or 0.0,
                  "swa_start": math.inf if self.swa_start is None else float(self.swa_start)}
        if self.use_ema:
            values["ema_momentum"] = self.ema_momentum
        if self.clipping is not None:
            values[self.clipping] = getattr(self, self.clipping)
        return values

    def structure(self) -> tuple:
        """What must be equal across members (the class and its boolean options)."""
        excluded = () if self._decay_excluded is None else \
            (f"exclude_from_weight_decay={self._decay_excluded}",)
        clipping = () if self.clipping is None else (f"clipping={self.clipping}",)
        return (type(self).__name__, f"use_ema={self.use_ema}",
                f"ema_overwrite_frequency={self.ema_overwrite_frequency}", *excluded, *clipping)

    def exclude_from_weight_decay(self, var_list=None, var_names=None) -> None:
        """Keras's: weights whose name (``kernel``, ``bias``, ``gamma``, ``beta``...) one of
        ``var_names`` is found in (``re.search``; ``["bias"]`` excludes every bias) are not
        decayed. reglab's weights are not variable objects, so ``var_list`` is refused:
        name them instead. Called again, it replaces the earlier names, as in Keras."""
        owner = type(self).__name__
        if var_list:
            raise ConfigError(f"{owner}.exclude_from_weight_decay: 'var_list' is not "
                              "supported yet (weights are excluded by name). Pass "
                              "var_names=[...] (e.g. ['bias', 'gamma', 'beta']). Got "
                              f"var_list of {len(var_list)} item(s).")
        if isinstance(var_names, str) or (var_names is not None and not all(
                isinstance(name, str) for name in var_names)):
            raise ConfigError(f"{owner}.exclude_from_weight_decay: 'var_names' must be a list "
                              f"of strings. Got {var_names!r}.")
        names = sorted(set(var_names or ()))
        for name in names:
            try:
                re.compile(name)
            except re.error as error:
                raise ConfigError(f"{owner}.exclude_from_weight_decay: {name!r} in "
                                  f"'var_names' is not a regular expression ({error}).") from None
        self._decay_excluded = "|".join(names) if names else None

    def decays(self, weight_name: str) -> bool:
        """Whether decoupled weight decay shrinks a weight of this name."""
        return self._decay_excluded is None or re.search(self._decay_excluded,
                                                         weight_name) is None

    def slots(self) -> tuple[str, ...]:
        """The names of the optimizer's per-weight state."""
        return ()

    def slot_shape(self, slot: str, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of slot ``slot`` of a weight of ``shape`` (each member's, without the
        population's axis): the weight's own by default."""
        return shape

    def keras_tracks(self, slot: str, shape: tuple[int, ...], wrapped: bool) -> bool:
        """Whether Keras's optimizer lists slot ``slot`` of a weight of ``shape`` among its
        variables (its files hold those), inside a LossScaleOptimizer (``wrapped``) or not:
        always, but for Adafactor's placeholders."""
        return True

    def slot_initial_values(self) -> dict[str, str]:
        """The slots that do not start at zero: ``{slot: the hyperparameter that each
        member's starts at}`` (Adagrad's accumulator)."""
        return {}

    def keras_slots(self) -> tuple[tuple[str, ...] | str, ...]:
        """The order of Keras's variables for the slots, after ``iterations``, the learning
        rate and the moving averages (reglab/models/training_state.py): each tuple a run
        over the trainable weights with those slots of each weight side by side, as Keras's
        ``add_optimizer_variables(weights, [names])`` makes them; a string, a scalar
        variable of Keras's that reglab computes from the step count (Nadam's product).
        By default one run per slot."""
        return tuple((slot,) for slot in self.slots())

    def apply(self, params: list[torch.Tensor], grads: list[torch.Tensor],
              slots: list[dict[str, torch.Tensor]], members: OptimizerMembers) -> None:
        """One step for the stacked ``params`` ``(P, ...)``, in place, under no_grad. An
        optimizer that :meth:`folds_coupled_decay` also takes ``decay``: per param, each
        member's coefficient ``c`` (or None), and steps with ``grad + c * param``."""
        raise NotImplementedError

    def folds_coupled_decay(self, device: torch.device) -> bool:
        """Whether :meth:`apply` adds the penalties' linear gradient part ``c * param`` in
        its own kernel (torch's coupled ``weight_decay``), saving the engine a pass over
        the weights. The same answer for a population and for each member alone."""
        return False

    def folds_coupled_sign(self, device: torch.device, dtype: torch.dtype) -> bool:
        """Whether :meth:`apply` takes ``sign`` (per param, each member's coefficient ``s``)
        and adds the penalties' sign part ``s * sign(param)`` to the gradient before the
        rest of its step (reglab's native Adam). The same answer for a population and for
        each member alone."""
        return False

    def takes_pending_gradients(self) -> bool:
        """Whether :meth:`apply` takes a gradient left pending
        (:class:`~reglab.native.pending_gradient.PendingKernelGradient`) and makes it itself
        (reglab's native Adam); else the engine makes it whole first."""
        return False

    def step_size(self, param: torch.Tensor, slots: dict[str, torch.Tensor],
                  members: OptimizerMembers) -> Value:
        """The per-element step size of the update just applied to ``param``."""
        return members.value("learning_rate", param.dim())

    def apply_weight_decay(self, param: torch.Tensor, members: OptimizerMembers) -> None:
        """Keras's decoupled decay: ``w -= w * weight_decay * learning_rate``."""
        wd = members.value("weight_decay", param.dim())
        if isinstance(wd, torch.Tensor) or wd:
            param.sub_(param * (wd * members.value("learning_rate", param.dim())))

    def get_config(self) -> dict[str, Any]:
        """Keras's: the arguments in Keras's keys and order, a schedule in its serialized
        form; Keras 3's ``loss_scale_factor`` and ``gradient_accumulation_steps`` as None
        (unset), reglab's ``swa_start`` only where set (so that Keras's ``from_config``
        takes the config of any optimizer without SWA)."""
        schedule = self.schedule
        rate = self._learning_rate if schedule is None else schedules.serialize(schedule)
        own = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        config = {"name": self.name, "learning_rate": rate}
        config.update({key: own.pop(key, None) for key in _KERAS_BASE_KEYS})
        if own.get("swa_start", 0) is None:
            del own["swa_start"]
        return {**config, **own}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Optimizer:
        config = {k: v for k, v in config.items() if k != "name"}
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = schedules.deserialize(
                config["learning_rate"], where=f"{cls.__name__}.from_config: 'learning_rate'")
        return cls(**config)

    #: attributes holding one step's values for :meth:`step_size` (Lamb's trust ratios),
    #: not the optimizer's state: left out when it is pickled or copied
    _one_step: tuple[str, ...] = ()

    def __getstate__(self) -> dict[str, Any]:
        """Pickled and copied without the link to the model that trains it, nor one step's
        values."""
        state = dict(self.__dict__)
        for name in ("_steps_reader", *self._one_step):
            state.pop(name, None)
        return state

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in [("learning_rate", self._learning_rate),
                                                   *vars(self).items()]
                         if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Keras's SGD: ``v = momentum * v - lr * g``; ``w += v`` (or the Nesterov form).

    Example:
        >>> SGD(learning_rate=0.1, momentum=0.9).hyperparameters()["momentum"]
        0.9
    """

    name = "SGD"

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0,
                 nesterov: bool = False, weight_decay: float | None = None,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None,
                 use_ema: bool = False, ema_momentum: float = 0.99,
                 ema_overwrite_frequency: int | None = None, swa_start: int | None = None,
                 **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         use_ema, ema_momentum, ema_overwrite_frequency, swa_start, **kwargs)
        self.momentum = _check("SGD", "momentum", momentum, 0.0, 1.0)
        self.nesterov = bool(nesterov)

    def hyperparameters(self):
        return {**super().hyperparameters(), "momentum": self.momentum}

    def structure(self):
        return (*super().structure(), f"nesterov={self.nesterov}")

    def slots(self):
        return ("momentum",)

    def keras_slots(self):
        return (("momentum",),) if self.momentum != 0 else ()  # Keras: none without momentum

    def apply(self, params, grads, slots, members):
        for param, grad, state in zip(params, grads, slots):
            lr = members.value("learning_rate", param.dim())
            momentum = members.value("momentum", param.dim())
            m = state["momentum"]
            m.mul_(momentum).sub_(grad * lr)
            if self.nesterov:
                param.add_(m * momentum - grad * lr)
            else:
                param.add_(m)


class Adam(Optimizer):
    """Keras's Adam (epsilon 1e-7, outside the bias correction as Keras places it).

    ``alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)``;
    ``w -= alpha * m / (sqrt(v) + epsilon)``.

    Example:
        >>> Adam().hyperparameters()["epsilon"]
        1e-07
    """

    name = "adam"

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, amsgrad: bool = False, weight_decay: float | None = None,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None,
                 use_ema: bool = False, ema_momentum: float = 0.99,
                 ema_overwrite_frequency: int | None = None, swa_start: int | None = None,
                 **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         use_ema, ema_momentum, ema_overwrite_frequency, swa_start, **kwargs)
        owner = type(self).__name__
        self.beta_1 = _check(owner, "beta_1", beta_1, 0.0, 1.0, hi_open=True)
        self.beta_2 = _check(owner, "beta_2", beta_2, 0.0, 1.0, hi_open=True)
        self.epsilon = _check(owner, "epsilon", epsilon, 0.0)
        self.amsgrad = bool(amsgrad)

    def hyperparameters(self):
        return {**super().hyperparameters(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}

    def structure(self):
        return (*super().structure(), f"amsgrad={self.amsgrad}")

    def slots(self):
        return ("m", "v", "v_hat") if self.amsgrad else ("m", "v")

    def keras_slots(self):
        return (("m", "v"), ("v_hat",)) if self.amsgrad else (("m", "v"),)

    _FUSED_KEYS = ("learning_rate", "beta_1", "beta_2", "epsilon")

    def folds_coupled_decay(self, device):
        """On a CPU, where the fused kernel runs on each member's own slices (one call per
        group of equal members and coefficients)."""
        return _fused_adam_available(torch.device(device)) and not _fuses_stacked(
            torch.device(device))

    def folds_coupled_sign(self, device, dtype):
        """On a CPU in float32 where reglab's native kernels are built (not amsgrad), and
        not for a subclass whose own ``apply`` does not name ``sign`` (it would not pass it
        on)."""
        cls = type(self)
        return (not self.amsgrad and torch.device(device).type == "cpu"
                and dtype == torch.float32 and native.library() is not None
                and (cls.apply is Adam.apply or "sign" in inspect.signature(cls.apply).parameters))

    def takes_pending_gradients(self):
        """Not amsgrad, and not a subclass with its own ``apply`` (it would be given
        gradients it cannot read)."""
        cls = type(self)
        return (not self.amsgrad and cls.apply is Adam.apply
                and cls._apply_fused is Adam._apply_fused)

    def apply(self, params, grads, slots, members, decay=None, sign=None):
        if params and _fused_adam_available(params[0].device):
            self._apply_fused(params, grads, slots, members, decay, sign)
            return
        grads = pending_gradient.made(grads)
        if decay is not None:
            raise RuntimeError("Adam: coupled decay is folded only into the fused kernel.")
        _add_sign_parts(params, grads, sign)
        for param, grad, state in zip(params, grads, slots):
            ndim = param.dim()
            b1, b2 = members.value("beta_1", ndim), members.value("beta_2", ndim)
            m, v = state["m"], state["v"]
            m.lerp_(grad, 1 - b1)  # m += (g - m) * (1 - b1)
            v.lerp_(grad.square(), 1 - b2)  # v += (g**2 - v) * (1 - b2)
            param.sub_(m * self._alpha(members, ndim, param.dtype) / self._denominator(state, members, ndim))

    def _denominator(self, state, members, ndim):
        v = state["v"]
        if self.amsgrad:
            torch.maximum(state["v_hat"], v, out=state["v_hat"])
            v = state["v_hat"]
        return v.sqrt().add_(members.value("epsilon", ndim))

    def _alpha(self, members, ndim, dtype):
        floats = members.floats
        alphas = [_bias_corrected_rate(hp["learning_rate"], hp["beta_1"], hp["beta_2"], step,
                                       dtype) for hp, step in zip(floats, members.steps)]
        return torch.tensor(alphas, dtype=torch.float64).to(dtype).to(members.device).view(
            -1, *([1] * (ndim - 1)))

    def _apply_fused(self, params, grads, slots, members, decay=None, sign=None) -> None:
        """torch's fused kernel, one call per group of members with equal hyperparameters
        and steps (and coupled-decay coefficient, ``decay``). On a CPU it is called on each
        member's own slices, so that a member's arithmetic never depends on its position
        in the population (a vectorized loop and its scalar tail may round differently);
        on CUDA, whose elementwise kernels do the same arithmetic at every position, on
        the stacked tensors when one group holds every member. Its epsilon sits inside the
        bias correction, Keras's outside:
        ``lr * m_hat / (sqrt(v_hat) + eps') == alpha * m / (sqrt(v) + eps)`` with
        ``eps' = eps / sqrt(1 - beta_2**t)``."""
        groups = members.groups(self._FUSED_KEYS)
        if decay is not None and len(decay) != len(params):
            raise ValueError(f"Adam: decay needs one entry per param ({len(params)}); "
                             f"got {len(decay)}.")
        slot_of = [[state[name] for state in slots] for name in self.slots()]
        # On a CPU in float32, reglab's native kernel: the same arithmetic, every member's
        # rows in one call per weight (reglab/native/adam_kernels.c)
        if not self.amsgrad and native_adam.step(params, grads, slot_of[0], slot_of[1],
                                                 groups, decay, sign):
            return
        grads = pending_gradient.made(grads)  # torch's kernel needs them whole
        _add_sign_parts(params, grads, sign)  # as the engine's chain would have
        if len(groups) == 1 and (len(members) == 1 or _fuses_stacked(params[0].device)):
            # one member (its slice is the whole stacked tensor), or one group on CUDA
            (hyper,) = groups
            if decay is None:  # one call (the common case of a model without L2)
                self._fused_call(list(params), list(grads), slot_of, hyper, 0.0)
                return
            for c, parts in _by_coefficient(decay, len(params), [0]).items():
                chosen = [i for i, _ in parts]
                self._fused_call([params[i] for i in chosen], [grads[i] for i in chosen],
                                 [[column[i] for i in chosen] for column in slot_of], hyper, c)
            return
        fresh: dict = {}
        rows = [self._rows(w, fresh) for w in params]
        grad_rows = [g.contiguous().unbind(0) for g in grads]
        slot_rows = [[self._rows(t, fresh) for t in column] for column in slot_of]
        self._row_cache = fresh  # only the tensors in use stay referenced
        for hyper, positions in groups.items():
            for c, parts in _by_coefficient(decay, len(params), positions).items():
                def gather(tensor_rows, parts=parts):
                    return [tensor_rows[i][p] for i, chosen in parts for p in chosen]
                self._fused_call(gather(rows), gather(grad_rows),
                                 [gather(column) for column in slot_rows], hyper, c)

    def _fused_call(self, params, grads, slots, hyper, decay: float) -> None:
        """One kernel call: ``slots`` is ``[m, v(, v_hat)]``, each a list like ``params``;
        ``hyper`` the members' hyperparameters and step; ``decay`` torch's coupled weight
        decay (the kernel steps with ``grad + decay * param``)."""
        lr, b1, b2, eps, step = hyper
        # filled on the device (no host-to-device copy per step)
        step_tensor = torch.full((), float(step), device=params[0].device)
        torch._fused_adam_(params, [g.contiguous() for g in grads], slots[0], slots[1],
                           slots[2] if self.amsgrad else [], [step_tensor] * len(params),
                           lr=lr, beta1=b1, beta2=b2, weight_decay=decay,
                           eps=eps / (1 - b2**step) ** 0.5, amsgrad=self.amsgrad,
                           maximize=False)

    def _rows(self, tensor: torch.Tensor, fresh: dict) -> tuple[torch.Tensor, ...]:
        """``tensor.unbind(0)``, kept from the last step while the same tensor comes back
        (weights and slots are updated in place; the population replaces them when members
        leave), so that a step does not rebuild its views; ``fresh`` collects this step's."""
        hit = self.__dict__.get("_row_cache", {}).get(id(tensor))
        if hit is None or hit[0] is not tensor:
            hit = (tensor, tensor.unbind(0))
        fresh[id(tensor)] = hit
        return hit[1]

    def step_size(self, param, slots, members):
        """``alpha / (sqrt(v) + epsilon)`` (``v_hat`` with amsgrad), from the updated slots."""
        ndim = param.dim()
        v = slots["v_hat"] if self.amsgrad else slots["v"]
        return self._alpha(members, ndim, param.dtype) / v.sqrt().add_(
            members.value("epsilon", ndim))


class AdamW(Adam):
    """Adam with decoupled weight decay (Keras's default 0.004). As in Keras every weight
    is decayed, biases and normalization parameters too, unless
    ``exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])`` says otherwise.
    """

    name = "adamw"

    def __init__(self, learning_rate: float = 0.001, weight_decay: float = 0.004,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7,
                 amsgrad: bool = False, clipnorm: float | None = None,
                 clipvalue: float | None = None, global_clipnorm: float | None = None,
                 use_ema: bool = False, ema_momentum: float = 0.99,
                 ema_overwrite_frequency: int | None = None, swa_start: int | None = None,
                 **kwargs):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay,
                         clipnorm, clipvalue, global_clipnorm, use_ema, ema_momentum,
                         ema_overwrite_frequency, swa_start, **kwargs)


class RMSprop(Optimizer):
    """Keras's RMSprop: ``w -= lr * g / sqrt(v + epsilon)`` (epsilon inside the root).

    Example:
        >>> RMSprop().hyperparameters()["rho"]
        0.9
    """

    name = "rmsprop"

    def __init__(self, learning_rate: float = 0.001, rho: float = 0.9, momentum: float = 0.0,
                 epsilon: float = 1e-7, centered: bool = False, weight_decay: float | None = None,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None,
                 use_ema: bool = False, ema_momentum: float = 0.99,
                 ema_overwrite_frequency: int | None = None, swa_start: int | None = None,
                 **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         use_ema, ema_momentum, ema_overwrite_frequency, swa_start, **kwargs)
        self.rho = _check("RMSprop", "rho", rho, 0.0, 1.0)
        self.momentum = _check("RMSprop", "momentum", momentum, 0.0, 1.0)
        self.epsilon = _check("RMSprop", "epsilon", epsilon, 0.0)
        self.centered = bool(centered)

    def hyperparameters(self):
        return {**super().hyperparameters(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon}

    def structure(self):
        return (*super().structure(), f"centered={self.centered}")

    def slots(self):
        return ("velocity", "momentum", "average_gradient") if self.centered else (
            "velocity", "momentum")

    def keras_slots(self):
        # Keras makes the momentum only where it is used
        return tuple((slot,) for slot in self.slots() if slot != "momentum" or self.momentum > 0)

    def _denominator(self, state, members, ndim):
        eps = members.value("epsilon", ndim)
        if self.centered:
            return (state["velocity"] - state["average_gradient"].square() + eps).sqrt_()
        return (state["velocity"] + eps).sqrt_()

    def apply(self, params, grads, slots, members):
        for param, grad, state in zip(params, grads, slots):
            ndim = param.dim()
            rho, lr = members.value("rho", ndim), members.value("learning_rate", ndim)
            state["velocity"].mul_(rho).add_(grad.square() * (1 - rho))
            if self.centered:
                state["average_gradient"].mul_(rho).add_(grad * (1 - rho))
            increment = grad * lr / self._denominator(state, members, ndim)
            mom = state["momentum"]
            mom.mul_(members.value("momentum", ndim)).add_(increment)
            param.sub_(mom)

    def step_size(self, param, slots, members):
        """``learning_rate / denominator`` (the momentum's carry-over aside)."""
        ndim = param.dim()
        return members.value("learning_rate", ndim) / self._denominator(slots, members, ndim)


#: the built-in optimizers by Keras's name (``reglab/optimizers/adaptive.py`` adds its own)
_BY_NAME: dict[str, type[Optimizer]] = {"sgd": SGD, "adam": Adam, "adamw": AdamW,
                                        "rmsprop": RMSprop}


def register(cls: type[Optimizer]) -> None:
    """Makes ``cls`` a built-in optimizer under its ``name`` (``get('nadam')``, saving)."""
    _BY_NAME[cls.name.lower()] = cls


def built_in() -> dict[str, type[Optimizer]]:
    """The built-in optimizer classes by class name."""
    return {cls.__name__: cls for cls in _BY_NAME.values()}


def from_entry(entry: dict[str, Any], where: str) -> Optimizer:
    """A built-in optimizer from ``{'class_name', 'config'}`` (its ``get_config()``, name
    and all); anything else a ConfigError naming ``where``."""
    known = built_in()
    cls = known.get(entry.get("class_name"))
    if entry.get("class_name") == "LossScaleOptimizer":  # its inner one read the same way
        from reglab.optimizers.loss_scale import LossScaleOptimizer

        cls = LossScaleOptimizer
    config = entry.get("config", {})
    if cls is None or not isinstance(config, dict):
        raise ConfigError(f"{where} must be a built-in optimizer ({', '.join(sorted(known))}). "
                          f"Got {entry!r}.")
    try:
        return cls.from_config(config)
    except TypeError as error:
        raise ConfigError(f"{where}: the arguments do not fit {cls.__name__}: {error}. Got "
                          f"{config!r}.") from None


def serialize(optimizer: Optimizer) -> dict[str, Any]:
    """``{'module', 'class_name', 'config', 'registered_name'}`` as Keras 3 writes an
    optimizer (what :func:`deserialize` and :func:`get` read back)."""
    if not isinstance(optimizer, Optimizer):
        raise ConfigError(f"optimizers.serialize: expected a reglab optimizer. Got {optimizer!r}.")
    from reglab.models import keras_export  # Keras's form, as a saved file writes it

    return keras_export.serialized_object(
        {"class_name": type(optimizer).__name__, "config": optimizer.get_config()}, "optimizer")


def deserialize(config: dict[str, Any]) -> Optimizer:
    """A built-in optimizer from :func:`serialize`'s dict (Keras's too)."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise ConfigError("optimizers.deserialize: expected a dict with 'class_name' and "
                          f"'config'. Got {config!r}.")
    return from_entry(config, "optimizers.deserialize")


def get(identifier: Any, where: str = "optimizers.get") -> Optimizer:
    """Resolves an optimizer by Keras name (``'adam'``) or by its serialized dict
    (``{'class_name': 'Adam', 'config': {...}}``), or returns an instance as is."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, dict) and "class_name" in identifier:
        return from_entry(identifier, where)
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower())
        if cls is None:
            raise unknown_name(where, "optimizer", identifier, _BY_NAME)
        return cls()
    raise ConfigError(
        f"{where}: expected an optimizer name, its serialized dict or a "
        f"reglab.optimizers.Optimizer. Got {identifier!r}."
    )
