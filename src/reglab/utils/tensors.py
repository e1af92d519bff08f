"""Arrays as tensors at the edges, where Keras's objects take either."""

from __future__ import annotations

import numpy as np
import torch


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
