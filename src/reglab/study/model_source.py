"""A study's base model from elsewhere than its own ``layers`` list: a Keras model file
(``[model] keras = "model.keras"``) or a Python factory (``[model] factory =
"package.module:make_model"``).

Either way the model's layers become the study's layers, written as a study file would
write them (``{ type = "Dense", units = 64, ... }``), so that the study's variants change
them as they change any base model (regularizers on every Dense and Conv2D, Dropout and
BatchNormalization after the hidden ones), and the fingerprint holds the architecture
itself. Only the architecture is used: the file's weights are not.

A ``.keras`` file is read as a zip (its ``config.json``) without Keras or torch. A factory
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
                   "renorm_clipping": None, "renorm_momentum": 0.99}
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
    try:
        with zipfile.ZipFile(path) as archive:
            document = json.loads(archive.read("config.json").decode("utf-8"))
    except (OSError, KeyError, zipfile.BadZipFile, UnicodeDecodeError,
            json.JSONDecodeError) as error:
        problems.append(f"{where}: expected a .keras archive (a zip with config.json) at "
                        f"{str(path)!r}. Got: {type(error).__name__}: {error}.")
        return None, []
    return from_keras_config(document, where, problems)


def from_keras_config(document: Any, where: str, problems: list[str]
                      ) -> tuple[tuple[int, ...] | None, list[tuple[str, dict]]]:
    """The same, from a model's serialized config (``{"class_name": "Sequential",
    "config": {"layers": [...]}}``, Keras's or reglab's)."""
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
    input_shape = None
    if config.get("input_shape"):  # reglab's own configs
        input_shape = tuple(config["input_shape"])
    layers = []
    for i, entry in enumerate(entries):
        here = f"{where}: layers[{i}]"
        if not isinstance(entry, dict) or not all(k in entry for k in _SERIALIZED):
            problems.append(f"{here}: expected {{class_name, config}}. Got {entry!r}.")
            continue
        if entry["class_name"] == "InputLayer":
            shape = entry["config"].get("batch_shape") or entry["config"].get(
                "batch_input_shape")
            if shape:
                input_shape = tuple(shape[1:])
            continue
        if input_shape is None and isinstance(entry.get("build_config"), dict):
            built = entry["build_config"].get("input_shape")
            if built:
                input_shape = tuple(built[1:])
        converted = _layer(entry, here, problems)
        if converted is not None:
            layers.append(converted)
    return input_shape, layers


def _layer(entry: dict, where: str, problems: list[str]) -> tuple[str, dict] | None:
    from reglab.errors import did_you_mean

    known = signatures.classes("layer")
    type_ = entry["class_name"]
    if type_ not in known:
        problems.append(f"{where}: reglab has no layer {type_!r}.{did_you_mean(type_, known)} "
                        f"Expected one of: {', '.join(sorted(known))}.")
        return None
    args = {}
    for key, value in entry["config"].items():
        if (key in _KERAS_DEFAULTS and value == _KERAS_DEFAULTS[key]) or value is None:
            continue  # a default, or an option that is off
        if key == "name" and re.fullmatch(rf"{snake_case(type_)}(_\d+)?", str(value)):
            continue  # an automatic name: the study names its layers itself
        if isinstance(value, dict) and _DEFAULT_INITIALIZERS.get(key) == value.get(
                "class_name") and not any(v is not None for v in
                                          (value.get("config") or {}).values()):
            continue
        if key == "dtype":
            name = _policy_name(value)
            if name not in (None, "float32"):
                args["dtype"] = name
            continue
        if key not in known[type_]:
            problems.append(f"{where} ({type_}).{key}: reglab's {type_} has no such argument "
                            f"(value {value!r}).")
            continue
        value = _value(key, value)
        if key in signatures.defaults("layer")[type_] and \
                signatures.defaults("layer")[type_][key] == value:
            continue  # reglab's default, as a study file leaves it out
        args[key] = value
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
        if key.endswith("_regularizer"):  # Keras keeps strengths in float32: 0.001 again
            return {"type": value["class_name"],
                    **{k: _float32_shortest(v) for k, v in config.items()}}
        if key.endswith("_constraint"):
            return {"type": value["class_name"], **config}
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
    added = str(base.resolve()) not in sys.path
    if added:
        sys.path.insert(0, str(base.resolve()))
    try:
        module = importlib.import_module(module_name)
        factory = getattr(module, function_name)
        model = factory()
    except Exception as error:  # the user's code: its failure, named
        problems.append(f"{where}: calling {reference!r} failed: "
                        f"{type(error).__name__}: {error}.")
        return None, []
    finally:
        if added:
            sys.path.remove(str(base.resolve()))
    return from_model(model, f"{where} ({reference})", problems)


def from_model(model: Any, where: str, problems: list[str]):
    """The layers of a reglab or Keras ``Sequential`` object."""
    from reglab.models import Sequential

    if isinstance(model, Sequential):
        from reglab.models.saving import model_to_config

        try:
            document = model_to_config(model)
        except Exception as error:
            problems.append(f"{where}: {error}")
            return None, []
        return from_keras_config(document, where, problems)
    if type(model).__name__ == "Sequential" and hasattr(model, "get_config"):  # Keras's
        return from_keras_config({"class_name": "Sequential", "config": model.get_config()},
                                 where, problems)
    problems.append(f"{where}: expected a reglab or Keras Sequential model. Got "
                    f"{type(model).__name__}.")
    return None, []
