"""Keras 3's serialized configs read as reglab's: what a config Keras wrote (a ``.keras``
file's, ``model.to_json()``'s, ``layer.get_config()``'s) needs before reglab's classes take
it. Keras's serialized objects ``{module, class_name, config, registered_name}`` become
reglab's ``{class_name, config}``, dtype policies their names, and arguments Keras writes at
the values that mean "a feature reglab does not have is off" (``quantization_config:
null``, ``synchronized: false``...) are dropped; any other value is left for the class to
take or refuse by name."""

from __future__ import annotations

from typing import Any

#: Keras's arguments, at the values that mean "a feature reglab does not have is off"
OFF = {"quantization_config": None, "lora_rank": None, "lora_alpha": None,
       "synchronized": False, "loss_scale_factor": None, "gradient_accumulation_steps": None,
       "input_axes": None, "output_axes": None, "reduction": "sum_over_batch_size",
       "optional": False, "sparse": False, "ragged": False, "renorm": False,
       "renorm_clipping": None, "renorm_momentum": 0.99, "groups": 1,
       "data_format": "channels_last", "activity_regularizer": None}


def plain(value: Any, keep: frozenset[str] = frozenset()) -> Any:
    """Keras's serialized forms as reglab's, recursively; an ``OFF`` argument at its off
    value dropped unless its name is in ``keep`` (arguments the class takes itself)."""
    if isinstance(value, dict):
        if "class_name" in value and "config" in value and (
                "module" in value or "registered_name" in value):
            if value["class_name"] == "DTypePolicy" and isinstance(value["config"], dict):
                return value["config"].get("name")
            return {"class_name": value["class_name"], "config": plain(value["config"])}
        return {key: plain(v) for key, v in value.items()
                if not (key in OFF and key not in keep and v == OFF[key])
                and key != "shared_object_id"}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
