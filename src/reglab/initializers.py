"""Keras 3's weight initializers, drawing from an explicit torch.Generator.

Fans follow Keras: for a kernel of shape ``(..., in, out)`` the receptive field
is the product of the leading dimensions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from reglab.errors import unknown_name

Initializer = Callable[[Sequence[int], torch.Generator, torch.dtype], torch.Tensor]

_TRUNCATED_STD = 0.87962566103423978  # std of a unit normal truncated at +-2


def compute_fans(shape: Sequence[int]) -> tuple[float, float]:
    """``(fan_in, fan_out)`` as Keras computes them."""
    shape = tuple(shape)
    if len(shape) == 0:
        return 1.0, 1.0
    if len(shape) == 1:
        return float(shape[0]), float(shape[0])
    receptive = math.prod(shape[:-2])
    return float(shape[-2] * receptive), float(shape[-1] * receptive)


def _uniform(shape, generator, dtype, limit):
    u = torch.rand(tuple(shape), generator=generator, dtype=torch.float64)
    return ((2.0 * u - 1.0) * limit).to(dtype)


def _truncated_normal(shape, generator, dtype, std):
    out = torch.empty(tuple(shape), dtype=torch.float64)
    torch.nn.init.trunc_normal_(out, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=generator)
    return (out * std).to(dtype)


def glorot_uniform(shape, generator, dtype=torch.float32):
    fan_in, fan_out = compute_fans(shape)
    return _uniform(shape, generator, dtype, math.sqrt(6.0 / (fan_in + fan_out)))


def glorot_normal(shape, generator, dtype=torch.float32):
    fan_in, fan_out = compute_fans(shape)
    std = math.sqrt(2.0 / (fan_in + fan_out)) / _TRUNCATED_STD
    return _truncated_normal(shape, generator, dtype, std)


def he_uniform(shape, generator, dtype=torch.float32):
    fan_in, _ = compute_fans(shape)
    return _uniform(shape, generator, dtype, math.sqrt(6.0 / fan_in))


def he_normal(shape, generator, dtype=torch.float32):
    fan_in, _ = compute_fans(shape)
    return _truncated_normal(shape, generator, dtype, math.sqrt(2.0 / fan_in) / _TRUNCATED_STD)


def zeros(shape, generator=None, dtype=torch.float32):
    return torch.zeros(tuple(shape), dtype=dtype)


def ones(shape, generator=None, dtype=torch.float32):
    return torch.ones(tuple(shape), dtype=dtype)


_BY_NAME: dict[str, Initializer] = {
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "he_uniform": he_uniform,
    "he_normal": he_normal,
    "zeros": zeros,
    "ones": ones,
}


def get(identifier, where: str = "initializers.get") -> Initializer:
    """Resolves an initializer by Keras name, or returns a callable as is."""
    if isinstance(identifier, str):
        fn = _BY_NAME.get(identifier)
        if fn is None:
            raise unknown_name(where, "initializer", identifier, _BY_NAME)
        return fn
    if callable(identifier):
        return identifier
    raise unknown_name(where, "initializer", identifier, _BY_NAME)
