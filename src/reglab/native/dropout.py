"""Inverted dropout of a population's activations by the native kernels, forward and
backward, for the case they take: CPU float32 or bfloat16 activations ``(P, ...)`` with
one mask element per activation, drawn per seed group (``(G, ...)`` float32 draws and each
member's group), and a ``(P,)`` float32 keep probability.

:func:`dropout` returns None when the case is another one, or the kernels are
unavailable; the caller then runs its torch path (:func:`reglab.layers.regularization.dropout`),
whose bits these are (``native/dropout_kernels.c``).
"""

from __future__ import annotations

import torch

from reglab import native

_KERNELS = {torch.float32: ("reglab_dropout_f32", "reglab_dropout_backward_f32"),
            torch.bfloat16: ("reglab_dropout_bf16", "reglab_dropout_backward_bf16")}


def _takes(x: torch.Tensor, keep: torch.Tensor, draws: torch.Tensor,
           group: torch.Tensor | None) -> bool:
    members = x.shape[0] if x.dim() > 1 else 0
    if (x.device.type != "cpu" or x.dtype not in _KERNELS or x.dim() < 2 or members == 0
            or not x.is_contiguous() or x.layout != torch.strided):
        return False
    if not (native.float32_rows(keep) and keep.numel() == members and not keep.requires_grad):
        return False
    if not (native.float32_rows(draws) and draws.shape[1:] == x.shape[1:]
            and not draws.requires_grad):
        return False
    if group is None:
        return draws.shape[0] == 1
    return (group.device.type == "cpu" and group.dtype == torch.int64 and group.dim() == 1
            and group.numel() == members and group.is_contiguous())


def _pointer(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _run(lib, name: str, source: torch.Tensor, keep, draws, group, out: torch.Tensor) -> None:
    status = getattr(lib, name)(source.data_ptr(), draws.data_ptr(), _pointer(group),
                                draws.shape[0], keep.data_ptr(), source.shape[0],
                                source[0].numel(), out.data_ptr())
    if status != 0:
        raise IndexError(f"dropout: a member's seed group lies outside the {draws.shape[0]} "
                         f"rows of draws; got groups {group.tolist()}")


def _forward(lib, x, keep, draws, group) -> torch.Tensor:
    y = torch.empty_like(x)
    _run(lib, _KERNELS[x.dtype][0], x, keep, draws, group, y)
    return y


def _backward(lib, grad, keep, draws, group) -> torch.Tensor:
    grad = grad.contiguous()
    grad_x = torch.empty_like(grad)
    _run(lib, _KERNELS[grad.dtype][1], grad, keep, draws, group, grad_x)
    return grad_x


class _Dropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, keep, draws, group):
        ctx.lib = native.library()  # backward uses the kernels that made the forward
        ctx.save_for_backward(keep, draws, group)
        return _forward(ctx.lib, x, keep, draws, group)

    @staticmethod
    def backward(ctx, grad):
        keep, draws, group = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: the torch path, itself differentiable
            uniform = draws if group is None else draws.index_select(0, group)
            keep = keep.view(-1, *[1] * (grad.dim() - 1))
            mask = (uniform < keep).to(grad.dtype)
            return (grad * mask / keep).to(grad.dtype), None, None, None
        return _backward(ctx.lib, grad, keep, draws, group), None, None, None


def dropout(x: torch.Tensor, keep: torch.Tensor, draws: torch.Tensor,
            group: torch.Tensor | None) -> torch.Tensor | None:
    """``x / keep * (u < keep)`` per member, ``u`` its group's row of ``draws`` (``group``:
    each member's row, or None when there is one), in ``x``'s dtype; None when the kernels
    do not take this case."""
    if native.library() is None:
        return None
    keep = keep.reshape(-1)
    if not _takes(x, keep, draws, group):
        return None
    return _Dropout.apply(x, keep, draws, group)


def dropout_and_backward(x: torch.Tensor, keep: torch.Tensor, draws: torch.Tensor,
                         group: torch.Tensor | None):
    """:func:`dropout`'s ``(y, backward)`` without autograd (``backward(dy) -> dx``), or
    None when the kernels do not take this case."""
    lib = native.library()
    if lib is None:
        return None
    keep = keep.reshape(-1)
    if not _takes(x, keep, draws, group):
        return None
    return (_forward(lib, x, keep, draws, group),
            lambda dy: _backward(lib, dy, keep, draws, group))
