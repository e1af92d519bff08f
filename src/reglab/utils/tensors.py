"""Arrays as tensors at the edges, where Keras's objects take either."""

from __future__ import annotations

import numpy as np
import torch


def divide_no_nan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a / b``, 0 where ``b`` is 0 (Keras's ``divide_no_nan``); the divisor is replaced
    there, so the gradient is 0 too, not NaN."""
    empty = b == 0
    return torch.where(empty, torch.zeros_like(a), a / torch.where(empty, torch.ones_like(b), b))


def as_tensor(x) -> torch.Tensor:
    """``x`` as a tensor: a tensor as it is, an array or nested list as one (floating values
    keep their dtype, anything else becomes float32, Keras's floatx); a model's weight view
    (``layer.kernel``) by its value."""
    if isinstance(x, torch.Tensor):
        return x
    array = np.asarray(x)
    if array.dtype.kind != "f":
        array = array.astype(np.float32)
    return torch.as_tensor(array)
