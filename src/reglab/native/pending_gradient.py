"""The float32 first layer's kernel gradient, kept as the products that make it until the
optimizer's step: Adam then makes each member's ``x_g^T @ dY_m`` and steps on it at once.

At P = 45 the first kernel's gradient is 9 MB; made whole it is written to memory by the
backward pass and read back by Adam's step a moment later. Here the direct step
(:mod:`reglab.engine.direct_step`) keeps what makes it, the group's batch and each
member's output gradient, and reglab's native Adam makes one member's gradient into a
block that stays in cache (``adam_kernels.c``, ``reglab_adam_step_member_products_f32``)
and steps on that member's rows with it: the same sgemm call as
:func:`member_products.kernel_grad`'s, the same Adam arithmetic as ``reglab_adam_step``'s,
so the same bits (checked once per process, and tested). The weights do not enter the
gradient, so what runs between the backward and the step (the penalties' values, the
divergence check, decoupled weight decay) sees what it saw before.

Wherever anything else needs the gradient (clipping, a penalty's gradient the step does
not fold in, another optimizer, members dropped mid-step), :meth:`materialize` makes it
whole with :func:`member_products.kernel_grad`'s loops: what the backward made before.
"""

from __future__ import annotations

import ctypes
import functools

import torch

from reglab import native
from reglab.native import adam, member_products  # (adam imports this module too)


class PendingKernelGradient:
    """``grad[m] = x[g]^T @ dy[m]`` for the members ``m`` of each seed group ``g``, not yet
    made: ``x`` ``(G, b, in)``, ``dy`` ``(P, b, units)`` contiguous, ``groups`` per group
    its members as a slice of the stack (or an empty one)."""

    def __init__(self, x: torch.Tensor, dy: torch.Tensor, groups: tuple[slice, ...]):
        self.x, self.dy, self.groups = x, dy, groups
        self.shape = torch.Size((dy.shape[0], x.shape[2], dy.shape[2]))
        self.dtype, self.device = dy.dtype, dy.device

    @staticmethod
    def applies(x: torch.Tensor, kernel: torch.Tensor, dy: torch.Tensor, groups) -> bool:
        """Whether the kernel gradient of ``kernel`` (``(P, in, units)``) can wait: each
        group's members a slice, the products ones :func:`member_products.kernel_grad`
        takes, with whole 16-float blocks (a member's gradient starts where a block of the
        stacked gradient would, 64-byte aligned, so the sgemm takes the same path), and
        the step's fused loop giving the same bits here."""
        return (x.dim() == 3 and kernel.dim() == 3 and dy.dim() == 3
                and all(isinstance(who, slice) for who in groups)
                and kernel.shape[1] * kernel.shape[2] % 16 == 0
                and kernel.dtype == x.dtype == dy.dtype == torch.float32
                and kernel.is_contiguous() and dy.shape[0] == kernel.shape[0]
                and dy.shape[2] == kernel.shape[2] and x.shape[2] == kernel.shape[1]
                and all(member_products.kernel_grad_applies(x[g], dy[who], kernel[who])
                        for g, who in enumerate(groups) if who.stop > who.start)
                and fused_step_available())

    def materialize(self) -> torch.Tensor:
        """The gradient, made whole: what :func:`member_products.kernel_grad` makes."""
        grad = torch.empty(self.shape, dtype=self.dtype, device=self.device)
        for g, who in enumerate(self.groups):
            if who.stop > who.start:
                member_products.run_kernel_grad(self.x[g], self.dy[who], grad[who])
        return grad

    def adam_step(self, w: torch.Tensor, m: torch.Tensor, v: torch.Tensor,
                  coefficients: ctypes.Array, sign: torch.Tensor | None,
                  decay: torch.Tensor | None) -> None:
        """Adam's step of every member's rows of ``w`` (``(P, in, units)``, with its moments
        ``m`` and ``v``) on its gradient, made member by member; ``coefficients``, ``sign``
        and ``decay`` as ``reglab_adam_step`` takes them (native/adam.py), for all P rows."""
        scratch = torch.empty(self.shape[1:], dtype=torch.float32)  # 64-byte aligned
        _adam_steps(self, w, m, v, coefficients, sign, decay, scratch)


def _adam_steps(pending, w, m, v, coefficients, sign, decay, scratch) -> None:
    lib, sgemm = native.library(), member_products.sgemm_address()
    per_row, n_in, units = w[0].numel(), pending.shape[1], pending.shape[2]
    table = ctypes.addressof(coefficients)
    width = ctypes.sizeof(ctypes.c_float)
    for g, who in enumerate(pending.groups):
        count = who.stop - who.start
        if count == 0:
            continue
        x, dy = pending.x[g], pending.dy[who]
        start = who.start
        lib.reglab_adam_step_member_products_f32(
            sgemm, count, x.shape[0], n_in, units, x.data_ptr(), dy.data_ptr(),
            scratch.data_ptr(), w.data_ptr() + start * per_row * width,
            m.data_ptr() + start * per_row * width, v.data_ptr() + start * per_row * width,
            table + start * adam.COEFFICIENTS * width,
            None if sign is None else sign.data_ptr() + start * width,
            None if decay is None else decay.data_ptr() + start * width)
    for t in (w, m, v):
        torch.autograd.graph.increment_version(t)


def fused_step_available() -> bool:
    """Whether the fused loop runs here: the per-member products' loops do, and once per
    process it gave the bits of the gradient made whole and then ``reglab_adam_step``."""
    return member_products.available() and _agrees()


@functools.cache
def _agrees() -> bool:
    g = torch.Generator().manual_seed(1)
    for members, rows, n_in, units, groups in ((5, 32, 784, 64, (slice(0, 2), slice(2, 5))),
                                               (5, 7, 33, 16, (slice(0, 5),))):
        x = torch.randn(len(groups), rows, n_in, generator=g)
        dy = torch.randn(members, rows, units, generator=g)
        w, mean, var = (torch.randn(members, n_in, units, generator=g) for _ in range(3))
        var = var.abs()
        pending = PendingKernelGradient(x, dy, groups)
        hyper = {(1e-3, 0.9, 0.999, 1e-7, 3): [0, 2], (0.02, 0.6, 0.99, 1e-5, 1): [1, 3, 4]}
        table = adam.coefficients(hyper, members)
        sign = torch.tensor([0.0, 0.01, 0.0, 0.02, 0.0])
        decay = torch.tensor([0.0, 0.0, 0.1, 0.02, 0.0])
        whole = [t.clone() for t in (w, mean, var)]
        grad = pending.materialize()  # alive through the call
        native.library().reglab_adam_step(
            1, adam.pointers([whole[0]]), adam.pointers([grad]),
            adam.pointers([whole[1]]), adam.pointers([whole[2]]),
            (ctypes.c_int64 * 1)(n_in * units), members, table, adam.pointers([sign]),
            adam.pointers([decay]))
        pending.adam_step(w, mean, var, table, sign, decay)
        if not all(torch.equal(a, b) for a, b in zip((w, mean, var), whole)):
            return False
    return True


def made(grads: list) -> list:
    """``grads`` with every pending gradient made whole."""
    return [g.materialize() if isinstance(g, PendingKernelGradient) else g for g in grads]
