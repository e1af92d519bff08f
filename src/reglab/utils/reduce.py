"""Reductions whose result for one slice does not depend on the slices beside it.

torch picks a reduction's loop order from the whole tensor's shape: summing a stacked
``(P, 13, 7)`` kernel over axis 1 visits one member's numbers in another order than
summing that member's ``(1, 13, 7)`` alone, and the float32 results differ in the last
bit. Reducing along the last, contiguous axis does not (each row is summed the same way
however many rows there are), so these helpers move the reduced axes last first.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _rows(x: torch.Tensor, dims: Sequence[int]) -> tuple[torch.Tensor, list[int]]:
    """``x`` with ``dims`` moved last and flattened into one axis; the kept axes."""
    dims = sorted(d % x.dim() for d in dims)
    kept = [d for d in range(x.dim()) if d not in dims]
    rows = x.permute(*kept, *dims).contiguous()
    return rows.reshape(*rows.shape[:len(kept)], -1), kept


def _restore(reduced: torch.Tensor, x: torch.Tensor, dims: Sequence[int], keepdim: bool):
    if not keepdim:
        return reduced
    shape = [1 if d in [a % x.dim() for a in dims] else n for d, n in enumerate(x.shape)]
    return reduced.reshape(shape)


def sum_over(x: torch.Tensor, dims: Sequence[int], keepdim: bool = False) -> torch.Tensor:
    """``x.sum(dims, keepdim)``, slice by slice along the kept axes."""
    rows, _ = _rows(x, dims)
    return _restore(rows.sum(dim=-1), x, dims, keepdim)


def mean_and_variance(x: torch.Tensor, dims: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x.mean(dims), x.var(dims, unbiased=False))``, slice by slice along the kept axes."""
    rows, _ = _rows(x, dims)
    return rows.mean(dim=-1), rows.var(dim=-1, unbiased=False)
