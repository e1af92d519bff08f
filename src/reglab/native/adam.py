"""Adam's step by the native kernel (``adam_kernels.c``): one call per step for every weight
and every member, each row with its own hyperparameters and step, where the case is one it
takes (CPU float32 contiguous weights, gradients and moments; no amsgrad). Otherwise
:func:`step` returns False and the optimizer calls torch's fused kernel."""

from __future__ import annotations

import ctypes
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


class _Checked:
    """The weights and moments last found fit for the kernel, with their data pointers (the
    engine updates them in place, so the same objects on the same memory come back every
    step: checked once, while they do)."""

    tensors: tuple = ()
    pointers: tuple = ()


def _fit(params, m, v) -> bool:
    tensors = (*params, *m, *v)
    if len(tensors) == len(_Checked.tensors) and all(
            a is b for a, b in zip(tensors, _Checked.tensors)) and tuple(
            t.data_ptr() for t in tensors) == _Checked.pointers:
        return True
    rows = params[0].shape[0] if params[0].dim() else 0
    fit = bool(rows) and all(
        native.float32_rows(w) and w.shape[0] == rows and native.float32_rows(m[i], w.shape)
        and native.float32_rows(v[i], w.shape) for i, w in enumerate(params))
    _Checked.tensors = tensors if fit else ()
    _Checked.pointers = tuple(t.data_ptr() for t in tensors) if fit else ()
    return fit


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
    if lib is None or not params or not _fit(params, m, v):
        return False
    rows = params[0].shape[0]
    if not (_per_row(decay, len(params), rows) and _per_row(sign, len(params), rows)):
        return False  # the torch path says what is wrong
    if not all(native.float32_rows(g, w.shape) for w, g in zip(params, grads)):
        return False  # the gradients are new every step
    count = len(params)
    table = coefficients(hyper, rows)
    decays, signs = _arrays(decay, count), _arrays(sign, count)
    pointers = ctypes.c_void_p * count
    lib.reglab_adam_step(
        count, pointers(*[t.data_ptr() for t in params]),
        pointers(*[t.data_ptr() for t in grads]), pointers(*[t.data_ptr() for t in m]),
        pointers(*[t.data_ptr() for t in v]),
        (ctypes.c_int64 * count)(*[w.numel() // rows for w in params]), rows,
        table.data_ptr(), pointers(*[s.data_ptr() if s is not None else None for s in signs]),
        pointers(*[d.data_ptr() if d is not None else None for d in decays]))
    return True
