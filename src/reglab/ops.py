"""Keras 3's ``keras.ops`` for the code users write around a model: custom regularizers,
losses, metrics, constraints and callbacks (``import reglab as keras`` then
``keras.ops.sum(keras.ops.abs(w))``).

Each function takes what Keras's takes (tensors, NumPy arrays and scalars, Python numbers
and lists) and returns a torch tensor, as Keras on its torch backend does, differentiable
where torch is: a custom penalty written with these trains by autograd. Arrays keep their
dtype; Python floats become float32 and Python ints int32 (Keras's ``convert_to_tensor``);
the functions that can only give floats (``mean``, ``sqrt``, ``exp``, ``log``...) compute
an integer input in float32, and integer sums stay int32, as Keras does. The values and
dtypes are Keras's for float32 and integer inputs (tested function by function); some
corners follow torch instead (float64 inputs to a few functions, bool arithmetic).

This is the common subset, not all of ``keras.ops``: a name it lacks raises an
AttributeError that says so.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from reglab import activations
from reglab.utils import tensors

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
           "float64": torch.float64, "int8": torch.int8, "int16": torch.int16,
           "int32": torch.int32, "int64": torch.int64, "uint8": torch.uint8,
           "bool": torch.bool}


def _dtype(dtype: Any) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in _DTYPES:
        raise ValueError(f"ops: unknown dtype {dtype!r}; expected one of {sorted(_DTYPES)}.")
    return _DTYPES[name]


def convert_to_tensor(x: Any, dtype: Any = None) -> torch.Tensor:
    """``x`` as a torch tensor (a tensor as it is; see the module docstring for dtypes)."""
    dtype = _dtype(dtype)
    if isinstance(x, torch.Tensor):
        return x if dtype is None or x.dtype == dtype else x.to(dtype)
    if hasattr(x, "numpy") and not isinstance(x, np.ndarray):  # a Variable or such
        x = x.numpy()
    if isinstance(x, (np.ndarray, np.generic)):
        array = np.asarray(x)
        # (ascontiguousarray makes a 0-d array 1-d: the shape is put back)
        tensor = torch.from_numpy(np.ascontiguousarray(array)).reshape(array.shape) \
            if array.dtype != object else torch.as_tensor(array.tolist())
        return tensor if dtype is None else tensor.to(dtype)
    array = np.asarray(x)
    if dtype is None:  # Python numbers and lists: Keras's float32 and int32
        dtype = {"f": torch.float32, "i": torch.int32, "u": torch.int32,
                 "b": torch.bool}.get(array.dtype.kind)
    return torch.as_tensor(array, dtype=dtype)


def convert_to_numpy(x: Any) -> np.ndarray:
    """``x`` as a NumPy array."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _float(x: Any) -> torch.Tensor:
    """``x`` as a floating tensor: an integer or bool one in float32."""
    x = convert_to_tensor(x)
    return x if x.is_floating_point() else x.to(torch.float32)


def _pair(x1: Any, x2: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Two operands, a Python number taking the other's dtype (Keras's weak types)."""
    if isinstance(x1, (int, float)) and not isinstance(x1, bool) and isinstance(x2, torch.Tensor):
        return torch.as_tensor(x1, dtype=x2.dtype if isinstance(x1, int) or
                               x2.is_floating_point() else torch.float32, device=x2.device), x2
    if isinstance(x2, (int, float)) and not isinstance(x2, bool) and isinstance(x1, torch.Tensor):
        return x1, torch.as_tensor(x2, dtype=x1.dtype if isinstance(x2, int) or
                                   x1.is_floating_point() else torch.float32, device=x1.device)
    return convert_to_tensor(x1), convert_to_tensor(x2)


def _axes(axis: Any) -> Any:
    return tuple(axis) if isinstance(axis, (list, tuple)) else axis


def cast(x: Any, dtype: Any) -> torch.Tensor:
    return convert_to_tensor(x).to(_dtype(dtype))


def shape(x: Any) -> tuple[int, ...]:
    return tuple(convert_to_tensor(x).shape)


def dtype(x: Any) -> str:
    return str(convert_to_tensor(x).dtype).removeprefix("torch.")


# -- reductions ---------------------------------------------------------------------------
def sum(x: Any, axis: Any = None, keepdims: bool = False) -> torch.Tensor:  # noqa: A001
    x = convert_to_tensor(x)
    if axis is None:  # keepdims then has no effect, as in Keras
        total = torch.sum(x)
    else:
        total = torch.sum(x, dim=_axes(axis), keepdim=keepdims)
    # Keras keeps an integer sum in int32 (int64 for int64), bools counted in int32
    narrow = not x.is_floating_point() and x.dtype != torch.int64
    return total.to(torch.int32) if narrow else total


def mean(x: Any, axis: Any = None, keepdims: bool = False) -> torch.Tensor:
    x = _float(x)
    if axis is None:
        value = torch.mean(x)
        return value.reshape([1] * x.dim()) if keepdims else value
    return torch.mean(x, dim=_axes(axis), keepdim=keepdims)


def _extreme(function, x: Any, axis: Any, keepdims: bool) -> torch.Tensor:
    x = convert_to_tensor(x)
    if axis is None:  # keepdims then has no effect, as in Keras
        return function(x)
    return function(x, dim=_axes(axis), keepdim=keepdims)


def max(x: Any, axis: Any = None, keepdims: bool = False) -> torch.Tensor:  # noqa: A001
    return _extreme(torch.amax, x, axis, keepdims)


def min(x: Any, axis: Any = None, keepdims: bool = False) -> torch.Tensor:  # noqa: A001
    return _extreme(torch.amin, x, axis, keepdims)


def prod(x: Any, axis: Any = None, keepdims: bool = False) -> torch.Tensor:
    x = convert_to_tensor(x)
    if axis is None:  # keepdims then has no effect, as in Keras
        return torch.prod(x)
    for a in sorted((_axes(axis) if isinstance(axis, (list, tuple)) else (axis,)),
                    key=lambda a: a % x.dim(), reverse=True):
        x = torch.prod(x, dim=a, keepdim=keepdims)
    return x


def std(x: Any, axis: Any = None, keepdims: bool = False) -> torch.Tensor:
    x = _float(x)
    return torch.std(x, dim=_axes(axis), keepdim=keepdims, correction=0)


def var(x: Any, axis: Any = None, keepdims: bool = False) -> torch.Tensor:
    x = _float(x)
    return torch.var(x, dim=_axes(axis), keepdim=keepdims, correction=0)


def logsumexp(x: Any, axis: Any = None, keepdims: bool = False) -> torch.Tensor:
    x = _float(x)
    dims = tuple(range(x.dim())) if axis is None else _axes(axis)
    return torch.logsumexp(x, dim=dims, keepdim=keepdims)


def argmax(x: Any, axis: int | None = None, keepdims: bool = False) -> torch.Tensor:
    x = convert_to_tensor(x)
    return torch.argmax(x, dim=axis, keepdim=keepdims).to(torch.int32)


def argmin(x: Any, axis: int | None = None, keepdims: bool = False) -> torch.Tensor:
    x = convert_to_tensor(x)
    return torch.argmin(x, dim=axis, keepdim=keepdims).to(torch.int32)


def norm(x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> torch.Tensor:  # noqa: A002
    """``keras.ops.norm``: a vector norm over one axis (or all, flattened), a matrix norm
    over two (Frobenius by default)."""
    x = _float(x)
    if axis is None and ord is None:
        value = torch.linalg.vector_norm(x)
        return value.reshape([1] * x.dim()) if keepdims else value
    if axis is None:
        axis = tuple(range(x.dim()))
    axis = _axes(axis)
    if isinstance(axis, tuple) and len(axis) == 2:
        return torch.linalg.matrix_norm(x, ord="fro" if ord is None else ord, dim=axis,
                                        keepdim=keepdims)
    return torch.linalg.vector_norm(x, ord=2 if ord is None else ord, dim=axis,
                                    keepdim=keepdims)


# -- elementwise --------------------------------------------------------------------------
def _unary(function, floats: bool):
    def op(x: Any) -> torch.Tensor:
        return function(_float(x) if floats else convert_to_tensor(x))
    op.__name__ = op.__qualname__ = function.__name__
    op.__doc__ = f"``keras.ops.{function.__name__}``, elementwise."
    return op


abs = _unary(torch.abs, False)  # noqa: A001
absolute = abs
negative = _unary(torch.neg, False)
sign = _unary(torch.sign, False)
square = _unary(torch.square, False)
sqrt = _unary(torch.sqrt, True)
rsqrt = _unary(torch.rsqrt, True)
exp = _unary(torch.exp, True)
expm1 = _unary(torch.expm1, True)
log = _unary(torch.log, True)
log1p = _unary(torch.log1p, True)
log2 = _unary(torch.log2, True)
log10 = _unary(torch.log10, True)
sin = _unary(torch.sin, True)
cos = _unary(torch.cos, True)
tanh = _unary(torch.tanh, True)
floor = _unary(torch.floor, True)
ceil = _unary(torch.ceil, True)
round = _unary(torch.round, False)  # noqa: A001
isnan = _unary(torch.isnan, False)
isinf = _unary(torch.isinf, False)
isfinite = _unary(torch.isfinite, False)
logical_not = _unary(torch.logical_not, False)
sigmoid = _unary(torch.sigmoid, True)
relu = _unary(torch.relu, False)
softplus = _unary(F.softplus, True)


def _binary(function):
    def op(x1: Any, x2: Any) -> torch.Tensor:
        return function(*_pair(x1, x2))
    op.__name__ = op.__qualname__ = function.__name__
    op.__doc__ = f"``keras.ops.{function.__name__}``, elementwise with broadcasting."
    return op


add = _binary(torch.add)
subtract = _binary(torch.subtract)
multiply = _binary(torch.multiply)
maximum = _binary(torch.maximum)
minimum = _binary(torch.minimum)
power = _binary(torch.pow)
equal = _binary(torch.eq)
not_equal = _binary(torch.ne)
greater = _binary(torch.gt)
greater_equal = _binary(torch.ge)
less = _binary(torch.lt)
less_equal = _binary(torch.le)
logical_and = _binary(torch.logical_and)
logical_or = _binary(torch.logical_or)


def divide(x1: Any, x2: Any) -> torch.Tensor:
    x1, x2 = _pair(x1, x2)
    if not x1.is_floating_point() and not x2.is_floating_point():
        x1 = x1.to(torch.float32)
    return torch.true_divide(x1, x2)


true_divide = divide


def divide_no_nan(x1: Any, x2: Any) -> torch.Tensor:
    """``x1 / x2``, 0 where ``x2`` is 0."""
    x1, x2 = _pair(x1, x2)
    if not x1.is_floating_point() and not x2.is_floating_point():
        x1 = x1.to(torch.float32)
    return tensors.divide_no_nan(x1, x2)


def clip(x: Any, x_min: Any, x_max: Any) -> torch.Tensor:
    x = convert_to_tensor(x)
    return torch.clamp(x, x_min, x_max)


def where(condition: Any, x1: Any = None, x2: Any = None) -> Any:
    condition = convert_to_tensor(condition).to(torch.bool)
    if x1 is None and x2 is None:
        return tuple(torch.where(condition))
    x1, x2 = _pair(x1, x2)
    return torch.where(condition, x1, x2)


# -- shapes -------------------------------------------------------------------------------
def reshape(x: Any, newshape: Any) -> torch.Tensor:
    return convert_to_tensor(x).reshape(newshape if isinstance(newshape, (list, tuple))
                                        else (newshape,))


def transpose(x: Any, axes: Sequence[int] | None = None) -> torch.Tensor:
    x = convert_to_tensor(x)
    return x.permute(*(axes if axes is not None else reversed(range(x.dim()))))


def expand_dims(x: Any, axis: int) -> torch.Tensor:
    return torch.unsqueeze(convert_to_tensor(x), axis)


def squeeze(x: Any, axis: Any = None) -> torch.Tensor:
    x = convert_to_tensor(x)
    if axis is None:
        return torch.squeeze(x)
    for a in sorted(axis if isinstance(axis, (list, tuple)) else [axis],
                    key=lambda a: a % x.dim(), reverse=True):
        if x.shape[a] != 1:
            raise ValueError(f"ops.squeeze: axis {a} has size {x.shape[a]}, expected 1.")
        x = torch.squeeze(x, a)
    return x


def concatenate(xs: Sequence[Any], axis: int = 0) -> torch.Tensor:
    return torch.cat([convert_to_tensor(x) for x in xs], dim=axis)


def stack(x: Sequence[Any], axis: int = 0) -> torch.Tensor:
    return torch.stack([convert_to_tensor(t) for t in x], dim=axis)


def flatten(x: Any) -> torch.Tensor:
    return convert_to_tensor(x).reshape(-1)


def zeros(shape: Any, dtype: Any = None) -> torch.Tensor:
    return torch.zeros(shape, dtype=_dtype(dtype) or torch.float32)


def ones(shape: Any, dtype: Any = None) -> torch.Tensor:
    return torch.ones(shape, dtype=_dtype(dtype) or torch.float32)


def zeros_like(x: Any, dtype: Any = None) -> torch.Tensor:
    return torch.zeros_like(convert_to_tensor(x), dtype=_dtype(dtype))


def ones_like(x: Any, dtype: Any = None) -> torch.Tensor:
    return torch.ones_like(convert_to_tensor(x), dtype=_dtype(dtype))


def eye(N: int, M: int | None = None, k: int = 0, dtype: Any = None) -> torch.Tensor:  # noqa: N803
    M = N if M is None else M  # noqa: N806
    full = torch.zeros(N, M, dtype=_dtype(dtype) or torch.float32)
    full.diagonal(k).fill_(1)
    return full


def arange(start: Any, stop: Any = None, step: Any = 1, dtype: Any = None) -> torch.Tensor:
    if stop is None:
        start, stop = 0, start
    values = np.arange(start, stop, step)
    return convert_to_tensor(values.tolist() if values.size else values, dtype=dtype)


# -- linear algebra and neural-network functions -----------------------------------------
def _promoted(x1: Any, x2: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Two operands of a product in one dtype (torch's products take one): Keras's, the
    narrower float where there is one (float32 with float64 gives float32), else the
    integers' common type."""
    x1, x2 = _pair(x1, x2)
    if x1.dtype != x2.dtype:
        floats = [t.dtype for t in (x1, x2) if t.is_floating_point()]
        common = builtins.min(floats, key=lambda d: torch.finfo(d).bits) if floats else \
            torch.promote_types(x1.dtype, x2.dtype)
        x1, x2 = x1.to(common), x2.to(common)
    return x1, x2


def matmul(x1: Any, x2: Any) -> torch.Tensor:
    return torch.matmul(*_promoted(x1, x2))


def dot(x1: Any, x2: Any) -> torch.Tensor:
    x1, x2 = _promoted(x1, x2)
    if x1.dim() == 0 or x2.dim() == 0:
        return x1 * x2
    return torch.matmul(x1, x2)


def one_hot(x: Any, num_classes: int, axis: int = -1, dtype: Any = None) -> torch.Tensor:
    encoded = F.one_hot(convert_to_tensor(x).long(), num_classes).to(
        _dtype(dtype) or torch.float32)
    return encoded if axis == -1 else torch.movedim(encoded, -1, axis)


def softmax(x: Any, axis: int = -1) -> torch.Tensor:
    x = _float(x)
    return activations.softmax(x) if axis == -1 else torch.softmax(x, dim=axis)


def log_softmax(x: Any, axis: int = -1) -> torch.Tensor:
    return torch.log_softmax(_float(x), dim=axis)


def stop_gradient(x: Any) -> torch.Tensor:
    return convert_to_tensor(x).detach()


def __getattr__(name: str):
    raise AttributeError(f"reglab.ops has no {name!r}: it holds the common part of "
                         "keras.ops (math, reductions, shapes, linear algebra); write the "
                         "rest with torch, whose tensors these functions take and give.")
