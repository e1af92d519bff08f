"""Keras's shape layers: ``Reshape``, ``Permute``, ``ZeroPadding2D``.

Each works on the sample's axes (the last ``len(input_shape)``), whether the input has a
member axis or not.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch.nn.functional as F

from reglab.errors import ConfigError
from reglab.layers.layer import Layer


def _lead(x, input_shape) -> tuple:
    return tuple(x.shape[:x.dim() - len(input_shape)])


class Reshape(Layer):
    """Gives each sample ``target_shape`` (one entry may be -1, inferred), as Keras.

    Example:
        >>> Reshape((7, 7, 16)).compute_output_shape((784,))
        (7, 7, 16)
    """

    def __init__(self, target_shape, **kwargs: Any):
        super().__init__(**kwargs)
        if isinstance(target_shape, int):
            target_shape = (target_shape,)
        if not isinstance(target_shape, (tuple, list)) or not target_shape or not all(
                isinstance(d, int) and not isinstance(d, bool) and (d > 0 or d == -1)
                for d in target_shape) or list(target_shape).count(-1) > 1:
            raise ConfigError(f"Reshape: 'target_shape' must be positive ints, at most one "
                              f"-1. Got {target_shape!r}.")
        self.target_shape = tuple(target_shape)

    def compute_output_shape(self, input_shape):
        size = math.prod(input_shape)
        known = math.prod(d for d in self.target_shape if d != -1)
        if -1 in self.target_shape:
            if size % known:
                raise ConfigError(f"Reshape: cannot reshape {tuple(input_shape)} to "
                                  f"{self.target_shape}.")
            return tuple(size // known if d == -1 else d for d in self.target_shape)
        if known != size:
            raise ConfigError(f"Reshape: {tuple(input_shape)} has {size} values, "
                              f"{self.target_shape} {known}.")
        return self.target_shape

    def structure(self):
        return ("Reshape", self.target_shape)

    def forward(self, x, weights, values, ctx, input_shape):
        return x.reshape(*_lead(x, input_shape), *self.compute_output_shape(input_shape))

    def get_config(self):
        return {**super().get_config(), "target_shape": self.target_shape}


class Permute(Layer):
    """Reorders the sample's axes: ``dims`` numbers them from 1 (the batch is 0), as Keras.

    Example:
        >>> Permute((2, 1)).compute_output_shape((10, 64))
        (64, 10)
    """

    def __init__(self, dims, **kwargs: Any):
        super().__init__(**kwargs)
        if not isinstance(dims, (tuple, list)) or sorted(dims) != list(range(1, len(dims) + 1)):
            raise ConfigError(f"Permute: 'dims' must be a permutation of 1..n (the batch axis "
                              f"is not permuted). Got {dims!r}.")
        self.dims = tuple(dims)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != len(self.dims):
            raise ConfigError(f"Permute: 'dims' {self.dims} do not fit inputs of "
                              f"{len(input_shape)} axes after the batch.")
        return tuple(input_shape[d - 1] for d in self.dims)

    def structure(self):
        return ("Permute", self.dims)

    def forward(self, x, weights, values, ctx, input_shape):
        lead = x.dim() - len(input_shape)
        return x.permute(*range(lead), *(lead + d - 1 for d in self.dims))

    def get_config(self):
        return {**super().get_config(), "dims": self.dims}


class ZeroPadding2D(Layer):
    """Pads height and width with zeros: ``padding`` is an int, ``(h, w)`` or
    ``((top, bottom), (left, right))``, as Keras.

    Example:
        >>> ZeroPadding2D(1).compute_output_shape((28, 28, 1))
        (30, 30, 1)
    """

    def __init__(self, padding=(1, 1), data_format=None, **kwargs: Any):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ConfigError("ZeroPadding2D: 'data_format' must be 'channels_last'. "
                              f"Got {data_format!r}.")
        self.padding = _pads(padding)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ConfigError("ZeroPadding2D: expects inputs of rank 4 (batch, height, width, "
                              f"channels). Got {(None, *input_shape)}.")
        (top, bottom), (left, right) = self.padding
        h, w, c = input_shape
        return (h + top + bottom, w + left + right, c)

    def structure(self):
        return ("ZeroPadding2D", self.padding)

    def forward(self, x, weights, values, ctx, input_shape):
        (top, bottom), (left, right) = self.padding
        return F.pad(x, (0, 0, left, right, top, bottom))

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


def _pads(padding) -> tuple[tuple[int, int], tuple[int, int]]:
    def count(value):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
            raise ConfigError(f"ZeroPadding2D: 'padding' must be ints >= 0. Got {padding!r}.")
        return int(value)
    if isinstance(padding, numbers.Integral) and not isinstance(padding, bool):
        return ((count(padding),) * 2,) * 2
    if isinstance(padding, (tuple, list)) and len(padding) == 2:
        if all(isinstance(p, int) for p in padding):
            return ((count(padding[0]),) * 2, (count(padding[1]),) * 2)
        if all(isinstance(p, (tuple, list)) and len(p) == 2 for p in padding):
            return tuple(tuple(count(v) for v in p) for p in padding)  # type: ignore[return-value]
    raise ConfigError(f"ZeroPadding2D: 'padding' must be an int, (h, w) or "
                      f"((top, bottom), (left, right)). Got {padding!r}.")
