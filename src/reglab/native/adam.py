"""Adam's step by the native kernel (``adam_kernels.c``): one call per step for every weight
and every member, each row with its own hyperparameters and step, where the case is one it
takes (CPU float32 contiguous weights, gradients and moments; no amsgrad). Otherwise
:func:`step` returns False and the optimizer calls torch's fused kernel. A first-layer
kernel's gradient may come pending (``pending_gradient.py``): its step then makes it member
by member."""

from __future__ import annotations

import ctypes
import math

import torch

from reglab import native
from reglab.native import pending_gradient  # (it imports this module too)

#: the per-row coefficients, in the order of adam_kernels.c's enum
COEFFICIENTS = 7


def coefficients(hyper: dict[tuple, list[int]], rows: int) -> ctypes.Array:
    """``rows * 7`` float32 (a ctypes array, row after row): per member, Adam's coefficients
    as torch's fused kernel forms them (in double, then rounded to float32) from ``hyper``:
    ``{(lr, beta_1, beta_2, epsilon, step): positions}``, reglab's epsilon moved inside the
    bias correction as the engine passes it to torch (``eps / sqrt(1 - beta_2**t)``)."""
    table = [0.0] * (rows * COEFFICIENTS)
    for (lr, b1, b2, eps, step), positions in hyper.items():
        row = (b1, 1 - b1, b2, 1 - b2, math.sqrt(1 - b2**step), eps / (1 - b2**step) ** 0.5,
               lr / (1 - b1**step))
        for p in positions:
            table[p * COEFFICIENTS:(p + 1) * COEFFICIENTS] = row
    return (ctypes.c_float * len(table))(*table)


#: ``(tensors, their data pointers, the kernel's arrays of them)`` last found fit: the engine
#: updates weights and moments in place, so the same objects on the same memory come back
#: every step, checked once while they do. Replaced whole, in one assignment, and each step
#: uses the arrays its own check returned (two populations may step in two threads).
_last_fit: tuple = ((), (), None)


def _fit(params, m, v) -> tuple | None:
    """The kernel's ``(params, m, v, elements per row)`` arrays for these tensors, or None
    when the kernel does not take them."""
    global _last_fit
    tensors = (*params, *m, *v)
    known, addresses, arrays = _last_fit
    if len(tensors) == len(known) and all(a is b for a, b in zip(tensors, known)) and tuple(
            t.data_ptr() for t in tensors) == addresses:
        return arrays
    rows = params[0].shape[0] if params[0].dim() else 0
    if not (rows and all(
            native.float32_rows(w) and w.shape[0] == rows and native.float32_rows(m[i], w.shape)
            and native.float32_rows(v[i], w.shape) for i, w in enumerate(params))):
        return None
    arrays = (pointers(params), pointers(m), pointers(v),
              (ctypes.c_int64 * len(params))(*[w.numel() // rows for w in params]))
    _last_fit = (tensors, tuple(t.data_ptr() for t in tensors), arrays)
    return arrays


def pointers(tensors) -> ctypes.Array:
    """The tensors' data pointers as the kernel's array (NULL for None)."""
    return (ctypes.c_void_p * len(tensors))(*[None if t is None else t.data_ptr()
                                              for t in tensors])


def _gradients_fit(params, grads) -> bool:
    """Whether each gradient is a contiguous float32 CPU tensor shaped as its weight, or a
    pending one of its shape (the gradients are new every step: checked every step, by what
    the weights already passed)."""
    return len(grads) == len(params) and all(
        (type(g) is torch.Tensor and g.dtype == torch.float32 and g.shape == w.shape
         and g.is_contiguous() and g.is_cpu and g.layout == torch.strided)
        or (isinstance(g, pending_gradient.PendingKernelGradient) and g.shape == w.shape)
        for w, g in zip(params, grads))


def _per_row(values: list[list[float] | None] | None, count: int, rows: int) -> bool:
    return values is None or (len(values) == count and all(
        d is None or len(d) == rows for d in values))


def _arrays(values: list[list[float] | None] | None, count: int) -> list:
    return [None if values is None or values[i] is None else
            torch.tensor(values[i], dtype=torch.float32) for i in range(count)]


def step(params: list[torch.Tensor], grads: list[torch.Tensor], m: list[torch.Tensor],
         v: list[torch.Tensor], hyper: dict[tuple, list[int]],
         decay: list[list[float] | None] | None,
         sign: list[list[float] | None] | None = None) -> bool:
    """One Adam step of every member's rows of each of ``params`` (stacked ``(P, ...)``), in
    place; ``decay`` and ``sign``: per param, each member's coefficient of the penalties'
    linear part (``c * w``) and sign part (``s * sign(w)``) to add to the gradient first, or
    None. False (nothing touched) when the kernel does not take every param."""
    lib = native.library()
    arrays = None if lib is None or not params else _fit(params, m, v)
    if arrays is None:
        return False
    rows = params[0].shape[0]
    if not (_per_row(decay, len(params), rows) and _per_row(sign, len(params), rows)):
        return False  # the torch path says what is wrong
    if not _gradients_fit(params, grads):
        return False
    count = len(params)
    table = coefficients(hyper, rows)
    signs, decays = _arrays(sign, count), _arrays(decay, count)  # alive through the call
    weights, firsts, seconds, elements = arrays
    pending = [i for i, g in enumerate(grads)
               if isinstance(g, pending_gradient.PendingKernelGradient)]
    if pending:  # their steps below, each with its gradient made member by member
        elements = (ctypes.c_int64 * count)(*[0 if i in pending else elements[i]
                                              for i in range(count)])
    lib.reglab_adam_step(count, weights, pointers([None if i in pending else g
                                                   for i, g in enumerate(grads)]),
                         firsts, seconds, elements, rows, table, pointers(signs),
                         pointers(decays))
    for i in pending:
        grads[i].adam_step(params[i], m[i], v[i], table, signs[i], decays[i])
    return True
