"""The layers' matrix products and convolutions in a half-precision compute dtype, on any CPU.

Under a mixed-precision policy a layer multiplies bfloat16 (or float16) inputs by
bfloat16 weights: each product of two such numbers is exact in float32 (8 + 8 or
11 + 11 significant bits fit in float32's 24), the products are summed in float32,
and the sum is rounded once to the compute dtype. That is what a GPU and oneDNN's CPU
kernels compute (torch uses them for bfloat16 on a CPU with AVX-512 or AMX, for float16
with AVX512-FP16 or AMX-FP16). On a CPU without them torch falls back to a scalar loop:
measured on an AMD EPYC (Zen 3, AVX2 only), a ``(128, 784) @ (784, 576)`` product took
48 ms in bfloat16 against 0.9 ms in float32, so a bfloat16 study ran some 10× slower
than the same study in float32.

There the functions below compute the same thing by another road: the operands,
already rounded to the compute dtype, are widened to float32 (exactly), multiplied by
the float32 GEMM, and the result is rounded to the compute dtype. A member's numbers
differ from a native bfloat16 GEMM's only in the order of the float32 sums, as any
two GEMM implementations do. Elsewhere (float32 and float64, a GPU, a CPU with
native half-precision products) each function is torch's own.

Every product the layers compute in a compute dtype goes through this module.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

_HALF = (torch.bfloat16, torch.float16)


@functools.cache
def native_half_products(dtype: torch.dtype | str) -> bool:
    """Whether this CPU's torch multiplies ``dtype`` (bfloat16 or float16, or its name)
    matrices with vector instructions of its own (oneDNN's check), rather than a scalar
    fallback."""
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    check = {torch.bfloat16: "_is_mkldnn_bf16_supported",
             torch.float16: "_is_mkldnn_fp16_supported"}[dtype]
    try:
        return bool(getattr(torch.ops.mkldnn, check)())
    except (AttributeError, RuntimeError):  # a torch without the check: AVX-512 or better
        return torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def widens(t: torch.Tensor) -> bool:
    """Whether a product with ``t`` as an operand runs in float32 on widened operands."""
    return t.dtype in _HALF and t.device.type == "cpu" and not native_half_products(t.dtype)


def _same_dtype(a: torch.Tensor, *others: torch.Tensor | None) -> None:
    """The check torch's own half operation makes: every operand in ``a``'s dtype (a float32
    one beside it would skip the rounding)."""
    for t in others:
        if t is not None and t.dtype != a.dtype:
            raise RuntimeError(f"expected every operand in {a.dtype}, got one in {t.dtype}")


def _widened(a: torch.Tensor, *others: torch.Tensor | None) -> list[torch.Tensor | None]:
    """The operands in float32, after :func:`_same_dtype`'s check."""
    _same_dtype(a, *others)
    return [None if t is None else t.float() for t in (a, *others)]


def _finish(result: torch.Tensor, dtype: torch.dtype, out: torch.Tensor | None):
    if out is None:
        return result.to(dtype)
    if out.dtype != dtype or out.shape != result.shape:
        raise RuntimeError(f"expected out in {dtype} of shape {tuple(result.shape)}, got "
                           f"{out.dtype} of shape {tuple(out.shape)}")
    return out.copy_(result)


def mm(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``torch.mm(a, b, out=out)``."""
    if widens(a):
        return _finish(torch.mm(*_widened(a, b)), a.dtype, out)
    return torch.mm(a, b, out=out)


def addmm(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
          out: torch.Tensor | None = None) -> torch.Tensor:
    """``torch.addmm(bias, a, b, out=out)``; in a half-precision dtype the product rounded,
    then the bias added (a second rounding), as Keras computes ``x @ kernel + bias``."""
    if a.dtype in _HALF:
        _same_dtype(a, bias)
        return mm(a, b, out=out).add_(bias)
    return torch.addmm(bias, a, b, out=out)


def bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.bmm(a, b)``."""
    if widens(a):
        return torch.bmm(*_widened(a, b)).to(a.dtype)
    return torch.bmm(a, b)


def baddbmm(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.baddbmm(bias, a, b)``; in a half-precision dtype the product rounded, then
    the bias added, as :func:`addmm`."""
    if a.dtype in _HALF:
        _same_dtype(a, bias)
        return bmm(a, b).add_(bias)
    return torch.baddbmm(bias, a, b)


def conv2d(x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None = None,
           **kwargs) -> torch.Tensor:
    """``F.conv2d(x, kernel, bias, **kwargs)``, differentiable (autograd takes the widening
    and the rounding back as the matching casts of the gradients); in a half-precision
    dtype the bias is added after the convolution's rounding, as Keras adds it."""
    if x.dtype in _HALF and bias is not None:
        _same_dtype(x, bias)
        return conv2d(x, kernel, None, **kwargs) + bias.view(1, -1, *([1] * (x.dim() - 2)))
    if widens(x):
        return F.conv2d(*_widened(x, kernel), **kwargs).to(x.dtype)
    return F.conv2d(x, kernel, bias, **kwargs)
