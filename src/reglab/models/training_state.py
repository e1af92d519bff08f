"""A model's training state in its file, so that a loaded model trains on as the saved one
would have: the optimizer's per-weight slots (Adam's moments, SGD's momentum...), its
step count (``optimizer.iterations``, which a learning-rate schedule reads), a
``LossScaleOptimizer``'s scale and counter, the moving averages (``use_ema``, SWA), and
the epochs trained, which key the random streams of dropout, noise, augmentation and
shuffling. Keras saves the same: its optimizer's variables and its seed generators' states.

One ``np.savez`` archive (``training_state.npz`` in the model's zip), no pickled objects:
``'<family>:<weight name>'`` for a tensor (``'optimizer/m:0000_dense.kernel'``, the weight
named as in ``weights.npz``) and ``'scalars:<name>'`` for a counter (``'scalars:steps'``).
A file without it (written before, or by a model never compiled) loads with a fresh state.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch

from reglab.errors import DataError

MEMBER = "training_state.npz"
_SCALAR = "scalars"
#: the counters a file may set, and what each must be
_COUNTERS = {"steps": "count", "epochs": "count", "swa_count": "count",
             "loss_scale_counter": "count", "loss_scale": "scale"}


def _names(model) -> dict:
    """The population's weight keys -> the weight names of ``weights.npz``."""
    from reglab.models.saving import weight_names

    return {model._engine_key(key): name
            for key, name in zip(model._weight_keys(), weight_names(model))}


def _entries(model) -> dict[str, np.ndarray]:
    """The member's training state as the file's entries, by entry name."""
    row = model._population.member_training_state(0)
    names = _names(model)
    arrays = {f"{family}:{names[key]}": tensor.cpu().numpy()
              for family, keyed in row["tensors"].items() for key, tensor in keyed.items()}
    arrays.update({f"{_SCALAR}:{name}": np.asarray(value)
                   for name, value in row["scalars"].items() if name in _COUNTERS})
    return arrays


def to_npz(model) -> bytes | None:
    """The member's training state as ``.npz`` bytes; None for a model never compiled."""
    if model.optimizer is None or model._population is None:
        return None
    buffer = io.BytesIO()
    np.savez(buffer, **_entries(model))
    return buffer.getvalue()


def restore(model, raw: bytes, where: str) -> None:
    """Puts the state read from ``raw`` into the loaded (compiled) ``model``: every entry the
    model's optimizer keeps, and nothing else, each checked (a slot finite, of its weight's
    shape; a counter in range) before anything changes; a DataError naming ``where`` and the
    entry otherwise."""
    from reglab.models.saving import npz_arrays

    arrays = npz_arrays(raw, where)
    if model.optimizer is None or model._population is None:  # never compiled
        if arrays:
            raise DataError(f"{where}: the file holds a training state but no compile "
                            "settings to train with.")
        return
    expected = _entries(model)
    if sorted(arrays) != sorted(expected):
        missing = sorted(set(expected) - set(arrays))
        extra = sorted(set(arrays) - set(expected))
        raise DataError(f"{where}: expected the {len(expected)} entries of the model's "
                        f"{type(model.optimizer).__name__} ('<state>:<weight>' for each slot "
                        f"of a trainable weight, '{_SCALAR}:<counter>'). Got {len(arrays)} "
                        f"(missing: {', '.join(missing) or 'none'}; unexpected: "
                        f"{', '.join(extra) or 'none'}).")
    keys = {name: key for key, name in _names(model).items()}
    tensors: dict[str, dict] = {}
    scalars: dict[str, int | float] = {}
    for entry, array in arrays.items():
        family, _, name = entry.partition(":")  # a weight's name may hold ':', a state's not
        if family == _SCALAR:
            scalars[name] = _counter(where, entry, name, array)
            continue
        reference = expected[entry]
        if array.dtype.kind != "f" or array.shape != reference.shape:
            raise DataError(f"{where}: expected {entry!r} to be a float array of shape "
                            f"{reference.shape}. Got {array.dtype} of shape {array.shape}.")
        values = np.asarray(array, dtype=np.float64)  # any byte order, exactly
        if not np.isfinite(values).all():
            raise DataError(f"{where}: expected {entry!r} to be finite. Got "
                            f"{int((~np.isfinite(values)).sum())} values that are not.")
        tensors.setdefault(family, {})[keys[name]] = torch.from_numpy(values)
    model._population.set_member_training_state(0, {"tensors": tensors, "scalars": scalars})


_LARGEST_COUNT = int(np.iinfo(np.int64).max)  # Keras's iterations are an int64
_LARGEST_SCALE = float(np.finfo(np.float32).max)  # the scale multiplies float32 losses
_SMALLEST_SCALE = float(np.finfo(np.float32).tiny)


def _counter(where: str, entry: str, name: str, array: np.ndarray) -> int | float:
    kind = _COUNTERS.get(name)
    value = array.item() if array.shape == () and array.dtype.kind in "iuf" else None
    finite = isinstance(value, (int, float)) and math.isfinite(value)
    if kind == "count" and finite and value == int(value) and 0 <= value <= _LARGEST_COUNT:
        return int(value)
    if kind == "scale" and finite and _SMALLEST_SCALE <= value <= _LARGEST_SCALE:
        return float(value)
    expected = ("a count (an integer from 0 to 2**63 - 1)" if kind == "count" else
                "a scale within float32's normal range (> 0, finite)" if kind == "scale" else
                f"a known counter ({', '.join(_COUNTERS)})")
    raise DataError(f"{where}: expected {entry!r} to be {expected}. Got {array!r}.")


# -- Keras's layout: the optimizer's variables in a .weights.h5 file ------------------------
#: a LossScaleOptimizer's own variables ahead of its inner optimizer's: iterations, learning
#: rate (both unused), step counter, dynamic scale
LOSS_SCALE_VARIABLES = 4

def keras_layout(model) -> list[tuple]:
    """What reglab holds at each of Keras's optimizer variables, in Keras's order:
    ``("steps",)`` (``iterations``), ``("learning_rate",)`` (absent under a schedule),
    ``("slot", family, key)``, ``("scalar", name)`` (a loss scale's counter and scale),
    ``("computed", name)`` (a variable reglab derives from the step count: Nadam's product)
    and ``("fixed", value)`` (a LossScaleOptimizer's own unused iterations and rate)."""
    from reglab.engine.loss_scale import COUNTER, SCALE
    from reglab.optimizers import LossScaleOptimizer

    optimizer = model.optimizer
    trainable = model._population.state.members.trainable
    keys = [key for key in (model._engine_key(k) for k in model._weight_keys())
            if key in trainable]
    layout: list[tuple] = []
    if isinstance(optimizer, LossScaleOptimizer):  # LOSS_SCALE_VARIABLES of its own first
        layout += [("fixed", 0), ("fixed", 0.0), ("scalar", COUNTER), ("scalar", SCALE)]
        optimizer = optimizer.inner_optimizer
    layout.append(("steps",))
    if optimizer.schedule is None:
        layout.append(("learning_rate",))
    if optimizer.use_ema:  # Keras's base optimizer makes its averages first
        layout += [("slot", "ema", key) for key in keys]
    for run in optimizer.keras_slots():
        if isinstance(run, str):
            layout.append(("computed", run))
        else:  # each weight's slots side by side
            layout += [("slot", f"optimizer/{slot}", key) for key in keys for slot in run]
    return layout


def keras_variables(model) -> list[np.ndarray]:
    """The optimizer's variables as Keras saves them (``optimizer/vars/0, 1, ...``)."""
    row = model._population.member_training_state(0)
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    steps = row["scalars"]["steps"]
    values = []
    for entry in keras_layout(model):
        kind = entry[0]
        if kind == "steps":
            values.append(np.asarray(steps, dtype=np.int64))
        elif kind == "learning_rate":
            values.append(np.asarray(optimizer.learning_rate, dtype=np.float32))
        elif kind == "slot":
            values.append(row["tensors"][entry[1]][entry[2]].cpu().numpy())
        elif kind == "scalar":
            values.append(np.asarray(row["scalars"][entry[1]]))
        elif kind == "computed":
            values.append(np.asarray(optimizer.computed_variable(entry[1], steps),
                                     dtype=np.float32))
        else:
            values.append(np.asarray(entry[1]))
    return values


def restore_keras(model, arrays: list[np.ndarray], where: str) -> str | None:
    """Puts Keras's optimizer variables into the model's state; the reason (for a warning,
    as Keras gives) when they do not fit the optimizer, with nothing changed."""
    layout = keras_layout(model)
    if len(arrays) != len(layout):
        return (f"{where}: the optimizer's state has {len(arrays)} variables where the "
                f"model's {type(model.optimizer).__name__} has {len(layout)}")
    have = model._population.member_training_state(0)
    tensors: dict[str, dict] = {}
    scalars: dict[str, int | float] = {}
    learning_rate = None
    for i, (entry, array) in enumerate(zip(layout, arrays)):
        kind = entry[0]
        shape = tuple(have["tensors"][entry[1]][entry[2]].shape) if kind == "slot" else ()
        if array.shape != shape or array.dtype.kind not in "iuf":
            return (f"{where}: optimizer/vars/{i} should be a number array of shape {shape}. "
                    f"Got {array.dtype} of shape {array.shape}")
        values = np.asarray(array, dtype=np.float64)  # any byte order, exactly
        if not np.isfinite(values).all() or (kind == "learning_rate" and values <= 0):
            return (f"{where}: optimizer/vars/{i} should be "
                    f"{'a rate > 0' if kind == 'learning_rate' else 'finite'}. Got {array!r}")
        if kind == "slot":
            tensors.setdefault(entry[1], {})[entry[2]] = torch.from_numpy(values)
        elif kind == "learning_rate":  # Keras assigns it too (a rate a callback had set)
            learning_rate = float(values)
        elif kind in ("steps", "scalar"):
            name = "steps" if kind == "steps" else entry[1]
            try:
                scalars[name] = _counter(where, f"optimizer/vars/{i}", name, array)
            except DataError as error:
                return str(error)
    model._population.set_member_training_state(0, {"tensors": tensors, "scalars": scalars})
    # Keras holds the rate in float32: the same rate unless it differs there
    if learning_rate is not None and \
            np.float32(model.optimizer.learning_rate) != np.float32(learning_rate):
        model.optimizer.learning_rate = learning_rate
    return None
