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
import zipfile

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


def to_npz(model) -> bytes | None:
    """The member's training state as ``.npz`` bytes; None for a model never compiled."""
    if model.optimizer is None or model._population is None:
        return None
    row = model._population.member_training_state(0)
    names = _names(model)
    arrays = {f"{family}:{names[key]}": tensor.cpu().numpy()
              for family, keyed in row["tensors"].items() for key, tensor in keyed.items()}
    arrays.update({f"{_SCALAR}:{name}": np.asarray(value)
                   for name, value in row["scalars"].items() if name in _COUNTERS})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def restore(model, raw: bytes, where: str) -> None:
    """Puts the state read from ``raw`` into the loaded (compiled) ``model``; a DataError
    naming ``where`` and the entry when an entry is unreadable, unknown or of the wrong
    shape, with nothing changed."""
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"{where}: expected arrays written by np.savez (no pickled objects). "
                        f"Got content that cannot be read as them ({error}).") from error
    if model.optimizer is None or model._population is None:  # never compiled
        if arrays:
            raise DataError(f"{where}: the file holds a training state but no compile "
                            "settings to train with.")
        return
    keys = {name: key for key, name in _names(model).items()}
    tensors: dict[str, dict] = {}
    scalars: dict[str, int | float] = {}
    for entry, array in arrays.items():
        family, _, name = entry.rpartition(":")
        if family == _SCALAR:
            scalars[name] = _counter(where, entry, name, array)
        elif family and name in keys and array.dtype.kind == "f":
            tensors.setdefault(family, {})[keys[name]] = torch.from_numpy(array)
        else:
            raise DataError(f"{where}: expected entries '<state>:<weight>' naming one of the "
                            f"model's weights ({', '.join(keys)}) with float arrays, or "
                            f"'{_SCALAR}:<counter>'. Got {entry!r} ({array.dtype}).")
    from reglab.errors import ConfigError

    try:
        model._population.set_member_training_state(0, {"tensors": tensors, "scalars": scalars})
    except ConfigError as error:
        raise DataError(f"{where}: {error}") from None


def _counter(where: str, entry: str, name: str, array: np.ndarray) -> int | float:
    kind = _COUNTERS.get(name)
    value = array.item() if array.shape == () and array.dtype.kind in "iuf" else None
    if kind == "count" and isinstance(value, (int, float)) and value == int(value) \
            and value >= 0:
        return int(value)
    if kind == "scale" and isinstance(value, (int, float)) and math.isfinite(value) \
            and value > 0:
        return float(value)
    expected = ("a count (an integer >= 0)" if kind == "count" else
                "a finite scale > 0" if kind == "scale" else
                f"a known counter ({', '.join(_COUNTERS)})")
    raise DataError(f"{where}: expected {entry!r} to be {expected}. Got {array!r}.")


# -- Keras's layout: the optimizer's variables in a .weights.h5 file ------------------------
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
    if isinstance(optimizer, LossScaleOptimizer):
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
    for i, (entry, array) in enumerate(zip(layout, arrays)):
        kind = entry[0]
        shape = tuple(have["tensors"][entry[1]][entry[2]].shape) if kind == "slot" else ()
        if array.shape != shape or array.dtype.kind not in "iuf":
            return (f"{where}: optimizer/vars/{i} should be a number array of shape {shape}. "
                    f"Got {array.dtype} of shape {array.shape}")
        if kind == "slot":
            tensors.setdefault(entry[1], {})[entry[2]] = torch.from_numpy(
                np.array(array, dtype=np.float32))
        elif kind in ("steps", "scalar"):
            name = "steps" if kind == "steps" else entry[1]
            try:
                scalars[name] = _counter(where, f"optimizer/vars/{i}", name, array)
            except DataError as error:
                return str(error)
    model._population.set_member_training_state(0, {"tensors": tensors, "scalars": scalars})
    return None
