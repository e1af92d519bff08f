"""Per-member products ``y[m] = x[m] @ kernel[m] + bias[m]`` that give each member its own bits.

A layer whose members each see their own input (every ``Dense`` but the first) multiplies
``P`` small matrices. torch's batched product (``bmm``, MKL's batched GEMM on a CPU) is
one call for all of them, but it does not always compute a member's product as it would
for that member alone: measured here, a member's result changed with its position in the
batch (its blocks' alignment) or with the number of members whenever the batch rows or
the input width were not a multiple of 16, or the layer had one unit (a GEMV), in float32,
float64 and bfloat16; with rows and inputs multiples of 16 and two units or more it did
not, over 9,000 checks up to 100 members. Those shapes (every full batch of 16, 32, 64,
128… of a 64-wide hidden layer) keep the one batched call; any other (a last partial
batch, a layer fed 6 features, a one-unit output) takes one ``mm`` per member on copies
of its operands that start on 64-byte boundaries, as its own tensors would alone.

:func:`member_linear` is the usual orientation; ``layers/narrow_linear.py`` computes
layers narrower than a vector tile transposed, with the same rule.
"""

from __future__ import annotations

import torch

from reglab.layers import products
from reglab.utils.threads import in_one_thread

#: rows and inputs that are multiples of this keep the batched product (see above)
TILE = 16
ALIGN_BYTES = 64


def batched_is_alone(rows: int, inputs: int, units: int, device: torch.device) -> bool:
    """Whether one batched product (on :func:`aligned_blocks` operands) gives every member
    the bits it gets alone: on a CPU for the shapes described above; elsewhere always (the
    CUDA path is left as it was)."""
    if device.type != "cpu":
        return True
    return rows % TILE == 0 and inputs % TILE == 0 and units >= 2


def _batched(product, *operands: torch.Tensor) -> torch.Tensor:
    """``product(*operands)``, a batched product of every member's blocks, in one intra-op
    thread on a CPU: MKL splits a batched GEMM between threads by the whole batch's work, so
    with two threads a lone member's product was cut in two where a population's was not,
    and rounded otherwise (reglab/utils/threads.py)."""
    if operands[-1].is_cpu:
        return in_one_thread(product, *operands)
    return product(*operands)


def aligned_blocks(t: torch.Tensor) -> torch.Tensor:
    """``t`` ``(P, ...)`` with each member's block contiguous and starting on a 64-byte
    boundary (``t`` itself when it already is, or off the CPU; else a padded copy, made
    once for an input every member shares): each member's product then reads its
    operands as a member alone reads its own fresh tensors."""
    members, size = t.shape[0], t.element_size()
    block = t.numel() // members if members else 0
    if not t.is_cpu:
        return t
    if members > 1 and t.stride(0) == 0:  # one input seen by every member: align it once
        return aligned_blocks(t[:1]).expand(t.shape)
    if t.data_ptr() % ALIGN_BYTES == 0 and t.is_contiguous() \
            and (members <= 1 or (block * size) % ALIGN_BYTES == 0):
        return t
    per_align = max(1, ALIGN_BYTES // size)
    step = -(-block // per_align) * per_align  # elements per member, padded
    storage = t.new_empty(members * step + per_align)
    offset = (-(storage.data_ptr() // size)) % per_align
    out = storage.as_strided(t.shape, (step, *_contiguous_strides(t.shape[1:])), offset)
    out.copy_(t)
    return out


def _contiguous_strides(shape) -> tuple[int, ...]:
    strides, running = [], 1
    for n in reversed(shape):
        strides.append(running)
        running *= n
    return tuple(reversed(strides))


def per_member(product, *operands: torch.Tensor) -> torch.Tensor:
    """``torch.stack([product(*(o[m] for o in operands)) for m])`` on :func:`aligned_blocks`
    of the operands: each product a fresh tensor, as a member's own would be alone."""
    aligned = [aligned_blocks(o) for o in operands]
    return torch.stack([product(*(a[m] for a in aligned)) for m in range(operands[0].shape[0])])


def forward_product(x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None,
                    transposed: bool, keep_layout: bool
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(y, x, kernel)``: ``y[m] = x[m] @ kernel[m] + bias[m]``, and the operands as the
    products read them (:func:`aligned_blocks`), which :func:`backward_product` takes. With
    ``transposed`` computed as ``y[m]^T = kernel[m]^T @ x[m]^T`` (layers/narrow_linear.py),
    ``y`` a view of the ``(P, u, B)`` product when ``keep_layout``, else contiguous."""
    x, kernel = aligned_blocks(x), aligned_blocks(kernel)
    batched = batched_is_alone(x.shape[1], x.shape[2], kernel.shape[2], x.device)
    if transposed:
        if batched:
            kernel_t, x_t = kernel.transpose(1, 2), x.transpose(1, 2)  # (P, u, in), (P, in, B)
            y_t = _batched(products.bmm, kernel_t, x_t) if bias is None else _batched(
                products.baddbmm, bias.unsqueeze(2), kernel_t, x_t)
        elif bias is None:
            y_t = per_member(lambda xm, km: products.mm(km.t(), xm.t()), x, kernel)
        else:
            y_t = per_member(lambda xm, km, bm: products.addmm(bm.unsqueeze(1), km.t(),
                                                               xm.t()), x, kernel, bias)
        y = y_t.transpose(1, 2)  # (P, B, u), a view of the (P, u, B) product
        y = y if keep_layout else y.contiguous()
    elif batched:
        y = (_batched(products.bmm, x, kernel) if bias is None
             else _batched(products.baddbmm, bias.unsqueeze(1), x, kernel))
    elif bias is None:
        y = per_member(products.mm, x, kernel)
    else:
        y = per_member(lambda xm, km, bm: products.addmm(bm, xm, km), x, kernel, bias)
    return y, x, kernel


def backward_product(x: torch.Tensor, kernel: torch.Tensor, dy: torch.Tensor, has_bias: bool,
                     transposed: bool, need_x: bool = True, need_kernel: bool = True,
                     need_bias: bool = True):
    """``(grad_x, grad_kernel, grad_bias)`` of :func:`forward_product` (``x`` and ``kernel``
    as it returned them), each None where not needed."""
    batched = batched_is_alone(x.shape[1], x.shape[2], kernel.shape[2], x.device)
    dy_blocks = aligned_blocks(dy)
    grad_x = input_gradient(dy_blocks, kernel, batched) if need_x else None
    grad_kernel = None
    if need_kernel and transposed:  # (dy^T @ x)^T: the long batch axis fills tiles
        grad_t = (_batched(products.bmm, dy_blocks.transpose(1, 2), x) if batched else
                  per_member(lambda dym, xm: products.mm(dym.t(), xm), dy_blocks, x))
        grad_kernel = grad_t.transpose(1, 2).contiguous()
    elif need_kernel:
        grad_kernel = (_batched(products.bmm, x.transpose(1, 2), dy_blocks) if batched else
                       per_member(lambda xm, dym: products.mm(xm.t(), dym), x, dy_blocks))
    grad_bias = dy.sum(dim=1) if (need_bias and has_bias) else None
    return grad_x, grad_kernel, grad_bias


class _MemberLinear(torch.autograd.Function):
    """:func:`forward_product` and :func:`backward_product` for autograd."""

    @staticmethod
    def forward(ctx, x, kernel, bias, transposed, keep_layout):
        y, x, kernel = forward_product(x, kernel, bias, transposed, keep_layout)
        ctx.has_bias, ctx.transposed = bias is not None, transposed
        ctx.save_for_backward(x, kernel)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, kernel = ctx.saved_tensors
        return (*backward_product(x, kernel, dy, ctx.has_bias, ctx.transposed,
                                  *ctx.needs_input_grad[:3]), None, None)


def input_gradient(dy: torch.Tensor, kernel: torch.Tensor, batched: bool) -> torch.Tensor:
    """``dy[m] @ kernel[m]^T`` for every member: batched, or one product per member
    (``dy`` already :func:`aligned_blocks`)."""
    if batched:
        return _batched(products.bmm, dy, kernel.transpose(1, 2))
    return per_member(lambda dym, km: products.mm(dym, km.t()), dy, kernel)


def member_linear(x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None,
                  transposed: bool = False, keep_layout: bool = False) -> torch.Tensor:
    """``(P, B, in)`` inputs, ``(P, in, u)`` kernels, ``(P, u)`` biases -> ``(P, B, u)``;
    ``transposed`` computes it as ``kernel^T @ x^T`` (see :class:`_MemberLinear`)."""
    return _MemberLinear.apply(x, kernel, bias, transposed, keep_layout)
