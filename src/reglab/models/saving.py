"""``save_model`` and ``load_model``: a whole model in one file, with no pickled code.

The file is a zip archive that ``keras.models.load_model`` opens too. It holds Keras 3's
three members, ``config.json`` (the model as Keras serializes it,
:mod:`reglab.models.keras_export`), ``metadata.json`` and ``model.weights.h5`` (the weights
and the optimizer's variables in Keras's layout), and beside them reglab's own, which reglab
reads (a file written before these had reglab's document as ``config.json``):

- ``reglab.json``: the format version, the reglab version, the model class
  (``'Sequential'``), its name, seed and input shape, every layer as
  ``{'class_name', 'config'}`` where ``config`` is exactly the keyword arguments
  that rebuild it (regularizers and constraints as ``{'class_name', 'config'}``,
  initializers and activations by name), and the compile settings (optimizer class
  and hyperparameters, with the current learning rate; loss class and config;
  metric names).
- ``training_state.npz`` (a compiled model): what Keras's optimizer variables in
  ``model.weights.h5`` (the slots, the step count, a loss scale) do not hold: the epochs
  trained and reglab's own averages, so that a loaded model trains on as the saved one would
  have (:mod:`reglab.models.training_state`). A file without it loads with a fresh optimizer.

A file saved before Keras's members were written holds reglab's document as ``config.json``,
the weights in ``weights.npz`` (``np.savez``, named ``'0000_dense.kernel'``,
``'0001_dense.bias'``... in ``get_weights()``'s order) and the whole state in
``training_state.npz``; it still loads.

Loading rebuilds layers only from the public classes of :mod:`reglab.layers` and
compiles with the built-in optimizers and losses only, so a file can never run code.
For the same reason only built-in activations, initializers, regularizers and
constraints can be saved; a custom callable raises :class:`~reglab.errors.ConfigError`
at save time.

Differences from Keras 3:

- Any path but an HDF5 one is accepted. Keras 3 requires the ``'.keras'`` suffix (or
  ``'.h5'`` for its legacy HDF5 format); reglab takes ``'.keras'``, ``'.reglab'`` or any
  other suffix, and appends nothing to a path that has none. ``'.h5'`` and ``'.hdf5'``
  are refused (a file by that name would be read as HDF5 by Keras and h5py), and so is
  loading an HDF5 model file, with how to convert it.
- As Keras, the optimizer's state is saved, and a loaded model trains on as the saved one
  would have, bit for bit: its slots, step count (a schedule goes on from it) and loss
  scale, and the epochs trained, from which reglab's random streams (dropout, noise,
  augmentation, shuffling) are drawn (Keras saves its seed generators' states). Not
  saved, as in Keras: callbacks' state (an EarlyStopping's patience) and the weights
  ``exclude_from_weight_decay`` named.
- ``overwrite=False`` on an existing file raises FileExistsError, where Keras asks on the
  terminal; ``zipped=False`` (Keras's unzipped directory) is refused.
- The write is atomic: the archive is written to a temporary file in the target's
  directory, then moved over the target with ``os.replace``.

Example:
    >>> import os, tempfile
    >>> import numpy as np
    >>> from reglab.layers import Dense
    >>> from reglab.models import Sequential
    >>> model = Sequential([Dense(2, input_shape=(3,))], seed=0)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.keras")
    >>> save_model(model, path)
    >>> x = np.ones((1, 3), dtype="float32")
    >>> bool((load_model(path).predict(x, verbose=0) == model.predict(x, verbose=0)).all())
    True
"""

from __future__ import annotations

import errno
import inspect
import io
import json
import os
import warnings
import zipfile
from typing import Any, NamedTuple

import numpy as np

import reglab
from reglab import activations, constraints, initializers, layers, losses, optimizers
from reglab import metrics as metrics_module
from reglab import regularizers as regularizers_module
from reglab.errors import ConfigError, DataError, unknown_name
from reglab.models import keras_export, training_state
from reglab.utils.atomic import atomic_open

__all__ = ["FORMAT_VERSION", "layer_to_config", "load_model", "model_to_config", "save_model",
           "weight_names"]

FORMAT_VERSION = 1
CONFIG_MEMBER = "config.json"
WEIGHTS_MEMBER = "weights.npz"
#: reglab's own document beside Keras's config.json
REGLAB_MEMBER = "reglab.json"
ZIP_ERRORS = keras_export.ZIP_ERRORS
_MAX_CONFIG_BYTES = 16 * 2**20  # a config is a few kB; refuse to inflate anything huge
#: the suffixes of an HDF5 file, and its first bytes (Keras's legacy model format)
HDF5_SUFFIXES = (".h5", ".hdf5")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _public_classes(module, base) -> dict[str, type]:
    """The public subclasses of ``base`` that ``module`` exports, by class name."""
    names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
    found = {name: getattr(module, name, None) for name in names}
    return {name: cls for name, cls in found.items()
            if isinstance(cls, type) and issubclass(cls, base) and cls is not base
            and cls.__name__ == name}


_LAYERS = _public_classes(layers, layers.Layer)
_OPTIMIZERS = _public_classes(optimizers, optimizers.Optimizer)
_LOSSES = _public_classes(losses, losses.Loss)
_CONSTRAINTS = _public_classes(constraints, constraints.Constraint)


# -- save ---------------------------------------------------------------------------------
def save_model(model, filepath, overwrite=True, zipped=None, **kwargs) -> None:
    """Saves ``model`` (architecture, compile settings, weights) to one file at ``filepath``.

    Args:
        model: a :class:`reglab.models.Sequential`.
        filepath: a ``str`` or ``os.PathLike``; any suffix, none appended (see the module
            docstring). An existing file is replaced atomically.
        overwrite: False refuses to replace an existing file (``FileExistsError``, as
            ``save_weights``; Keras asks on the terminal instead).
        zipped: None or True (Keras's default, one archive); False (Keras's unzipped
            directory) is refused.
        include_optimizer: accepted and ignored, as Keras ignores it for a ``.keras`` file
            (the optimizer's state is always saved). Any other keyword raises ValueError,
            as in Keras.

    Raises:
        ConfigError: the model holds something that cannot be saved without code (a
            custom activation, initializer, regularizer, constraint, layer, optimizer or
            loss), naming the layer and the argument.
        FileNotFoundError: the target's directory does not exist.
    """
    path = os.fspath(filepath)
    kwargs.pop("include_optimizer", None)
    save_format = kwargs.pop("save_format", None)
    if kwargs:
        raise ValueError(f"save_model: the following argument(s) are not supported: "
                         f"{list(kwargs)}.")
    if save_format:  # Keras 3: deprecated, a warning beside a .keras path, else an error
        if not str(path).endswith(".keras"):
            raise ValueError("save_model: the 'save_format' argument is deprecated in Keras 3 "
                             f"and not taken here; pass a path ending in '.keras'. Got "
                             f"save_format={save_format!r} for {path!r}.")
        warnings.warn("save_model: the 'save_format' argument is deprecated (Keras 3); the "
                      "path's '.keras' says the format.", DeprecationWarning, stacklevel=3)
    if zipped is not None and not zipped:
        raise ConfigError("save_model: 'zipped' must be None or True (reglab writes one "
                          f"archive, not Keras's unzipped directory). Got {zipped!r}.")
    exclusive = not overwrite  # truthy or falsy, as Keras reads it
    if exclusive and os.path.exists(path):
        raise FileExistsError(f"save_model: {path} exists and overwrite=False.")
    # a symbolic link is written through (its target replaced, the link kept), as Keras's
    # open() writes through one; a dangling link's target is created
    target = os.path.realpath(path) if os.path.islink(path) else path
    if str(path).lower().endswith(HDF5_SUFFIXES):
        raise ConfigError(
            f"save_model: {path!r} names an HDF5 file, Keras's legacy model format, which "
            "reglab does not write (nor read). Save the model as a .keras archive "
            "(model.save('model.keras')), or its weights alone with "
            "model.save_weights('model.weights.h5'), which Keras reads.")
    document = model_to_config(model)  # every ConfigError is raised before any file is touched
    members = {  # Keras's members, for keras.models.load_model, then reglab's own
        CONFIG_MEMBER: _json_bytes(keras_export.keras_model_config(document, model)),
        keras_export.METADATA_MEMBER: _json_bytes(keras_export.metadata(reglab.__version__)),
        REGLAB_MEMBER: _json_bytes(document),
        keras_export.WEIGHTS_MEMBER: _keras_weights(model),
    }
    state = training_state.to_npz(model, beside_keras=True)
    if state is not None:
        members[training_state.MEMBER] = state
    _write_atomically(target, members, exclusive)


def _json_bytes(document: dict[str, Any]) -> bytes:
    return json.dumps(document, indent=2).encode("utf-8")


def _keras_weights(model) -> bytes:
    """``model.weights.h5``: the weights (and optimizer variables) in Keras's layout."""
    from reglab.models import weights_file

    buffer = io.BytesIO()
    weights_file.write(model, buffer, built=bool(weight_names(model)))
    return buffer.getvalue()


def model_to_config(model, where: str = "save_model") -> dict[str, Any]:
    """The JSON document stored as ``config.json`` (see the module docstring); ``where``
    starts the messages of what cannot be saved."""
    from reglab.models.sequential import Sequential

    if not isinstance(model, Sequential):
        raise ConfigError(f"{where}: 'model' must be a reglab Sequential. Got {model!r}.")
    base = model.get_config()
    layer_configs = [layer_to_config(layer, f"{where}: layers[{i}] {layer.name!r}")
                     for i, layer in enumerate(model.layers)]
    config = {"name": base["name"], "seed": base["seed"], "trainable": bool(model.trainable),
              "input_shape": base["input_shape"], "layers": layer_configs}
    # a functional model: each position's inputs, and where there are, the layer each
    # position calls (shared layers) and the positions of several inputs or outputs
    config.update({key: base[key] for key in GRAPH_KEYS if key in base})
    return {
        "format_version": FORMAT_VERSION,
        "reglab_version": reglab.__version__,
        "class_name": class_name(model),
        "config": config,
        "compile_config": _compile_config(model),
    }


def class_name(model) -> str:
    """``'Functional'`` for a functional model (as Keras names its class), else
    ``'Sequential'``."""
    return "Functional" if model._graph is not None else "Sequential"


def layer_to_config(layer, where: str = "layer_to_config") -> dict[str, Any]:
    """``{'class_name', 'config'}`` where ``config`` is the layer's ``get_config()``, complete
    (initializers, regularizers, constraints and activation included), once every object in
    it is checked to be built in: a file holds no code."""
    cls = type(layer)
    if cls is layers.Lambda:
        raise ConfigError(f"{where}: a Lambda layer's function cannot be saved: a file holds "
                          "no code. Save the weights (model.save_weights('model.weights.h5'), "
                          "which Keras reads too) and build the model in code again.")
    if _LAYERS.get(cls.__name__) is not cls:
        raise ConfigError(f"{where}: only reglab.layers classes can be saved "
                          f"({', '.join(sorted(_LAYERS))}). Got {cls.__name__!r}.")
    where = f"{where} ({cls.__name__})"
    config = dict(layer.get_config())
    for name, value in config.items():
        here = f"{where}: '{name}'"
        if name == "activation" and not isinstance(value, str):
            raise ConfigError(f"{here}: must be a built-in activation "
                              f"({', '.join(sorted(activations._BY_NAME))}). Got {value!r}. "
                              + _ONLY_BUILT_IN.format(kind="activations"))
        for suffix, known, kind in (("_initializer", initializers._CLASSES, "initializers"),
                                    ("_regularizer", regularizers_module.registered(),
                                     "regularizers"),
                                    ("_constraint", _CONSTRAINTS, "constraints")):
            if name.endswith(suffix):
                _check_built_in(value, here, known, kind, optional=suffix != "_initializer")
    return {"class_name": cls.__name__, "config": _jsonable(config, where)}


_ONLY_BUILT_IN = ("Only built-in {kind} can be saved: a file holds no code. Pass one by name, "
                  "or save the weights with model.get_weights() and rebuild the model in code.")


def _check_built_in(entry, where: str, known: dict, kind: str, optional: bool) -> None:
    """``entry`` must be a serialized built-in object (``{'class_name', 'config'}``)."""
    if entry is None and optional:
        return
    if isinstance(entry, dict) and known.get(entry.get("class_name")) is not None:
        return
    shown = entry.get("class_name") if isinstance(entry, dict) else entry
    raise ConfigError(f"{where}: must be a built-in {kind[:-1]} ({', '.join(sorted(known))}). "
                      f"Got {shown!r}. " + _ONLY_BUILT_IN.format(kind=kind))


def _constructor_config(obj, where: str) -> dict[str, Any]:
    """``obj.get_config()`` without its ``name``: the constructor's arguments."""
    return _jsonable({k: v for k, v in obj.get_config().items() if k != "name"}, where)


def _compile_config(model) -> dict[str, Any] | None:
    if model.optimizer is None:  # never compiled
        return None
    optimizer = model.optimizer
    if _OPTIMIZERS.get(type(optimizer).__name__) is not type(optimizer):
        raise ConfigError(f"save_model: 'optimizer' must be a built-in optimizer "
                          f"({', '.join(sorted(_OPTIMIZERS))}). Got {optimizer!r}. "
                          + _ONLY_BUILT_IN.format(kind="optimizers"))
    schedule = optimizer.schedule
    if schedule is not None and optimizers.schedules.built_in(schedule) is None:
        raise ConfigError(f"save_model: the optimizer's learning-rate schedule must be a "
                          f"built-in one ({', '.join(optimizers.schedules.NAMES)}). Got "
                          f"{schedule!r}. " + _ONLY_BUILT_IN.format(kind="schedules"))
    several = getattr(model.loss, "parts", None) is not None  # their metrics are by name
    given = [] if several else list(model._population_metrics or [])
    weighted = [m for m in given if isinstance(m, metrics_module.WeightedMetric)]
    custom = [m for m in [*(m for m in given if m not in weighted),
                          *(m.metric for m in weighted)]
              if not isinstance(m, str) and _saved_metric(m) is None]
    if custom:
        raise ConfigError(f"save_model: 'metrics' and 'weighted_metrics' must be built-in "
                          f"metrics by name or objects of reglab.metrics' classes "
                          f"(Precision(thresholds=0.3), "
                          f"F1Score(average='macro'), the mean metrics' classes...). Got "
                          f"{custom[0]!r}. " + _ONLY_BUILT_IN.format(kind="metrics"))
    loss, extra = None, {}
    names = list(model.logged_metric_names)

    def saved(name, metric):  # a name as written ('AUC'; 'mse' for a second 'mse_1'), or
        if isinstance(metric, metrics_module.Named):  # an object by its arguments
            return metric.identifier
        entry = None if isinstance(metric, str) else _saved_metric(metric)
        return entry if isinstance(entry, dict) else name
    metrics = [saved(n, m) for n, m in zip(names, given)] if given else names
    if weighted:  # saved as given, under the names compile resolves them by
        metrics = [saved(n, m) for n, m in zip(names, given) if m not in weighted]
        extra = {"weighted_metrics": [m.metric if isinstance(m.metric, str)
                                      else _saved_metric(m.metric) for m in weighted]}
    if getattr(model.loss, "parts", None) is not None:  # several outputs
        from reglab.models.outputs import output_config

        given = output_config(model.loss, model._population_metrics, _saved_output_metric)
        loss = [_loss_config(part_loss) for part_loss in given["losses"]]
        extra = {"loss_weights": given["loss_weights"]}
        metrics = given["metrics"]
    elif isinstance(model.loss, losses.ScaledLoss):  # a one-output loss_weights
        loss = _loss_config(model.loss.loss)
        extra = {**extra, "loss_weights": model.loss.weight}  # beside weighted_metrics
    elif model.loss is not None:
        loss = _loss_config(model.loss)
    return {
        # learning_rate is read now: a callback may have changed it during fit.
        "optimizer": {"class_name": type(optimizer).__name__,
                      "config": _constructor_config(optimizer, "save_model: 'optimizer'")},
        "loss": loss,
        "metrics": metrics,
        **extra,
    }


def _saved_output_metric(name: str, metric) -> str | dict[str, Any]:
    """One output's metric as a file holds it (see :func:`_saved_metric`): an object by its
    arguments, else its name where a name resolves to it; else refused."""
    entry = _saved_metric(metric)
    if isinstance(entry, dict):
        return entry
    try:
        metrics_module.resolve(name, (1,), (1, 2), "save_model: 'metrics'")
    except ConfigError:
        raise ConfigError(f"save_model: 'metrics' must be built-in metrics by name or objects "
                          f"of reglab.metrics' classes. Got {metric!r}, logged as {name!r}. "
                          + _ONLY_BUILT_IN.format(kind="metrics")) from None
    return name


def _saved_metric(metric) -> str | dict[str, Any] | None:
    """A metric object as a file holds it: the name compile resolves to it (its class's
    defaults), else Keras's serialized object (``{module, class_name, config}``: its class
    and arguments, which Keras and reglab both build again) for a class of
    ``reglab.metrics`` a file can hold; None for others (a user's code)."""
    from reglab.models import keras_files

    if any(metric is fn for fn in metrics_module._OWN_FUNCTIONS):
        return metric.__name__  # a built-in metric function: its name resolves to it
    if isinstance(metric, metrics_module.FunctionMetric):  # a built-in loss as a metric
        return _saved_loss_metric(metric.fn)
    if isinstance(metric, losses.Loss) or inspect.isfunction(metric):  # weighted_metrics'
        return _saved_loss_metric(metric)  # as given: a loss object or function
    name = _saved_by_name(metric)
    if name is not None:
        return name
    cls = type(metric)
    if keras_files.metric_class_by_name(cls.__name__) is not cls:
        return None
    config = metric.get_config()
    return {"module": "keras.metrics", "class_name": cls.__name__,
            "config": _jsonable(config, f"save_model: 'metrics' ({cls.__name__})"),
            "registered_name": None}


def _saved_loss_metric(fn) -> dict[str, Any] | None:
    """A built-in loss object or loss function given as a metric, as Keras serializes it
    (a loss object by its class and arguments, a function by its name); None for a user's
    function."""
    if isinstance(fn, losses.Loss) and _LOSSES.get(type(fn).__name__) is type(fn) \
            and not isinstance(fn, losses.LossFunctionWrapper):
        return {"module": "keras.losses", "class_name": type(fn).__name__,
                "config": _jsonable(fn.get_config(), "save_model: 'metrics'"),
                "registered_name": None}
    if any(fn is known for known in losses.keras_functions()):
        return {"module": "builtins", "class_name": "function", "config": fn.__name__,
                "registered_name": "function"}
    return None


def _saved_by_name(metric) -> str | None:
    """The name a metric object is saved under (its defaults, a name compile resolves to
    it: its ``saved_name()``), or None."""
    saved_name = getattr(metric, "saved_name", None)
    return saved_name() if callable(saved_name) else None


def _loss_config(loss) -> dict[str, Any]:
    # a wrapped function is code: a file cannot hold it
    if _LOSSES.get(type(loss).__name__) is not type(loss) or \
            isinstance(loss, losses.LossFunctionWrapper):
        built_in = sorted(name for name in _LOSSES if name != "LossFunctionWrapper")
        raise ConfigError(f"save_model: 'loss' must be a built-in loss "
                          f"({', '.join(built_in)}). Got {loss!r}. "
                          + _ONLY_BUILT_IN.format(kind="losses"))
    return {"class_name": type(loss).__name__,  # its name too: a loss may be named
            "config": _jsonable(loss.get_config(), "save_model: 'loss'")}


def _jsonable(value, where: str, key: str = ""):
    """``value`` with tuples as lists and numpy scalars as Python numbers; anything else
    that JSON cannot hold raises, naming the argument."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, where, key) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _jsonable(v, where, key or k) for k, v in value.items()}
    raise ConfigError(f"{where}: {key!r} must be a number, string, bool, None, or a list or "
                      f"dict of them to be saved. Got {value!r}.")


def weight_names(model) -> list[str]:
    """The names of ``model.get_weights()``'s arrays in ``weights.npz``, in order."""
    if model.get_config()["input_shape"] is None or not model.layers:
        return []  # not buildable yet: no weights exist
    layer_list = model.layers
    # Same package: the (layer index, weight name) keys give get_weights()'s order.
    return [f"{i:04d}_{layer_list[index].name}.{name}"
            for i, (index, name) in enumerate(model._weight_keys())]


def _write_atomically(path: str, members: dict[str, bytes], exclusive: bool = False) -> None:
    """Writes the archive's ``members`` (JSON compressed, arrays stored) to ``path`` at once
    (with ``exclusive``, never over a file another writer put there meanwhile)."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(errno.ENOENT, "save_model: the directory to save into does "
                                "not exist; create it first", directory)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "save_model: expected a file path to save to. "
                                "Got a directory", path)
    try:
        with atomic_open(path, exclusive=exclusive) as handle, \
                zipfile.ZipFile(handle, "w") as archive:
            for name, data in members.items():
                archive.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED
                                 if name.endswith(".json") else zipfile.ZIP_STORED)
    except FileExistsError:
        if not exclusive:
            raise
        raise FileExistsError(f"save_model: {path} exists and overwrite=False (another "
                              "writer saved it meanwhile).") from None


# -- load ---------------------------------------------------------------------------------
def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):  # noqa: A002
    """Loads a model written by :func:`save_model` (``model.save``), or Keras's own file.

    Args (Keras's): ``custom_objects``, the user's Regularizer classes the file names (see
    :mod:`reglab.saving`); ``compile=False`` gives the model uncompiled, without its
    optimizer's state; ``safe_mode`` is accepted (a file never holds code to run).

    Returns:
        a :class:`reglab.models.Sequential` with the same layers, seed and weights,
        compiled as it was, with its optimizer's state (see the module docstring).

    Raises:
        FileNotFoundError: no file at ``filepath``.
        DataError: the file is not a model archive (not a zip, a member missing, bad JSON,
            another format version, weights that do not fit the layers), naming the file
            and what was expected.
        ConfigError: a layer, optimizer or loss in the file is unknown or has invalid
            arguments (only reglab's built-in classes are ever constructed).
    """
    from reglab.saving import custom_object_scope

    with custom_object_scope(custom_objects, "load_model"):
        return _load_model(filepath, compile)


def _load_model(filepath, compile):  # noqa: A002
    if not isinstance(compile, bool):
        raise ConfigError(f"load_model: 'compile' must be True or False. Got {compile!r}.")
    path = os.fspath(filepath)
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, "load_model: no such file", path)
    if os.path.isdir(path):
        raise DataError(f"load_model: {path}: expected a file written by model.save(). "
                        "Got a directory.")
    if _is_hdf5(path):
        raise DataError(
            f"load_model: {path}: an HDF5 file (Keras's legacy .h5 model format), which reglab "
            "does not read. In Keras, save it again as a .keras archive "
            "(keras.models.load_model(path).save('model.keras')) and load that; weights "
            "alone load with model.load_weights('model.weights.h5').")
    if _is_keras_file(path):  # Keras's own .keras file: its config translated
        from reglab.models import keras_files

        return keras_files.load(path, compile=compile)
    read = _read_archive(path)
    document = _parse_config(path, read.config, read.config_member)
    if not compile:
        document = {k: v for k, v in document.items() if k != "compile_config"}
    model = _model_from_config(path, document)
    keras_arrays = None
    if read.weights_member == WEIGHTS_MEMBER:  # a file saved before Keras's members
        _load_weights(path, model, read.weights)
    else:  # the weights and Keras's optimizer variables in Keras's layout
        keras_arrays = _load_keras_weights(path, model, read.weights)
    if read.state is not None and compile:
        training_state.restore(model, read.state, f"load_model: {path}: {training_state.MEMBER}",
                               keras_arrays, f"load_model: {path}: {read.weights_member}")
    elif compile and keras_arrays and training_state.trained(model, keras_arrays):
        # Keras's variables hold the slots but not the epochs trained (reglab's streams)
        raise DataError(f"load_model: {path}: expected {training_state.MEMBER} beside the "
                        f"optimizer's variables of a model that has trained (its step count "
                        f"is above 0). Got members without it: the file is damaged; "
                        f"load_model(path, compile=False) reads the weights alone.")
    return model


def _load_keras_weights(path: str, model, raw: bytes) -> list[np.ndarray]:
    """Sets the weights from ``model.weights.h5`` (checked as ``load_weights`` checks);
    returns the optimizer's variables it holds."""
    from reglab.models import weights_file

    where = f"{path}: {keras_export.WEIGHTS_MEMBER}"
    stored, optimizer_arrays = weights_file.read(io.BytesIO(raw), where, "load_model")
    if weight_names(model):  # else not buildable yet: no weights exist
        try:
            weights_file.set_layers(model, stored, where, caller="load_model")
        except ConfigError as error:  # the file's own weights: it is damaged
            raise DataError(str(error)) from None
    return optimizer_arrays


def _is_hdf5(path: str) -> bool:
    try:
        with open(path, "rb") as file:
            return file.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE
    except OSError:
        return False


def _is_keras_file(path: str) -> bool:
    """Whether ``path`` is Keras's own archive (not reglab's, which holds Keras's members
    beside its own ``reglab.json``)."""
    from reglab.models import keras_files

    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.namelist()
            if not keras_files.is_keras_archive(members) or REGLAB_MEMBER in members:
                return False
            saved_by_reglab = training_state.MEMBER in members or \
                keras_export.saved_by_reglab(archive, members)
    except ZIP_ERRORS:
        return False  # _read_archive says what is wrong
    if saved_by_reglab:  # read as Keras's, it would lose its seed and training state
        raise DataError(f"load_model: {path}: expected {REGLAB_MEMBER} in a file reglab saved "
                        f"(its {keras_export.METADATA_MEMBER} or {training_state.MEMBER} say "
                        f"so). Got members {members!r}. The file is damaged; Keras's part may "
                        "still open in keras.models.load_model.")
    return True


def _keras_written(archive: zipfile.ZipFile, members: list[str]) -> bool:
    """Whether an archive without reglab's document was written by Keras (its metadata, or a
    config that is Keras's rather than an early reglab file's, which has a format_version)."""
    if keras_export.METADATA_MEMBER in members or keras_export.WEIGHTS_MEMBER in members:
        return True
    if CONFIG_MEMBER not in members or WEIGHTS_MEMBER in members or \
            archive.getinfo(CONFIG_MEMBER).file_size > _MAX_CONFIG_BYTES:
        return False
    try:
        config = json.loads(archive.read(CONFIG_MEMBER))
    except ValueError:
        return False
    return isinstance(config, dict) and "format_version" not in config and "module" in config


class _Archive(NamedTuple):
    """A model archive's members: the config's name and bytes, the weights' name and bytes,
    ``training_state.npz`` or None."""
    config_member: str
    config: bytes
    weights_member: str
    weights: bytes
    state: bytes | None


def _read_archive(path: str) -> _Archive:
    """reglab's members of the archive at ``path``: ``reglab.json`` with Keras's
    ``model.weights.h5`` (this version), or ``config.json`` with ``weights.npz`` (a file saved
    before Keras's members were written)."""
    where = f"load_model: {path}"
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.namelist()
            if REGLAB_MEMBER in members or _keras_written(archive, members):
                # reglab's with Keras's weights, or Keras's own missing a member
                config = REGLAB_MEMBER if REGLAB_MEMBER in members else CONFIG_MEMBER
                weights = keras_export.WEIGHTS_MEMBER
            else:
                config, weights = CONFIG_MEMBER, WEIGHTS_MEMBER
            missing = [m for m in (config, weights) if m not in members]
            if missing:
                raise DataError(f"{where}: expected a zip archive with members {config} "
                                f"and {weights}. Got members {members!r} (missing "
                                f"{', '.join(missing)}).")
            if archive.getinfo(config).file_size > _MAX_CONFIG_BYTES:
                raise DataError(f"{where}: expected {config} of at most "
                                f"{_MAX_CONFIG_BYTES} bytes. Got "
                                f"{archive.getinfo(config).file_size}.")
            state = archive.read(training_state.MEMBER) if training_state.MEMBER in members \
                else None
            return _Archive(config, archive.read(config), weights, archive.read(weights), state)
    except PermissionError:
        raise
    except ZIP_ERRORS as error:
        raise DataError(f"{where}: expected a zip archive written by model.save(). Got a file "
                        f"that cannot be read as one ({error}).") from error


def json_object(raw: bytes, where: str) -> dict[str, Any]:
    """``raw`` as a JSON object, or a DataError naming ``where``."""
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{where}: expected UTF-8 JSON. Got invalid content ({error}).") from error
    if not isinstance(document, dict):
        raise DataError(f"{where}: expected a JSON object. Got {type(document).__name__}.")
    return document


def _parse_config(path: str, config_bytes: bytes, member: str = CONFIG_MEMBER
                  ) -> dict[str, Any]:
    where = f"load_model: {path}: {member}"
    document = json_object(config_bytes, where)
    version = document.get("format_version")
    if version != FORMAT_VERSION:
        raise DataError(f"{where}: expected format_version {FORMAT_VERSION}. Got {version!r} "
                        f"(written by reglab {document.get('reglab_version', '?')}; this is "
                        f"reglab {reglab.__version__}).")
    if document.get("class_name") not in ("Sequential", "Functional"):
        raise DataError(f"{where}: expected class_name 'Sequential' or 'Functional'. "
                        f"Got {document.get('class_name')!r}.")
    config = document.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise DataError(f"{where}: expected 'config' to be an object with a 'layers' list. "
                        f"Got {config!r}.")
    for key, kinds, label in (("name", (str,), "a string"), ("seed", (int,), "an int"),
                              ("input_shape", (list, type(None)), "a list or null")):
        if not isinstance(config.get(key), kinds) or isinstance(config.get(key), bool):
            raise DataError(f"{where}: expected config.{key} to be {label}. "
                            f"Got {config.get(key)!r}.")
    compile_config = document.get("compile_config")
    if compile_config is not None and (
            not isinstance(compile_config, dict)
            or not isinstance(compile_config.get("optimizer"), dict)
            or not isinstance(compile_config.get("metrics", []), list)):
        raise DataError(f"{where}: expected 'compile_config' to be null or an object with "
                        f"'optimizer', 'loss' and 'metrics'. Got {compile_config!r}.")
    return document


def _construct(cls, config, where: str):
    """``cls(**config)`` after checking ``config`` against the constructor's signature."""
    if not isinstance(config, dict):
        raise ConfigError(f"{where}: expected 'config' to be an object of {cls.__name__}'s "
                          f"arguments. Got {config!r}.")
    if issubclass(cls, optimizers.Optimizer) and isinstance(config.get("learning_rate"), dict):
        # a learning-rate schedule, in Keras's serialized form (built-in classes only)
        config = {**config, "learning_rate": optimizers.schedules.deserialize(
            config["learning_rate"], where=f"{where}: 'learning_rate'")}
    try:
        inspect.signature(cls).bind(**config)
    except TypeError as error:
        raise ConfigError(f"{where}: the arguments do not fit {cls.__name__}: {error}. "
                          f"Got {config!r}.") from error
    try:
        return cls(**config)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from error


def _from_entry(entry, classes: dict[str, type], kind: str, where: str):
    if not isinstance(entry, dict) or "class_name" not in entry:
        raise ConfigError(f"{where}: expected an object with 'class_name' and 'config'. "
                          f"Got {entry!r}.")
    cls = classes.get(entry["class_name"])
    if cls is None:
        raise unknown_name(where, kind, entry["class_name"], classes)
    config = entry.get("config", {})
    if cls is layers.Lambda and not callable(dict(config).get("function")):
        # a config in memory (from_config, clone_model) holds the function itself; a file's
        # could only name code, which reglab never runs (Keras's safe_mode refuses it too)
        raise ConfigError(f"{where} (Lambda): a Lambda's function cannot be read from a "
                          "file: a file holds no code, and reglab runs none from one. Build "
                          "the model in code and load its weights (load_weights).")
    if kind == "layer class" and isinstance(config, dict):
        # JSON has no tuples: shapes and pairs come back as lists; the constructors take
        # tuples, and store some arguments unchanged (augmentation factors).
        config = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    return _construct(cls, config, f"{where} ({entry['class_name']})")


def sequential_from_config(config: Any, where: str, keep_seed: bool = True):
    """A new Sequential from its config (``get_config()``, or the ``config`` of a saved
    model's or ``to_json``'s document); every problem names its place. Without
    ``keep_seed`` the model draws a new seed (new initial weights), as Keras's
    ``from_config`` and ``model_from_json`` give fresh weights; ``load_model`` keeps it."""
    from reglab.models.sequential import Sequential

    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise ConfigError(f"{where}: expected a config with a 'layers' list. Got {config!r}.")
    if "graph" not in config and ("input_layers" in config or any(
            isinstance(entry, dict) and entry.get("inbound_nodes") for entry in config["layers"])):
        raise ConfigError(f"{where}: this is Keras's own functional-model config "
                          "(inbound_nodes); here reglab reads the configs reglab writes. Give "
                          "Keras's whole JSON to reglab.models.model_from_json "
                          "(keras_model.to_json()), or its .keras file to load_model.")
    graph = config.get("graph")
    if graph is not None and (not isinstance(graph, list) or not all(
            isinstance(g, list) and all(isinstance(j, int) for j in g) for g in graph)):
        raise ConfigError(f"{where}: expected 'graph' to be a list of lists of layer "
                          f"positions. Got {graph!r}.")
    shape = config.get("input_shape")
    if shape is not None and not isinstance(shape, (list, tuple)):
        raise ConfigError(f"{where}: expected 'input_shape' to be a list or null. "
                          f"Got {shape!r}.")
    stack = [_from_entry(entry, _LAYERS, "layer class", f"{where}: layers[{i}]")
             for i, entry in enumerate(config["layers"])]
    seed = config.get("seed") if keep_seed else None
    try:
        if "graph" in config:  # a functional model
            from reglab.models.functional import Model

            if shape is None:
                raise ConfigError("expected the input_shape of a functional model. Got null.")
            calls, inputs, outputs = (_positions(config, key) for key in GRAPH_KEYS[1:])
            return Model.from_graph(stack, config["graph"], shape,
                                    name=config.get("name"), seed=seed,
                                    trainable=bool(config.get("trainable", True)), calls=calls,
                                    inputs=inputs, outputs=outputs)
        if config.get("input_shape") is not None:
            stack.insert(0, layers.Input(shape=tuple(config["input_shape"])))
        return Sequential(stack, trainable=bool(config.get("trainable", True)),
                          name=config.get("name"), seed=seed)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from error


#: a functional model's config keys beside its layers (see Sequential.get_config)
GRAPH_KEYS = ("graph", "calls", "inputs", "outputs")


def _positions(config: dict, key: str) -> list[int] | None:
    """``config[key]``, a list of graph positions (or layer indices for 'calls'), or None."""
    value = config.get(key)
    if value is not None and (not isinstance(value, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in value)):
        raise ConfigError(f"expected '{key}' to be a list of ints. Got {value!r}.")
    return value


def model_from_json(json_string: str, custom_objects=None):
    """A new model from :meth:`Sequential.to_json`'s JSON (architecture only, new initial
    weights)."""
    from reglab.saving import custom_object_scope

    with custom_object_scope(custom_objects, "model_from_json"):
        return _model_from_json(json_string)


def _model_from_json(json_string: str):
    where = "model_from_json"
    try:
        document = json.loads(json_string)
    except (TypeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{where}: expected JSON text. Got invalid content ({error}).") \
            from None
    if not isinstance(document, dict) or document.get("class_name") not in ("Sequential",
                                                                            "Functional"):
        got = document.get("class_name") if isinstance(document, dict) else document
        raise ConfigError(f"{where}: expected a Sequential or Functional model's JSON "
                          f"({{'class_name': ..., 'config': ...}}). Got {got!r}.")
    if str(document.get("module", "")).startswith("keras"):  # Keras's own: translated
        from reglab.models import keras_files

        return keras_files.from_document(document, where)
    return sequential_from_config(document.get("config"), where, keep_seed=False)


def _model_from_config(path: str, document: dict[str, Any]):
    model = sequential_from_config(document["config"], f"load_model: {path}")
    compile_config = document.get("compile_config")
    if compile_config is not None:
        optimizer = _from_entry(compile_config["optimizer"], _OPTIMIZERS, "optimizer",
                                f"load_model: {path}: compile_config.optimizer")
        loss = compile_config.get("loss")
        if isinstance(loss, list):  # several outputs: one loss each
            loss = [_from_entry(entry, _LOSSES, "loss",
                                f"load_model: {path}: compile_config.loss[{i}]")
                    for i, entry in enumerate(loss)]
        elif loss is not None:
            loss = _from_entry(loss, _LOSSES, "loss", f"load_model: {path}: compile_config.loss")
        metrics = _metrics(compile_config.get("metrics"), path, "metrics")
        weighted = _metrics(compile_config.get("weighted_metrics"), path, "weighted_metrics")
        try:
            # the saved optimizer says whether the loss is scaled (a LossScaleOptimizer)
            model.compile(optimizer=optimizer, loss=loss, metrics=metrics,
                          loss_weights=compile_config.get("loss_weights"),
                          weighted_metrics=weighted, auto_scale_loss=False)
        except ConfigError as error:
            raise ConfigError(f"load_model: {path}: compile_config: {error}") from error
        model._build_optimizer()  # as Keras's compile_from_config builds it
    return model


def _metrics(entries, path: str, key: str):
    """A saved compile config's metrics: names, or objects by their class and arguments."""
    from reglab.models import keras_files

    if not entries:
        return None
    return keras_files.metrics_from_config(entries, f"load_model: {path}: compile_config.{key}")


def npz_arrays(raw: bytes, where: str) -> dict[str, np.ndarray]:
    """The arrays of an ``np.savez`` archive by name (no pickled objects), or a DataError
    naming ``where``."""
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (ValueError, EOFError, *ZIP_ERRORS) as error:
        raise DataError(f"{where}: expected arrays written by np.savez (no pickled objects). "
                        f"Got content that cannot be read as them ({error}).") from error


def _load_weights(path: str, model, weights_bytes: bytes) -> None:
    where = f"load_model: {path}: {WEIGHTS_MEMBER}"
    arrays = npz_arrays(weights_bytes, where)
    expected = weight_names(model)
    if sorted(arrays) != sorted(expected):
        missing = [n for n in expected if n not in arrays]
        extra = sorted(n for n in arrays if n not in expected)
        raise DataError(f"{where}: expected {len(expected)} arrays ({', '.join(expected)}). "
                        f"Got {len(arrays)} (missing: {', '.join(missing) or 'none'}; "
                        f"unexpected: {', '.join(extra) or 'none'}).")
    if not expected:
        return
    current = model.get_weights()
    values = []
    for name, reference in zip(expected, current):
        array = arrays[name]
        if array.shape != reference.shape or array.dtype.kind not in "biuf":
            raise DataError(f"{where}: expected {name!r} of shape {reference.shape} and dtype "
                            f"{reference.dtype}. Got shape {array.shape} and dtype "
                            f"{array.dtype}.")
        values.append(array.astype(reference.dtype, copy=False))
    model.set_weights(values)
