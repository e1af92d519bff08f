"""Keras 3's own ``.keras`` files read as reglab models (``reglab.models.load_model``).

A ``.keras`` file is a zip of ``config.json`` (the model's and its compile settings' Keras
configs), ``metadata.json`` and ``model.weights.h5``. Its config is translated to reglab's
(the same class names and arguments; Keras's serialized objects ``{module, class_name,
config, registered_name}`` become reglab's ``{class_name, config}``, dtype policies their
names, the ``InputLayer`` the input shape) and built by reglab's own loader, so only
reglab's built-in classes are ever constructed and a file can never run code; the weights
are read from the archive in Keras's layout. A Sequential model is read; a functional one is
refused by name (not yet). Arguments Keras writes at values reglab has no feature for
(``quantization_config: null``, ``synchronized: false``...) are dropped; any other value
reglab does not take is a ConfigError naming the layer and the argument.
"""

from __future__ import annotations

import zipfile
from typing import Any

from reglab.errors import ConfigError, DataError
from reglab.keras_configs import plain as _plain

CONFIG_MEMBER = "config.json"
WEIGHTS_MEMBER = "model.weights.h5"


def is_keras_archive(members: list[str]) -> bool:
    return CONFIG_MEMBER in members and WEIGHTS_MEMBER in members


def is_keras_sequential_config(config: Any) -> bool:
    """Whether ``config`` is a Keras Sequential's ``get_config()`` (its layers serialized
    with their ``module``), rather than reglab's."""
    return isinstance(config, dict) and isinstance(config.get("layers"), list) and any(
        isinstance(entry, dict) and ("module" in entry or "registered_name" in entry)
        for entry in config["layers"])


def sequential_config(config: Any, where: str) -> dict[str, Any]:
    """A Keras Sequential's config as reglab's (its InputLayer the input shape)."""
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise DataError(f"{where}: expected the model's config with a 'layers' list. Got "
                        f"{config!r}.")
    layers, input_shape = [], None
    for i, entry in enumerate(config["layers"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
            raise DataError(f"{where}: layers[{i}]: expected a Keras layer config with "
                            f"'class_name' and 'config'. Got {entry!r}.")
        layer_config = dict(entry["config"])
        shape = layer_config.pop("batch_shape", None) or layer_config.pop("batch_input_shape",
                                                                          None)
        if shape is not None and input_shape is None:
            input_shape = list(shape[1:])
        if entry.get("class_name") == "InputLayer":
            continue
        layers.append({"class_name": entry.get("class_name"), "config": _plain(layer_config)})
    return {"name": config.get("name", "sequential"),
            "trainable": config.get("trainable", True), "input_shape": input_shape,
            "layers": layers}


def _optimizer(entry: Any, where: str):
    from reglab import optimizers

    entry = _plain(entry)
    if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
        raise DataError(f"{where}: expected a Keras optimizer config. Got {entry!r}.")
    config = {k: v for k, v in entry["config"].items() if k != "name"}
    if entry.get("class_name") == "LossScaleOptimizer" and isinstance(
            config.get("inner_optimizer"), dict):
        inner = config["inner_optimizer"]
        config["inner_optimizer"] = {"class_name": inner.get("class_name"), "config": {
            k: v for k, v in (inner.get("config") or {}).items() if k != "name"}}
        return optimizers.LossScaleOptimizer.from_config(config)
    return optimizers.optimizers.from_entry({"class_name": entry.get("class_name"),
                                             "config": config}, where)


def _loss(entry: Any, where: str):
    from reglab import losses

    if entry is None or isinstance(entry, str):
        return entry
    if isinstance(entry, list):  # a model with several outputs: one each
        return [_loss(e, f"{where}[{i}]") for i, e in enumerate(entry)]
    if isinstance(entry, dict) and "class_name" not in entry:  # by output name
        return {k: _loss(v, f"{where}.{k}") for k, v in entry.items()}
    return losses.deserialize(_plain(entry), where)


def metrics_from_config(entries: Any, where: str):
    """The metrics a compile config lists (Keras's file or reglab's): names as they are,
    Keras's serialized metric objects, loss functions and loss objects as reglab's; for a
    model with several outputs, the same per output (a dict by output name, or a list of
    lists)."""
    if entries is None:
        return None
    if isinstance(entries, dict):  # per output, by name: a list or one metric each
        return {key: metrics_from_config(value, f"{where}[{key!r}]")
                if isinstance(value, list) or value is None
                else _metric_entry(value, f"{where}[{key!r}]")
                for key, value in entries.items()}
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: expected a list of metrics (or per output, a dict or a "
                          f"list of lists). Got {entries!r}.")
    if entries and all(isinstance(e, list) or e is None for e in entries):
        return [metrics_from_config(e, f"{where}[{i}]") for i, e in enumerate(entries)]
    return [_metric_entry(entry, f"{where}[{i}]") for i, entry in enumerate(entries)]


def _metric_entry(entry: Any, where: str):
    """One metric of a compile config as compile takes it (see metrics_from_config)."""
    from reglab import losses

    module = entry.get("module") if isinstance(entry, dict) else None
    entry = _plain(entry)
    if isinstance(entry, str):
        return entry
    if isinstance(entry, dict) and entry.get("class_name") == "function" and \
            isinstance(entry.get("config"), str):
        # a function Keras saved by its name: a loss's (as Keras reloads it), else the
        # metric of that name
        name = entry["config"]
        return next((fn for fn in losses.keras_functions() if fn.__name__ == name), name)
    if module == "keras.losses":
        return _loss(entry, where)  # a loss object as a metric
    cls = _metric_class(entry)
    if cls is None:
        raise ConfigError(f"{where}: expected a metric name, a Keras metric or loss function, "
                          f"or an object of one of reglab's metric or loss classes. Got "
                          f"{entry!r}.")
    config = {k: v for k, v in entry["config"].items() if k not in ("dtype",)}
    try:
        return cls(**config)
    except (TypeError, ValueError, ConfigError) as error:
        said = str(error).rstrip(".")
        if not said.startswith(f"{cls.__name__}:"):  # the class's own errors name it
            said = f"the arguments do not fit {cls.__name__}: {said}"
        raise ConfigError(f"{where}: {said}.") from None


def _metric_class(entry: Any) -> type | None:
    """The reglab metric class a Keras metric's config names (``{class_name, config}``), or
    None."""
    if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
        return None
    return metric_class_by_name(str(entry.get("class_name")))


def metric_class_by_name(name: str) -> type | None:
    """The class of ``reglab.metrics`` of that name whose objects a file holds by their
    arguments (Keras's name and config): the mean metrics', confusion metrics', F-scores',
    R2Score's and the IoU metrics' (not the bases, which wrap code), or None."""
    from reglab import metrics
    from reglab.metric_classes import MeanMetricWrapper

    cls = getattr(metrics, name, None)
    if isinstance(cls, type) and cls not in (MeanMetricWrapper, metrics.ConfusionMetric) and \
            issubclass(cls, (MeanMetricWrapper, metrics.ConfusionMetric, metrics.FBetaScore,
                             metrics.R2Score, metrics.IoU)):
        return cls
    return None


def from_document(document: dict[str, Any], where: str):
    """A new reglab model from a Keras model's config document (``{module, class_name:
    'Sequential', config}``, as in ``config.json`` or ``to_json()``), new initial weights."""
    from reglab.models.saving import sequential_from_config

    if document.get("class_name") == "Functional":
        return _functional(document.get("config"), where)
    if document.get("class_name") != "Sequential":
        raise ConfigError(f"{where}: expected a Keras Sequential or Functional model. Got "
                          f"{document.get('class_name')!r}.")
    return sequential_from_config(sequential_config(document.get("config"), where), where,
                                  keep_seed=False)


def _history(value: Any, tensors: dict, where: str):
    """The symbolic tensor (or list of them) a Keras node's argument names by its
    ``keras_history`` ``[layer, node, tensor]``."""
    if isinstance(value, list):
        return [_history(v, tensors, where) for v in value]
    history = value.get("config", {}).get("keras_history") if isinstance(value, dict) else None
    if not isinstance(history, list) or len(history) != 3 or \
            (history[0], history[1]) not in tensors:
        raise DataError(f"{where}: expected a Keras tensor of an earlier layer "
                        f"(keras_history [layer, node, tensor]). Got {value!r}.")
    return tensors[(history[0], history[1])]


def _functional(config: Any, where: str):
    """A Keras functional model's config rebuilt by calling reglab's layers on reglab's
    inputs, node by node, as Keras's ``inbound_nodes`` say (a shared layer once per call)."""
    from reglab import layers as layers_module
    from reglab.models.functional import Model
    from reglab.models.saving import _LAYERS, _from_entry

    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise DataError(f"{where}: expected the model's config with a 'layers' list. Got "
                        f"{config!r}.")
    tensors: dict[tuple[str, int], Any] = {}
    pending = []  # (where, layer, its name, node index, the node's one argument)
    for i, entry in enumerate(config["layers"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
            raise DataError(f"{where}: layers[{i}]: expected a Keras layer config. Got "
                            f"{entry!r}.")
        layer_config = dict(entry["config"])
        name = entry.get("name") or layer_config.get("name")
        if entry.get("class_name") == "InputLayer":
            shape = layer_config.get("batch_shape") or layer_config.get("batch_input_shape")
            tensors[(name, 0)] = layers_module.Input(shape=tuple(shape[1:]), name=name)
            continue
        layer = _from_entry({"class_name": entry.get("class_name"),
                             "config": _plain(layer_config)}, _LAYERS, "layer class",
                            f"{where}: layers[{i}]")
        for node_index, node in enumerate(entry.get("inbound_nodes") or []):
            args = node.get("args") if isinstance(node, dict) else None
            # Keras records a symbolic call's training=False; training mode is fit's here
            extra = {k: v for k, v in (node.get("kwargs") or {}).items()
                     if v is not None and not (k == "training" and v is False)} \
                if isinstance(node, dict) else {}
            if not args or len(args) != 1 or extra:
                raise ConfigError(f"{where}: layers[{i}] ({name}): a call on one input (or "
                                  f"one list of them) without arguments is read. Got "
                                  f"{node!r}.")
            pending.append((f"{where}: layers[{i}] ({name})", layer, name, node_index, args[0]))
    # Keras's order: a node waits for the tensors it reads (a shared layer's later call
    # reads layers listed after it); each pass calls every node that can be called
    while pending:
        waiting = []
        for place, layer, name, node_index, argument in pending:
            try:
                inputs = _history(argument, tensors, place)
            except DataError:
                waiting.append((place, layer, name, node_index, argument))
                continue
            if node_index and (name, node_index - 1) not in tensors:  # calls in their order
                waiting.append((place, layer, name, node_index, argument))
                continue
            tensors[(name, node_index)] = layer(inputs)
        if len(waiting) == len(pending):  # nothing could be called: a name is missing
            place, _, _, _, argument = waiting[0]
            _history(argument, tensors, place)  # raises, naming what is missing
        pending = waiting

    def ends(key):
        given = config.get(key)
        single = isinstance(given, list) and len(given) == 3 and isinstance(given[0], str)
        found = [_history({"config": {"keras_history": g}}, tensors, f"{where}: {key}")
                 for g in ([given] if single else given or [])]
        return found[0] if single or len(found) == 1 else found
    return Model(ends("input_layers"), ends("output_layers"), name=config.get("name"),
                 trainable=config.get("trainable", True))


def load(path: str, compile: bool = True):  # noqa: A002
    """The Keras archive at ``path`` as a reglab model with its weights, compiled as saved
    (with its optimizer's state) unless ``compile`` is False."""
    from reglab.models.saving import _MAX_CONFIG_BYTES, json_object

    where = f"load_model: {path}: {CONFIG_MEMBER}"
    with zipfile.ZipFile(path) as archive:
        if archive.getinfo(CONFIG_MEMBER).file_size > _MAX_CONFIG_BYTES:
            raise DataError(f"{where}: expected at most {_MAX_CONFIG_BYTES} bytes. Got "
                            f"{archive.getinfo(CONFIG_MEMBER).file_size}.")
        raw = archive.read(CONFIG_MEMBER)
    document = json_object(raw, where)
    model = from_document(document, where)
    compiled = document.get("compile_config") if compile else None
    if compiled == {}:  # Keras writes an uncompiled model's as an empty object
        compiled = None
    if isinstance(compiled, dict):
        where = f"{where}: compile_config"
        # each part's errors name it; compile's own are prefixed with the file below
        optimizer = _optimizer(compiled.get("optimizer"), f"{where}.optimizer")
        loss = _loss(compiled.get("loss"), f"{where}.loss")
        metrics = metrics_from_config(compiled.get("metrics"), f"{where}.metrics")
        weighted = metrics_from_config(compiled.get("weighted_metrics"),
                                       f"{where}.weighted_metrics")
        try:
            model.compile(optimizer=optimizer, loss=loss, metrics=metrics,
                          weighted_metrics=weighted, loss_weights=compiled.get("loss_weights"),
                          # as Keras's compile_from_config: it wrote the inner optimizer of
                          # one compile wrapped, and wraps it again under mixed_float16
                          auto_scale_loss=compiled.get("auto_scale_loss", True) is not False)
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from None
    from reglab.models import weights_file

    if model._input_shape is None and model._population is None:
        return model  # a model saved unbuilt has no weights yet: unbuilt, as Keras loads it
    # Keras's load_model builds the optimizer before reading its variables: so does this
    weights_file.load_weights(model, path, optimizer_state=isinstance(compiled, dict),
                              caller="load_model")
    if isinstance(compiled, dict):
        model._build_optimizer()
    return model
