"""Keras's model API: ``Sequential`` and ``load_model``."""

from reglab.models.sequential import Sequential


def load_model(filepath):
    """Loads a model saved with ``model.save(filepath)``."""
    from reglab.models.saving import load_model as _load

    return _load(filepath)


def save_model(model, filepath):
    """Saves ``model`` to one file (the same as ``model.save(filepath)``)."""
    from reglab.models.saving import save_model as _save

    _save(model, filepath)


__all__ = ["Sequential", "load_model", "save_model"]
