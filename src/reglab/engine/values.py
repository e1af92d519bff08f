"""Per-member values (rates, strengths, learning rates) as the engine's math receives them.

One rule, so that a member computes the same numbers whoever shares its population: a
value is a ``(P, 1, ..., 1)`` tensor in the training dtype, whatever the members hold,
except when it is zero for every member, where it is the float ``0.0`` so that the work
it would switch on is skipped. (A float for members that agree and a tensor for members
that differ would round ``1 - rate`` once in float64 and once in float32, and a member's
training would depend on its neighbours.) Applying a zero value is exact wherever the
engine uses one: ``x / (1 - 0)``, ``grad + 0 * w``, ``w - 0``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from reglab.regularizers.penalty import is_active

__all__ = ["Value", "is_active", "member_values"]

Value = float | torch.Tensor


def member_values(values: Sequence[float], dtype: torch.dtype, device, ndim: int = 1) -> Value:
    """``0.0`` when every value is zero, else a ``(P, 1, ..., 1)`` tensor with ``ndim`` dims."""
    if not values or all(v == 0 for v in values):
        return 0.0
    return torch.tensor([float(v) for v in values], dtype=dtype, device=device).view(
        -1, *([1] * (ndim - 1)))
