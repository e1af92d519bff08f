"""Keras 3's ``OrthogonalRegularizer``: a penalty on how far a kernel's rows (or columns) are
from orthogonal, ``factor * 0.5 * sum_{i != j} |<u_i, u_j>| / (n (n - 1) / 2)`` with ``u_i``
the rows (``mode="rows"``) or columns (``"columns"``) scaled to unit length as Keras's
``normalize`` does (``x * min(rsqrt(sum(x**2)), 1 / 1e-7)``).

One family, a per-member ``factor``: the penalty of every member at once by a batched
product; its gradient by autograd (``contributes = {"value"}``). Rank-2 kernels only (a
Dense kernel), as Keras.
"""

from __future__ import annotations

from typing import Any

import torch

from reglab.backend import EPSILON  # the floor of a row's norm
from reglab.errors import ConfigError
from reglab.regularizers.penalty import along_members
from reglab.regularizers.regularizers import Regularizer, _keeps_math, check_strength
from reglab.utils.tensors import as_tensor


class OrthogonalRegularizer(Regularizer):
    """``keras.regularizers.OrthogonalRegularizer(factor=0.01, mode="rows")``.

    Example:
        >>> float(OrthogonalRegularizer(1.0)(torch.tensor([[1.0, 0.0], [1.0, 1.0]])))
        0.3535533845424652
    """

    contributes = frozenset({"value"})

    def __init__(self, factor: float = 0.01, mode: str = "rows"):
        self.factor = check_strength("OrthogonalRegularizer", "factor", factor)
        if mode not in ("rows", "columns"):
            raise ConfigError(f"OrthogonalRegularizer: 'mode' must be 'rows' or 'columns'. "
                              f"Got {mode!r}.")
        self.mode = mode

    def family(self):
        key = ("orthogonal", self.mode)
        return key if _keeps_math(type(self), OrthogonalRegularizer) else (*key, type(self))

    def values(self):
        return {"factor": self.factor}

    def _mean_overlap(self, w: torch.Tensor) -> torch.Tensor:
        """``(P,)``: each stacked kernel's ``0.5 * sum |off-diagonal| / pairs``."""
        if w.dim() != 3:
            raise ConfigError(f"OrthogonalRegularizer: a kernel of rank 2 is expected (a Dense "
                              f"kernel). Got one of shape {tuple(w.shape[1:])}.")
        axis = 2 if self.mode == "rows" else 1
        inverse_norm = torch.rsqrt(w.square().sum(dim=axis, keepdim=True))
        unit = w * torch.clamp(inverse_norm, max=1.0 / EPSILON)
        product = unit @ unit.transpose(1, 2) if self.mode == "rows" \
            else unit.transpose(1, 2) @ unit
        size = product.shape[-1]
        off_diagonal = product * (1.0 - torch.eye(size, dtype=w.dtype, device=w.device))
        pairs = size * (size - 1.0) / 2.0
        return 0.5 * off_diagonal.abs().sum(dim=(1, 2)) / pairs

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = as_tensor(x)
        if x.dim() != 2:
            raise ConfigError(f"OrthogonalRegularizer: inputs of rank 2 are expected. Got "
                              f"shape {tuple(x.shape)}.")
        return self.factor * self._mean_overlap(x.unsqueeze(0))[0]

    def penalty(self, w, values):
        overlap = self._mean_overlap(w)
        return overlap * along_members(values["factor"], overlap)

    def get_config(self) -> dict[str, Any]:
        return {"factor": self.factor, "mode": self.mode}
