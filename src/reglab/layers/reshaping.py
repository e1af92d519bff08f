"""Keras's shape layers: ``Reshape``, ``Permute``, ``ZeroPadding2D``, ``Cropping2D``,
``UpSampling2D`` and ``Identity``.

Each works on the sample's axes (the last ``len(input_shape)``), whether the input has a
member axis or not.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch.nn.functional as F

from reglab.errors import ConfigError
from reglab.layers.layer import Layer, as_pair, check_channels_last, image_shape


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
        check_channels_last("ZeroPadding2D", data_format)
        self.padding = _pads("ZeroPadding2D", "padding", padding)

    def compute_output_shape(self, input_shape):
        (top, bottom), (left, right) = self.padding
        h, w, c = image_shape("ZeroPadding2D", input_shape)
        return (h + top + bottom, w + left + right, c)

    def structure(self):
        return ("ZeroPadding2D", self.padding)

    def forward(self, x, weights, values, ctx, input_shape):
        (top, bottom), (left, right) = self.padding
        return F.pad(x, (0, 0, left, right, top, bottom))

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


def _pads(owner: str, argument: str, padding) -> tuple[tuple[int, int], tuple[int, int]]:
    def count(value):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
            raise ConfigError(f"{owner}: '{argument}' must be ints >= 0. Got {padding!r}.")
        return int(value)
    if isinstance(padding, numbers.Integral) and not isinstance(padding, bool):
        return ((count(padding),) * 2,) * 2
    if isinstance(padding, (tuple, list)) and len(padding) == 2:
        if all(isinstance(p, numbers.Integral) for p in padding):
            return ((count(padding[0]),) * 2, (count(padding[1]),) * 2)
        if all(isinstance(p, (tuple, list)) and len(p) == 2 for p in padding):
            return tuple(tuple(count(v) for v in p) for p in padding)  # type: ignore[return-value]
    raise ConfigError(f"{owner}: '{argument}' must be an int, (h, w) or "
                      f"((top, bottom), (left, right)). Got {padding!r}.")



class Cropping2D(Layer):
    """Cuts rows and columns off the image's borders: ``cropping`` is an int, ``(h, w)``
    (symmetric) or ``((top, bottom), (left, right))``, as Keras.

    Example:
        >>> Cropping2D(((2, 2), (4, 4))).compute_output_shape((28, 28, 1))
        (24, 20, 1)
    """

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs: Any):
        super().__init__(**kwargs)
        check_channels_last("Cropping2D", data_format)
        self.cropping = _pads("Cropping2D", "cropping", cropping)

    def compute_output_shape(self, input_shape):
        h, w, c = image_shape("Cropping2D", input_shape)
        (top, bottom), (left, right) = self.cropping
        if top + bottom >= h or left + right >= w:
            raise ConfigError(f"Cropping2D: 'cropping' {self.cropping} leaves nothing of an "
                              f"input of height {h} and width {w}.")
        return (h - top - bottom, w - left - right, c)

    def structure(self):
        return ("Cropping2D", self.cropping)

    def forward(self, x, weights, values, ctx, input_shape):
        (top, bottom), (left, right) = self.cropping
        h, w = x.shape[-3], x.shape[-2]
        return x[..., top:h - bottom, left:w - right, :]

    def get_config(self):
        return {**super().get_config(), "cropping": self.cropping}


class UpSampling2D(Layer):
    """Repeats each row ``size[0]`` times and each column ``size[1]`` times (Keras's
    default ``interpolation="nearest"``; the others are not supported yet).

    Example:
        >>> UpSampling2D(2).compute_output_shape((7, 7, 16))
        (14, 14, 16)
    """

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs: Any):
        super().__init__(**kwargs)
        check_channels_last("UpSampling2D", data_format)
        if interpolation != "nearest":
            raise ConfigError("UpSampling2D: 'interpolation' must be 'nearest' (the others "
                              f"are not supported yet). Got {interpolation!r}.")
        self.size = as_pair("UpSampling2D", "size", size)
        self.interpolation = interpolation

    def compute_output_shape(self, input_shape):
        h, w, c = image_shape("UpSampling2D", input_shape)
        return (h * self.size[0], w * self.size[1], c)

    def structure(self):
        return ("UpSampling2D", self.size)

    def forward(self, x, weights, values, ctx, input_shape):
        return x.repeat_interleave(self.size[0], dim=-3).repeat_interleave(self.size[1],
                                                                          dim=-2)

    def get_config(self):
        return {**super().get_config(), "size": self.size,
                "interpolation": self.interpolation}


class Identity(Layer):
    """Passes its input on unchanged, as Keras's.

    Example:
        >>> Identity().compute_output_shape((5,))
        (5,)
    """

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def structure(self):
        return ("Identity",)

    def forward(self, x, weights, values, ctx, input_shape):
        return x
