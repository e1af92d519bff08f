"""Checking training data at the edge, and cutting it into per-seed batches.

Members that share a seed see the same batches. A batch is gathered once per
distinct seed, ``(S, b, ...)``, augmented once per seed, then handed to the
layers either shared by all members (one seed) or per member ``(P, b, ...)``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from reglab.errors import ConfigError, DataError
from reglab.utils.tensors import sum_is_finite


@dataclass
class Data:
    x: torch.Tensor
    y: torch.Tensor | None
    sample_weight: torch.Tensor | None
    #: ``y`` holds one row of targets per member id (:class:`PerMember`), not one for all
    per_member: bool = False


@dataclass(frozen=True)
class PerMember:
    """Targets that differ by member, for members that see the same inputs: one row per
    member, in member-id order (``(members, N, ...)``), e.g. a study's label-noise regimes
    of one training subset. ``Population.fit(x, PerMember(y_rows))`` trains each member on
    its own row, exactly as it would train alone on ``(x, y_rows[m])``."""

    values: Any


def check_count(where: str, name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{where}: '{name}' must be an int >= {minimum}. Got {value!r}.")
    return int(value)



def check_batch_sizes(where: str, batch_sizes, samples: int) -> tuple[int, ...]:
    """An epoch's batch sizes in order (a Python generator's batches as they came): ints
    >= 1 that add up to the ``samples`` trained."""
    if isinstance(batch_sizes, (str, bytes)) or not hasattr(batch_sizes, "__iter__"):
        raise ConfigError(f"{where}: 'batch_sizes' must be a sequence of ints >= 1. Got "
                          f"{batch_sizes!r}.")
    sizes = tuple(check_count(where, "batch_sizes", size) for size in batch_sizes)
    if sum(sizes) != samples:
        raise ConfigError(f"{where}: 'batch_sizes' must add up to the {samples} samples of x. "
                          f"Got {len(sizes)} sizes adding up to {sum(sizes)}.")
    return sizes


def batch_bounds(samples: int, batch_size: int,
                 batch_sizes: tuple[int, ...] | None = None) -> list[tuple[int, int]]:
    """``(start, stop)`` of each batch of an epoch over ``samples`` positions: batches of
    ``batch_size`` (the last one shorter), or of the given ``batch_sizes`` in turn."""
    if batch_sizes is None:
        return [(lo, min(lo + batch_size, samples)) for lo in range(0, samples, batch_size)]
    bounds, lo = [], 0
    for size in batch_sizes:
        bounds.append((lo, lo + size))
        lo += size
    return bounds


# numpy kinds taken as numbers, as Keras takes them: bool, signed int, unsigned int, float.
_NUMERIC_KINDS = "biuf"


def _received(value, array=None) -> str:
    """How an argument's value is named in an error: its type, and numpy's dtype of it."""
    if isinstance(value, np.ndarray):
        return f"a numpy array of dtype {value.dtype} and shape {value.shape}"
    if isinstance(value, torch.Tensor):
        return f"a torch tensor of dtype {value.dtype} and shape {tuple(value.shape)}"
    if array is None:
        return f"a {type(value).__name__}"
    return f"a {type(value).__name__} that numpy reads as dtype {array.dtype}"


def as_array(where: str, name: str, value):
    """``value`` checked as numeric data with a sample axis: a torch tensor stays a tensor
    (detached), anything else becomes a numpy array (not copied when it already is one).

    Accepts what Keras accepts: numpy arrays of any layout (views, negative strides,
    Fortran order, memory maps) and of bool, int, uint or float dtype, nested lists of
    numbers, objects with ``__array__``, and torch tensors of any real dtype and device.
    Raises :class:`DataError` naming ``name`` for anything else.
    """
    expected = (f"{where}: '{name}' must be an array of numbers (bool, int or float): a numpy "
                "array, a torch tensor or a nested list of equal-length lists")
    if isinstance(value, torch.Tensor):
        if value.is_complex() or value.is_quantized or value.layout != torch.strided:
            raise DataError(f"{expected}. Got {_received(value)}.")
        if value.dim() == 0:
            raise DataError(f"{where}: '{name}' must have a leading sample axis. Got a scalar "
                            "tensor.")
        return value.detach()
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as error:  # ragged nested lists, unconvertible objects
        detail = ("nested sequences of different lengths" if "inhomogeneous" in str(error)
                  else str(error))
        raise DataError(f"{expected}. Got {_received(value)} that is not one rectangular "
                        f"array ({detail}).") from None
    if array.dtype.kind not in _NUMERIC_KINDS:
        raise DataError(f"{expected}. Got {_received(value, array)}.")
    if array.ndim == 0:
        raise DataError(f"{where}: '{name}' must have a leading sample axis. Got the scalar "
                        f"{array.item()!r}.")
    return array


# torch dtypes numpy has, and what the others become when a tensor goes to numpy
_NUMPY_HAS = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
              torch.float16, torch.float32, torch.float64)
_NUMPY_DTYPE = {torch.float32: np.float32, torch.float64: np.float64, torch.int64: np.int64}


def as_numpy(where: str, name: str, value) -> np.ndarray:
    """:func:`as_array` as a numpy array: a tensor comes to the CPU, and a dtype numpy lacks
    (bfloat16, uint16/32/64) becomes float32 or int64."""
    value = as_array(where, name, value)
    if isinstance(value, torch.Tensor):
        value = value.cpu().resolve_conj().resolve_neg()
        if value.dtype not in _NUMPY_HAS:
            value = value.float() if value.is_floating_point() else value.long()
        value = value.numpy()
    return value


def _as_tensor(where, name, value, dtype, device):
    """``value`` as a contiguous tensor of ``dtype`` on ``device``.

    A C-contiguous numpy array of ``dtype`` is shared, not copied (also a read-only one,
    such as a ``np.load(..., mmap_mode='r')`` map: the engine never writes into its data);
    any other layout or dtype is copied once, cast by numpy. The user's array is never
    changed.
    """
    value = as_array(where, name, value)
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=dtype).contiguous()
    with np.errstate(over="ignore", invalid="ignore"):  # past float32: inf, named next
        array = np.ascontiguousarray(value, dtype=_NUMPY_DTYPE[dtype])
    if array.flags.writeable:
        tensor = torch.from_numpy(array)
    else:
        with warnings.catch_warnings():  # torch warns that writing would be undefined; we don't
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            tensor = torch.from_numpy(array)
    return tensor.to(device=device)


def _check_finite(where, name, tensor):
    if tensor.is_floating_point() and tensor.numel():
        if sum_is_finite(tensor):  # one pass, ~40x faster over a large data set
            return
        bad = ~torch.isfinite(tensor.reshape(tensor.shape[0], -1)).all(dim=1)
        if bool(bad.any()):
            first = int(bad.nonzero()[0, 0])
            largest = torch.finfo(tensor.dtype).max  # a larger finite value overflows to inf
            kind = str(tensor.dtype).removeprefix("torch.")
            raise DataError(f"{where}: '{name}' must hold finite numbers. Got NaN, infinite "
                            f"values or values beyond {kind}'s range (±{largest:.3g}) in "
                            f"{int(bad.sum())} samples, the first at index {first}.")


def keras_rank(x, expected: tuple[int, ...]):
    """``x`` (an array or tensor, samples first) with Keras's rank adjustment to samples of
    ``expected`` shape: a last axis of 1 is dropped when the model does not have it, or
    added when the model ends with one and ``x`` lacks it (``(N,)`` for ``Input((1,))``,
    ``(N, 28, 28)`` for ``Input((28, 28, 1))``), as Keras's functional models adjust their
    inputs; ``x`` itself otherwise."""
    shape = tuple(x.shape[1:])
    if shape == (*expected, 1) or (expected[-1:] == (1,) and shape == expected[:-1]):
        return x.reshape(x.shape[0], *expected)
    return x


def prepare(population, x, y, sample_weight, where: str) -> Data:
    """Converts and checks ``x``/``y`` against the population's input and loss; ``y`` may be
    :class:`PerMember` targets."""
    plan = population.plan
    x_t = _as_tensor(where, "x", x, population.dtype, population.device)
    if x_t.shape[0] == 0:
        raise DataError(f"{where}: 'x' must hold at least one sample. Got shape "
                        f"{tuple(x_t.shape)}.")
    expected = tuple(plan.input_shape)
    x_t = keras_rank(x_t, expected)
    if tuple(x_t.shape[1:]) != expected:
        hint = ""
        if len(expected) == 3 and x_t.dim() == 2 and x_t.shape[1] == int(np.prod(expected)):
            hint = (f" Reshape the images with x.reshape(-1, {', '.join(map(str, expected))}), "
                    f"or declare input_shape=({x_t.shape[1]},) on a model without Conv2D.")
        elif len(expected) == 1 and x_t.dim() > 2 and int(np.prod(x_t.shape[1:])) == expected[0]:
            hint = (f" Flatten the samples with x.reshape(len(x), {expected[0]}), or start the "
                    "model with a Flatten layer.")
        raise DataError(f"{where}: the first layer expects samples of shape {expected}. "
                        f"Got x with shape {tuple(x_t.shape)} (samples of shape "
                        f"{tuple(x_t.shape[1:])}).{hint}")
    if y is not None:  # training or evaluating (a prediction of NaN inputs is theirs to make)
        _check_finite(where, "x", x_t)
    y_t, per_member = None, isinstance(y, PerMember)
    if per_member:
        rows = as_array(where, "y", y.values)
        members = len(plan.seeds)
        if rows.shape[0] != members:
            raise DataError(f"{where}: per-member targets need one row per member ({members}). "
                            f"Got {rows.shape[0]}.")
        y_t = torch.stack([_targets(population, where, f"y[{m}]", rows[m], x_t.shape[0])
                           for m in range(members)])
    elif y is not None:
        y_t = _targets(population, where, "y", y, x_t.shape[0])
    w_t = None
    if sample_weight is not None:
        w_t = _as_tensor(where, "sample_weight", sample_weight, population.dtype,
                         population.device)
        if tuple(w_t.shape) == (x_t.shape[0], 1):  # a column of weights, as Keras takes it
            w_t = w_t.reshape(-1)
        if tuple(w_t.shape) != (x_t.shape[0],):
            raise DataError(f"{where}: 'sample_weight' must have shape ({x_t.shape[0]},) "
                            f"(or ({x_t.shape[0]}, 1)). Got {tuple(w_t.shape)}.")
        _check_finite(where, "sample_weight", w_t)
    return Data(x_t, y_t, w_t, per_member)


def _targets(population, where: str, name: str, y, samples: int) -> torch.Tensor:
    """``y`` as the engine's targets for the population's loss, checked against it."""
    plan, loss = population.plan, population.loss
    y_arr = as_array(where, name, y)
    if loss.target_kind == "sparse" and isinstance(y_arr, np.ndarray) \
            and y_arr.dtype.kind == "f":  # before a cast to float32 could round them whole
        _check_whole(where, loss, name, y_arr)
    # Integer labels stay integers (int64), as Keras keeps them; bool and float targets
    # take the model's dtype.
    integer = (y_arr.dtype != torch.bool and not y_arr.is_floating_point()) \
        if isinstance(y_arr, torch.Tensor) else y_arr.dtype.kind in "iu"
    if isinstance(y_arr, np.ndarray) and y_arr.dtype.kind == "u" and y_arr.size \
            and int(y_arr.max()) > np.iinfo(np.int64).max:  # before the cast wraps them
        raise DataError(f"{where}: '{name}' must hold values that fit a 64-bit signed integer "
                        f"(labels). Got values up to {int(y_arr.max())} ({y_arr.dtype}).")
    y_t = _as_tensor(where, name, y_arr, torch.long if integer else population.dtype,
                     population.device)
    _check_finite(where, name, y_t)
    if y_t.shape[0] != samples:
        raise DataError(f"{where}: x and {name} must have the same number of samples. Got "
                        f"{samples} and {y_t.shape[0]}.")
    _check_labels(where, loss, y_t, plan.output_shape)
    return _canonical_targets(where, loss, y_t, plan.output_shape)


def _check_whole(where, loss, name, y: np.ndarray) -> None:
    """Float class labels must be whole numbers (checked in their own precision)."""
    flat = y.reshape(-1)
    if not np.isfinite(flat).all():
        return  # named by the finiteness check that follows
    fractional = np.flatnonzero(flat != np.round(flat))
    if fractional.size:
        i = int(fractional[0])
        raise DataError(f"{where}: the loss '{loss.name}' expects integer class labels. Got "
                        f"{fractional.size} that are not whole numbers in {name}, the first "
                        f"at sample {i}: {flat[i]!r}.")


def _check_labels(where, loss, y, output_shape):
    classes = output_shape[-1]
    kind = loss.target_kind
    if kind == "packed":  # several outputs' targets, checked per output by the model
        return
    if len(output_shape) > 1 and (kind == "sparse" or (
            kind == "categorical" and tuple(y.shape[1:]) != tuple(output_shape))):
        # (a Dense on samples of several axes acts on the last one: (28, 28) -> (28, units))
        raise DataError(
            f"{where}: the loss '{loss.name}' expects one vector of class scores per sample; "
            f"the model's output per sample has shape {tuple(output_shape)} (a Dense on "
            "samples of several axes acts on their last one). Flatten the samples before the "
            "last Dense (a Flatten layer); labels per position (Keras's sequence tagging) "
            "are not supported.")
    if kind == "sparse":
        if y.is_floating_point() and y.dim() == 2 and y.shape[1] == classes and classes > 1:
            raise DataError(
                f"{where}: the loss '{loss.name}' expects integer class labels of shape (N,). "
                f"Got one-hot labels of shape {tuple(y.shape)}. Use "
                "loss='categorical_crossentropy' for one-hot labels, or pass y.argmax(axis=1).")
        flat = y.reshape(y.shape[0], -1)
        if flat.shape[1] != 1 or (y.is_floating_point() and not bool((y == y.round()).all())):
            raise DataError(f"{where}: the loss '{loss.name}' expects integer class labels of "
                            f"shape (N,). Got labels of shape {tuple(y.shape)}.")
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= classes:
            raise DataError(f"{where}: labels must lie in [0, {classes - 1}] for the last "
                            f"layer's {classes} units. Got labels from {lo} to {hi}.")
    elif kind == "binary" and y.numel() and y.dtype != torch.bool:
        lo, hi = float(y.min()), float(y.max())
        if lo < 0 or hi > 1:  # torch's loss refuses them mid-training; say so up front
            raise DataError(f"{where}: the loss '{loss.name}' expects targets in [0, 1] (the "
                            f"probability of the positive class). Got targets from {lo:g} to "
                            f"{hi:g}.")
    elif kind == "categorical":
        if y.dim() == 1 or (y.dim() == 2 and y.shape[1] == 1 and classes > 1):
            raise DataError(
                f"{where}: the loss '{loss.name}' expects one-hot labels of shape (N, {classes}). "
                f"Got integer labels of shape {tuple(y.shape)}. Use "
                "loss='sparse_categorical_crossentropy', or convert them with "
                f"reglab.utils.to_categorical(y, {classes}).")
        if y.shape[-1] != classes:
            raise DataError(f"{where}: one-hot labels must have {classes} columns to match the "
                            f"last layer. Got shape {tuple(y.shape)}.")


def _canonical_targets(where, loss, y, output_shape):
    """One layout per loss kind: integer labels ``(N,)`` for the sparse loss, otherwise
    ``(N, *output_shape)``; the engine then adds a member axis, so losses and metrics
    always see targets and predictions of equal rank."""
    if loss.target_kind == "packed":
        return y
    if loss.target_kind == "sparse":
        return y.reshape(-1).long()
    if y.dim() == len(output_shape) and output_shape[-1] == 1:
        y = y.unsqueeze(-1)  # (N,) targets for a one-unit output
    if loss.target_kind == "as_given":  # a user's loss function: the targets as Keras gives
        return y
    if tuple(y.shape[1:]) != tuple(output_shape):
        raise DataError(f"{where}: targets must have shape (N, {', '.join(map(str, output_shape))}) "
                        f"to match the model's output. Got {tuple(y.shape)}.")
    return y


def member_targets(y: torch.Tensor, member_ids: torch.Tensor,
                   rows: torch.Tensor) -> torch.Tensor:
    """``(P, b, ...)``: member ``p``'s own targets (row ``member_ids[p]`` of the per-member
    ``y``) at the samples ``rows[p]`` (``rows``: ``(P, b)``, or ``(1, b)`` shared)."""
    rows = rows.expand(member_ids.shape[0], -1) if rows.shape[0] == 1 else rows
    return y[member_ids.unsqueeze(1), rows]  # only the batch's entries, not whole rows


def batch(population, data: Data, index: torch.Tensor, layout, augment):
    """Gathers one batch per group, augments it per group, and lays it out for the members.

    ``index`` is ``(G, b)``, one row per group in ``layout.groups``. Returns
    ``(x, y, sample_weight, groups)``: x is ``(b, ...)`` when one seed is left (shared by
    every member), else grouped ``(G, b, ...)`` with ``groups`` (the layout's
    :class:`MemberGroups`) saying which members see which row, or ``(P, b, ...)`` per
    member when batch transforms (mixup, cutmix) make each member's batch its own; y and
    sample_weight always carry a member axis, of size 1 when shared.
    """
    from reglab.engine.augmentation import augment_batch, augments

    transforms = population.plan.batch_transforms
    if index.shape[0] == 1 and layout.member_rows is None and not transforms \
            and not data.per_member and not augments(population, augment):
        # one seed, nothing added to the batch: its rows, x shared by all members, y with
        # a member axis (the general path below, without its views)
        rows = index[0]
        return (data.x.index_select(0, rows), data.y.index_select(0, rows).unsqueeze(0),
                None if data.sample_weight is None
                else data.sample_weight.index_select(0, rows).unsqueeze(0), None)
    flat = index.reshape(-1)
    xb = data.x.index_select(0, flat).view(*index.shape, *data.x.shape[1:])  # (G, b, ...)
    if data.per_member:  # each member's own targets at its group's samples: (P, b, ...)
        yb = member_targets(data.y, layout.member_ids,
                            index if layout.member_rows is None
                            else index.index_select(0, layout.member_rows))
    else:
        yb = data.y.index_select(0, flat).view(*index.shape, *data.y.shape[1:])
    wb = None if data.sample_weight is None else data.sample_weight.index_select(0, flat).view(
        index.shape)
    xb = augment_batch(population, xb, layout.groups, augment)
    if layout.member_rows is None and not transforms:
        # one seed: x shared by all members, y with a member axis
        return xb[0], yb if data.per_member else yb[:1], None if wb is None else wb[:1], None

    def pick(t):
        if t is None:
            return None
        if layout.member_rows is None:
            return t.expand(population.state.size, *t.shape[1:])
        return t.index_select(0, layout.member_rows)

    y_members = yb if data.per_member else pick(yb)
    if not transforms:
        return xb, y_members, pick(wb), layout.member_groups
    from reglab.engine.batch_transforms import transform_members

    x_members, y_members = transform_members(population, transforms, pick(xb), y_members)
    return x_members, y_members, pick(wb), None
