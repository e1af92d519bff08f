"""A seed group's float32 kernels laid side by side in bfloat16 for the shared first
layer's one GEMM, and that GEMM's bfloat16 gradient taken back into each member's float32
block, by the native kernels (``native/side_by_side_kernels.c``): torch's casts, bit for
bit, in one contiguous run per member row instead of torch's strided copy.

Each function returns False (nothing written) when the case is not one the kernels take
(CPU, adjacent members' contiguous float32 blocks, a contiguous bfloat16 side-by-side
matrix) or the kernels are unavailable; the caller then does torch's copy.
"""

from __future__ import annotations

import torch

from reglab import native


def _takes(members: torch.Tensor, side: torch.Tensor) -> bool:
    """``members``: ``(k, rows, width)`` float32 blocks, each contiguous, adjacent or evenly
    spaced; ``side``: ``(rows, k, width)`` bfloat16, contiguous."""
    return (members.device.type == "cpu" and side.device.type == "cpu"
            and members.dtype == torch.float32 and side.dtype == torch.bfloat16
            and members.dim() == 3 and side.dim() == 3 and members.layout == torch.strided
            and members.stride(2) == 1 and members.stride(1) == members.shape[2]
            and side.shape == (members.shape[1], members.shape[0], members.shape[2])
            and side.is_contiguous() and members.numel() > 0)


def _call(name: str, members: torch.Tensor, side: torch.Tensor, source: torch.Tensor,
          target: torch.Tensor) -> bool:
    lib = native.library()
    if lib is None or not _takes(members, side):
        return False
    k, rows, width = members.shape
    getattr(lib, name)(source.data_ptr(), k, members.stride(0), rows, width,
                       target.data_ptr())
    return True


def lay(members: torch.Tensor, side: torch.Tensor) -> bool:
    """Writes ``members`` ``(k, rows, width)`` float32 into ``side`` ``(rows, k, width)``
    bfloat16 (torch's rounding); False when the kernels do not take the case."""
    return _call("reglab_lay_side_by_side_bf16", members, side, members, side)


def take(side: torch.Tensor, members: torch.Tensor) -> bool:
    """Writes ``side`` ``(rows, k, width)`` bfloat16 into ``members`` ``(k, rows, width)``
    float32 (exact); False when the kernels do not take the case."""
    if members.requires_grad and torch.is_grad_enabled():
        return False  # an in-place write autograd must see: torch's copy
    return _call("reglab_take_side_by_side_bf16", members, side, side, members)
