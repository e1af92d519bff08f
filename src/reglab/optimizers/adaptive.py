"""Keras 3's other optimizers: Adagrad, Adadelta, Adamax, Nadam, Lamb, Lion and Ftrl, their arguments,
defaults and update rules, for a population's stacked weights ``(P, ...)``.

Each member's hyperparameters are per-member values (``OptimizerMembers.value``) and its
step-dependent coefficients (powers of ``beta_1``, Nadam's momentum schedule) are formed
per member in float64, then rounded to the weights' dtype, so a member's arithmetic does
not depend on who shares its population. Keras forms them in float32, whose rounding of
``beta`` itself shows in ``1 - beta**t`` early on (at step 1 with ``beta_2 = 0.999``, 6e-6
relative, some 50 float32 ulps): the two agree to that, not to the last bit.
"""

from __future__ import annotations

import functools

import torch

from reglab.optimizers.optimizers import Optimizer, _check, register


def _per_member(values: list[float], members, ndim: int) -> torch.Tensor:
    """One coefficient per member as a ``(P, 1, ..., 1)`` tensor in the training dtype."""
    return torch.tensor(values, dtype=torch.float64).to(members.dtype).to(
        members.device).view(-1, *([1] * (ndim - 1)))


class Adagrad(Optimizer):
    """Keras's Adagrad: ``a += g**2``; ``w -= lr * g / sqrt(a + epsilon)``, the accumulator
    starting at ``initial_accumulator_value``.

    Example:
        >>> Adagrad().hyperparameters()["initial_accumulator_value"]
        0.1
    """

    name = "adagrad"

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None,
                 swa_start=None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         use_ema, ema_momentum, ema_overwrite_frequency, swa_start, **kwargs)
        self.initial_accumulator_value = _check("Adagrad", "initial_accumulator_value",
                                                initial_accumulator_value, 0.0)
        self.epsilon = _check("Adagrad", "epsilon", epsilon, 0.0)

    def hyperparameters(self):
        return {**super().hyperparameters(),
                "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}

    def slots(self):
        return ("accumulator",)

    def slot_initial_values(self):
        return {"accumulator": "initial_accumulator_value"}

    def _denominator(self, state, members, ndim):
        return (state["accumulator"] + members.value("epsilon", ndim)).sqrt_()

    def apply(self, params, grads, slots, members):
        for param, grad, state in zip(params, grads, slots):
            ndim = param.dim()
            state["accumulator"].add_(grad.square())
            param.sub_(members.value("learning_rate", ndim) * grad
                       / self._denominator(state, members, ndim))

    def step_size(self, param, slots, members):
        ndim = param.dim()
        return members.value("learning_rate", ndim) / self._denominator(slots, members, ndim)


class Adadelta(Optimizer):
    """Keras's Adadelta: ``a = rho * a + (1 - rho) * g**2``;
    ``d = -sqrt(s + epsilon) * g / sqrt(a + epsilon)``; ``s = rho * s + (1 - rho) * d**2``;
    ``w += lr * d`` (Keras's default rate 0.001).

    Example:
        >>> Adadelta().hyperparameters()["rho"]
        0.95
    """

    name = "adadelta"

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, use_ema=False,
                 ema_momentum=0.99, ema_overwrite_frequency=None, swa_start=None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         use_ema, ema_momentum, ema_overwrite_frequency, swa_start, **kwargs)
        self.rho = _check("Adadelta", "rho", rho, 0.0, 1.0)
        self.epsilon = _check("Adadelta", "epsilon", epsilon, 0.0)

    def hyperparameters(self):
        return {**super().hyperparameters(), "rho": self.rho, "epsilon": self.epsilon}

    def slots(self):
        return ("accumulated_grad", "accumulated_delta_var")

    def keras_slots(self):
        return (self.slots(),)

    def apply(self, params, grads, slots, members):
        for param, grad, state in zip(params, grads, slots):
            ndim = param.dim()
            rho, eps = members.value("rho", ndim), members.value("epsilon", ndim)
            grads_sq, deltas_sq = state["accumulated_grad"], state["accumulated_delta_var"]
            grads_sq.copy_(rho * grads_sq + (1 - rho) * grad.square())
            delta = -((deltas_sq + eps).sqrt() * grad) / (grads_sq + eps).sqrt()
            deltas_sq.copy_(rho * deltas_sq + (1 - rho) * delta.square())
            param.add_(members.value("learning_rate", ndim) * delta)


class _Moments(Optimizer):
    """Adamax's and Nadam's arguments: ``beta_1`` in [0, 1), ``beta_2`` in [0, 1) (or
    [0, 1] where ``beta_2_reaches_one``), ``epsilon`` >= 0, and the base ones."""

    beta_2_reaches_one = False

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None,
                 swa_start=None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         use_ema, ema_momentum, ema_overwrite_frequency, swa_start, **kwargs)
        owner = type(self).__name__
        self.beta_1 = _check(owner, "beta_1", beta_1, 0.0, 1.0, hi_open=True)
        self.beta_2 = _check(owner, "beta_2", beta_2, 0.0, 1.0,
                             hi_open=not self.beta_2_reaches_one)
        self.epsilon = _check(owner, "epsilon", epsilon, 0.0)

    def hyperparameters(self):
        return {**super().hyperparameters(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


class Adamax(_Moments):
    """Keras's Adamax: ``m += (g - m) * (1 - beta_1)``; ``u = max(beta_2 * u, |g|)``;
    ``w -= lr * m / ((1 - beta_1**t) * (u + epsilon))``.

    Example:
        >>> Adamax().hyperparameters()["beta_2"]
        0.999
    """

    name = "adamax"
    beta_2_reaches_one = True  # beta_2 = 1: u is the largest |g| seen
    def slots(self):
        return ("momentum", "norm")

    def keras_slots(self):
        return (self.slots(),)

    def _denominator(self, state, members, ndim):
        correction = _per_member([1 - hp["beta_1"] ** step for hp, step in
                                  zip(members.floats, members.steps)], members, ndim)
        return correction * (state["norm"] + members.value("epsilon", ndim))

    def apply(self, params, grads, slots, members):
        for param, grad, state in zip(params, grads, slots):
            ndim = param.dim()
            m, u = state["momentum"], state["norm"]
            m.add_((grad - m) * (1 - members.value("beta_1", ndim)))
            torch.maximum(members.value("beta_2", ndim) * u, grad.abs(), out=u)
            param.sub_(members.value("learning_rate", ndim) * m
                       / self._denominator(state, members, ndim))

    def step_size(self, param, slots, members):
        ndim = param.dim()
        return members.value("learning_rate", ndim) / self._denominator(slots, members, ndim)


@functools.cache
def _momentum_products(beta_1: float) -> list[float]:
    """Nadam's running product ``prod_{i<=t} beta_1 * (1 - 0.5 * 0.96**i)`` at ``t = 0,
    1, ...``, grown on demand (a pure function of ``beta_1`` and the step)."""
    return [1.0]


def _momentum_product(beta_1: float, step: int) -> float:
    products = _momentum_products(beta_1)
    while len(products) <= step and products[-1] != 0.0:  # 0 from ~7,000 steps on: kept
        i = len(products)
        products.append(products[-1] * beta_1 * (1.0 - 0.5 * 0.96**i))
    return products[step] if step < len(products) else 0.0


class Nadam(_Moments):
    """Keras's Nadam: Adam with Nesterov momentum and Keras's momentum schedule
    ``u_t = beta_1 * (1 - 0.5 * 0.96**t)``:
    ``m_hat = u_{t+1} m / (1 - prod u_{<=t+1}) + (1 - u_t) g / (1 - prod u_{<=t})``,
    ``v_hat = v / (1 - beta_2**t)``, ``w -= lr * m_hat / (sqrt(v_hat) + epsilon)``.

    Example:
        >>> Nadam().hyperparameters()["beta_1"]
        0.9
    """

    name = "nadam"

    def slots(self):
        return ("momentum", "velocity")

    def keras_slots(self):
        return (self.slots(), "u_product")  # Keras's running product, reglab's from the step

    def computed_variable(self, name: str, step: int) -> float:
        """The value of Keras's variable ``name`` (``keras_slots``) after ``step`` steps."""
        return _momentum_product(self.beta_1, step)

    @staticmethod
    def _coefficients(members) -> tuple[list[float], list[float], list[float]]:
        """Per member: the momentum's and the gradient's weights in ``m_hat`` and
        ``1 / (1 - beta_2**t)``."""
        of_m, of_g, of_v = [], [], []
        for hp, t in zip(members.floats, members.steps):
            b1 = hp["beta_1"]
            u_t, u_next = b1 * (1 - 0.5 * 0.96**t), b1 * (1 - 0.5 * 0.96**(t + 1))
            product = _momentum_product(b1, t)
            of_m.append(u_next / (1 - product * u_next))
            of_g.append((1 - u_t) / (1 - product))
            of_v.append(1 / (1 - hp["beta_2"] ** t))
        return of_m, of_g, of_v

    def apply(self, params, grads, slots, members):
        coefficients = self._coefficients(members)
        for param, grad, state in zip(params, grads, slots):
            ndim = param.dim()
            m, v = state["momentum"], state["velocity"]
            m.add_((grad - m) * (1 - members.value("beta_1", ndim)))
            v.add_((grad.square() - v) * (1 - members.value("beta_2", ndim)))
            of_m, of_g, of_v = (_per_member(c, members, ndim) for c in coefficients)
            m_hat = of_m * m + of_g * grad
            param.sub_(m_hat * members.value("learning_rate", ndim)
                       / ((v * of_v).sqrt() + members.value("epsilon", ndim)))


class Lamb(_Moments):
    """Keras's Lamb: Adam's moments and bias-corrected step ``u = m_hat / (sqrt(v_hat) +
    epsilon)``, scaled per weight by the trust ratio ``||w|| / ||u||`` (1 where either norm
    is 0): ``w -= ratio * lr * u``. The norms are each member's own, over its whole weight.

    Example:
        >>> Lamb().hyperparameters()["epsilon"]
        1e-07
    """

    name = "lamb"
    _one_step = ("_ratios",)

    def slots(self):
        return ("momentum", "velocity")

    def keras_slots(self):
        return (self.slots(),)

    def _corrections(self, members, ndim):
        """Each member's ``1 - beta_1**t`` and ``1 - beta_2**t``."""
        return [_per_member([1 - hp[beta] ** step for hp, step in
                             zip(members.floats, members.steps)], members, ndim)
                for beta in ("beta_1", "beta_2")]

    @staticmethod
    def _denominator(state, members, ndim, of_v):
        """``sqrt(v_hat) + epsilon``, with ``of_v`` each member's ``1 - beta_2**t``."""
        return (state["velocity"] / of_v).sqrt() + members.value("epsilon", ndim)

    def apply(self, params, grads, slots, members):
        self._ratios = {}
        for param, grad, state in zip(params, grads, slots):
            ndim = param.dim()
            m, v = state["momentum"], state["velocity"]
            m.add_((grad - m) * (1 - members.value("beta_1", ndim)))
            v.add_((grad.square() - v) * (1 - members.value("beta_2", ndim)))
            of_m, of_v = self._corrections(members, ndim)
            update = (m / of_m) / self._denominator(state, members, ndim, of_v)
            ratio = self._ratios[param.data_ptr()] = _trust_ratio(param, update)
            param.sub_(ratio * members.value("learning_rate", ndim) * update)

    def step_size(self, param, slots, members):
        """``ratio * lr / ((1 - beta_1**t) (sqrt(v_hat) + epsilon))``: the last step's scale
        of the momentum, with its trust ratio."""
        ndim = param.dim()
        of_m, of_v = self._corrections(members, ndim)
        return (self._ratios[param.data_ptr()] * members.value("learning_rate", ndim)
                / (of_m * self._denominator(slots, members, ndim, of_v)))



def _trust_ratio(param: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
    """Each member's ``||w|| / ||u||`` over its whole weight, 1 where either is 0, as
    ``(P, 1, ..., 1)``."""
    dims = tuple(range(1, param.dim()))
    w_norm = param.square().sum(dim=dims, keepdim=True).sqrt() if dims else param.abs()
    u_norm = update.square().sum(dim=dims, keepdim=True).sqrt() if dims else update.abs()
    ratio = torch.where(u_norm > 0, w_norm / u_norm, torch.ones_like(w_norm))
    return torch.where(w_norm > 0, ratio, torch.ones_like(w_norm))


class Lion(Optimizer):
    """Keras's Lion: ``w -= lr * sign(beta_1 * m + (1 - beta_1) * g)``;
    ``m = beta_2 * m + (1 - beta_2) * g``.

    Example:
        >>> Lion().hyperparameters()["beta_2"]
        0.99
    """

    name = "lion"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.99, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, use_ema=False,
                 ema_momentum=0.99, ema_overwrite_frequency=None, swa_start=None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         use_ema, ema_momentum, ema_overwrite_frequency, swa_start, **kwargs)
        # Keras: beta_1 in (0, 1] (at 0 Lion is sign SGD)
        self.beta_1 = _check("Lion", "beta_1", beta_1, 0.0, 1.0, lo_open=True)
        self.beta_2 = _check("Lion", "beta_2", beta_2, 0.0, 1.0)

    def hyperparameters(self):
        return {**super().hyperparameters(), "beta_1": self.beta_1, "beta_2": self.beta_2}

    def slots(self):
        return ("momentum",)

    def apply(self, params, grads, slots, members):
        for param, grad, state in zip(params, grads, slots):
            ndim = param.dim()
            m = state["momentum"]
            b1, b2 = members.value("beta_1", ndim), members.value("beta_2", ndim)
            param.sub_(members.value("learning_rate", ndim) * torch.sign(m * b1
                                                                         + grad * (1 - b1)))
            m.copy_(m * b2 + grad * (1 - b2))


class Ftrl(Optimizer):
    """Keras's Ftrl (follow the regularized leader): with ``n`` the accumulator (starting at
    ``initial_accumulator_value``), ``z`` the linear term, ``p = -learning_rate_power``,
    ``l2' = l2_regularization_strength + beta / (2 lr)``:
    ``z += g + 2 l2_shrinkage w - ((n + g**2)**p - n**p) / lr * w``; ``n += g**2``;
    ``w = (clip(z, -l1, l1) - z) / (n**p / lr + 2 l2')``.

    Example:
        >>> Ftrl().hyperparameters()["learning_rate_power"]
        -0.5
    """

    name = "ftrl"

    def __init__(self, learning_rate=0.001, learning_rate_power=-0.5,
                 initial_accumulator_value=0.1, l1_regularization_strength=0.0,
                 l2_regularization_strength=0.0, l2_shrinkage_regularization_strength=0.0,
                 beta=0.0, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, use_ema=False, ema_momentum=0.99,
                 ema_overwrite_frequency=None, swa_start=None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         use_ema, ema_momentum, ema_overwrite_frequency, swa_start, **kwargs)
        self.learning_rate_power = _check("Ftrl", "learning_rate_power", learning_rate_power,
                                          -float("inf"), 0.0)
        self.initial_accumulator_value = _check("Ftrl", "initial_accumulator_value",
                                                initial_accumulator_value, 0.0)
        for name, value in (("l1_regularization_strength", l1_regularization_strength),
                            ("l2_regularization_strength", l2_regularization_strength),
                            ("l2_shrinkage_regularization_strength",
                             l2_shrinkage_regularization_strength)):
            setattr(self, name, _check("Ftrl", name, value, 0.0))
        self.beta = _check("Ftrl", "beta", beta, -float("inf"))

    def hyperparameters(self):
        return {**super().hyperparameters(),
                "learning_rate_power": self.learning_rate_power,
                "initial_accumulator_value": self.initial_accumulator_value,
                "l1_regularization_strength": self.l1_regularization_strength,
                "l2_regularization_strength": self.l2_regularization_strength,
                "l2_shrinkage_regularization_strength":
                    self.l2_shrinkage_regularization_strength,
                "beta": self.beta}

    def slots(self):
        return ("accumulator", "linear")

    def keras_slots(self):
        return (self.slots(),)  # Keras's add_optimizer_variables(weights, [both])

    def slot_initial_values(self):
        return {"accumulator": "initial_accumulator_value"}

    def _quadratic(self, accumulator, members, ndim):
        """``n**p / lr + 2 l2'`` (Keras's ``quadratic``)."""
        lr = members.value("learning_rate", ndim)
        l2 = members.value("l2_regularization_strength", ndim) \
            + members.value("beta", ndim) / (2.0 * lr)
        return accumulator.pow(-members.value("learning_rate_power", ndim)) / lr + 2 * l2

    def apply(self, params, grads, slots, members):
        for param, grad, state in zip(params, grads, slots):
            ndim = param.dim()
            lr = members.value("learning_rate", ndim)
            power = -members.value("learning_rate_power", ndim)
            accumulator, linear = state["accumulator"], state["linear"]
            shrinkage = members.value("l2_shrinkage_regularization_strength", ndim)
            new_accumulator = accumulator + grad.square()
            linear.add_(grad + 2 * shrinkage * param
                        - (new_accumulator.pow(power) - accumulator.pow(power)) / lr * param)
            l1 = members.value("l1_regularization_strength", ndim)
            clipped = torch.minimum(torch.maximum(linear, -l1 * torch.ones_like(linear)),
                                    l1 * torch.ones_like(linear))
            param.copy_((clipped - linear) / self._quadratic(new_accumulator, members, ndim))
            accumulator.copy_(new_accumulator)

    def step_size(self, param, slots, members):
        """``1 / quadratic``: the scale of the last update's step, from the updated slots."""
        return 1.0 / self._quadratic(slots["accumulator"], members, param.dim())


for _cls in (Adagrad, Adadelta, Adamax, Nadam, Lamb, Lion, Ftrl):
    register(_cls)
