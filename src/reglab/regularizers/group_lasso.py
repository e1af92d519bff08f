"""Group lasso: a penalty on the norms of whole units, beyond Keras (Yuan & Lin 2006).

``strength * sum_j sqrt(n) * ||W_j||_2`` where ``W_j`` is the slice of the weight that feeds
output unit ``j`` (a Dense kernel's column, a Conv2D kernel's filter: ``axis=-1``) and ``n``
its number of weights. Unlike L1, which zeroes single weights, it pushes whole units to zero
together, so the network it leaves is narrower. Its gradient is ``strength * sqrt(n) *
W_j / ||W_j||`` (zero for a unit that is all zeros).

Written as a regularizer of the population protocol (see
:class:`~reglab.regularizers.Regularizer`): one family, a per-member ``strength``, the
penalty and its gradient computed for all members at once.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch

from reglab.regularizers.penalty import along_members, is_active
from reglab.regularizers.regularizers import Regularizer, _keeps_math, check_strength
from reglab.utils.reduce import sum_over
from reglab.utils.tensors import as_tensor


class GroupLasso(Regularizer):
    """``strength * sum_j sqrt(n) * ||W_j||`` over the slices along ``axis``.

    Example:
        >>> float(GroupLasso(0.5)(torch.tensor([[3.0, 0.0], [4.0, 0.0]])))
        3.535533905029297
    """

    contributes = frozenset({"value", "gradient"})

    @property
    def vanishes_at_zero(self) -> bool:
        # Only the built-in math is known to vanish; a subclass that rewrites it is not.
        return _keeps_math(type(self), GroupLasso)

    def __init__(self, strength: float = 0.01, axis: int = -1):
        self.strength = check_strength("GroupLasso", "strength", strength)
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            from reglab.errors import ConfigError

            raise ConfigError(f"GroupLasso: 'axis' must be an int. Got {axis!r}.")
        self.axis = int(axis)

    def family(self):
        # A subclass that rewrites the math is a family of its own (see Regularizer).
        key = ("group_lasso", self.axis)
        return key if _keeps_math(type(self), GroupLasso) else (*key, type(self))

    def values(self):
        return {"strength": self.strength}

    def _norms(self, w: torch.Tensor, member_axis: bool) -> tuple[torch.Tensor, int]:
        """Per group, ``||W_j||`` (keeping the reduced axes), and the group size ``n``."""
        lead = 1 if member_axis else 0
        group_axis = self.axis % (w.dim() - lead) + lead
        dims = [d for d in range(lead, w.dim()) if d != group_axis]
        size = math.prod(w.shape[d] for d in dims)
        if not dims:
            return w.abs(), 1
        return sum_over(w.square(), dims, keepdim=True).sqrt(), size

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        norms, size = self._norms(as_tensor(x), member_axis=False)
        return self.strength * math.sqrt(size) * norms.sum()

    def penalty(self, w, values):
        norms, size = self._norms(w, member_axis=True)
        total = norms.reshape(w.shape[0], -1).sum(dim=-1)
        return total * (along_members(values["strength"], total) * math.sqrt(size))

    def add_gradient(self, grad, w, values):
        if not is_active(values["strength"]):
            return
        norms, size = self._norms(w, member_axis=True)
        scale = along_members(values["strength"], w) * math.sqrt(size)
        unit = torch.where(norms > 0, w / norms.clamp_min(torch.finfo(w.dtype).tiny),
                           torch.zeros((), dtype=w.dtype, device=w.device))
        grad.add_(unit * scale)

    def get_config(self) -> dict[str, Any]:
        return {"strength": self.strength, "axis": self.axis}
