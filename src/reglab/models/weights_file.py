"""Keras 3's weights file (``.weights.h5``), read and written with h5py, so that weights move
between Keras and reglab.

The layout Keras 3 writes for a model: a group ``layers`` with one group per layer, named
after the layer's class in snake case and made unique within the model (``dense``,
``dense_1``, ``batch_normalization``: the class, not the layer's own name), each holding a
group ``vars`` (attribute ``name``: the layer's name) of datasets ``0``, ``1``... in the
layer's weight order (a Dense's kernel ``(in, out)`` then bias; a BatchNormalization's gamma,
beta, moving mean, moving variance), empty for a layer without weights; a group ``vars``
(attribute ``name``: the model's name); and, for a compiled model, ``optimizer/vars``: the
optimizer's variables in Keras's order (``iterations``, the learning rate, then the slots:
reglab/models/training_state.py's ``keras_layout``), which both read into a compiled model
whose optimizer has stepped, as Keras does.

``.keras`` archives (a zip with ``model.weights.h5``) are read too.
"""

from __future__ import annotations

import io
import os
import warnings
import zipfile

import numpy as np

from reglab.errors import ConfigError, DataError
from reglab.layers.layer import snake_case

SUFFIX = ".weights.h5"
ARCHIVE_WEIGHTS = "model.weights.h5"


def layer_paths(model) -> list[str]:
    """Each layer's group name in the file, as Keras names it."""
    counts: dict[str, int] = {}
    paths = []
    for layer in model.layers:
        base = snake_case(type(layer).__name__)
        paths.append(base if base not in counts else f"{base}_{counts[base]}")
        counts[base] = counts.get(base, 0) + 1
    return paths


def save_weights(model, filepath, overwrite: bool = True) -> None:
    """Writes ``model``'s weights to ``filepath`` (which must end in ``.weights.h5``, as
    Keras requires), atomically."""
    from reglab.utils.atomic import atomic_open

    path = os.fspath(filepath)
    if not str(path).endswith(SUFFIX):
        raise ValueError(f"The filename must end in `{SUFFIX}`. Received: filepath={path}")
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"save_weights: {path} exists and overwrite=False.")
    with atomic_open(path) as handle:
        write(model, handle)


def write(model, handle, built: bool = True) -> None:
    """Writes ``model``'s weights (and a compiled model's optimizer variables) in Keras's
    layout to ``handle``, a binary file open for writing (a ``.keras`` archive's
    ``model.weights.h5`` too); a model not ``built`` yet has no weights to write."""
    import h5py

    weights = _by_layer(model) if built else [[] for _ in model.layers]
    with h5py.File(handle, "w") as file:
        layers = file.create_group("layers")
        for layer, group_name, values in zip(model.layers, layer_paths(model), weights):
            group = layers.create_group(group_name).create_group("vars")
            group.attrs["name"] = layer.name
            for i, value in enumerate(values):
                group.create_dataset(str(i), data=np.asarray(value))
        if model.optimizer is not None and model._compiled:
            _write_optimizer(model, file.create_group("optimizer"))
        file.create_group("vars").attrs["name"] = model.name


def _write_optimizer(model, group) -> None:
    """The optimizer's variables in Keras's order (``training_state.keras_layout``); a
    LossScaleOptimizer's inner optimizer's again under ``inner_optimizer``, as Keras."""
    from reglab.models import training_state

    if model._population is not None:
        values = training_state.keras_variables(model)
    else:  # never built: Keras's optimizer holds its step count and rate alone then
        values = training_state.unbuilt_keras_variables(model.optimizer)
    variables = group.create_group("vars")
    variables.attrs["name"] = snake_case(type(model.optimizer).__name__)  # as Keras
    for i, value in enumerate(values):
        variables.create_dataset(str(i), data=value)
    inner = getattr(model.optimizer, "inner_optimizer", None)
    if inner is not None:
        own = group.create_group("inner_optimizer").create_group("vars")
        own.attrs["name"] = snake_case(type(inner).__name__)
        for i, value in enumerate(values[training_state.LOSS_SCALE_VARIABLES:]):
            own.create_dataset(str(i), data=value)


def _by_layer(model) -> list[list[np.ndarray]]:
    keys = model._weight_keys()
    values = model.get_weights()
    out: list[list[np.ndarray]] = [[] for _ in model.layers]
    for (index, _), value in zip(keys, values):
        out[index].append(value)
    return out


def load_weights(model, filepath, skip_mismatch: bool = False,
                 optimizer_state: bool | None = None, caller: str = "load_weights") -> None:
    """Reads a ``.weights.h5`` file (or a ``.keras`` archive's weights) into ``model``,
    layer by layer, checked before anything changes: every layer of the model must be in
    the file with the same number and shapes of weights (``skip_mismatch`` skips, with a
    warning, the layers that are not).

    The optimizer's variables in the file are read as Keras reads them: into a compiled
    model whose optimizer has taken a step (Keras's optimizer is built then), or always
    with ``optimizer_state=True`` (``load_model``, which builds it first); where they do
    not fit, or the optimizer has not stepped yet, a warning says they were skipped."""
    path = os.fspath(filepath)
    if str(path).endswith((".keras", SUFFIX)) and not os.path.isfile(path):
        raise FileNotFoundError(f"load_weights: no file at {path}.")
    if str(path).endswith(".keras") or caller == "load_model":  # any name: an archive
        try:
            with zipfile.ZipFile(path) as archive:
                data = archive.read(ARCHIVE_WEIGHTS)
        except (OSError, KeyError, zipfile.BadZipFile) as error:
            raise DataError(f"{caller}: {path}: expected a .keras archive holding "
                            f"{ARCHIVE_WEIGHTS}. Got: {error}.") from None
        source = io.BytesIO(data)
    elif str(path).endswith(SUFFIX):
        source = path
    else:
        raise ValueError(f"load_weights: expected a file ending in `{SUFFIX}` or `.keras`. "
                         f"Received: filepath={path}")
    stored, optimizer_arrays = read(source, path)
    set_layers(model, stored, path, skip_mismatch)
    compiled = model.optimizer is not None and model._compiled and model._population is not None
    if optimizer_arrays:
        _read_optimizer(model, optimizer_arrays, f"{caller}: {path}", optimizer_state, compiled)
    elif optimizer_state and compiled:
        warnings.warn(f"{caller}: {path} holds no optimizer state (no optimizer/vars): the "
                      "optimizer starts afresh.", stacklevel=3)


def read(source, path, caller: str = "load_weights"
         ) -> tuple[dict[str, list[np.ndarray]], list[np.ndarray]]:
    """``(each layer group's arrays by group name, the optimizer's variables)`` of the
    weights file ``source`` (a path or a binary file); ``path`` names it in errors."""
    import h5py

    try:
        with h5py.File(source, "r") as file:
            stored = _read_layers(file, path, caller)
            group = file.get("optimizer/vars")
            optimizer_arrays = [] if group is None else [
                _values(group[str(i)], f"{caller}: {path}: optimizer/vars/{i}")
                for i in range(len(group))]
    except DataError:
        raise
    except OSError as error:
        raise DataError(f"{caller}: {path}: not an HDF5 weights file ({error}).") from None
    except (KeyError, AttributeError, TypeError, ValueError, RuntimeError) as error:
        # RuntimeError: h5py's for a damaged file's internals (an address overflow)
        raise DataError(f"{caller}: {path}: not Keras 3's weights layout (layers/<name>/"
                        f"vars/0, 1, ...): {type(error).__name__}: {error}.") from None
    return stored, optimizer_arrays


def set_layers(model, stored: dict[str, list[np.ndarray]], path, skip_mismatch: bool = False,
               caller: str = "load_weights") -> None:
    """Sets each layer's weights from its group in ``stored``, every layer checked before
    anything changes (``skip_mismatch``: a layer that does not fit keeps its own, warned)."""
    expected = _by_layer(model)
    new, problems = [], []
    for layer, group_name, current in zip(model.layers, layer_paths(model), expected):
        values = stored.get(group_name)
        problem = None
        if values is None:
            problem = f"layer {layer.name!r}: no group layers/{group_name} in the file"
        elif len(values) != len(current):
            problem = (f"layer {layer.name!r} (layers/{group_name}): expected "
                       f"{len(current)} weights. Got {len(values)}")
        else:
            for i, (value, want) in enumerate(zip(values, current)):
                place = f"layer {layer.name!r} (layers/{group_name}/vars/{i})"
                if value.shape != want.shape:
                    problem = f"{place}: expected shape {want.shape}. Got {value.shape}"
                elif value.dtype.kind not in "biuf":
                    problem = f"{place}: expected numbers. Got dtype {value.dtype}"
                if problem is not None:
                    break
        if problem is None:
            new.extend(v.astype(w.dtype, copy=False) for v, w in zip(values, current))
        elif skip_mismatch:
            warnings.warn(f"{caller}: skipping {problem}.", stacklevel=4)
            new.extend(current)
        else:
            problems.append(problem)
    if problems:
        raise ConfigError(f"{caller}: {path}: the file does not fit the model: "
                          + "; ".join(problems) + ". Nothing was loaded.")
    model.set_weights(new)


def _read_optimizer(model, arrays, where: str, wanted: bool | None, compiled: bool) -> None:
    from reglab.models import training_state

    if wanted is None:  # as Keras: only into an optimizer that has been built (has stepped)
        wanted = compiled and int(model.optimizer.iterations) > 0
    problem = None
    if not compiled:
        problem = f"{where}: the model is not compiled (it has no optimizer)"
    elif not wanted:
        problem = (f"{where}: the optimizer has not taken a step yet (Keras builds its "
                   f"variables then)")
    if problem is None:
        problem = training_state.restore_keras(model, arrays, where)
    if problem is not None:
        warnings.warn(f"{problem}; the optimizer's state in the file ({len(arrays)} "
                      "variables) was skipped, and the optimizer keeps its own.", stacklevel=4)


def _read_layers(file, path, caller: str) -> dict[str, list[np.ndarray]]:
    if "layers" not in file:
        raise DataError(f"{caller}: {path}: expected Keras 3's layout (a group 'layers'). "
                        f"Got groups {sorted(file)}. (Keras 2's .h5 files are not read.)")
    out = {}
    for name, group in file["layers"].items():
        variables = group.get("vars")
        if variables is None:
            continue
        out[name] = [_values(variables[str(i)], f"{caller}: {path}: layers/{name}/vars/{i}")
                     for i in range(len(variables))]
    return out


def _values(dataset, where: str) -> np.ndarray:
    """A dataset's values, once its declared size is what the file stores: a damaged or
    hostile file may declare terabytes in a few bytes (an empty chunked dataset)."""
    stored = dataset.id.get_storage_size()
    declared = dataset.size * dataset.dtype.itemsize
    # uncompressed data stores its size; a compressed dataset at most ~1000x less
    bound = stored * (1100 if dataset.compression is not None else 1) + 4096
    if declared > bound:
        raise DataError(f"{where}: a dataset of shape {dataset.shape} ({declared} bytes) that "
                        f"stores {stored} bytes: the file is damaged.")
    return np.asarray(dataset)
