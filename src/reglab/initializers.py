"""Keras 3's weight initializers, drawing from an explicit torch.Generator.

Fans follow Keras: for a kernel of shape ``(..., in, out)`` the receptive field
is the product of the leading dimensions.
"""

from __future__ import annotations

import math
import numbers
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
        if not all(isinstance(v, numbers.Real) and not isinstance(v, bool)
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


def _number(owner: str, name: str, value, positive: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (positive and value <= 0):
        wanted = "a finite number > 0" if positive else "a finite number"
        raise ConfigError(f"{owner}: '{name}' must be {wanted}. Got {value!r}.")
    return float(value)


class RandomNormal(Initializer):
    """Normal with ``mean`` and ``stddev`` (Keras's defaults: 0, 0.05; ``'normal'``)."""

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean = _number("RandomNormal", "mean", mean)
        self.stddev = _number("RandomNormal", "stddev", stddev)

    def __call__(self, shape, generator=None, dtype=torch.float32):
        out = torch.empty(tuple(shape), dtype=torch.float64)
        out.normal_(self.mean, self.stddev, generator=generator)
        return out.to(dtype)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class TruncatedNormal(Initializer):
    """Normal with ``mean`` and ``stddev``, values beyond two standard deviations drawn
    again (Keras's defaults: 0, 0.05)."""

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean = _number("TruncatedNormal", "mean", mean)
        self.stddev = _number("TruncatedNormal", "stddev", stddev)

    def __call__(self, shape, generator=None, dtype=torch.float32):
        return (_truncated_normal(shape, generator, torch.float64, self.stddev)
                + self.mean).to(dtype)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class VarianceScaling(Initializer):
    """Keras's: ``scale`` divided by the fan (``mode``: ``'fan_in'``, ``'fan_out'`` or
    ``'fan_avg'``, at least 1) is the variance of a ``'truncated_normal'`` (two standard
    deviations; ``'normal'`` is its alias), ``'untruncated_normal'`` or ``'uniform'``."""

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None,
                 input_axes=None, output_axes=None):
        super().__init__(seed)
        owner = type(self).__name__
        if input_axes is not None or output_axes is not None:
            raise ConfigError(f"{owner}: 'input_axes' and 'output_axes' are not supported yet "
                              "(the fans follow Keras's default rule). Got "
                              f"input_axes={input_axes!r}, output_axes={output_axes!r}.")
        self.scale = _number(owner, "scale", scale, positive=True)
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ConfigError(f"{owner}: 'mode' must be 'fan_in', 'fan_out' or 'fan_avg'. "
                              f"Got {mode!r}.")
        distribution = distribution.lower() if isinstance(distribution, str) else distribution
        distribution = "truncated_normal" if distribution == "normal" else distribution
        if distribution not in ("truncated_normal", "untruncated_normal", "uniform"):
            raise ConfigError(f"{owner}: 'distribution' must be 'truncated_normal', "
                              f"'untruncated_normal' or 'uniform'. Got {distribution!r}.")
        self.mode, self.distribution = mode, distribution

    def __call__(self, shape, generator=None, dtype=torch.float32):
        fan_in, fan_out = compute_fans(shape)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}
        variance = self.scale / max(1.0, fan[self.mode])
        if self.distribution == "truncated_normal":
            return _truncated_normal(shape, generator, dtype,
                                     math.sqrt(variance) / _TRUNCATED_STD)
        if self.distribution == "untruncated_normal":
            out = torch.empty(tuple(shape), dtype=torch.float64)
            out.normal_(0.0, math.sqrt(variance), generator=generator)
            return out.to(dtype)
        return _uniform(shape, generator, dtype, math.sqrt(3.0 * variance))

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution,
                "seed": self.seed}


class LecunNormal(VarianceScaling):
    """Truncated normal, ``std = sqrt(1 / fan_in)`` (SELU's initializer)."""

    def __init__(self, seed=None, input_axes=None, output_axes=None):
        super().__init__(1.0, "fan_in", "truncated_normal", seed, input_axes, output_axes)

    def get_config(self):
        return {"seed": self.seed}


class LecunUniform(VarianceScaling):
    """Uniform in ``[-limit, limit]``, ``limit = sqrt(3 / fan_in)``."""

    def __init__(self, seed=None, input_axes=None, output_axes=None):
        super().__init__(1.0, "fan_in", "uniform", seed, input_axes, output_axes)

    def get_config(self):
        return {"seed": self.seed}


class Orthogonal(Initializer):
    """Keras's: the Q of a QR decomposition of a normal matrix (rows: every axis but the
    last, flattened), signs fixed by R's diagonal, times ``gain``."""

    def __init__(self, gain=1.0, seed=None):
        super().__init__(seed)
        self.gain = _number("Orthogonal", "gain", gain)

    def __call__(self, shape, generator=None, dtype=torch.float32):
        shape = tuple(shape)
        if len(shape) < 2:
            raise ConfigError(f"Orthogonal: the weight must have at least two axes. Got "
                              f"shape {shape}.")
        rows, cols = math.prod(shape[:-1]), shape[-1]
        a = torch.empty((max(rows, cols), min(rows, cols)), dtype=torch.float64)
        a.normal_(0.0, 1.0, generator=generator)
        q, r = torch.linalg.qr(a)
        q = q * torch.sign(torch.diagonal(r))
        if rows < cols:
            q = q.T
        return (self.gain * q.reshape(shape)).to(dtype)

    def get_config(self):
        return {"gain": self.gain, "seed": self.seed}


class Constant(Initializer):
    """Every value ``value`` (no seed, as in Keras)."""

    def __init__(self, value=0.0):
        super().__init__(None)
        self.value = _number("Constant", "value", value)

    def __call__(self, shape, generator=None, dtype=torch.float32):
        return torch.full(tuple(shape), self.value, dtype=dtype)

    def get_config(self):
        return {"value": self.value}


class Identity(Initializer):
    """``gain`` times the identity matrix (two axes only; no seed, as in Keras)."""

    def __init__(self, gain=1.0):
        super().__init__(None)
        self.gain = _number("Identity", "gain", gain)

    def __call__(self, shape, generator=None, dtype=torch.float32):
        shape = tuple(shape)
        if len(shape) != 2:
            raise ConfigError(f"Identity: the weight must have two axes. Got shape {shape}.")
        return (self.gain * torch.eye(*shape, dtype=torch.float64)).to(dtype)

    def get_config(self):
        return {"gain": self.gain}


# Keras's lowercase names: shared instances, usable as functions.
glorot_uniform = GlorotUniform()
glorot_normal = GlorotNormal()
he_uniform = HeUniform()
he_normal = HeNormal()
zeros = Zeros()
ones = Ones()
uniform = RandomUniform()
normal = RandomNormal()
truncated_normal = TruncatedNormal()
lecun_normal = LecunNormal()
lecun_uniform = LecunUniform()
orthogonal = Orthogonal()
variance_scaling = VarianceScaling()
constant = Constant()
identity = Identity()

_BY_NAME: dict[str, Initializer] = {
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "he_uniform": he_uniform,
    "he_normal": he_normal,
    "zeros": zeros,
    "ones": ones,
    "uniform": uniform,
    "random_uniform": uniform,
    "normal": normal,
    "random_normal": normal,
    "truncated_normal": truncated_normal,
    "lecun_normal": lecun_normal,
    "lecun_uniform": lecun_uniform,
    "orthogonal": orthogonal,
    "variance_scaling": variance_scaling,
    "constant": constant,
    "identity": identity,
    "zero": zeros,
    "one": ones,
}
_CLASSES: dict[str, type[Initializer]] = {
    cls.__name__: cls for cls in (GlorotUniform, GlorotNormal, HeUniform, HeNormal, Zeros, Ones,
                                  RandomUniform, RandomNormal, TruncatedNormal, VarianceScaling,
                                  LecunNormal, LecunUniform, Orthogonal, Constant, Identity)}


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
