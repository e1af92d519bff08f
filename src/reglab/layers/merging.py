"""Keras's merge layers: ``Add``, ``Subtract``, ``Multiply``, ``Average``, ``Maximum``,
``Minimum`` and ``Concatenate``, which take a list of tensors (functional models).

Inputs arrive per member ``(P, B, ...)`` or shared ``(B, ...)`` (before any layer with
weights); a shared one is broadcast to the members when the others are per member.
"""

from __future__ import annotations

import functools
import numbers
from typing import Any

import torch

from reglab.errors import ConfigError
from reglab.layers.layer import Layer, Shape, is_shared


class Merge(Layer):
    """A layer over a list of inputs of one shape (all but ``Concatenate``'s axis)."""

    takes_list = True
    least = 2

    def compute_output_shape(self, input_shape) -> Shape:
        shapes = _shapes(self, input_shape, self.least)
        if len(set(shapes)) != 1:
            raise ConfigError(f"{type(self).__name__}: expected inputs of one shape. Got "
                              f"{[list(s) for s in shapes]}.")
        return shapes[0]

    def forward(self, x, weights, values, ctx, input_shape):
        return self._combine(_aligned(x, input_shape, ctx.members))

    def _combine(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError


def _shapes(layer, input_shape, least: int) -> list[Shape]:
    if not isinstance(input_shape, list) or len(input_shape) < least:
        raise ConfigError(f"{type(layer).__name__}: expected a list of at least {least} "
                          f"inputs. Got {input_shape!r}.")
    return [tuple(s) for s in input_shape]


def _aligned(tensors, shapes, members: int) -> list[torch.Tensor]:
    """The inputs with a member axis on all or none of them."""
    shared = [is_shared(t, s) for t, s in zip(tensors, shapes)]
    if all(shared) or not any(shared):
        return list(tensors)
    return [t.unsqueeze(0).expand(members, *t.shape) if s else t
            for t, s in zip(tensors, shared)]


class Add(Merge):
    def _combine(self, tensors):
        return functools.reduce(torch.add, tensors)


class Subtract(Merge):
    least = 2

    def compute_output_shape(self, input_shape) -> Shape:
        if isinstance(input_shape, list) and len(input_shape) != 2:
            raise ConfigError(f"Subtract: expected exactly 2 inputs. Got {len(input_shape)}.")
        return super().compute_output_shape(input_shape)

    def _combine(self, tensors):
        return tensors[0] - tensors[1]


class Multiply(Merge):
    def _combine(self, tensors):
        return functools.reduce(torch.mul, tensors)


class Average(Merge):
    def _combine(self, tensors):
        return functools.reduce(torch.add, tensors) / len(tensors)


class Maximum(Merge):
    def _combine(self, tensors):
        return functools.reduce(torch.maximum, tensors)


class Minimum(Merge):
    def _combine(self, tensors):
        return functools.reduce(torch.minimum, tensors)


class Concatenate(Layer):
    """Joins its inputs along ``axis`` (of the sample's shape, the batch excluded;
    -1 by default, as Keras)."""

    takes_list = True

    def __init__(self, axis: int = -1, **kwargs: Any):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral) or axis == 0:
            raise ConfigError(f"Concatenate: 'axis' must be an int other than 0 (the batch "
                              f"axis). Got {axis!r}.")
        self.axis = int(axis)

    def _sample_axis(self, rank: int) -> int:
        axis = self.axis - 1 if self.axis > 0 else rank + self.axis
        if not 0 <= axis < rank:
            raise ConfigError(f"Concatenate: 'axis' {self.axis} is outside inputs of "
                              f"{rank} dimension(s) after the batch.")
        return axis

    def compute_output_shape(self, input_shape) -> Shape:
        shapes = _shapes(self, input_shape, 2)
        axis = self._sample_axis(len(shapes[0]))
        rest = {s[:axis] + s[axis + 1:] for s in shapes}
        if len({len(s) for s in shapes}) != 1 or len(rest) != 1:
            raise ConfigError(f"Concatenate: expected inputs that differ only along axis "
                              f"{self.axis}. Got {[list(s) for s in shapes]}.")
        out = list(shapes[0])
        out[axis] = sum(s[axis] for s in shapes)
        return tuple(out)

    def structure(self) -> tuple:
        return (type(self).__name__, self.axis)

    def forward(self, x, weights, values, ctx, input_shape):
        tensors = _aligned(x, input_shape, ctx.members)
        axis = self._sample_axis(len(input_shape[0]))
        offset = tensors[0].dim() - len(input_shape[0])  # batch (and member) axes
        return torch.cat(tensors, dim=offset + axis)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}
