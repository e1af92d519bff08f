"""Keras's model API: ``Sequential`` and ``load_model``."""

from reglab.models.functional import Model
from reglab.models.sequential import Sequential


def load_model(filepath):
    """Loads a model saved with ``model.save(filepath)``."""
    from reglab.models.saving import load_model as _load

    return _load(filepath)


def model_from_json(json_string, custom_objects=None):
    """A model from ``model.to_json()``'s JSON (architecture only, new weights)."""
    from reglab.models.saving import model_from_json as _from_json

    return _from_json(json_string, custom_objects)


def save_model(model, filepath):
    """Saves ``model`` to one file (the same as ``model.save(filepath)``)."""
    from reglab.models.saving import save_model as _save

    _save(model, filepath)


__all__ = ["Model", "Sequential", "load_model", "model_from_json", "save_model"]
