"""Adam's step by the native kernel (``adam_kernels.c``): one call per weight for every
member, each row with its own hyperparameters and step, where the case is one it takes
(CPU float32 contiguous weights, gradients and moments; no amsgrad). Otherwise
:func:`step` returns False and the optimizer calls torch's fused kernel."""

from __future__ import annotations

import math

import torch

from reglab import native

#: the per-row coefficients, in the order of adam_kernels.c's enum
COEFFICIENTS = 7


def coefficients(hyper: dict[tuple, list[int]], rows: int) -> torch.Tensor:
    """``(rows, 7)`` float32: per member, Adam's coefficients as torch's fused kernel forms
    them (in double, then float32) from ``hyper``: ``{(lr, beta_1, beta_2, epsilon, step):
    positions}``, reglab's epsilon moved inside the bias correction as the engine passes it
    to torch (``eps / sqrt(1 - beta_2**t)``)."""
    table = [None] * rows
    for (lr, b1, b2, eps, step), positions in hyper.items():
        row = (b1, 1 - b1, b2, 1 - b2, math.sqrt(1 - b2**step), eps / (1 - b2**step) ** 0.5,
               lr / (1 - b1**step))
        for p in positions:
            table[p] = row
    return torch.tensor(table, dtype=torch.float32)


def _takes(t: torch.Tensor, shape: torch.Size) -> bool:
    return (t.device.type == "cpu" and t.dtype == torch.float32 and t.layout == torch.strided
            and t.shape == shape and t.is_contiguous())


def step(params: list[torch.Tensor], grads: list[torch.Tensor], m: list[torch.Tensor],
         v: list[torch.Tensor], hyper: dict[tuple, list[int]],
         decay: list[list[float] | None] | None) -> bool:
    """One Adam step of every member's rows of each of ``params`` (stacked ``(P, ...)``), in
    place; ``decay``: per param, each member's coupled-decay coefficient, or None. False
    (nothing touched) when the kernel does not take every param."""
    lib = native.library()
    if lib is None or not params:
        return False
    rows = params[0].shape[0] if params[0].dim() else 0
    if decay is not None and (len(decay) != len(params) or any(
            d is not None and len(d) != rows for d in decay)):
        return False  # the torch path says what is wrong
    for i, w in enumerate(params):
        shape = w.shape
        if not (rows and w.dim() and shape[0] == rows and _takes(w, shape)
                and _takes(grads[i], shape) and _takes(m[i], shape) and _takes(v[i], shape)):
            return False
    table = coefficients(hyper, rows)
    for i, w in enumerate(params):
        per_row = None if decay is None or decay[i] is None else torch.tensor(
            decay[i], dtype=torch.float32)
        n = w.numel() // rows
        if n == 0:
            continue
        lib.reglab_adam_rows(w.data_ptr(), grads[i].data_ptr(), m[i].data_ptr(),
                             v[i].data_ptr(), rows, n, table.data_ptr(),
                             None if per_row is None else per_row.data_ptr())
    return True
