"""The shared first layer's per-member float32 products, a seed group's in one call
(``native/member_products_kernels.c``): the sgemm torch's ``addmm`` and ``mm`` make for
each member, made from C with the same arguments, so the numbers are torch's bit for bit,
without torch's dispatch per member (some 4 us, 90 times a step at P = 45).

The sgemm is the BLAS routine in torch's own library. It is used only where torch's
float32 products are that sgemm: a CPU, float32 matmul precision at its full ("ieee"; a
user's ``torch.set_float32_matmul_precision("medium")`` makes torch use oneDNN's bfloat16
products instead), and a first check, made once per process, that the loops give torch's
numbers bit for bit on a few awkward shapes. Each function returns False (nothing
written) where it does not apply; the caller then makes torch's calls.
"""

from __future__ import annotations

import ctypes
import functools
import os

import torch

from reglab import native

#: the largest dimension a BLAS int (32 bits) holds
_INT_MAX = 2**31 - 1


@functools.cache
def sgemm_address() -> int | None:
    """The address of the sgemm in torch's library, or None (not exported: a torch built
    on another BLAS, or none)."""
    if not torch.backends.mkl.is_available():
        return None
    path = os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so")
    try:
        address = ctypes.cast(ctypes.CDLL(path).sgemm_, ctypes.c_void_p).value
    except (OSError, AttributeError):
        return None
    return address


def _full_precision() -> bool:
    """Whether torch's float32 CPU products are full float32 ones (its BLAS), not oneDNN's
    reduced-precision ones."""
    return _matmul_precision() in ("none", "ieee", "highest")


def _matmul_precision() -> str:
    """oneDNN's float32 matmul precision (``torch.backends.mkldnn.matmul.fp32_precision``,
    read without the property's Python), or the legacy switch's on an older torch."""
    getter = getattr(torch._C, "_get_fp32_precision_getter", None)
    if getter is None:
        return torch.get_float32_matmul_precision()
    return getter("mkldnn", "matmul")


def available() -> bool:
    """Whether the loops run here and now (see the module docstring)."""
    return (_full_precision() and native.library() is not None and sgemm_address() is not None
            and _agrees_with_torch())


def _fits(out: torch.Tensor, *tensors: torch.Tensor) -> bool:
    """CPU float32 strided tensors whose memory holds their values (not a negated or zero
    view) and whose dimensions a BLAS int holds; none that autograd records (under grad mode
    torch's ``out=`` products refuse them, as a graph through them, a double backward's,
    would be cut)."""
    grad_mode = torch.is_grad_enabled()
    return all(t.device.type == "cpu" and t.dtype == torch.float32
               and t.layout == torch.strided and max(t.shape, default=0) <= _INT_MAX
               and not (grad_mode and t.requires_grad) and not t.is_neg()
               and not torch._is_zerotensor(t) and t.data_ptr() != 0
               for t in (out, *tensors))


def _blocks(t: torch.Tensor) -> bool:
    """A ``(k, ...)`` stack of k > 0 contiguous blocks, evenly spaced."""
    return t.dim() >= 2 and t.shape[0] > 0 and t[0].is_contiguous()


def addmm(x: torch.Tensor, kernels: torch.Tensor, biases: torch.Tensor | None,
          out: torch.Tensor, relu: bool = False) -> bool:
    """``out[m] = biases[m] + x @ kernels[m]`` (``x @ kernels[m]`` without biases) for the
    k members of a group: ``x`` ``(b, in)``, ``kernels`` ``(k, in, units)``, ``biases``
    ``(k, units)``, ``out`` ``(k, b, units)`` contiguous; torch's ``addmm`` / ``mm`` for each,
    and with ``relu`` torch's ``relu`` of it, applied to each member's block just made (one
    pass over the layer's output fewer). False (nothing written) where the loops do not
    apply."""
    if not (x.dim() == 2 and kernels.dim() == 3 and out.numel() and x.numel()
            and out.shape == (kernels.shape[0], x.shape[0], kernels.shape[2])
            and out.shape[1:] != (1, 1)  # torch makes a (1, 1) product otherwise than sgemm
            and kernels.shape[1] == x.shape[1]
            and (biases is None or (biases.shape == (kernels.shape[0], kernels.shape[2])
                                    and biases.stride(-1) == 1))
            and _fits(out, x, kernels, *([] if biases is None else [biases]))
            and x.is_contiguous() and out.is_contiguous() and _blocks(kernels)
            and available()):
        return False
    _addmm(x, kernels, biases, out, relu)
    torch.autograd.graph.increment_version(out)  # an in-place write, as torch's out= counts
    return True


def _addmm(x, kernels, biases, out, relu: bool = False) -> None:
    """The C loop of :func:`addmm` on tensors already checked."""
    count, n_in, units = kernels.shape
    native.library().reglab_members_addmm_f32(
        sgemm_address(), count, x.shape[0], n_in, units, x.data_ptr(), kernels.data_ptr(),
        kernels.stride(0), None if biases is None else biases.data_ptr(),
        0 if biases is None else biases.stride(0), int(relu), out.data_ptr())


def kernel_grad(x: torch.Tensor, dy: torch.Tensor, out: torch.Tensor) -> bool:
    """``out[m] = x^T @ dy[m]`` for the k members of a group: ``x`` ``(b, in)``, ``dy``
    ``(k, b, units)``, ``out`` ``(k, in, units)``, all contiguous; torch's ``mm(x.t(),
    dy[m])`` for each. False (nothing written) where the loops do not apply."""
    if not kernel_grad_applies(x, dy, out):
        return False
    run_kernel_grad(x, dy, out)
    torch.autograd.graph.increment_version(out)
    return True


def kernel_grad_applies(x: torch.Tensor, dy: torch.Tensor, out: torch.Tensor) -> bool:
    """Whether :func:`kernel_grad` takes these tensors (``out``: the gradient's block, or a
    contiguous tensor of its shape and dtype that stands for it)."""
    return (x.dim() == 2 and dy.dim() == 3 and out.numel() > 0 and dy.numel() > 0
            and dy.shape[1] == x.shape[0]
            and out.shape == (dy.shape[0], x.shape[1], dy.shape[2])
            and out.shape[1:] != (1, 1)  # as for addmm
            and _fits(out, x, dy) and x.is_contiguous() and dy.is_contiguous()
            and out.is_contiguous() and available())


def run_kernel_grad(x, dy, out) -> None:
    """The C loop of :func:`kernel_grad` on tensors it takes (:func:`kernel_grad_applies`)."""
    count, rows, units = dy.shape
    native.library().reglab_members_kernel_grad_f32(
        sgemm_address(), count, rows, x.shape[1], units, x.data_ptr(), dy.data_ptr(),
        out.data_ptr())


#: (members, batch rows, inputs, units) the first check runs: tile-sized and ragged
_CHECK_SHAPES = ((3, 32, 784, 64), (2, 1, 5, 16), (2, 7, 33, 10), (2, 128, 17, 48),
                 (2, 3, 9, 1), (2, 300, 1, 2))


@functools.cache
def _agrees_with_torch() -> bool:
    """Whether the loops give torch's own ``addmm`` / ``mm`` results bit for bit here (once
    per process; a torch whose float32 products are not its BLAS's sgemm fails it)."""
    g = torch.Generator().manual_seed(0)
    for count, rows, n_in, units in _CHECK_SHAPES:
        x = torch.randn(rows, n_in, generator=g)
        kernels = torch.randn(count, n_in, units, generator=g)
        biases = torch.randn(count, units, generator=g)
        dy = torch.randn(count, rows, units, generator=g)
        out, grad = torch.empty(count, rows, units), torch.empty(count, n_in, units)
        _addmm(x, kernels, biases, out)
        run_kernel_grad(x, dy, grad)
        # torch's calls into the same places of a twin buffer (without MKL_CBWR, MKL's
        # sums may depend on where in memory a block starts)
        out_torch, grad_torch = torch.empty_like(out), torch.empty_like(grad)
        for m in range(count):
            torch.addmm(biases[m], x, kernels[m], out=out_torch[m])
            torch.mm(x.t(), dy[m], out=grad_torch[m])
        if not (torch.equal(out, out_torch) and torch.equal(grad, grad_torch)):
            return False
    return _relu_agrees()


def _relu_agrees() -> bool:
    """Whether the loops' relu keeps torch's bits: NaN of either sign and infinities as
    torch's ``relu`` leaves them, negative values to +0."""
    special = torch.tensor([-0.0, 0.0, float("nan"), -float("nan"), float("inf"),
                            -float("inf"), -1e-45, 1e-45, -3.5, 2.25])
    x, kernels = torch.ones(1, 1), special.view(1, 1, -1)  # one product each: the value
    made, out = torch.empty(1, 1, special.numel()), torch.empty(1, 1, special.numel())
    _addmm(x, kernels, None, made)
    _addmm(x, kernels, None, out, relu=True)
    return bool(torch.equal(out.view(torch.int32), torch.relu(made).view(torch.int32)))
