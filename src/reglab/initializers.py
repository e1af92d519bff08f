"""Keras 3's weight initializers, drawing from an explicit torch.Generator.

Fans follow Keras: for a kernel of shape ``(..., in, out)`` the receptive field
is the product of the leading dimensions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from reglab.errors import ConfigError, unknown_name

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


class Initializer:
    """Base class: ``initializer(shape, generator, dtype) -> tensor``, with a config as in
    Keras. ``seed`` is accepted for Keras compatibility; draws come from the generator the
    engine derives from the member's seed and the weight's name."""

    def __init__(self, seed=None):
        self.seed = seed

    def __call__(self, shape: Sequence[int], generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
        raise NotImplementedError

    def get_config(self) -> dict:
        return {"seed": self.seed}

    @classmethod
    def from_config(cls, config: dict) -> Initializer:
        return cls(**config)

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash(type(self).__name__)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class GlorotUniform(Initializer):
    """Uniform in ``[-limit, limit]``, ``limit = sqrt(6 / (fan_in + fan_out))``."""

    def __call__(self, shape, generator=None, dtype=torch.float32):
        fan_in, fan_out = compute_fans(shape)
        return _uniform(shape, generator, dtype, math.sqrt(6.0 / (fan_in + fan_out)))


class GlorotNormal(Initializer):
    """Normal truncated at two standard deviations, ``std = sqrt(2 / (fan_in + fan_out))``."""

    def __call__(self, shape, generator=None, dtype=torch.float32):
        fan_in, fan_out = compute_fans(shape)
        std = math.sqrt(2.0 / (fan_in + fan_out)) / _TRUNCATED_STD
        return _truncated_normal(shape, generator, dtype, std)


class HeUniform(Initializer):
    """Uniform in ``[-limit, limit]``, ``limit = sqrt(6 / fan_in)``."""

    def __call__(self, shape, generator=None, dtype=torch.float32):
        fan_in, _ = compute_fans(shape)
        return _uniform(shape, generator, dtype, math.sqrt(6.0 / fan_in))


class HeNormal(Initializer):
    """Normal truncated at two standard deviations, ``std = sqrt(2 / fan_in)``."""

    def __call__(self, shape, generator=None, dtype=torch.float32):
        fan_in, _ = compute_fans(shape)
        return _truncated_normal(shape, generator, dtype, math.sqrt(2.0 / fan_in) / _TRUNCATED_STD)


class RandomUniform(Initializer):
    """Uniform in ``[minval, maxval)`` (Keras's defaults: -0.05, 0.05; ``'uniform'``, the
    default of Embedding's table)."""

    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        super().__init__(seed)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                   for v in (minval, maxval)) or minval > maxval:
            raise ConfigError(f"RandomUniform: 'minval' and 'maxval' must be numbers with "
                              f"minval <= maxval. Got {minval!r}, {maxval!r}.")
        self.minval, self.maxval = float(minval), float(maxval)

    def __call__(self, shape, generator=None, dtype=torch.float32):
        out = torch.empty(tuple(shape), dtype=torch.float64)
        out.uniform_(self.minval, self.maxval, generator=generator)
        return out.to(dtype)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}


class Zeros(Initializer):
    """All zeros (no seed, as in Keras)."""

    def __init__(self):
        super().__init__(None)

    def __call__(self, shape, generator=None, dtype=torch.float32):
        return torch.zeros(tuple(shape), dtype=dtype)

    def get_config(self):
        return {}


class Ones(Zeros):
    """All ones."""

    def __call__(self, shape, generator=None, dtype=torch.float32):
        return torch.ones(tuple(shape), dtype=dtype)


# Keras's lowercase names: shared instances, usable as functions.
glorot_uniform = GlorotUniform()
glorot_normal = GlorotNormal()
he_uniform = HeUniform()
he_normal = HeNormal()
zeros = Zeros()
ones = Ones()
uniform = RandomUniform()

_BY_NAME: dict[str, Initializer] = {
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "he_uniform": he_uniform,
    "he_normal": he_normal,
    "zeros": zeros,
    "ones": ones,
    "uniform": uniform,
    "random_uniform": uniform,
}
_CLASSES: dict[str, type[Initializer]] = {
    cls.__name__: cls for cls in (GlorotUniform, GlorotNormal, HeUniform, HeNormal, Zeros, Ones,
                                  RandomUniform)}


def serialize(initializer) -> dict | object:
    """``{'class_name', 'config'}`` for a built-in initializer; anything else as it is (it
    round-trips in memory, and cannot be saved to a file)."""
    if isinstance(initializer, Initializer) and _CLASSES.get(type(initializer).__name__) is \
            type(initializer):
        return {"class_name": type(initializer).__name__, "config": initializer.get_config()}
    return initializer


def get(identifier, where: str = "initializers.get") -> Initializer:
    """Resolves an initializer by Keras name, class name or config, or returns a callable."""
    if isinstance(identifier, str):
        found = _BY_NAME.get(identifier)
        if found is None and identifier in _CLASSES:
            found = _CLASSES[identifier]()
        if found is None:
            raise unknown_name(where, "initializer", identifier, _BY_NAME)
        return found
    if isinstance(identifier, dict) and "class_name" in identifier:
        cls = _CLASSES.get(identifier["class_name"])
        if cls is None:
            raise unknown_name(where, "initializer", identifier["class_name"], _CLASSES)
        instance = cls.from_config(identifier.get("config") or {})
        for shared in _BY_NAME.values():  # the shared instance for a default config
            if instance == shared:
                return shared
        return instance
    if callable(identifier):
        return identifier
    raise unknown_name(where, "initializer", identifier, _BY_NAME)
