"""``BatchNormalization`` with Keras 3's defaults and moving-statistics rule.

Training normalizes with the batch's mean and biased variance and updates
``moving = moving * momentum + batch * (1 - momentum)``; inference uses the
moving statistics. Keras's ``momentum`` is the weight of the old value, so
``torch_momentum = 1 - keras_momentum`` where torch's convention is wanted.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch

from reglab import constraints, initializers
from reglab.errors import ConfigError
from reglab.layers.layer import (
    Layer,
    WeightSpec,
    is_shared,
    resolve_regularizer,
    sample_axes,
    serialized,
)
from reglab.utils.reduce import mean_and_variance


def batch_normalize(x, mean, variance, gamma, beta, epsilon):
    """``(x - mean) / sqrt(variance + epsilon) * gamma + beta``, in Keras's operation order."""
    inv = torch.rsqrt(variance + epsilon)
    if gamma is not None:
        inv = inv * gamma
    shift = -mean * inv
    if beta is not None:
        shift = shift + beta
    return x * inv + shift


def scale_and_shift(layer, channels) -> list[WeightSpec]:
    """A normalization's gamma (with ``scale``) and beta (with ``center``), Keras's order."""
    specs = []
    if layer.scale:
        specs.append(WeightSpec("gamma", channels, layer.gamma_initializer, kind="gamma",
                                regularizer=layer.gamma_regularizer,
                                constraint=layer.gamma_constraint))
    if layer.center:
        specs.append(WeightSpec("beta", channels, layer.beta_initializer, kind="beta",
                                regularizer=layer.beta_regularizer,
                                constraint=layer.beta_constraint))
    return specs


def _axis_given(owner: str, axis, lists: bool):
    """Keras's ``axis`` of a normalization as given: an int (a NumPy one as a Python int), or
    with ``lists`` a list of one (LayerNormalization's form); checked against the input at
    build (:func:`_check_last_axis`)."""
    one = axis[0] if lists and isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
    if isinstance(one, bool) or not isinstance(one, (int, np.integer)):
        expected = "an int (or a list of one)" if lists else "an int"
        raise ConfigError(f"{owner}: 'axis' must be {expected}, the channels' axis. "
                          f"Got {axis!r}.")
    return [int(one)] if one is not axis else int(one)


def _check_last_axis(owner: str, axis, input_shape) -> None:
    """The layer normalizes the last axis only: ``axis`` must name it (-1, or its positive
    number counted with the batch as axis 0, as Keras counts it: 3 for images (B, H, W, C))."""
    rank = len(input_shape)
    (position,) = sample_axes(owner, axis[0] if isinstance(axis, list) else axis, rank)
    if position != -1:
        raise ConfigError(f"{owner}: only the last axis (channels last) is supported: 'axis' "
                          f"-1, or {rank} for an input of {rank + 1} axes (the batch "
                          f"included). Got axis={axis!r}.")


class BatchNormalization(Layer):
    """Normalizes the last axis (``axis=-1``) with momentum 0.99 and epsilon 1e-3, as Keras.

    Weights, in ``get_weights`` order: gamma, beta, moving_mean, moving_variance.

    Example:
        >>> BatchNormalization().values()
        {'momentum': 0.99, 'epsilon': 0.001}
    """

    # As Keras 3: under mixed precision the statistics are computed in float32 and the
    # output cast back to the compute dtype.
    computes_in_float32 = True

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                 gamma_constraint=None, **kwargs):
        super().__init__(**kwargs)
        axis = _axis_given("BatchNormalization", axis, lists=False)
        for name, value, lo in (("momentum", momentum, 0.0), ("epsilon", epsilon, 0.0)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or value < lo or (
                    name == "momentum" and value > 1):
                expected = "a float in [0, 1]" if name == "momentum" else "a non-negative float"
                raise ConfigError(f"BatchNormalization: '{name}' must be {expected}. "
                                  f"Got {value!r}.")
        self.axis = axis
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = initializers.get(beta_initializer, "BatchNormalization: 'beta_initializer'")
        self.gamma_initializer = initializers.get(gamma_initializer, "BatchNormalization: 'gamma_initializer'")
        self.moving_mean_initializer = initializers.get(moving_mean_initializer, "BatchNormalization: 'moving_mean_initializer'")
        self.moving_variance_initializer = initializers.get(moving_variance_initializer, "BatchNormalization: 'moving_variance_initializer'")
        self.beta_regularizer = resolve_regularizer("BatchNormalization", "beta_regularizer",
                                                    beta_regularizer)
        self.gamma_regularizer = resolve_regularizer("BatchNormalization", "gamma_regularizer",
                                                     gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint, "BatchNormalization: 'beta_constraint'")
        self.gamma_constraint = constraints.get(gamma_constraint, "BatchNormalization: 'gamma_constraint'")

    def weight_specs(self, input_shape):
        _check_last_axis("BatchNormalization", self.axis, input_shape)
        channels = (input_shape[-1],)
        specs = scale_and_shift(self, channels)
        specs += [
            WeightSpec("moving_mean", channels, self.moving_mean_initializer, trainable=False,
                       kind="stat"),
            WeightSpec("moving_variance", channels, self.moving_variance_initializer,
                       trainable=False, kind="stat"),
        ]
        return specs

    def structure(self):
        return ("BatchNormalization", self.center, self.scale)

    def values(self):
        return {"momentum": self.momentum, "epsilon": self.epsilon}

    def forward(self, x, weights, values, ctx, input_shape):
        shared = is_shared(x, input_shape)
        members = weights["moving_mean"].shape[0]
        # Per-member (P, C) tensors viewed as (P, 1, ..., 1, C) to broadcast over (P, B, ..., C).
        view = (members,) + (1,) * (len(input_shape)) + (input_shape[-1],)

        def as_member(t):
            return None if t is None else t.view(view)

        eps = values["epsilon"]
        if isinstance(eps, torch.Tensor):
            eps = eps.view(members, *([1] * (len(view) - 1)))
        if ctx.training and self.trainable:  # a frozen layer uses its moving statistics (Keras 3)
            lead = 0 if shared else 1
            dims = list(range(lead, x.dim() - 1))
            mean, variance = mean_and_variance(x, dims)  # (C,) or (P, C)
            momentum = values["momentum"]
            if isinstance(momentum, torch.Tensor):
                momentum = momentum.view(-1, 1)
            with torch.no_grad():
                for name, batch in (("moving_mean", mean), ("moving_variance", variance)):
                    moving = weights[name]
                    moving.copy_(moving * momentum + batch.detach() * (1.0 - momentum))
            if shared:
                mean, variance = mean.unsqueeze(0), variance.unsqueeze(0)
                x = x.unsqueeze(0)
            mean, variance = mean.view(mean.shape[0], *view[1:]), variance.view(
                variance.shape[0], *view[1:])
        else:
            mean, variance = as_member(weights["moving_mean"]), as_member(
                weights["moving_variance"])
            if shared:
                x = x.unsqueeze(0)
        return batch_normalize(x, mean, variance, as_member(weights.get("gamma")),
                               as_member(weights.get("beta")), eps)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum,
                "epsilon": self.epsilon, "center": self.center, "scale": self.scale,
                **serialized(self, "beta_initializer", "gamma_initializer",
                             "moving_mean_initializer", "moving_variance_initializer",
                             "beta_regularizer", "gamma_regularizer", "beta_constraint",
                             "gamma_constraint")}


class LayerNormalization(Layer):
    """Normalizes each sample over its last axis (Keras 3's defaults: ``axis=-1``,
    ``epsilon=1e-3``, ``center`` and ``scale`` on), then scales by gamma and shifts by beta.

    Weights, in ``get_weights`` order: gamma, beta.

    Example:
        >>> LayerNormalization().values()
        {'epsilon': 0.001}
    """

    computes_in_float32 = True

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, rms_scaling=False,
                 beta_initializer="zeros", gamma_initializer="ones", beta_regularizer=None,
                 gamma_regularizer=None, beta_constraint=None, gamma_constraint=None,
                 **kwargs):
        super().__init__(**kwargs)
        axis = _axis_given("LayerNormalization", axis, lists=True)
        if rms_scaling:
            raise ConfigError("LayerNormalization: 'rms_scaling' is not supported. Got True.")
        if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real) or epsilon < 0:
            raise ConfigError(f"LayerNormalization: 'epsilon' must be a non-negative float. "
                              f"Got {epsilon!r}.")
        self.axis, self.epsilon = axis, float(epsilon)
        self.center, self.scale, self.rms_scaling = bool(center), bool(scale), False
        where = "LayerNormalization"
        self.beta_initializer = initializers.get(beta_initializer, f"{where}: 'beta_initializer'")
        self.gamma_initializer = initializers.get(gamma_initializer,
                                                  f"{where}: 'gamma_initializer'")
        self.beta_regularizer = resolve_regularizer(where, "beta_regularizer", beta_regularizer)
        self.gamma_regularizer = resolve_regularizer(where, "gamma_regularizer",
                                                     gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint, f"{where}: 'beta_constraint'")
        self.gamma_constraint = constraints.get(gamma_constraint,
                                                f"{where}: 'gamma_constraint'")

    def weight_specs(self, input_shape):
        _check_last_axis("LayerNormalization", self.axis, input_shape)
        return scale_and_shift(self, (input_shape[-1],))

    def structure(self):
        return ("LayerNormalization", self.center, self.scale)

    def values(self):
        return {"epsilon": self.epsilon}

    def forward(self, x, weights, values, ctx, input_shape):
        mean, variance = mean_and_variance(x, [x.dim() - 1])
        mean, variance = mean.unsqueeze(-1), variance.unsqueeze(-1)
        eps = values["epsilon"]
        if is_shared(x, input_shape) and (weights or isinstance(eps, torch.Tensor)):
            x, mean, variance = x.unsqueeze(0), mean.unsqueeze(0), variance.unsqueeze(0)
        members = ctx.members  # a shared input (1, B, ...) broadcasts against them
        view = (members,) + (1,) * (x.dim() - 2) + (input_shape[-1],)
        if isinstance(eps, torch.Tensor):
            eps = eps.view(members, *([1] * (x.dim() - 1)))

        def as_member(t):
            return None if t is None else t.view(view)
        return batch_normalize(x, mean, variance, as_member(weights.get("gamma")),
                               as_member(weights.get("beta")), eps)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale, "rms_scaling": self.rms_scaling,
                **serialized(self, "beta_initializer", "gamma_initializer", "beta_regularizer",
                             "gamma_regularizer", "beta_constraint", "gamma_constraint")}


class UnitNormalization(Layer):
    """Keras's ``UnitNormalization``: each sample scaled to unit L2 norm over ``axis`` (an
    axis or a tuple, counted as Keras counts them; -1 by default), as Keras's
    ``normalize``: ``x * min(rsqrt(sum(x**2)), 1e12)``.

    Example:
        >>> UnitNormalization().compute_output_shape((4,))
        (4,)
    """

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        axes = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
        if not axes or any(isinstance(a, bool) or not isinstance(a, numbers.Integral) for a in axes):
            raise ConfigError(f"UnitNormalization: 'axis' must be an int or a list of ints. "
                              f"Got {axis!r}.")
        self.axis = axes if isinstance(axis, (tuple, list)) else axis

    def structure(self):
        return ("UnitNormalization", self.axis)

    def compute_output_shape(self, input_shape):
        sample_axes("UnitNormalization", self.axis, len(input_shape))
        return input_shape

    def forward(self, x, weights, values, ctx, input_shape):
        axes = sample_axes("UnitNormalization", self.axis, len(input_shape))
        inverse = torch.rsqrt(torch.sum(torch.square(x), dim=axes, keepdim=True))
        return x * torch.clamp(inverse, max=1.0 / 1e-12)

    def get_config(self):
        return {**super().get_config(), "axis": list(self.axis) if isinstance(self.axis, tuple)
                else self.axis}
