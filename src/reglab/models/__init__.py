"""Keras's model API: ``Sequential`` and ``load_model``."""

from reglab.models.sequential import Sequential


def load_model(filepath):
    """Loads a model saved with ``model.save(filepath)``."""
    from reglab.models.saving import load_model as _load

    return _load(filepath)


__all__ = ["Sequential", "load_model"]
