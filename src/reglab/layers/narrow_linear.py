"""The per-member product of a layer narrower than a vector tile (an output layer of 10 classes).

``y[m] = x[m] @ kernel[m] + bias[m]`` with ``units`` below 16 leaves the CPU's 16-float
vector tiles mostly empty: batched GEMMs of shape ``(b, in) @ (in, 10)`` run at a
tenth of the machine's rate. Computed transposed, ``y[m]^T = kernel[m]^T @ x[m]^T``, the
long batch axis fills the tiles instead; likewise the weight gradient as
``(dy[m]^T @ x[m])^T``. Measured on the population benchmark's output layer (45 members,
batch 128, 64 -> 10): forward 0.35 -> 0.12 ms, weight gradient 0.38 -> 0.12 ms. At 16
units and wider the usual orientation is as fast or faster, so it stays.

The orientation depends on the layer's shape only, never on the number of members, so a
member computes the same products in a population as alone; as in
``layers/member_linear.py``, the products are one batched call only for shapes where that
gives each member its bits alone, else one per member on 64-byte-aligned operands.
"""

from __future__ import annotations

import torch

from reglab.layers.member_linear import aligned_blocks, batched_is_alone, input_gradient, per_member

#: below this many units a layer's product runs transposed
NARROW_UNITS = 16


def applies(units: int) -> bool:
    return units < NARROW_UNITS


class _NarrowLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, kernel, bias, transposed):
        x, kernel = aligned_blocks(x), aligned_blocks(kernel)
        if batched_is_alone(x.shape[1], x.shape[2], kernel.shape[2], x.device):
            kernel_t = kernel.transpose(1, 2)  # (P, u, in)
            x_t = x.transpose(1, 2)  # (P, in, B)
            if bias is None:
                y_t = torch.bmm(kernel_t, x_t)
            else:
                y_t = torch.baddbmm(bias.unsqueeze(2), kernel_t, x_t)
        elif bias is None:
            y_t = per_member(lambda xm, km: torch.mm(km.t(), xm.t()), x, kernel)
        else:
            y_t = per_member(lambda xm, km, bm: torch.addmm(bm.unsqueeze(1), km.t(), xm.t()),
                             x, kernel, bias)
        ctx.has_bias = bias is not None
        ctx.save_for_backward(x, kernel)
        y = y_t.transpose(1, 2)  # (P, B, u), a view of the (P, u, B) product
        return y if transposed else y.contiguous()

    @staticmethod
    def backward(ctx, dy):
        x, kernel = ctx.saved_tensors
        need_x, need_kernel, need_bias = ctx.needs_input_grad[:3]
        batched = batched_is_alone(x.shape[1], x.shape[2], kernel.shape[2], x.device)
        dy_blocks = aligned_blocks(dy)
        grad_x = input_gradient(dy_blocks, kernel, batched) if need_x else None
        grad_kernel = None
        if need_kernel:
            grad_t = (torch.bmm(dy_blocks.transpose(1, 2), x) if batched else
                      per_member(lambda dym, xm: torch.mm(dym.t(), xm), dy_blocks, x))
            grad_kernel = grad_t.transpose(1, 2).contiguous()
        grad_bias = dy.sum(dim=1) if (need_bias and ctx.has_bias) else None
        return grad_x, grad_kernel, grad_bias, None


def narrow_linear(x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None,
                  transposed: bool = False) -> torch.Tensor:
    """``(P, B, in)`` inputs, ``(P, in, u)`` kernels, ``(P, u)`` biases -> ``(P, B, u)``;
    with ``transposed`` laid out as ``(P, u, B)`` in memory (for a consumer that reads it so:
    the fused softmax of engine/softmax_crossentropy.py), else contiguous."""
    return _NarrowLinear.apply(x, kernel, bias, transposed)
