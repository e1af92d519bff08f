"""Keras's model API: ``Sequential``, ``Model``, ``load_model``, ``clone_model``..."""

from reglab.models.functional import Model
from reglab.models.sequential import Sequential


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):  # noqa: A002
    """Loads a model saved with ``model.save(filepath)`` (or Keras's ``.keras`` file);
    ``compile=False`` gives it uncompiled, as Keras."""
    from reglab.models.saving import load_model as _load

    return _load(filepath, custom_objects, compile, safe_mode)


def clone_model(model, input_tensors=None, clone_function=None, call_function=None,
                recursive=False, **kwargs):
    """Keras's ``clone_model``: a new model of the same layers and arguments (its own
    regularizers, constraints and initializers included) with new initial weights, compiled
    as the model was (with a new optimizer of the same settings) when it was, as Keras 3's
    clone is. The hooks that rewrite layers (``clone_function``, ``call_function``,
    ``input_tensors``) are not supported: given, they are refused."""
    from reglab.errors import ConfigError

    hooks = {"input_tensors": input_tensors, "clone_function": clone_function,
             "call_function": call_function, **kwargs}
    given = {k: v for k, v in hooks.items() if v is not None}
    if given:
        raise ConfigError(f"clone_model: {', '.join(map(repr, given))} "
                          f"{'is' if len(given) == 1 else 'are'} not supported (only the model "
                          f"is cloned, as it is). Got {given!r}.")
    if not isinstance(model, (Sequential, Model)):
        raise ConfigError(f"clone_model: expected a reglab Sequential or Model. Got {model!r}.")
    clone = type(model).from_config(model.get_config())
    arguments = getattr(model, "_compile_arguments", None)
    if model.optimizer is not None and arguments is not None:
        optimizer = type(model.optimizer).from_config(model.optimizer.get_config())
        clone.compile(optimizer=optimizer, **arguments)
    return clone


def model_from_json(json_string, custom_objects=None):
    """A model from ``model.to_json()``'s JSON (architecture only, new weights)."""
    from reglab.models.saving import model_from_json as _from_json

    return _from_json(json_string, custom_objects)


def save_model(model, filepath, overwrite=True, zipped=None, **kwargs):
    """Saves ``model`` to one file (the same as ``model.save(filepath, ...)``)."""
    from reglab.models.saving import save_model as _save

    _save(model, filepath, overwrite, zipped, **kwargs)


__all__ = ["Model", "Sequential", "clone_model", "load_model", "model_from_json", "save_model"]
