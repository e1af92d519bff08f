"""Arrays as tensors at the edges, where Keras's objects take either."""

from __future__ import annotations

import numpy as np
import torch


def divide_no_nan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a / b``, 0 where ``b`` is 0 (Keras's ``divide_no_nan``); the divisor is replaced
    there, so the gradient is 0 too, not NaN."""
    empty = b == 0
    return torch.where(empty, torch.zeros_like(a), a / torch.where(empty, torch.ones_like(b), b))


def sum_is_finite(x) -> bool:
    """Whether the sum of floating ``x`` (an array or a tensor) is finite: one fast pass
    (a quarter of ``isfinite(x).all()``'s time; torch's ``isfinite`` on one thread is 15x
    slower still). NaN and infinity carry through a sum, so True means every value is
    finite; False may be an overflow of finite values, and the caller looks closer."""
    if isinstance(x, np.ndarray) and x.dtype.kind in "fc" and x.dtype.isnative:
        x = torch.from_numpy(np.ascontiguousarray(x)) if x.dtype != np.float16 else x
    if isinstance(x, np.ndarray):
        return bool(np.isfinite(x.sum()))
    if hasattr(x, "detach") and (x.is_floating_point() or x.is_complex()):
        return bool(torch.isfinite(x.detach().sum()).all())
    return True


#: floats in a block that every CPU's vector loop takes whole (AVX-512: 16)
_WHOLE_VECTORS = 64


def by_whole_vectors(fn, *tensors: torch.Tensor) -> torch.Tensor:
    """``fn(*tensors)`` for an elementwise ``fn`` of tensors of one shape with the members
    first, computed so that no member's value falls on a vectorized loop's scalar tail
    (where torch's ``exp``, ``log`` and ``softplus`` round differently) nor on a cut
    between threads: each member's values flattened and padded (with zeros) to whole
    vector blocks, in one thread. A member's result then never depends on how many members
    stand beside it. On other devices, ``fn`` as it is."""
    from reglab.utils.threads import in_one_thread

    first = tensors[0]
    if first.device.type != "cpu" or first.dim() == 0 or first.numel() == 0:
        return fn(*tensors)
    members, per_member = first.shape[0], first[0].numel()
    padded = -(-per_member // _WHOLE_VECTORS) * _WHOLE_VECTORS
    laid = []
    for t in tensors:
        flat = t.reshape(members, per_member)
        if padded != per_member:
            flat = torch.nn.functional.pad(flat, (0, padded - per_member))
        laid.append(flat)
    out = in_one_thread(fn, *laid)
    return out[:, :per_member].reshape(first.shape)


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
