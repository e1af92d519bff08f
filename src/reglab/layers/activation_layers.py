"""Keras 3's activation layers with arguments: ``ReLU``, ``LeakyReLU``, ``ELU`` and
``Softmax`` (``Activation`` takes an activation by name: ``layers/core.py``).

Each computes what Keras's computes, operation for operation (``ReLU`` follows
``keras.activations.relu``'s branches: a leaky slope alone is torch's ``leaky_relu``, a
``max_value`` of 6 alone its ``relu6``). Their arguments are structural (the same in every
member of a population). An elementwise function that torch may compute by another code
path at a tensor's tail is applied member by member (``activations.apply``).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
import torch.nn.functional as F

from reglab import activations
from reglab.errors import ConfigError
from reglab.layers.layer import Layer, is_shared, sample_axes


def _number(owner: str, name: str, value: Any, minimum: float | None = 0.0,
            allow_none: bool = False) -> float | None:
    """``value`` as a float, checked: finite, ``>= minimum`` where one is given."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value) or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum:g}"
        expected = f"a finite number{bound}" + (" or None" if allow_none else "")
        raise ConfigError(f"{owner}: '{name}' must be {expected}. Got {value!r}.")
    return float(value)


class _Elementwise(Layer):
    """A layer that applies one function to each element: :meth:`function` of a tensor."""

    def function(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    #: whether torch computes :meth:`function` the same way at every position of a tensor
    #: (then the whole population at once)
    position_exact = True

    def forward(self, x, weights, values, ctx, input_shape):
        if self.position_exact or is_shared(x, input_shape) or x.shape[0] == 1:
            return self.function(x)
        return torch.cat([self.function(x[p:p + 1]) for p in range(x.shape[0])])

    def as_activation(self, where: str):
        """The layer's function, as another layer's ``activation`` (Keras calls the layer)."""
        return _named(self.function, self.name or type(self).__name__, self.position_exact,
                      self.structure())


class ReLU(_Elementwise):
    """``keras.layers.ReLU``: ``max_value`` caps the output, ``negative_slope`` is the slope
    below ``threshold``, under which the output is otherwise 0 (each >= 0, as Keras asks).

    Example:
        >>> ReLU(max_value=6.0).structure()
        ('ReLU', 6.0, 0.0, 0.0)
    """

    def __init__(self, max_value: float | None = None, negative_slope: float = 0.0,
                 threshold: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.max_value = _number("ReLU", "max_value", max_value, allow_none=True)
        self.negative_slope = _number("ReLU", "negative_slope", negative_slope)
        self.threshold = _number("ReLU", "threshold", threshold)

    def structure(self):
        return ("ReLU", self.max_value, self.negative_slope, self.threshold)

    def function(self, x):
        slope, cap, threshold = self.negative_slope, self.max_value, self.threshold
        if slope != 0.0:
            if cap is None and threshold == 0:
                return F.leaky_relu(x, slope)
            negative = torch.relu(threshold - x) if threshold != 0 else torch.relu(-x)
        clip = cap is not None
        if threshold != 0:
            x = torch.where(x > threshold, x, torch.zeros((), dtype=x.dtype, device=x.device))
        elif cap == 6:
            x, clip = F.relu6(x), False
        else:
            x = torch.relu(x)
        if clip:
            x = torch.clamp(x, 0.0, cap)
        if slope != 0.0:
            x = x - slope * negative
        return x

    def get_config(self):
        return {**super().get_config(), "max_value": self.max_value,
                "negative_slope": self.negative_slope, "threshold": self.threshold}


class LeakyReLU(_Elementwise):
    """``keras.layers.LeakyReLU``: ``x`` where positive, else ``negative_slope * x`` (0.3 by
    default, Keras's; Keras 2's ``alpha`` is taken as it with a warning, as Keras 3 does).

    Example:
        >>> LeakyReLU().negative_slope
        0.3
    """

    def __init__(self, negative_slope: float = 0.3, **kwargs):
        if "alpha" in kwargs:
            import warnings

            negative_slope = kwargs.pop("alpha")
            warnings.warn("LeakyReLU: argument 'alpha' is deprecated (Keras 3); use "
                          "'negative_slope' instead.", stacklevel=2)
        super().__init__(**kwargs)
        self.negative_slope = _number("LeakyReLU", "negative_slope", negative_slope)

    def structure(self):
        return ("LeakyReLU", self.negative_slope)

    def function(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def get_config(self):
        return {**super().get_config(), "negative_slope": self.negative_slope}


class ELU(_Elementwise):
    """``keras.layers.ELU``: ``x`` where positive, else ``alpha * (exp(x) - 1)``.

    Example:
        >>> ELU(alpha=0.5).structure()
        ('ELU', 0.5)
    """

    position_exact = False  # exp: vectorized and scalar code paths

    def __init__(self, alpha: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = _number("ELU", "alpha", alpha, minimum=None)

    def structure(self):
        return ("ELU", self.alpha)

    def function(self, x):
        return F.elu(x, self.alpha)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


class Softmax(Layer):
    """``keras.layers.Softmax`` over ``axis`` (counted as Keras counts it, the batch axis 0;
    -1, the last, by default); a tuple of axes normalizes over them together.

    Example:
        >>> Softmax(axis=1).compute_output_shape((4, 3))
        (4, 3)
    """

    def __init__(self, axis: int | tuple[int, ...] = -1, **kwargs):
        super().__init__(**kwargs)
        axes = axis if isinstance(axis, (tuple, list)) else (axis,)
        if not axes or any(isinstance(a, bool) or not isinstance(a, numbers.Integral) or a == 0
                           for a in axes):
            raise ConfigError(f"Softmax: 'axis' must be a non-zero int (axis 0 is the batch) "
                              f"or a tuple of them. Got {axis!r}.")
        self.axis = tuple(axes) if isinstance(axis, (tuple, list)) else axis

    def structure(self):
        return ("Softmax", self.axis)

    def compute_output_shape(self, input_shape):
        sample_axes("Softmax", self.axis, len(input_shape))  # checks the axes fit the input
        return input_shape

    def forward(self, x, weights, values, ctx, input_shape):
        axes = sample_axes("Softmax", self.axis, len(input_shape))
        if axes == (-1,):
            return activations.softmax(x)
        if len(axes) == 1:
            return torch.softmax(x, dim=axes[0])
        # Keras's for several axes: exp(x - logsumexp over them)
        return torch.exp(x - torch.logsumexp(x, dim=axes, keepdim=True))

    def as_activation(self, where: str):
        """A softmax over the last axis as another layer's ``activation``."""
        if self.axis not in (-1, (-1,)):
            raise ConfigError(f"{where}: a Softmax layer as an activation normalizes over the "
                              f"last axis (axis=-1) here. Got axis={self.axis!r}; use a "
                              "Softmax layer after it instead.")
        return _named(activations.softmax, self.name or "Softmax", True, self.structure())

    def get_config(self):
        return {**super().get_config(), "axis": list(self.axis) if isinstance(self.axis, tuple)
                else self.axis}


def _named(function, name: str, position_exact: bool, structure: tuple):
    """``function`` as a plain function named ``name`` (what a summary shows), marked
    position-exact or not (:func:`reglab.activations.apply`), and keyed by its layer's
    ``structure`` (two layers of equal arguments are one population structure)."""

    def activation(x):
        return function(x)

    activation.__name__ = activation.__qualname__ = name
    activation.position_exact = position_exact
    activation.structure_key = ("layer", *structure)
    return activation
