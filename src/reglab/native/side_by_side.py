"""A seed group's float32 kernels laid side by side in bfloat16 for the shared first
layer's one GEMM, and that GEMM's bfloat16 gradient taken back into each member's float32
block, by the native kernels (``native/side_by_side_kernels.c``): torch's casts, bit for
bit, in one contiguous run per member row instead of torch's strided copy. The same
layouts for blocks already in the GEMM's two-byte dtype (the group's output, the members'
output gradients): plain copies.

Each function returns False (nothing written) when the case is not one the kernels take
(CPU, adjacent members' contiguous blocks, float32 to bfloat16 or one two-byte dtype, a
contiguous side-by-side matrix) or the kernels are unavailable; the caller then does
torch's copy.
"""

from __future__ import annotations

import torch

from reglab import native


def _kind(members: torch.Tensor, side: torch.Tensor) -> str | None:
    """``'bf16'`` (a cast) or ``'u16'`` (a copy) for ``members``: ``(k, rows, width)``
    blocks, each contiguous, adjacent or evenly spaced, float32 or two-byte, and ``side``:
    ``(rows, k, width)`` bfloat16 (or the members' two-byte dtype), contiguous; else None."""
    if not (members.device.type == "cpu" and side.device.type == "cpu"
            and members.dim() == 3 and side.dim() == 3 and members.layout == torch.strided
            and members.stride(2) == 1 and members.stride(1) == members.shape[2]
            and side.shape == (members.shape[1], members.shape[0], members.shape[2])
            and side.is_contiguous() and members.numel() > 0):
        return None
    if members.dtype == torch.float32 and side.dtype == torch.bfloat16:
        return "bf16"
    if members.dtype == side.dtype and members.dtype in (torch.bfloat16, torch.float16):
        return "u16"
    return None


def _call(direction: str, members: torch.Tensor, side: torch.Tensor, source: torch.Tensor,
          target: torch.Tensor) -> bool:
    lib = native.library()
    kind = None if lib is None else _kind(members, side)
    if kind is None:
        return False
    k, rows, width = members.shape
    getattr(lib, f"reglab_{direction}_side_by_side_{kind}")(
        source.data_ptr(), k, members.stride(0), rows, width, target.data_ptr())
    return True


def lay(members: torch.Tensor, side: torch.Tensor) -> bool:
    """Writes ``members`` ``(k, rows, width)`` (float32, or the side's two-byte dtype) into
    ``side`` ``(rows, k, width)`` (bfloat16: torch's rounding); False when the kernels do
    not take the case."""
    return _call("lay", members, side, members, side)


def take(side: torch.Tensor, members: torch.Tensor) -> bool:
    """Writes ``side`` ``(rows, k, width)`` (bfloat16, or the members' two-byte dtype) into
    ``members`` ``(k, rows, width)`` (float32: exact); False when the kernels do not take
    the case."""
    if members.requires_grad and torch.is_grad_enabled():
        return False  # an in-place write autograd must see: torch's copy
    return _call("take", members, side, side, members)
