"""Keras 3's Adafactor: second moments factored into a row and a column average for weights
of two or more dimensions, for a population's stacked weights ``(P, ...)``.

Each member's step count, learning rate and root mean squares (of its weight, of its
update) are its own: ``rho = min(lr, 1 / sqrt(t))``, ``alpha = max(epsilon_2, rms(w)) *
rho``, ``beta = 1 - t**beta_2_decay``; with ``g2 = g**2 + epsilon_1``, a weight of two or
more dimensions keeps ``r = beta r + (1 - beta) mean(g2, -1)`` and ``c = beta c + (1 - beta)
mean(g2, -2)`` and takes ``v = r / mean(r) (outer) c`` along its last two axes (Keras's
layout: a Dense kernel's ``(in, out)``, a Conv2D kernel's ``(.., in, out)``); a smaller one
keeps ``v = beta v + (1 - beta) g2``. Then ``u = g / sqrt(v)``, ``w -= alpha * u / max(1,
rms(u) / clip_threshold)``. Keras 3.15 takes ``min(lr, 1 / sqrt(t))`` whatever
``relative_step`` says (its first ``min`` is taken again): so does reglab.
"""

from __future__ import annotations

import torch

from reglab.optimizers.adaptive import _per_member
from reglab.optimizers.optimizers import Optimizer, _check, register


def _rms(x: torch.Tensor) -> torch.Tensor:
    """Each member's root mean square over its whole weight, as ``(P, 1, ..., 1)``."""
    dims = tuple(range(1, x.dim()))
    return x.square().mean(dim=dims, keepdim=True).sqrt() if dims else x.abs()


class Adafactor(Optimizer):
    """Keras's Adafactor (see the module's docstring for its update).

    Example:
        >>> Adafactor().hyperparameters()["beta_2_decay"]
        -0.8
    """

    name = "adafactor"
    _one_step = ("_scales",)

    def __init__(self, learning_rate=0.001, beta_2_decay=-0.8, epsilon_1=1e-30, epsilon_2=1e-3,
                 clip_threshold=1.0, relative_step=True, weight_decay=None, clipnorm=None,
                 clipvalue=None, global_clipnorm=None, use_ema=False, ema_momentum=0.99,
                 ema_overwrite_frequency=None, swa_start=None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         use_ema, ema_momentum, ema_overwrite_frequency, swa_start, **kwargs)
        self.beta_2_decay = _check("Adafactor", "beta_2_decay", beta_2_decay, -float("inf"))
        self.epsilon_1 = _check("Adafactor", "epsilon_1", epsilon_1, 0.0)
        self.epsilon_2 = _check("Adafactor", "epsilon_2", epsilon_2, 0.0)
        self.clip_threshold = _check("Adafactor", "clip_threshold", clip_threshold, 0.0,
                                     lo_open=True)
        if not isinstance(relative_step, bool):
            from reglab.errors import ConfigError

            raise ConfigError("Adafactor: 'relative_step' must be True or False. Got "
                              f"{relative_step!r}.")
        self.relative_step = relative_step

    def hyperparameters(self):
        return {**super().hyperparameters(), "beta_2_decay": self.beta_2_decay,
                "epsilon_1": self.epsilon_1, "epsilon_2": self.epsilon_2,
                "clip_threshold": self.clip_threshold}

    def slots(self):
        return ("row", "column", "velocity")

    def slot_shape(self, slot, shape):
        if slot == "velocity":
            return shape
        if len(shape) < 2:
            return ()  # unused: Keras keeps a scalar 0 in its place
        return shape[:-1] if slot == "row" else (*shape[:-2], shape[-1])

    def keras_slots(self):
        return (self.slots(),)  # per weight: r and c (a placeholder where not factored), v

    def keras_tracks(self, slot, shape, wrapped):
        # Keras 3.15 lists a vector's scalar placeholders for r and c, except inside a
        # LossScaleOptimizer, whose variables leave them out
        return not wrapped or slot == "velocity" or len(shape) >= 2

    def _coefficients(self, members):
        """Each member's ``rho`` and ``beta`` at its step."""
        rho, beta = [], []
        for hp, t in zip(members.floats, members.steps):
            rho.append(min(hp["learning_rate"], 1.0 / t ** 0.5))
            beta.append(1.0 - t ** hp["beta_2_decay"])
        return rho, beta

    def apply(self, params, grads, slots, members):
        rho, beta = self._coefficients(members)
        self._scales = {}
        for param, grad, state in zip(params, grads, slots):
            ndim = param.dim()
            rho_t, beta_t = (_per_member(c, members, ndim) for c in (rho, beta))
            alpha = torch.maximum(_rms(param), members.value("epsilon_2", ndim)
                                  * torch.ones_like(rho_t)) * rho_t
            square = grad.square() + members.value("epsilon_1", ndim)
            v = state["velocity"]
            if ndim >= 3:  # a member's weight of two or more dimensions: factored
                r, c = state["row"], state["column"]
                r.copy_(beta_t.squeeze(-1) * r + (1 - beta_t.squeeze(-1)) * square.mean(-1))
                c.copy_(beta_t.squeeze(-1) * c + (1 - beta_t.squeeze(-1)) * square.mean(-2))
                v.copy_((r / r.mean(-1, keepdim=True)).unsqueeze(-1) * c.unsqueeze(-2))
            else:
                v.copy_(beta_t * v + (1 - beta_t) * square)
            update = grad / v.sqrt()
            scale = self._scales[param.data_ptr()] = alpha / torch.clamp(
                _rms(update) / members.value("clip_threshold", ndim), min=1.0)
            param.sub_(scale * update)

    def step_size(self, param, slots, members):
        """``alpha / (max(1, rms(u) / clip_threshold) sqrt(v))``: the last step's scale of
        the gradient."""
        return self._scales[param.data_ptr()] / slots["velocity"].sqrt()



register(Adafactor)
