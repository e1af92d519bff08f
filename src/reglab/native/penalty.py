"""The L1/L2 weight penalty and its gradient by the native kernels, for the cases they
take: stacked CPU float32 weights ``(P, ...)``, one row per member, outside autograd.

Each function returns None (or False) when the case is not one of those, or the kernels
are unavailable; the caller then runs its torch path (:mod:`reglab.regularizers.penalty`).
"""

from __future__ import annotations

import torch

from reglab import native


def takes(w: torch.Tensor) -> bool:
    """Whether the kernels take the stacked weights ``w`` (with ``(P,)`` float32 strengths)."""
    return (native.library() is not None and native.float32_rows(w)
            and not (w.requires_grad and torch.is_grad_enabled()))


def _strength(value, rows: int):
    """``(pointer or None, scalar, in use)`` of a float or ``(P,)``-like tensor; None when the
    kernels cannot take it."""
    if not isinstance(value, torch.Tensor):
        return None, float(value), value != 0
    if (value.device.type != "cpu" or value.dtype != torch.float32 or value.numel() != rows
            or not value.is_contiguous() or value.requires_grad and torch.is_grad_enabled()):
        return None
    return value.data_ptr(), 0.0, True


def weight_penalty(w: torch.Tensor, l1, l2) -> torch.Tensor | None:
    """``l1 * sum(|w[p]|) + l2 * sum(w[p]**2)`` per row ``p`` of ``w``, as a ``(P,)`` float32
    tensor; None when the kernels do not take this case (the weights need a gradient graph,
    another dtype or device, or are not contiguous)."""
    lib = native.library()
    if lib is None or not native.float32_rows(w) or (w.requires_grad and torch.is_grad_enabled()):
        return None
    rows = w.shape[0]
    a, b = _strength(l1, rows), _strength(l2, rows)
    if a is None or b is None:
        return None
    out = torch.empty(rows, dtype=torch.float32)
    lib.reglab_weight_penalty(w.data_ptr(), rows, w.numel() // rows, a[0], a[1], int(a[2]),
                              b[0], b[1], int(b[2]), out.data_ptr())
    return out


def add_penalty_gradient_(grad: torch.Tensor, w: torch.Tensor, l1, l2) -> bool:
    """``grad += l1 * sign(w)``, then ``grad += 2 * l2 * w``, per row, in place; False (and
    ``grad`` untouched) when the kernels do not take this case."""
    lib = native.library()
    if lib is None or not (native.float32_rows(w) and native.float32_rows(grad)) or grad.shape != w.shape:
        return False
    rows = w.shape[0]
    a, b = _strength(l1, rows), _strength(l2, rows)
    if a is None or b is None or _overlap(grad, w):
        return False
    lib.reglab_add_penalty_gradient(grad.data_ptr(), w.data_ptr(), rows, w.numel() // rows,
                                    a[0], a[1], int(a[2]), b[0], b[1], int(b[2]))
    return True


def _overlap(a: torch.Tensor, b: torch.Tensor) -> bool:
    size = a.numel() * a.element_size()
    return a.data_ptr() < b.data_ptr() + size and b.data_ptr() < a.data_ptr() + size

