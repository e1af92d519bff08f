"""Keras 3's weights file (``.weights.h5``), read and written with h5py, so that weights move
between Keras and reglab.

The layout Keras 3 writes for a model: a group ``layers`` with one group per layer, named
after the layer's class in snake case and made unique within the model (``dense``,
``dense_1``, ``batch_normalization``: the class, not the layer's own name), each holding a
group ``vars`` (attribute ``name``: the layer's name) of datasets ``0``, ``1``... in the
layer's weight order (a Dense's kernel ``(in, out)`` then bias; a BatchNormalization's gamma,
beta, moving mean, moving variance), empty for a layer without weights; a group ``vars``
(attribute ``name``: the model's name); and, for a compiled model, ``optimizer/vars``. reglab
writes the optimizer's group empty: optimizer state does not travel (Keras warns and keeps
its own when it loads such a file, as for any optimizer it cannot match).

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
    import h5py

    from reglab.utils.atomic import atomic_open

    path = os.fspath(filepath)
    if not str(path).endswith(SUFFIX):
        raise ValueError(f"The filename must end in `{SUFFIX}`. Received: filepath={path}")
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"save_weights: {path} exists and overwrite=False.")
    weights = _by_layer(model)
    with atomic_open(path) as handle, h5py.File(handle, "w") as file:
        layers = file.create_group("layers")
        for layer, group_name, values in zip(model.layers, layer_paths(model), weights):
            group = layers.create_group(group_name).create_group("vars")
            group.attrs["name"] = layer.name
            for i, value in enumerate(values):
                group.create_dataset(str(i), data=np.asarray(value))
        if model.optimizer is not None and model._compiled:
            optimizer = file.create_group("optimizer").create_group("vars")
            optimizer.attrs["name"] = type(model.optimizer).__name__.lower()  # as Keras
        file.create_group("vars").attrs["name"] = model.name


def _by_layer(model) -> list[list[np.ndarray]]:
    keys = model._weight_keys()
    values = model.get_weights()
    out: list[list[np.ndarray]] = [[] for _ in model.layers]
    for (index, _), value in zip(keys, values):
        out[index].append(value)
    return out


def load_weights(model, filepath, skip_mismatch: bool = False) -> None:
    """Reads a ``.weights.h5`` file (or a ``.keras`` archive's weights) into ``model``,
    layer by layer, checked before anything changes: every layer of the model must be in
    the file with the same number and shapes of weights (``skip_mismatch`` skips, with a
    warning, the layers that are not)."""
    import h5py

    path = os.fspath(filepath)
    if str(path).endswith((".keras", SUFFIX)) and not os.path.isfile(path):
        raise FileNotFoundError(f"load_weights: no file at {path}.")
    if str(path).endswith(".keras"):
        try:
            with zipfile.ZipFile(path) as archive:
                data = archive.read(ARCHIVE_WEIGHTS)
        except (OSError, KeyError, zipfile.BadZipFile) as error:
            raise DataError(f"load_weights: {path}: expected a .keras archive holding "
                            f"{ARCHIVE_WEIGHTS}. Got: {error}.") from None
        source = io.BytesIO(data)
    elif str(path).endswith(SUFFIX):
        source = path
    else:
        raise ValueError(f"load_weights: expected a file ending in `{SUFFIX}` or `.keras`. "
                         f"Received: filepath={path}")
    try:
        with h5py.File(source, "r") as file:
            stored = _read_layers(file, path)
            optimizer_state = len(file.get("optimizer/vars", ()))
    except OSError as error:
        raise DataError(f"load_weights: {path}: not an HDF5 weights file ({error}).") from None
    except (KeyError, AttributeError, TypeError, ValueError) as error:
        raise DataError(f"load_weights: {path}: not Keras 3's weights layout (layers/<name>/"
                        f"vars/0, 1, ...): {type(error).__name__}: {error}.") from None
    if optimizer_state:
        warnings.warn(f"load_weights: {path} holds the optimizer's state ({optimizer_state} "
                      "variables); reglab loads the layers' weights only, and the optimizer "
                      "starts afresh.", stacklevel=3)
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
                if value.shape != want.shape:
                    problem = (f"layer {layer.name!r} (layers/{group_name}/vars/{i}): "
                               f"expected shape {want.shape}. Got {value.shape}")
                    break
        if problem is None:
            new.extend(v.astype(w.dtype, copy=False) for v, w in zip(values, current))
        elif skip_mismatch:
            warnings.warn(f"load_weights: skipping {problem}.", stacklevel=3)
            new.extend(current)
        else:
            problems.append(problem)
    if problems:
        raise ConfigError(f"load_weights: {path}: the file does not fit the model: "
                          + "; ".join(problems) + ". Nothing was loaded.")
    model.set_weights(new)


def _read_layers(file, path) -> dict[str, list[np.ndarray]]:
    if "layers" not in file:
        raise DataError(f"load_weights: {path}: expected Keras 3's layout (a group 'layers'). "
                        f"Got groups {sorted(file)}. (Keras 2's .h5 files are not read.)")
    out = {}
    for name, group in file["layers"].items():
        variables = group.get("vars")
        if variables is None:
            continue
        out[name] = [np.asarray(variables[str(i)]) for i in range(len(variables))]
    return out
