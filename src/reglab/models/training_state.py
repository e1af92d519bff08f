"""A model's training state in its file, so that a loaded model trains on as the saved one
would have: the optimizer's per-weight slots (Adam's moments, SGD's momentum...), its
step count (``optimizer.iterations``, which a learning-rate schedule reads), a
``LossScaleOptimizer``'s scale and counter, the moving averages (``use_ema``, SWA), and
the epochs trained, which key the random streams of dropout, noise, augmentation and
shuffling. Keras saves the same: its optimizer's variables and its seed generators' states.

One ``np.savez`` archive (``training_state.npz`` in the model's zip), no pickled objects:
``'<family>:<weight name>'`` for a tensor (``'optimizer/m:0000_dense.kernel'``, the weight
named by :func:`reglab.models.saving.weight_names`) and ``'scalars:<name>'`` for a counter
(``'scalars:steps'``). Since the model's file holds Keras's optimizer variables too
(``model.weights.h5``, :func:`keras_variables`), the archive holds only the entries those do
not (``to_npz(beside_keras=True)``), and :func:`restore` takes the rest from them; a file
written before holds every entry. A file without it (or a model never compiled) loads with
a fresh state.
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


def to_npz(model, beside_keras: bool = False) -> bytes | None:
    """The member's training state as ``.npz`` bytes; None for a model never compiled.
    ``beside_keras``: only the entries that Keras's optimizer variables (written beside it,
    :func:`keras_variables`) do not hold."""
    if model.optimizer is None or model._population is None:
        return None
    entries = _entries(model)
    if beside_keras:
        held = set(_keras_entries(model))
        entries = {name: value for name, value in entries.items() if name not in held}
    buffer = io.BytesIO()
    np.savez(buffer, **entries)
    return buffer.getvalue()


def _keras_entries(model) -> dict[str, int]:
    """The entries Keras's optimizer variables hold -> their positions in Keras's order."""
    names = _names(model)
    out = {}
    for i, entry in enumerate(keras_layout(model)):
        if entry[0] == "slot":
            out[f"{entry[1]}:{names[entry[2]]}"] = i
        elif entry[0] in ("steps", "scalar"):
            out[f"{_SCALAR}:{'steps' if entry[0] == 'steps' else entry[1]}"] = i
    return out


def restore(model, raw: bytes, where: str, keras_arrays: list[np.ndarray] | None = None,
            keras_where: str = "") -> None:
    """Puts the state read from ``raw`` into the loaded (compiled) ``model``: every entry the
    model's optimizer keeps, and nothing else, each checked (a slot finite, of its weight's
    shape; a counter in range) before anything changes; a DataError naming ``where`` (or
    ``keras_where`` and the variable) and the entry otherwise. ``keras_arrays``: Keras's
    optimizer variables, which hold the entries ``to_npz(beside_keras=True)`` left out."""
    from reglab.models.saving import npz_arrays

    arrays = npz_arrays(raw, where)
    if model.optimizer is None or model._population is None:  # never compiled
        if arrays:
            raise DataError(f"{where}: the file holds a training state but no compile "
                            "settings to train with.")
        return
    expected = _entries(model)
    places: dict[str, str] = {}  # an entry read from Keras's variables -> where it was
    if keras_arrays is not None:
        held = _keras_entries(model)
        layout_size = len(keras_layout(model))
        if len(keras_arrays) != layout_size:
            raise DataError(f"{keras_where}: expected the {layout_size} optimizer variables "
                            f"of the model's {type(model.optimizer).__name__} (optimizer/vars/"
                            f"0, 1, ...). Got {len(keras_arrays)}.")
        places = {entry: f"{keras_where}: optimizer/vars/{i}" for entry, i in held.items()}
        expected_here = {k: v for k, v in expected.items() if k not in held}
    else:
        expected_here = expected
    if sorted(arrays) != sorted(expected_here):
        missing = sorted(set(expected_here) - set(arrays))
        extra = sorted(set(arrays) - set(expected_here))
        raise DataError(f"{where}: expected the {len(expected_here)} entries of the model's "
                        f"{type(model.optimizer).__name__} ('<state>:<weight>' for each slot "
                        f"of a trainable weight, '{_SCALAR}:<counter>'"
                        + (", beside Keras's optimizer variables" if places else "")
                        + f"). Got {len(arrays)} (missing: {', '.join(missing) or 'none'}; "
                        f"unexpected: {', '.join(extra) or 'none'}).")
    if places:
        arrays.update({entry: keras_arrays[held[entry]] for entry in places})
    keys = {name: key for key, name in _names(model).items()}
    tensors: dict[str, dict] = {}
    scalars: dict[str, int | float] = {}
    for entry, array in arrays.items():
        place = places.get(entry, where)
        family, _, name = entry.partition(":")  # a weight's name may hold ':', a state's not
        if family == _SCALAR:
            scalars[name] = _counter(place, entry, name, array)
            continue
        reference = expected[entry]
        if array.dtype.kind != "f" or array.shape != reference.shape:
            raise DataError(f"{place}: expected {entry!r} to be a float array of shape "
                            f"{reference.shape}. Got {array.dtype} of shape {array.shape}.")
        values = np.asarray(array, dtype=np.float64)  # any byte order, exactly
        if not np.isfinite(values).all():
            raise DataError(f"{place}: expected {entry!r} to be finite. Got "
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
    wrapped = isinstance(optimizer, LossScaleOptimizer)
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
            # Keras 3.15 tracks such a variable (Nadam's product) only outside a
            # LossScaleOptimizer: its variables list leaves it out when wrapped
            if not wrapped:
                layout.append(("computed", run))
        else:  # each weight's slots side by side (those Keras's optimizer lists)
            shapes = model._population.state.members.tensors["weights"]
            layout += [("slot", f"optimizer/{slot}", key) for key in keys for slot in run
                       if optimizer.keras_tracks(slot, tuple(shapes[key].shape[1:]), wrapped)]
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


def trained(model, arrays: list[np.ndarray]) -> bool:
    """Whether Keras's optimizer variables ``arrays`` (as :func:`keras_variables` wrote them
    for ``model``) count steps taken."""
    if model.optimizer is None or model._population is None:
        return False
    layout = keras_layout(model)
    if len(arrays) != len(layout):
        return len(arrays) > len(unbuilt_keras_variables(model.optimizer))
    steps = arrays[layout.index(("steps",))]
    return steps.shape == () and steps.dtype.kind in "iuf" and bool(steps != 0)


def unbuilt_keras_variables(optimizer) -> list[np.ndarray]:
    """The variables of Keras's optimizer before it is built: ``iterations`` and the learning
    rate (none under a schedule; none of its own for a LossScaleOptimizer here)."""
    if getattr(optimizer, "inner_optimizer", None) is not None:
        return []
    values = [np.asarray(0, dtype=np.int64)]
    if optimizer.schedule is None:
        values.append(np.asarray(optimizer.learning_rate, dtype=np.float32))
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
