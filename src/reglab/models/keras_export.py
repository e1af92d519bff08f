"""reglab's saved model written the way Keras 3 writes it, so that ``keras.models.load_model``
opens a ``.keras`` file reglab saved.

A Keras archive is ``config.json`` (the model as Keras serializes it: every object
``{module, class_name, config, registered_name}``, an ``InputLayer`` first, the compile
settings), ``metadata.json`` and ``model.weights.h5`` (:mod:`reglab.models.weights_file`'s
layout, with the optimizer's variables). reglab's classes and arguments are Keras's names, so
the translation is of form only: reglab's document (:func:`reglab.models.saving.
model_to_config`) with each ``{class_name, config}`` given the Keras module it comes from, the
input shape an ``InputLayer``, a functional model's graph Keras's inbound nodes, and reglab's own settings that Keras has no argument for left out
at their off values (the model's ``seed``, an optimizer's ``swa_start`` of None). A class or
setting Keras lacks (``ProximalL1``, ``GroupLasso``, ``swa_start = 5``...) is written as it is,
so Keras's loader names it. reglab reads its own full document (``reglab.json`` beside these),
never this translation; this is the inverse of :mod:`reglab.keras_configs`.
"""

from __future__ import annotations

import datetime
import json
import zipfile
import zlib
from typing import Any

from reglab.models.keras_files import WEIGHTS_MEMBER  # noqa: F401  (the archive's weights)

#: Keras 3's module of each kind of serialized object
_MODULES = {"layer": "keras.layers", "initializer": "keras.initializers",
            "regularizer": "keras.regularizers", "constraint": "keras.constraints",
            "optimizer": "keras.optimizers", "loss": "keras.losses",
            "schedule": "keras.optimizers.schedules"}
#: reglab's arguments Keras 3's class does not take, by class (``None``: every class), at
#: the values that mean "off", or at any value (``...``) where the setting is moot (tests/parity/test_parity_keras_reads_reglab_files.py finds
#: them again from Keras's signatures)
_REGLAB_ONLY_OFF = {
    None: {"swa_start": None},
    "SparseCategoricalCrossentropy": {"label_smoothing": 0.0},
    "LayerNormalization": {"rms_scaling": False},
    "RandomFlip": {"fill_mode": "reflect", "interpolation": "bilinear", "fill_value": 0.0},
    # Keras's own file leaves out trainable here (its constructor has no such argument)
    "SpatialDropout1D": {"noise_shape": None, "trainable": ...},
    "SpatialDropout2D": {"noise_shape": None, "trainable": ...},
}
#: the Keras version whose format this writes (``metadata.json``)
KERAS_VERSION = "3.15.1"
METADATA_MEMBER = "metadata.json"
#: what zipfile raises for a damaged archive or member: a bad header or CRC, a member
#: flagged encrypted (RuntimeError) or compressed by an unknown method (NotImplementedError)
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError,
              NotImplementedError, RuntimeError, OSError)


def keras_model_config(document: dict[str, Any], model=None) -> dict[str, Any]:
    """Keras's ``config.json`` for reglab's document of ``model`` (a functional model's
    tensors take their shapes from the built model)."""
    if document["class_name"] == "Functional":
        out = {"module": "keras.src.models.functional", "class_name": "Functional",
               "config": _functional(document["config"], model), "registered_name": "Functional"}
    else:
        out = _sequential(document["config"])
    compile_config = document.get("compile_config")
    if compile_config is not None:
        out["compile_config"] = _compile_config(compile_config)
    return out


def keras_names(names: list[str]) -> list[str]:
    """Layer names as Keras takes them: no ``/`` (Keras refuses it; ``_`` instead), each
    still unique (``_1``, ``_2``... after one that now reads like another)."""
    taken: list[str] = []
    for name in names:
        taken.append(_unused(name.replace("/", "_"), taken))
    return taken


def _unused(name: str, names: list[str]) -> str:
    """``name``, or ``name_1``, ``name_2``... where one of ``names`` already has it."""
    candidate, n = name, 0
    while candidate in names:
        n += 1
        candidate = f"{name}_{n}"
    return candidate


def _layer_entry(entry: dict[str, Any], name: str) -> dict[str, Any]:
    """A layer's ``{class_name, config}`` as Keras serializes it, under ``name``."""
    config = {k: v for k, v in entry["config"].items() if k != "input_shape"}
    if "name" in config:
        config["name"] = name
    return _serialized("layer", entry["class_name"], _arguments(entry["class_name"], config))


def _sequential(config: dict[str, Any]) -> dict[str, Any]:
    shape = config.get("input_shape")
    entries = config["layers"]
    names = keras_names([entry["config"].get("name") or "" for entry in entries])
    layers = []
    if shape is not None:
        layers.append(_serialized("layer", "InputLayer", {
            "batch_shape": [None, *shape], "dtype": "float32",
            "name": _unused("input_layer", names)}))
    layers += [_layer_entry(entry, name) for entry, name in zip(entries, names)]
    model = {"name": config["name"], "trainable": config.get("trainable", True),
             "layers": layers}
    out = {"module": "keras", "class_name": "Sequential", "config": model,
           "registered_name": None}
    if shape is not None:
        model["build_input_shape"] = [None, *shape]
        out["build_config"] = {"input_shape": [None, *shape]}
    return out


def _functional(config: dict[str, Any], model) -> dict[str, Any]:
    """A functional model as Keras writes it: each layer once, with one inbound node per
    call; each node's arguments the tensors it reads (``keras_history``: the calling layer's
    name, its call's index, 0), a merge layer's as one list."""
    entries, graph = config["layers"], config["graph"]
    calls = config.get("calls") or list(range(len(graph)))
    plan = model._build().plan
    names = keras_names([entry["config"]["name"] for entry in entries])
    node_of, nodes = [], [[] for _ in entries]  # a position's call index; each layer's nodes
    for index in calls:
        node_of.append(len(nodes[index]))
        nodes[index].append(None)
    inputs = config.get("inputs") or [p for p, index in enumerate(calls)
                                      if entries[index]["class_name"] == "InputLayer"][:1]

    def tensor(position):
        layer = plan.layers[position]
        return {"class_name": "__keras_tensor__", "config": {
            "shape": [None, *layer.output_shape],
            "dtype": layer.layer.dtype_policy.compute_dtype,
            "keras_history": [names[calls[position]], node_of[position], 0]}}

    for position, index in enumerate(calls):
        if entries[index]["class_name"] == "InputLayer":
            continue
        read = [tensor(inputs[0] if p == -1 else p) for p in graph[position]]
        takes_list = getattr(plan.layers[position].layer, "takes_list", False)
        nodes[index][node_of[position]] = {"args": [read] if takes_list else read,
                                           "kwargs": {}}
    layers = []
    for entry, name, calls_of in zip(entries, names, nodes):
        if entry["class_name"] == "InputLayer":
            shape = plan.layers[calls.index(names.index(name))].output_shape
            serialized = _serialized("layer", "InputLayer", {
                "batch_shape": [None, *shape], "dtype": "float32", "name": name})
            calls_of = []
        else:
            serialized = _layer_entry(entry, name)
        layers.append({**serialized, "name": name, "inbound_nodes": calls_of})

    def ends(positions):
        found = [[names[calls[p]], node_of[p], 0] for p in positions]
        return found[0] if len(found) == 1 else found
    outputs = config.get("outputs") or [len(graph) - 1]
    return {"name": config["name"], "trainable": config.get("trainable", True),
            "layers": layers, "input_layers": ends(inputs), "output_layers": ends(outputs)}


def metadata(reglab_version: str) -> dict[str, str]:
    """Keras's ``metadata.json``: the format's Keras version and the time saved, and the
    reglab version that saved it (Keras reads only its own keys)."""
    return {"keras_version": KERAS_VERSION,
            "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
            "reglab_version": reglab_version}


def saved_by_reglab(archive, members: list[str]) -> bool:
    """Whether the open zip ``archive``'s ``metadata.json`` says reglab saved it."""
    if METADATA_MEMBER not in members or archive.getinfo(METADATA_MEMBER).file_size > 2**16:
        return False
    try:
        found = json.loads(archive.read(METADATA_MEMBER).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, *ZIP_ERRORS):  # unreadable: no sign either way
        return False
    return isinstance(found, dict) and "reglab_version" in found


def _compile_config(compile_config: dict[str, Any]) -> dict[str, Any]:
    optimizer = compile_config["optimizer"]
    loss = compile_config.get("loss")
    out = {"optimizer": _object(optimizer, "optimizer"),
           "loss": [_object(part, "loss") for part in loss] if isinstance(loss, list)
           else _object(loss, "loss"),
           "metrics": compile_config.get("metrics"),
           "loss_weights": compile_config.get("loss_weights"),
           "weighted_metrics": compile_config.get("weighted_metrics")}
    return out


def serialized_object(entry, kind: str):
    """A ``{class_name, config}`` entry of reglab's in Keras's serialized form (module,
    Keras's arguments: reglab's own left out where they are off)."""
    return _object(entry, kind)


def _object(entry, kind: str):
    """A ``{class_name, config}`` entry serialized as Keras's ``kind``; anything else as is."""
    if isinstance(entry, dict) and "class_name" in entry and "config" in entry \
            and "module" not in entry:
        return _serialized(kind, entry["class_name"],
                           _arguments(entry["class_name"], entry["config"]))
    return entry


def _arguments(class_name: str, config: dict[str, Any]) -> dict[str, Any]:
    """A class's arguments in Keras's form, reglab's own left out where they are off."""
    off = {**_REGLAB_ONLY_OFF[None], **_REGLAB_ONLY_OFF.get(class_name, {})}
    return {key: _value(key, value) for key, value in config.items()
            if not (key in off and (off[key] is ... or value == off[key]))}


def _value(key: str, value):
    """An argument's value in Keras's form: a nested object serialized by its kind (the
    argument's suffix: ``kernel_regularizer`` a regularizer), a schedule as it is."""
    if isinstance(value, dict) and "class_name" in value and "config" in value:
        if "module" in value:  # already Keras's form (a learning-rate schedule)
            return value
        for suffix in ("initializer", "regularizer", "constraint", "optimizer", "layer"):
            if key == suffix or key.endswith("_" + suffix):
                return _object(value, suffix)
        return _object(value, "layer")
    if isinstance(value, list):
        return [_value(key, v) for v in value]
    return value


def _serialized(kind: str, class_name: str, config: dict[str, Any]) -> dict[str, Any]:
    return {"module": _MODULES[kind], "class_name": class_name, "config": config,
            "registered_name": None}
