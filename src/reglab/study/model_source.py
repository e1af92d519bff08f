"""A study's base model from elsewhere than its own ``layers`` list: a Keras model file
(``[model] keras = "model.keras"``) or a Python factory (``[model] factory =
"package.module:make_model"``).

Either way the model's layers become the study's layers, written as a study file would
write them (``{ type = "Dense", units = 64, ... }``), so that the study's variants change
them as they change any base model (regularizers on every Dense and Conv2D, Dropout and
BatchNormalization after the hidden ones), and the fingerprint holds the architecture
itself. Only the architecture is used: the file's weights are not.

A ``.keras`` file is read as a zip (its ``config.json``, or reglab's own ``reglab.json`` in a
file reglab saved) without Keras or torch. A factory
is imported and called (it may return a reglab ``Sequential`` or a Keras one): that
imports what the factory imports.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

from reglab.study import signatures
from reglab.utils.naming import snake_case

#: the Keras configuration keys with nothing to say when they hold these values
_KERAS_DEFAULTS = {"trainable": True, "quantization_config": None, "lora_rank": None,
                   "lora_alpha": None, "seed": None, "noise_shape": None,
                   "bias_regularizer": None, "kernel_regularizer": None,
                   "activity_regularizer": None, "kernel_constraint": None,
                   "bias_constraint": None, "synchronized": False, "renorm": False,
                   "renorm_clipping": None, "renorm_momentum": 0.99, "groups": 1,
                   "data_format": "channels_last"}
_SERIALIZED = ("class_name", "config")
#: Keras's default initializers, left out (a study file does not write them either)
_DEFAULT_INITIALIZERS = {"kernel_initializer": "GlorotUniform", "bias_initializer": "Zeros",
                         "beta_initializer": "Zeros", "gamma_initializer": "Ones",
                         "moving_mean_initializer": "Zeros",
                         "moving_variance_initializer": "Ones"}


def from_keras_file(path: Path, where: str, problems: list[str]
                    ) -> tuple[tuple[int, ...] | None, list[tuple[str, dict]]]:
    """``(input shape or None, [(layer type, arguments)])`` of a ``.keras`` archive's
    Sequential model."""
    member = "config.json"
    try:
        with zipfile.ZipFile(path) as archive:
            # a file reglab saved holds its own document beside Keras's config.json
            if "reglab.json" in archive.namelist():
                member = "reglab.json"
            document = json.loads(archive.read(member).decode("utf-8"))
    except (OSError, KeyError, zipfile.BadZipFile, UnicodeDecodeError,
            json.JSONDecodeError) as error:
        problems.append(f"{where}: expected a .keras archive (a zip with {member}) at "
                        f"{str(path)!r}. Got: {type(error).__name__}: {error}.")
        return None, []
    return from_keras_config(document, where, problems)


def from_keras_config(document: Any, where: str, problems: list[str]
                      ) -> tuple[tuple[int, ...] | None, list[tuple[str, dict]]]:
    """The same, from a model's serialized config (``{"class_name": "Sequential",
    "config": {"layers": [...]}}``, Keras's or reglab's). Layers are numbered as the model
    lists them, its InputLayer left out."""
    if not isinstance(document, dict) or document.get("class_name") != "Sequential":
        got = document.get("class_name") if isinstance(document, dict) else document
        problems.append(f"{where}: expected a Sequential model. Got {got!r} (models of the "
                        "functional API are not read yet).")
        return None, []
    config = document.get("config") or {}
    entries = config.get("layers")
    if not isinstance(entries, list):
        problems.append(f"{where}: expected config.layers, a list. Got {entries!r}.")
        return None, []
    if config.get("trainable") is False:
        problems.append(f"{where}: the model is frozen (trainable = false); a study trains "
                        "its models. Save it trainable.")
    input_shape = None
    if config.get("input_shape"):  # reglab's own configs
        input_shape = _shape(config["input_shape"], False, f"{where}: input_shape", problems)
    layers = []
    position = 0
    for entry in entries:
        here = f"{where}: layers[{position}]"
        if not isinstance(entry, dict) or not all(k in entry for k in _SERIALIZED):
            problems.append(f"{here}: expected {{class_name, config}}. Got {entry!r}.")
            position += 1
            continue
        layer_config = entry["config"] if isinstance(entry["config"], dict) else {}
        if entry["class_name"] == "InputLayer":
            shape = layer_config.get("batch_shape") or layer_config.get("batch_input_shape")
            if shape:
                input_shape = _shape(shape, True, f"{where}: the InputLayer's shape",
                                     problems)
            continue
        for key, batched in (("batch_input_shape", True), ("batch_shape", True),
                             ("input_shape", False)):
            if layer_config.get(key):  # Keras 2 files, reglab layers: the model's input
                shape = _shape(layer_config[key], batched, f"{here}.{key}", problems)
                input_shape = input_shape or shape
        if input_shape is None and isinstance(entry.get("build_config"), dict):
            built = entry["build_config"].get("input_shape")
            if built:
                input_shape = _shape(built, True, f"{here}: its built input shape", problems)
        converted = _layer(entry, here, problems)
        if converted is not None:
            layers.append(converted)
        position += 1
    return input_shape, layers


def _shape(value, batched: bool, where: str, problems: list[str]) -> tuple[int, ...] | None:
    """A shape from a config: positive ints, after the batch axis when ``batched``."""
    dims = list(value)[1:] if batched and isinstance(value, (list, tuple)) else value
    if not isinstance(dims, (list, tuple)) or not dims or not all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims):
        problems.append(f"{where}: expected positive dimensions (after the batch axis). Got "
                        f"{value!r}; a study's models take inputs of one fixed shape.")
        return None
    return tuple(dims)


#: arguments that are the model's input, not the layer's
_INPUT_ARGUMENTS = ("input_shape", "batch_input_shape", "batch_shape", "input_dim")
#: pair-valued arguments: [3, 3] is written 3
_PAIRS = ("kernel_size", "strides", "pool_size", "dilation_rate")


def _same(value, default) -> bool:
    """Whether a config's value is the default: lists as tuples, a scalar as its pair."""
    def norm(v):
        return tuple(v) if isinstance(v, list) else v
    value, default = norm(value), norm(default)
    if isinstance(default, tuple) and not isinstance(value, tuple):
        value = (value,) * len(default)
    return value == default


def _layer(entry: dict, where: str, problems: list[str]) -> tuple[str, dict] | None:
    from reglab.errors import did_you_mean

    known = signatures.classes("layer")
    type_ = entry["class_name"]
    if type_ not in known:
        problems.append(f"{where}: reglab has no layer {type_!r}.{did_you_mean(type_, known)} "
                        f"Expected one of: {', '.join(sorted(known))}.")
        return None
    defaults = signatures.defaults("layer")[type_]
    config = entry["config"] if isinstance(entry["config"], dict) else {}
    args = {}
    needed = signatures.required("layer")[type_]  # kept even where they look like defaults
    for key, value in config.items():
        if key not in needed and (
                (key in _KERAS_DEFAULTS and _same(value, _KERAS_DEFAULTS[key]))
                or value is None or key in _INPUT_ARGUMENTS):
            continue  # a default, an option that is off, or the model's input
        if key == "name" and re.fullmatch(rf"{snake_case(type_)}(_\d+)?", str(value)):
            continue  # an automatic name: the study names its layers itself
        if key == "activation" and value == "linear" and key not in needed:
            continue  # no activation, as a study file writes it (not Activation's own)
        if isinstance(value, dict) and _DEFAULT_INITIALIZERS.get(key) == value.get(
                "class_name") and not any(v is not None for v in
                                          (value.get("config") or {}).values()):
            continue
        if key == "dtype":
            name = _policy_name(value)
            if name not in (None, "float32"):
                problems.append(f"{where} ({type_}).dtype: the dtype policy {name!r}; a "
                                "study's precision is [training] precision = \"bfloat16\" "
                                "or \"float16\" (hidden layers) instead. Save the model in "
                                "float32.")
            continue
        if key not in known[type_]:
            problems.append(f"{where} ({type_}).{key}: reglab's {type_} has no such argument "
                            f"(value {value!r}).")
            continue
        value = _value(key, value)
        if key in _PAIRS and isinstance(value, list) and len(set(value)) == 1:
            value = value[0]
        if key in defaults and _same(value, defaults[key]):
            continue  # reglab's default, as a study file leaves it out
        args[key] = value
    if type_.endswith("Pooling2D") and "strides" in args and _same(
            args["strides"], args.get("pool_size", defaults.get("pool_size"))):
        del args["strides"]  # Keras writes strides = pool_size, its default
    return type_, args


def _float32_shortest(value):
    """The shortest decimal that a float32 ``value`` rounds from (``0.0010000000474974513``
    -> ``0.001``), for floats; other values as they are."""
    if isinstance(value, float):
        import numpy as np

        return float(np.format_float_positional(np.float32(value), unique=True, trim="-"))
    return value


def _policy_name(value) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return (value.get("config") or {}).get("name")
    return None


def _value(key: str, value: Any) -> Any:
    """A Keras-serialized argument as a study file writes it."""
    if isinstance(value, dict) and "class_name" in value:
        config = {k: v for k, v in (value.get("config") or {}).items() if v is not None}
        kind = "regularizer" if key.endswith("_regularizer") else "constraint" \
            if key.endswith("_constraint") else None
        if kind is not None:  # Keras keeps strengths in float32: 0.001 again
            defaults = signatures.defaults(kind).get(value["class_name"], {})
            config = {k: _float32_shortest(v) for k, v in config.items()}
            return {"type": value["class_name"],
                    **{k: v for k, v in config.items()
                       if not (k in defaults and _same(v, defaults[k]))}}
        return {"class_name": value["class_name"], "config": config}  # an initializer
    if isinstance(value, tuple):
        return list(value)
    return value


def from_factory(reference: str, base: Path, where: str, problems: list[str]
                 ) -> tuple[tuple[int, ...] | None, list[tuple[str, dict]]]:
    """The layers of the model ``package.module:function`` returns (the study file's
    directory is importable)."""
    module_name, _, function_name = reference.partition(":")
    if not module_name or not function_name:
        problems.append(f"{where}: expected 'package.module:function'. Got {reference!r}.")
        return None, []
    directory = str(base.resolve())
    added = directory not in sys.path
    if added:
        sys.path.insert(0, directory)
    try:
        # A module of that name imported before (another study's, or this file before an
        # edit) is not reused: the factory is read from this study's directory, as it is now.
        top = module_name.split(".")[0]
        for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
            if _under(sys.modules[name], base) or not _is_installed(sys.modules[name]):
                del sys.modules[name]
        module = importlib.import_module(module_name)
        factory = getattr(module, function_name)
        model = factory()
    except Exception as error:  # the user's code: its failure, named
        problems.append(f"{where}: calling {reference!r} failed: "
                        f"{type(error).__name__}: {error}.")
        return None, []
    except SystemExit as error:  # sys.exit() in the user's code: named, not obeyed
        problems.append(f"{where}: calling {reference!r} called sys.exit({error.code!r}); "
                        "expected it to return a model.")
        return None, []
    finally:
        if added:
            sys.path.remove(str(base.resolve()))
    return from_model(model, f"{where} ({reference})", problems)


def _under(module, base: Path) -> bool:
    file = getattr(module, "__file__", None)
    return bool(file) and Path(file).resolve().is_relative_to(base.resolve())


def _is_installed(module) -> bool:
    """A module of an installed package (site-packages) or the standard library, which a
    study's factory of the same name must not replace."""
    file = getattr(module, "__file__", None)
    return not file or "site-packages" in file or "dist-packages" in file or \
        Path(file).resolve().is_relative_to(Path(sys.prefix).resolve())


def from_model(model: Any, where: str, problems: list[str]):
    """The layers of a reglab or Keras ``Sequential`` object."""
    from reglab.models import Sequential

    if isinstance(model, Sequential):
        from reglab.models.saving import model_to_config

        try:
            document = model_to_config(model, where)
        except Exception as error:
            problems.append(str(error))
            return None, []
        return from_keras_config(document, where, problems)
    if type(model).__name__ == "Sequential" and hasattr(model, "get_config"):  # Keras's
        return from_keras_config({"class_name": "Sequential", "config": model.get_config()},
                                 where, problems)
    problems.append(f"{where}: expected a reglab or Keras Sequential model. Got "
                    f"{type(model).__name__}.")
    return None, []
