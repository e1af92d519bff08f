"""The first layer's products for members that see the same input.

Members that share a seed see the same batch. A weight layer fed that batch
directly (the model's first ``Dense``, perhaps behind a ``Flatten``) computes
``x_g @ W_m`` for each member m of seed group g: P products of shape
``(b, in) @ (in, units)``, all reading the group's one copy of the batch (no
per-member copy of it).

In the weights' dtype each member's products run on its own blocks: ``x_g @ W_m``
straight into its rows of the output, ``x_g^T @ dY_m`` straight into its block of
the kernel's gradient. Laying the group's kernels side by side as one
``(in, k * units)`` matrix would make one wider GEMM each way, but costs a copy of
the kernels in and of their gradients out at every step; measured on one Zen 4
thread (P = 45, 784-64), the per-member products are 9-13 % faster per step at
batch 32 and 64 and even at 128 and 256. Under mixed precision the kernels must be
cast anyway, so the cast is the side-by-side copy and the group takes one GEMM each
way in the compute dtype.

Each output column is the dot product of the same row of ``x`` with the same column
of one member's kernel, summed over ``in`` in the same order either way; on a CPU
with 16-float vectors (AVX-512) a member's columns fill whole vector tiles when
``units`` is a multiple of 16, so the side-by-side GEMM takes the same micro-kernel
as alone and the results are bitwise those of one member alone (tested). Other
widths take the per-member batched path, where that holds by construction.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from reglab.layers import products
from reglab.native import member_products, side_by_side
from reglab.native.pending_gradient import PendingKernelGradient

# Kernel columns per vector tile of the CPU's fp32 GEMM (AVX-512: 16 floats). With units a
# multiple of it, a member's columns never share a tile with a neighbour's.
COLUMN_TILE = 16


@dataclass(frozen=True)
class MemberGroups:
    """Which members see which row of a grouped input ``(G, b, ...)``.

    Attributes:
        rows: ``(P,)`` long tensor, the group of each member.
        members: per group, its members as a ``slice`` when they are contiguous, else a
            ``(k,)`` long tensor of member positions.
    """

    rows: torch.Tensor
    members: tuple

    @staticmethod
    def from_rows(rows: list[int], device) -> MemberGroups:
        by_group: dict[int, list[int]] = {}
        for position, group in enumerate(rows):
            by_group.setdefault(group, []).append(position)
        members = []
        for group in range(max(by_group) + 1):
            positions = by_group.get(group, [])
            if positions and positions == list(range(positions[0], positions[-1] + 1)):
                members.append(slice(positions[0], positions[-1] + 1))
            else:
                members.append(torch.tensor(positions, dtype=torch.long, device=device))
        return MemberGroups(torch.tensor(rows, dtype=torch.long, device=device), tuple(members))

    @staticmethod
    def single(size: int, device) -> MemberGroups:
        """Every member in one group (an input shared by all)."""
        return _single(size, torch.device(device))

    def expand(self, x: torch.Tensor) -> torch.Tensor:
        """The grouped input laid out per member, ``(P, b, ...)``."""
        if len(self.members) == 1:
            return x.expand(self.rows.shape[0], *x.shape[1:])
        return x.index_select(0, self.rows)


@functools.lru_cache(maxsize=64)
def _single(size: int, device: torch.device) -> MemberGroups:
    # Read only, like every MemberGroups: made once per (size, device), not at every step.
    return MemberGroups(torch.zeros(size, dtype=torch.long, device=device), (slice(0, size),))


def applies(units: int, x: torch.Tensor) -> bool:
    """Whether the shared GEMM keeps each member's result bitwise its own: a float32 or
    bfloat16 CPU GEMM whose member columns fill whole vector tiles (tested for both).
    Elsewhere (float64, CUDA, odd widths) the per-member batched product is used."""
    return (units % COLUMN_TILE == 0 and x.dtype in (torch.float32, torch.bfloat16)
            and x.device.type == "cpu")


def _size(who) -> int:
    return who.stop - who.start if isinstance(who, slice) else who.numel()


def _gather(t: torch.Tensor, who, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``(P, A, u)`` -> ``(A, k, u)`` in ``dtype`` for the k members ``who``, contiguous:
    viewed as ``(A, k * u)``, their blocks side by side. For a slice of members, one pass
    that also casts (float32 weights to a bfloat16 compute dtype)."""
    dtype = dtype or t.dtype
    if isinstance(who, slice) and who.stop - who.start == 1 and t.dtype == dtype:
        own = t[who.start]  # (A, u): a group of one reads its member's own block
        if own.is_contiguous():
            return own
    across = t.permute(1, 0, 2)  # (A, P, u), a view
    if isinstance(who, slice):
        block = across[:, who]
        if block.dtype == dtype and _side_by_side(block):
            return block  # one member (a group of one): its own block, no copy
        side = torch.empty(block.shape, dtype=dtype, device=t.device)
        if side_by_side.lay(t[who], side):  # float32 -> bfloat16, torch's bits, in C
            return side
        return side.copy_(block)
    return across.index_select(1, who).to(dtype)


def _side_by_side(block: torch.Tensor) -> bool:
    """Whether an ``(A, k, u)`` view already reads as an ``(A, k * u)`` matrix."""
    return block.stride(2) == 1 and (block.shape[1] == 1 or block.stride(1) == block.shape[2])


def _positions(who) -> range | list[int]:
    return range(who.start, who.stop) if isinstance(who, slice) else who.tolist()


def _scatter(dest: torch.Tensor, who, blocks: torch.Tensor) -> None:
    """Writes ``(A, k, u)`` blocks into the members ``who`` of ``dest`` ``(P, A, u)`` (cast to
    its dtype on the way)."""
    across = dest.permute(1, 0, 2)
    if isinstance(who, slice):
        if not side_by_side.take(blocks, dest[who]):  # bfloat16 -> float32 in C, else torch
            across[:, who] = blocks
    else:
        across.index_copy_(1, who, blocks.to(dest.dtype))


def forward_grouped(x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None,
                    groups: MemberGroups, relu: bool = False) -> torch.Tensor:
    """``y[m] = x[group(m)] @ kernel[m] (+ bias[m])`` in ``x``'s dtype: one product per
    member when the kernel has that dtype, else one GEMM per group (the float32 weights
    under mixed precision cast while laid side by side). With ``relu``, ``torch.relu(y)``:
    made on each member's block as its product ends where the native loops run, else by
    torch over the whole output (relu of relu is relu, bit for bit)."""
    if _one_member(x, kernel):
        y = _alone(x, kernel, bias)
        return torch.relu(y) if relu else y
    per_member = kernel.dtype == x.dtype
    members, b, n_in, units = kernel.shape[0], x.shape[1], kernel.shape[1], kernel.shape[2]
    y = x.new_empty(members, b, units)
    views = None  # per member, made once when a group needs torch's calls
    activated = True  # whether every group's relu has been made (where asked)
    for g, who in enumerate(groups.members):
        k = _size(who)
        if k == 0:
            continue
        if per_member:  # each member's product into its own rows of y
            if isinstance(who, slice) and member_products.addmm(
                    x[g], kernel[who], None if bias is None else bias[who], y[who], relu):
                continue  # the same products, made from C in one call (float32 on a CPU)
            activated = False
            if views is None:  # every member's views in one call each (not three indexings
                views = (x.unbind(0), kernel.unbind(0), y.unbind(0),  # per member)
                         None if bias is None else bias.unbind(0))
            xs, kernels, ys, biases = views
            for m in _positions(who):
                if biases is None:
                    products.mm(xs[g], kernels[m], out=ys[m])
                else:
                    products.addmm(biases[m], xs[g], kernels[m], out=ys[m])
            continue
        activated = False
        side = _gather(kernel, who, x.dtype).view(n_in, k * units)
        # A group of one writes straight into its member's block of y.
        out = y[who.start] if k == 1 and isinstance(who, slice) else None
        if bias is None:
            out = products.mm(x[g], side, out=out)
        else:
            out = products.addmm(_gather(bias.unsqueeze(1), who, x.dtype).view(k * units),
                                 x[g], side, out=out)
        if k > 1 or not isinstance(who, slice):
            _scatter(y, who, out.view(b, k, units))
    return torch.relu(y) if relu and not activated else y


def backward_grouped(x: torch.Tensor, kernel: torch.Tensor, dy: torch.Tensor,
                     groups: MemberGroups, has_bias: bool, need_x: bool = False,
                     need_kernel: bool = True, need_bias: bool = True,
                     pending: bool = False):
    """``(grad_x, grad_kernel, grad_bias)`` of :func:`forward_grouped`, each None where not
    needed; the kernel's and bias's gradients in the kernel's dtype (float32 under mixed
    precision). With ``pending``, the kernel's gradient may come as a
    :class:`~reglab.native.pending_gradient.PendingKernelGradient` (the products that make
    it, for the optimizer's step to make; only a caller that handles one asks)."""
    if _one_member(x, kernel) and not need_x:
        # a population of one: the products autograd forms for the product of _alone
        grad_kernel = products.mm(x[0].t(), dy[0]).unsqueeze(0) if need_kernel else None
        grad_bias = dy.sum(dim=1) if (need_bias and has_bias) else None
        return None, grad_kernel, grad_bias
    n_in, units, b = kernel.shape[1], kernel.shape[2], x.shape[1]
    grad_x = torch.empty_like(x) if need_x else None
    grad_kernel = None
    if need_kernel and pending and PendingKernelGradient.applies(x, kernel, dy, groups.members):
        grad_kernel, need_kernel = PendingKernelGradient(x, dy, groups.members), False
    elif need_kernel:
        grad_kernel = torch.empty_like(kernel)
    per_member = need_kernel and grad_kernel.dtype == x.dtype
    views = None  # per member, made once when a group needs torch's calls
    for g, who in enumerate(groups.members):
        k = _size(who)
        if k == 0:
            if grad_x is not None:
                grad_x[g] = 0
            continue
        if per_member and not (isinstance(who, slice) and member_products.kernel_grad(
                x[g], dy[who], grad_kernel[who])):  # into each member's block
            if views is None:
                views = (dy.unbind(0), grad_kernel.unbind(0))
            dys, grads = views
            x_t = x[g].t()
            for m in _positions(who):
                products.mm(x_t, dys[m], out=grads[m])
        if not need_x and (not need_kernel or per_member):
            continue
        side = _gather(dy, who).view(b, k * units)  # (b, k * u)
        if need_kernel and not per_member:  # one GEMM, cast on the way
            _scatter(grad_kernel, who, products.mm(x[g].t(), side).view(n_in, k, units))
        if need_x:
            side_kernels = _gather(kernel, who, x.dtype).view(n_in, k * units)
            grad_x[g] = products.mm(side, side_kernels.t())
    grad_bias = dy.sum(dim=1).to(kernel.dtype) if (need_bias and has_bias) else None
    return grad_x, grad_kernel, grad_bias


class _SharedInputLinear(torch.autograd.Function):
    """:func:`forward_grouped` and :func:`backward_grouped` for autograd."""

    @staticmethod
    def forward(ctx, x, kernel, bias, groups):
        ctx.groups, ctx.has_bias = groups, bias is not None
        ctx.save_for_backward(x, kernel)
        return forward_grouped(x, kernel, bias, groups)

    @staticmethod
    def backward(ctx, dy):
        x, kernel = ctx.saved_tensors
        return (*backward_grouped(x, kernel, dy, ctx.groups, ctx.has_bias,
                                  *ctx.needs_input_grad[:3]), None)


def shared_input_linear(x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None,
                        groups: MemberGroups) -> torch.Tensor:
    """``(G, b, in)`` grouped input, ``(P, in, u)`` kernels, ``(P, u)`` biases -> ``(P, b, u)``."""
    if _one_member(x, kernel):
        # One member (a population of one), with torch's autograd instead of the Function's
        # Python on both passes (autograd's gradient of the kernel is the same mm of x^T
        # and dy as backward_grouped's).
        return _alone(x, kernel, bias)
    return _SharedInputLinear.apply(x, kernel, bias, groups)


def _one_member(x: torch.Tensor, kernel: torch.Tensor) -> bool:
    """A population of one member, its kernel in the input's dtype: :func:`_alone` applies."""
    return kernel.shape[0] == 1 and x.shape[0] == 1 and kernel.dtype == x.dtype


def _alone(x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A population of one member, ``(1, b, in)`` input: the product it takes in any
    population (its own ``addmm``)."""
    # squeeze, not [0]: under autograd its backward is a view (select's fills a zero kernel)
    x1, kernel1 = x.squeeze(0), kernel.squeeze(0)
    y = products.mm(x1, kernel1) if bias is None else products.addmm(bias.squeeze(0), x1,
                                                                       kernel1)
    return y.unsqueeze(0)
