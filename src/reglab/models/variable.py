"""Keras's ``Variable``, as a view: one weight of the member a model trains.

``model.weights``, ``model.trainable_weights``, ``layer.kernel``, ``layer.moving_mean``...
give these. The values live in the model's population (stacked with any other members),
so a view holds no copy: :meth:`Variable.numpy` reads the current value, :meth:`assign`
writes one (checked as ``set_weights`` checks it).

Example:
    >>> import reglab
    >>> model = reglab.Sequential([reglab.layers.Dense(2, input_shape=(3,))])
    >>> [(w.path, w.shape, w.trainable) for w in model.weights]
    [('sequential/dense/kernel', (3, 2), True), ('sequential/dense/bias', (2,), True)]
"""

from __future__ import annotations

import numpy as np
import torch

from reglab.errors import ConfigError


class Variable:
    """One weight of a model: ``name`` (``kernel``), ``path`` (``model/layer/kernel``),
    ``shape``, ``dtype`` (``'float32'``: weights are kept in float32, under mixed precision
    too), ``trainable``; ``numpy()``, ``value``, ``assign``, ``assign_add``, ``assign_sub``."""

    def __init__(self, model, key: tuple[int, str], shape, trainable: bool):
        self._model, self._key = model, key
        self.name = key[1]
        # Keras: "sequential/dense/kernel" in a Sequential, "dense/kernel" in a functional Model
        prefix = f"{model.name}/" if getattr(model, "_variable_prefix", True) else ""
        self.path = f"{prefix}{model.layers[key[0]].name}/{key[1]}"
        self.shape = tuple(int(n) for n in shape)
        self.trainable = bool(trainable)
        self.dtype = "float32"

    def numpy(self) -> np.ndarray:
        """The current value (a copy)."""
        return self._model._weight_array(self._key)

    @property
    def value(self) -> torch.Tensor:
        """The current value as a tensor (a copy: write with :meth:`assign`)."""
        return torch.from_numpy(self.numpy())

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def assign(self, value) -> None:
        try:
            array = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError):
            raise ConfigError(f"Variable {self.path}.assign: expected numbers of shape "
                              f"{self.shape}. Got {value!r}.") from None
        if array.shape != self.shape:
            raise ConfigError(f"Variable {self.path}.assign: expected a value of shape "
                              f"{self.shape}. Got {array.shape}.")
        self._model._assign_weight(self._key, array)

    def assign_add(self, value) -> None:
        self.assign(self.numpy() + np.asarray(value, dtype=np.float32))

    def assign_sub(self, value) -> None:
        self.assign(self.numpy() - np.asarray(value, dtype=np.float32))

    def __array__(self, dtype=None, copy=None):
        array = self.numpy()
        return array if dtype is None else array.astype(dtype)

    # arithmetic reads the value, as a Keras variable's does (a torch tensor, as on torch)
    def __add__(self, other):
        return self.value + _operand(other)

    def __radd__(self, other):
        return _operand(other) + self.value

    def __sub__(self, other):
        return self.value - _operand(other)

    def __rsub__(self, other):
        return _operand(other) - self.value

    def __mul__(self, other):
        return self.value * _operand(other)

    def __rmul__(self, other):
        return _operand(other) * self.value

    def __truediv__(self, other):
        return self.value / _operand(other)

    def __rtruediv__(self, other):
        return _operand(other) / self.value

    def __matmul__(self, other):
        return self.value @ _operand(other)

    def __rmatmul__(self, other):
        return _operand(other) @ self.value

    def __pow__(self, other):
        return self.value ** _operand(other)

    def __neg__(self):
        return -self.value

    def __abs__(self):
        return self.value.abs()

    def __getitem__(self, index):
        return self.value[index]

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a scalar variable")
        return self.shape[0]

    def __repr__(self) -> str:
        return (f"<Variable path={self.path}, shape={self.shape}, dtype={self.dtype}, "
                f"value={self.numpy()}>")


def _operand(other):
    if isinstance(other, Variable):
        return other.value
    return torch.as_tensor(np.asarray(other)) if isinstance(other, np.ndarray) else other
