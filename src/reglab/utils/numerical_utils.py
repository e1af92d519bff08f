"""Numerical helpers with Keras's names and behaviour."""

from __future__ import annotations

import numbers

import numpy as np

from reglab.errors import ConfigError, DataError


def to_categorical(x: object, num_classes: int | None = None) -> np.ndarray:
    """Converts a class vector (integers) to a binary class matrix, as Keras 3 does.

    Mirrors ``keras.utils.to_categorical`` for array-like input: the result
    is a float64 numpy array with the class axis last, and a trailing axis of
    size 1 in the input is dropped (``(N, 1)`` gives ``(N, C)``). Where Keras
    would wrap negative labels around or fail with an IndexError, this raises
    a DataError naming the bad value.

    Args:
        x: Array-like of class indices in ``0 .. num_classes - 1``. Floats are
            accepted if they are whole numbers.
        num_classes: Total number of classes; if None, ``max(x) + 1``.

    Returns:
        A float64 array of shape ``x.shape + (num_classes,)``, less a trailing 1.

    Raises:
        ConfigError: ``num_classes`` is not a positive int.
        DataError: ``x`` is not numeric, holds non-whole numbers, negative
            labels or labels ``>= num_classes``, or is empty with no
            ``num_classes`` to infer.

    Example:
        >>> to_categorical([0, 1, 2, 3], num_classes=4)
        array([[1., 0., 0., 0.],
               [0., 1., 0., 0.],
               [0., 0., 1., 0.],
               [0., 0., 0., 1.]])
    """
    where = "to_categorical"
    if num_classes is not None and (
        isinstance(num_classes, bool)
        or not isinstance(num_classes, (int, np.integer))
        or num_classes < 1
    ):
        raise ConfigError(
            f"{where}: 'num_classes' must be a positive int or None. Got {num_classes!r}."
        )
    raw = np.asarray(x)
    if raw.dtype.kind not in "biuf":
        raise DataError(f"{where}: 'x' must hold integer class indices. Got dtype {raw.dtype}.")
    if raw.dtype.kind == "f":
        bad = ~np.isfinite(raw) | (raw != np.round(raw))
        if bad.any():
            raise DataError(
                f"{where}: 'x' must hold whole numbers. Got {raw[bad].flat[0].item()!r} "
                f"at index {tuple(int(i) for i in np.argwhere(bad)[0])}."
            )
    labels = raw.astype(np.int64)
    input_shape = labels.shape
    # Keras drops a trailing axis of size 1: (N, 1) -> (N, C), not (N, 1, C).
    if input_shape and input_shape[-1] == 1 and len(input_shape) > 1:
        input_shape = tuple(input_shape[:-1])
    labels = labels.reshape(-1)
    if labels.size == 0 and num_classes is None:
        raise DataError(f"{where}: cannot infer 'num_classes' from an empty 'x'. Pass num_classes.")
    if labels.size and labels.min() < 0:
        raise DataError(f"{where}: labels must be >= 0. Got {int(labels.min())}.")
    if num_classes is None:
        num_classes = int(labels.max()) + 1
    elif labels.size and labels.max() >= num_classes:
        raise DataError(
            f"{where}: labels must be < num_classes={int(num_classes)}. Got {int(labels.max())}."
        )
    num_classes = int(num_classes)
    batch_size = labels.shape[0]
    categorical = np.zeros((batch_size, num_classes))
    categorical[np.arange(batch_size), labels] = 1
    return np.reshape(categorical, input_shape + (num_classes,))


def normalize(x, axis: int = -1, order: int = 2):
    """``keras.utils.normalize``: ``x`` scaled to unit ``order``-norm along ``axis``, a norm
    of 0 left as it is (divided by 1). A NumPy array (or list) gives a NumPy array; a torch
    tensor a tensor, as Keras's ``ops.normalize`` gives it (the norm floored at 1e-7)."""
    if isinstance(order, bool) or not isinstance(order, numbers.Integral) or order < 1:
        raise ConfigError(f"normalize: 'order' must be an int >= 1. Got {order!r}.")
    import torch

    if isinstance(x, torch.Tensor):
        from reglab import backend

        norm = torch.linalg.vector_norm(x, ord=order, dim=axis, keepdim=True)
        return x / torch.clamp(norm, min=backend.EPSILON)
    array = np.asarray(x)
    norm = np.linalg.norm(array, order, axis, keepdims=True)
    return array / np.where(norm == 0, 1, norm)
