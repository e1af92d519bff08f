"""Keras 3's ``LossScaleOptimizer``: dynamic loss scaling around another optimizer.

float16 (``"mixed_float16"``) holds numbers from 6e-5 (smaller ones lose precision, then
become 0) to 65504 (larger ones become inf), so the gradients that flow back through
float16 layers underflow. Loss scaling multiplies the loss by a scale before the backward
pass, so that every intermediate gradient is scaled too, and divides the weights'
gradients by the same scale before the optimizer sees them. Keras's dynamic rule, per
step:

- if any gradient is not finite (the scale was too large), the step is skipped (weights,
  optimizer slots and the inner optimizer's iteration count stay as they were), the scale
  is halved and the growth counter goes back to 0;
- else the inner optimizer takes its step with the unscaled gradients, and after
  ``dynamic_growth_steps`` such steps in a row the scale doubles (the counter goes back
  to 0).

Like every reglab optimizer, this object holds the configuration; the state (each
member's scale and counter) lives in the population that trains it
(:mod:`reglab.engine.loss_scale`), so that every member of a population has its own.
``dynamic_scale`` and ``step_counter`` read it for the model that trains this optimizer.

Example:
    >>> from reglab.optimizers import SGD
    >>> optimizer = LossScaleOptimizer(SGD(0.1), initial_scale=1024.0)
    >>> optimizer.dynamic_scale, optimizer.learning_rate
    (1024.0, 0.1)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

from reglab.errors import ConfigError
from reglab.optimizers.optimizers import Optimizer

#: Keras's base-optimizer arguments that LossScaleOptimizer accepts only at their
#: defaults (its configs from before Keras 3.1 wrote them); set them on the inner one.
_BASE_DEFAULTS = {"weight_decay": None, "clipnorm": None, "global_clipnorm": None,
                  "clipvalue": None, "use_ema": False, "ema_momentum": 0.99,
                  "ema_overwrite_frequency": None, "loss_scale_factor": None,
                  "gradient_accumulation_steps": None}


def _inner(value: Any) -> Optimizer:
    """The inner optimizer: an instance, or its serialized form ``{'class_name', 'config'}``
    (what :meth:`LossScaleOptimizer.get_config` writes; built-in classes only)."""
    from reglab import optimizers

    if isinstance(value, dict) and "class_name" in value:
        return optimizers.optimizers.from_entry(value, "LossScaleOptimizer: 'inner_optimizer'")
    if isinstance(value, LossScaleOptimizer) or not isinstance(value, Optimizer):
        raise ConfigError(f"LossScaleOptimizer: 'inner_optimizer' must be a reglab optimizer "
                          f"(SGD, Adam, Nadam, RMSprop...) that does not scale the loss "
                          f"itself. "
                          f"Got {value!r}.")
    return value


class LossScaleOptimizer(Optimizer):
    """Wraps ``inner_optimizer`` and scales the loss dynamically (Keras 3's arguments and
    defaults).

    Args:
        inner_optimizer: the optimizer to wrap (its learning rate, weight decay, EMA... are
            its own; this one delegates them).
        initial_scale: the scale at the start (Keras: 2**15). A high one comes down fast
            (it halves at each overflow), a low one goes up slowly.
        dynamic_growth_steps: the scale doubles after this many steps with finite
            gradients in a row.
        name: the optimizer's name (Keras's ``name``).
    """

    name = "loss_scale_optimizer"

    def __init__(self, inner_optimizer, initial_scale: float = 2.0**15,
                 dynamic_growth_steps: int = 2000, name: str | None = None, **kwargs):
        if not kwargs.pop("dynamic", True):
            raise ConfigError("LossScaleOptimizer: 'dynamic' must be True (Keras 3 has no "
                              "fixed scale here). Got False. For a fixed scale set "
                              "'loss_scale_factor' on the inner optimizer in Keras.")
        for key, default in _BASE_DEFAULTS.items():
            if key in kwargs and kwargs.pop(key) != default:
                raise ConfigError(f"LossScaleOptimizer: {key!r} is the inner optimizer's "
                                  f"argument. Expected it on 'inner_optimizer'.")
        if kwargs:
            raise ConfigError(f"LossScaleOptimizer: unexpected keyword arguments "
                              f"{', '.join(map(repr, kwargs))}. Expected 'inner_optimizer', "
                              "'initial_scale', 'dynamic_growth_steps' and 'name'.")
        ok = (isinstance(initial_scale, numbers.Real) and not isinstance(initial_scale, bool)
              and math.isfinite(initial_scale) and initial_scale > 0)
        if not ok:
            raise ConfigError(f"LossScaleOptimizer: 'initial_scale' must be a finite float "
                              f"> 0. Got {initial_scale!r}.")
        if isinstance(dynamic_growth_steps, bool) or not isinstance(dynamic_growth_steps, numbers.Integral) \
                or dynamic_growth_steps < 1:
            raise ConfigError(f"LossScaleOptimizer: 'dynamic_growth_steps' must be an int "
                              f">= 1. Got {dynamic_growth_steps!r}.")
        self.inner_optimizer = _inner(inner_optimizer)
        self.initial_scale = float(initial_scale)
        self.dynamic_growth_steps = int(dynamic_growth_steps)
        if name is not None:
            self.name = name
        #: reads ``{'scale', 'counter'}`` of the member this optimizer trains (set by the
        #: model that trains it); None before training
        self._state_reader: Callable[[], dict[str, Any] | None] | None = None

    # -- Keras's attributes ---------------------------------------------------------
    @property
    def learning_rate(self) -> float:
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self.inner_optimizer.learning_rate = value

    def _state(self) -> dict[str, Any] | None:
        return None if self._state_reader is None else self._state_reader()

    @property
    def dynamic_scale(self) -> float:
        """The current loss scale (``initial_scale`` before training)."""
        state = self._state()
        return self.initial_scale if state is None else state["scale"]

    @property
    def step_counter(self) -> int:
        """Finite steps since the scale last changed."""
        state = self._state()
        return 0 if state is None else state["counter"]

    def scale_loss(self, loss):
        """``loss * dynamic_scale`` (the engine scales each member's loss itself)."""
        return loss * self.dynamic_scale

    # -- the inner optimizer's, for the engine ------------------------------------------
    @property
    def weight_decay(self):
        return self.inner_optimizer.weight_decay

    @property
    def use_ema(self) -> bool:
        return self.inner_optimizer.use_ema

    @property
    def ema_momentum(self) -> float:
        return self.inner_optimizer.ema_momentum

    @property
    def ema_overwrite_frequency(self):
        return self.inner_optimizer.ema_overwrite_frequency

    @property
    def swa_start(self):
        return self.inner_optimizer.swa_start

    @property
    def clipping(self) -> str | None:
        return self.inner_optimizer.clipping

    @property
    def schedule(self):
        return self.inner_optimizer.schedule

    @property
    def iterations(self) -> int:
        """The inner optimizer's (a skipped step is not counted, as in Keras)."""
        return self.inner_optimizer.iterations

    def decays(self, weight_name: str) -> bool:
        return self.inner_optimizer.decays(weight_name)

    def exclude_from_weight_decay(self, var_list=None, var_names=None) -> None:
        self.inner_optimizer.exclude_from_weight_decay(var_list, var_names)

    def hyperparameters(self) -> dict[str, float]:
        """The inner optimizer's (``initial_scale`` and ``dynamic_growth_steps`` are read
        per member when its state is created and at each step)."""
        return self.inner_optimizer.hyperparameters()

    def structure(self) -> tuple:
        return ("LossScaleOptimizer", *self.inner_optimizer.structure())

    def slots(self) -> tuple[str, ...]:
        return self.inner_optimizer.slots()

    def slot_initial_values(self) -> dict[str, str]:
        return self.inner_optimizer.slot_initial_values()

    def slot_shape(self, slot, shape):
        return self.inner_optimizer.slot_shape(slot, shape)

    def apply(self, params, grads, slots, members, **folded) -> None:
        """The inner optimizer's step (the engine has unscaled the gradients and set aside
        the members whose step is skipped)."""
        self.inner_optimizer.apply(params, grads, slots, members, **folded)

    def folds_coupled_decay(self, device) -> bool:
        return self.inner_optimizer.folds_coupled_decay(device)

    def folds_coupled_sign(self, device, dtype) -> bool:
        return self.inner_optimizer.folds_coupled_sign(device, dtype)

    def step_size(self, param, slots, members):
        return self.inner_optimizer.step_size(param, slots, members)

    def apply_weight_decay(self, param, members) -> None:
        self.inner_optimizer.apply_weight_decay(param, members)

    # -- configuration ------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """Keras's: the name, the inner optimizer serialized, and the two arguments."""
        return {"name": self.name,
                "inner_optimizer": {"class_name": type(self.inner_optimizer).__name__,
                                    "config": self.inner_optimizer.get_config()},
                "initial_scale": self.initial_scale,
                "dynamic_growth_steps": self.dynamic_growth_steps}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LossScaleOptimizer:
        config = dict(config)
        return cls(config.pop("inner_optimizer"), **config)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled and copied without the link to the model that trains it."""
        return {**self.__dict__, "_state_reader": None, "_steps_reader": None}

    def __repr__(self) -> str:
        return (f"LossScaleOptimizer({self.inner_optimizer!r}, initial_scale="
                f"{self.initial_scale!r}, dynamic_growth_steps={self.dynamic_growth_steps!r})")
