"""Keras 3's weight constraints, applied after each optimizer step.

The math is written once, on a tensor plus the dimensions to reduce over, with
values that are floats (one model) or tensors broadcast per member.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import torch

from reglab.backend import EPSILON  # keras.backend.epsilon()
from reglab.errors import ConfigError, unknown_name
from reglab.utils.reduce import sum_over
from reglab.utils.tensors import as_tensor

Value = float | torch.Tensor


def _norms(w: torch.Tensor, dims: Sequence[int]) -> torch.Tensor:
    return torch.sqrt(sum_over(w.square(), dims, keepdim=True))


def max_norm(w: torch.Tensor, max_value: Value, dims: Sequence[int]) -> torch.Tensor:
    """Rescales slices whose L2 norm over ``dims`` exceeds ``max_value``."""
    norms = _norms(w, dims)
    desired = torch.clamp(norms, min=0.0)
    desired = torch.minimum(desired, torch.as_tensor(max_value, dtype=w.dtype, device=w.device))
    return w * (desired / (EPSILON + norms))


def non_neg(w: torch.Tensor) -> torch.Tensor:
    """Zeroes negative weights."""
    return w * (w >= 0.0).to(w.dtype)


def unit_norm(w: torch.Tensor, dims: Sequence[int]) -> torch.Tensor:
    """Divides each slice by its L2 norm over ``dims``."""
    return w / (EPSILON + _norms(w, dims))


def min_max_norm(
    w: torch.Tensor, min_value: Value, max_value: Value, rate: Value, dims: Sequence[int]
) -> torch.Tensor:
    """Pulls slice norms into ``[min_value, max_value]`` at speed ``rate``."""
    norms = _norms(w, dims)
    lo = torch.as_tensor(min_value, dtype=w.dtype, device=w.device)
    hi = torch.as_tensor(max_value, dtype=w.dtype, device=w.device)
    desired = rate * torch.minimum(torch.maximum(norms, lo), hi) + (1 - rate) * norms
    return w * (desired / (EPSILON + norms))


def _axes(owner: str, axis: Any) -> tuple[int, ...]:
    axes = (axis,) if isinstance(axis, int) and not isinstance(axis, bool) else axis
    if not isinstance(axes, (tuple, list)) or not all(
        isinstance(a, int) and not isinstance(a, bool) for a in axes
    ):
        raise ConfigError(f"{owner}: 'axis' must be an int or a list of ints. Got {axis!r}.")
    return tuple(axes)


def _non_negative(owner: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value < 0:
        raise ConfigError(f"{owner}: '{name}' must be a non-negative float. Got {value!r}.")
    return float(value)


class Constraint:
    """Base class: a callable ``w -> projected w`` with a config, as in Keras.

    ``values()`` lists the numbers that may differ between members of a
    population; ``apply(w, values, to_dims)`` is the population form, where
    ``to_dims`` maps Keras axes of one member's weight to dims of ``w``.
    """

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        """The constrained weights ``w`` (a tensor, or an array as Keras takes one)."""
        w = as_tensor(w)
        return self.apply(w, self.values(), lambda axes: [a % w.dim() for a in axes])

    def values(self) -> dict[str, float]:
        return {}

    def apply(self, w, values, to_dims):  # pragma: no cover - overridden
        raise NotImplementedError

    def structure(self) -> tuple:
        return (type(self).__name__,)

    def get_config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Constraint:
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class MaxNorm(Constraint):
    """Keeps each slice's L2 norm at most ``max_value`` (Keras: max_value=2, axis=0).

    Example:
        >>> MaxNorm(1.0)(torch.tensor([[3.0], [4.0]])).flatten().tolist()
        [0.6000000238418579, 0.800000011920929]
    """

    def __init__(self, max_value: float = 2.0, axis: int | Sequence[int] = 0):
        self.max_value = _non_negative("MaxNorm", "max_value", max_value)
        self.axis = _axes("MaxNorm", axis)

    def values(self):
        return {"max_value": self.max_value}

    def structure(self):
        return ("MaxNorm", self.axis)

    def apply(self, w, values, to_dims):
        return max_norm(w, values["max_value"], to_dims(self.axis))

    def get_config(self):
        return {"max_value": self.max_value, "axis": self.axis[0] if len(self.axis) == 1 else list(self.axis)}


class NonNeg(Constraint):
    """Keeps weights non-negative.

    Example:
        >>> NonNeg()(torch.tensor([-1.0, 2.0])).tolist()
        [-0.0, 2.0]
    """

    def apply(self, w, values, to_dims):
        return non_neg(w)


class UnitNorm(Constraint):
    """Keeps each slice's L2 norm at one (Keras: axis=0).

    Example:
        >>> UnitNorm()(torch.tensor([[3.0], [4.0]])).flatten().tolist()
        [0.6000000238418579, 0.800000011920929]
    """

    def __init__(self, axis: int | Sequence[int] = 0):
        self.axis = _axes("UnitNorm", axis)

    def structure(self):
        return ("UnitNorm", self.axis)

    def apply(self, w, values, to_dims):
        return unit_norm(w, to_dims(self.axis))

    def get_config(self):
        return {"axis": self.axis[0] if len(self.axis) == 1 else list(self.axis)}


class MinMaxNorm(Constraint):
    """Keeps slice norms in ``[min_value, max_value]`` (Keras: 0, 1, rate=1, axis=0).

    Example:
        >>> MinMaxNorm(1.0, 2.0)(torch.tensor([[0.3], [0.4]])).flatten().tolist()
        [0.6000000238418579, 0.800000011920929]
    """

    def __init__(self, min_value: float = 0.0, max_value: float = 1.0, rate: float = 1.0,
                 axis: int | Sequence[int] = 0):
        self.min_value = _non_negative("MinMaxNorm", "min_value", min_value)
        self.max_value = _non_negative("MinMaxNorm", "max_value", max_value)
        if self.max_value < self.min_value:
            raise ConfigError(
                f"MinMaxNorm: 'max_value' must be >= 'min_value' ({self.min_value}). "
                f"Got {max_value!r}."
            )
        self.rate = _non_negative("MinMaxNorm", "rate", rate)
        self.axis = _axes("MinMaxNorm", axis)

    def values(self):
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate}

    def structure(self):
        return ("MinMaxNorm", self.axis)

    def apply(self, w, values, to_dims):
        return min_max_norm(w, values["min_value"], values["max_value"], values["rate"],
                            to_dims(self.axis))

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate,
                "axis": self.axis[0] if len(self.axis) == 1 else list(self.axis)}


_BY_NAME = {"max_norm": MaxNorm, "non_neg": NonNeg, "unit_norm": UnitNorm,
            "min_max_norm": MinMaxNorm, "MaxNorm": MaxNorm, "NonNeg": NonNeg,
            "UnitNorm": UnitNorm, "MinMaxNorm": MinMaxNorm}


def get(identifier: Any, where: str = "constraints.get") -> Constraint | None:
    """Resolves None, a name (``'max_norm'``), a config dict or an instance."""
    if identifier is None or isinstance(identifier, Constraint):
        return identifier
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier)
        if cls is None:
            raise unknown_name(where, "constraint", identifier, _BY_NAME)
        return cls()
    if isinstance(identifier, dict) and "class_name" in identifier:
        cls = _BY_NAME.get(identifier["class_name"])
        if cls is None:
            raise unknown_name(where, "constraint", identifier["class_name"], _BY_NAME)
        return cls.from_config(identifier.get("config", {}))
    raise ConfigError(f"{where}: expected a constraint, its name or its config. Got {identifier!r}.")


def serialize(constraint: Constraint | None) -> dict[str, Any] | None:
    if constraint is None:
        return None
    if _BY_NAME.get(type(constraint).__name__) is not type(constraint):
        return constraint  # not built in: kept as it is (it cannot be saved to a file)
    return {"class_name": type(constraint).__name__, "config": constraint.get_config()}
