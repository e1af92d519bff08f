"""Keras 3's optimizers: their arguments and defaults, and their update math.

The math is written once. Hyperparameters arrive as floats (one model, or all
members equal) or as tensors already shaped to broadcast along a weight's
member axis, so the same ``update`` serves a single model and a population.
Updates are in place, under ``torch.no_grad()``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from reglab.errors import ConfigError, unknown_name

Value = float | torch.Tensor


def _check(owner: str, name: str, value: Any, lo: float, hi: float = math.inf,
           lo_open: bool = False, hi_open: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
    if not ok:
        left, right = ("(" if lo_open else "["), (")" if hi_open else "]")
        raise ConfigError(
            f"{owner}: '{name}' must be a float in the range {left}{lo}, {hi}{right}. Got {value!r}."
        )
    return float(value)


def _fusable(param: torch.Tensor, hp: dict[str, Value]) -> bool:
    """True when torch's fused Adam kernel applies: one value per hyperparameter."""
    return (hasattr(torch, "_fused_adam_") and param.is_contiguous()
            and param.device.type in ("cpu", "cuda")
            and not any(isinstance(v, torch.Tensor) for v in hp.values()))


def _bias_corrected_rate(lr: Value, b1: Value, b2: Value, step, dtype: torch.dtype) -> Value:
    """Adam's ``lr * sqrt(1 - b2**t) / (1 - b1**t)``, always computed in float64 (as the
    scalar path does in Python), so that a member's step does not depend on whether a
    neighbour made any of these values a per-member tensor."""
    if not any(isinstance(v, torch.Tensor) for v in (lr, b1, b2, step)):
        return lr * (1 - b2**step) ** 0.5 / (1 - b1**step)

    def f64(v):
        return v.to(torch.float64) if isinstance(v, torch.Tensor) else v

    lr, b1, b2, step = map(f64, (lr, b1, b2, step))
    if not isinstance(b1, torch.Tensor):
        b1 = torch.tensor(b1, dtype=torch.float64)
    if not isinstance(b2, torch.Tensor):
        b2 = torch.tensor(b2, dtype=torch.float64)
    alpha = lr * (1 - b2.pow(step)) ** 0.5 / (1 - b1.pow(step))
    return alpha.to(dtype)


class Optimizer:
    """Base class. ``weight_decay`` is Keras's decoupled decay, applied before the step."""

    name = "optimizer"
    #: weight kinds that decoupled weight decay skips (AdamW overrides).
    decay_excludes: frozenset[str] = frozenset()

    def __init__(self, learning_rate: float, weight_decay: float | None = None):
        owner = type(self).__name__
        self.learning_rate = _check(owner, "learning_rate", learning_rate, 0.0, lo_open=True)
        self.weight_decay = None if weight_decay is None else _check(
            owner, "weight_decay", weight_decay, 0.0)

    # -- population interface -------------------------------------------------
    def hyperparameters(self) -> dict[str, float]:
        """The values that may differ between members of one population."""
        return {"learning_rate": self.learning_rate, "weight_decay": self.weight_decay or 0.0}

    def structure(self) -> tuple:
        """What must be equal across members (the class and its boolean options)."""
        return (type(self).__name__,)

    def init_state(self, param: torch.Tensor) -> dict[str, torch.Tensor]:
        return {}

    def update(self, param: torch.Tensor, grad: torch.Tensor, state: dict[str, torch.Tensor],
               hp: dict[str, Value], step: int, want_step_size: bool = False) -> Value | None:
        """Applies one step in place; ``step`` counts from 1 (an int, or a per-member tensor
        when members have taken different numbers of steps).

        Returns the per-weight step size when ``want_step_size`` (for a proximal
        step), else None.
        """
        raise NotImplementedError

    def can_fuse(self, params, hps) -> bool:
        """Whether :meth:`update_many` may update ``params`` in one fused call."""
        return False

    def update_many(self, params, grads, states, hps, step: int, fused: bool | None = None
                    ) -> None:
        """:meth:`update` for several weights at once (optimizers may fuse it)."""
        for param, grad, state, hp in zip(params, grads, states, hps):
            self.update(param, grad, state, hp, step)

    def apply_weight_decay(self, param: torch.Tensor, hp: dict[str, Value]) -> None:
        wd = hp["weight_decay"]
        if isinstance(wd, torch.Tensor) or wd:
            param.sub_(param * (wd * hp["learning_rate"]))

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, **{k: v for k, v in vars(self).items()
                                      if not k.startswith("_")}}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Keras's SGD: ``v = momentum * v - lr * g``; ``w += v`` (or the Nesterov form).

    Example:
        >>> SGD(learning_rate=0.1, momentum=0.9).hyperparameters()["momentum"]
        0.9
    """

    name = "SGD"

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0,
                 nesterov: bool = False, weight_decay: float | None = None):
        super().__init__(learning_rate, weight_decay)
        self.momentum = _check("SGD", "momentum", momentum, 0.0, 1.0)
        self.nesterov = bool(nesterov)

    def hyperparameters(self):
        return {**super().hyperparameters(), "momentum": self.momentum}

    def structure(self):
        return ("SGD", self.nesterov)

    def init_state(self, param):
        return {"momentum": torch.zeros_like(param)}

    def update(self, param, grad, state, hp, step, want_step_size=False):
        lr, momentum = hp["learning_rate"], hp["momentum"]
        m = state["momentum"]
        m.mul_(momentum).sub_(grad * lr)
        if self.nesterov:
            param.add_(m * momentum - grad * lr)
        else:
            param.add_(m)
        return lr if want_step_size else None


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
                 epsilon: float = 1e-7, amsgrad: bool = False, weight_decay: float | None = None):
        super().__init__(learning_rate, weight_decay)
        owner = type(self).__name__
        self.beta_1 = _check(owner, "beta_1", beta_1, 0.0, 1.0, hi_open=True)
        self.beta_2 = _check(owner, "beta_2", beta_2, 0.0, 1.0, hi_open=True)
        self.epsilon = _check(owner, "epsilon", epsilon, 0.0)
        self.amsgrad = bool(amsgrad)

    def hyperparameters(self):
        return {**super().hyperparameters(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}

    def structure(self):
        return (type(self).__name__, self.amsgrad)

    def init_state(self, param):
        state = {"m": torch.zeros_like(param), "v": torch.zeros_like(param)}
        if self.amsgrad:
            state["v_hat"] = torch.zeros_like(param)
        return state

    def update(self, param, grad, state, hp, step, want_step_size=False):
        b1, b2, eps = hp["beta_1"], hp["beta_2"], hp["epsilon"]
        m, v = state["m"], state["v"]
        if not want_step_size and not isinstance(step, torch.Tensor) \
                and self.can_fuse([param], [hp]):
            self._fused_update([param], [grad], [state], hp, step)
            return None
        m.lerp_(grad, 1 - b1)  # m += (g - m) * (1 - b1)
        v.lerp_(grad.square(), 1 - b2)  # v += (g**2 - v) * (1 - b2)
        if self.amsgrad:
            torch.maximum(state["v_hat"], v, out=state["v_hat"])
            v = state["v_hat"]
        alpha = _bias_corrected_rate(hp["learning_rate"], b1, b2, step, param.dtype)
        denom = v.sqrt().add_(eps)
        if isinstance(alpha, torch.Tensor):
            param.sub_(m * alpha / denom)
        else:
            param.addcdiv_(m, denom, value=-alpha)
        return alpha / denom if want_step_size else None


    def can_fuse(self, params, hps) -> bool:
        """True when one call of torch's fused Adam kernel can update all ``params``: no
        amsgrad, and every hyperparameter one shared float (decided once per plan)."""
        keys = ("learning_rate", "beta_1", "beta_2", "epsilon")
        return not self.amsgrad and all(_fusable(p, hp) for p, hp in zip(params, hps)) and all(
            hp[k] == hps[0][k] for hp in hps[1:] for k in keys)

    def update_many(self, params, grads, states, hps, step, fused=None):
        if fused is None:
            fused = self.can_fuse(params, hps)
        if fused and not isinstance(step, torch.Tensor):
            self._fused_update(params, grads, states, hps[0], step)
        else:
            super().update_many(params, grads, states, hps, step)

    def _fused_update(self, params, grads, states, hp, step) -> None:
        """torch's fused kernel: the same update in one pass over memory. Its epsilon sits
        inside the bias correction, Keras's outside:
        ``lr * m_hat / (sqrt(v_hat) + eps') == alpha * m / (sqrt(v) + eps)`` with
        ``eps' = eps / sqrt(1 - beta_2**t)``."""
        step_tensor = torch.tensor(float(step), device=params[0].device)
        torch._fused_adam_(list(params), list(grads), [s["m"] for s in states],
                           [s["v"] for s in states], [], [step_tensor] * len(params),
                           lr=hp["learning_rate"], beta1=hp["beta_1"], beta2=hp["beta_2"],
                           weight_decay=0.0, eps=hp["epsilon"] / (1 - hp["beta_2"] ** step) ** 0.5,
                           amsgrad=False, maximize=False)


class AdamW(Adam):
    """Adam with decoupled weight decay (Keras's default 0.004).

    Beyond Keras, whose AdamW decays every variable unless told otherwise,
    biases and normalization parameters are excluded by default, as is common
    practice (and optax's and Hugging Face's default masks).
    """

    name = "adamw"
    decay_excludes = frozenset({"bias", "gamma", "beta"})

    def __init__(self, learning_rate: float = 0.001, weight_decay: float = 0.004,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7,
                 amsgrad: bool = False):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay)


class RMSprop(Optimizer):
    """Keras's RMSprop: ``w -= lr * g / sqrt(v + epsilon)`` (epsilon inside the root).

    Example:
        >>> RMSprop().hyperparameters()["rho"]
        0.9
    """

    name = "rmsprop"

    def __init__(self, learning_rate: float = 0.001, rho: float = 0.9, momentum: float = 0.0,
                 epsilon: float = 1e-7, centered: bool = False, weight_decay: float | None = None):
        super().__init__(learning_rate, weight_decay)
        self.rho = _check("RMSprop", "rho", rho, 0.0, 1.0)
        self.momentum = _check("RMSprop", "momentum", momentum, 0.0, 1.0)
        self.epsilon = _check("RMSprop", "epsilon", epsilon, 0.0)
        self.centered = bool(centered)

    def hyperparameters(self):
        return {**super().hyperparameters(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon}

    def structure(self):
        return ("RMSprop", self.centered)

    def init_state(self, param):
        state = {"velocity": torch.zeros_like(param), "momentum": torch.zeros_like(param)}
        if self.centered:
            state["average_gradient"] = torch.zeros_like(param)
        return state

    def update(self, param, grad, state, hp, step, want_step_size=False):
        rho, eps, lr = hp["rho"], hp["epsilon"], hp["learning_rate"]
        vel = state["velocity"]
        vel.mul_(rho).add_(grad.square() * (1 - rho))
        if self.centered:
            avg = state["average_gradient"]
            avg.mul_(rho).add_(grad * (1 - rho))
            denom = (vel - avg.square() + eps).sqrt_()
        else:
            denom = (vel + eps).sqrt_()
        increment = grad * lr / denom
        mom = state["momentum"]
        mom.mul_(hp["momentum"]).add_(increment)
        param.sub_(mom)
        return lr / denom if want_step_size else None


_BY_NAME = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop}


def get(identifier: Any, where: str = "optimizers.get") -> Optimizer:
    """Resolves an optimizer by Keras name (``'adam'``), or returns an instance as is."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower())
        if cls is None:
            raise unknown_name(where, "optimizer", identifier, _BY_NAME)
        return cls()
    raise ConfigError(
        f"{where}: expected an optimizer name or a reglab.optimizers.Optimizer. Got {identifier!r}."
    )
