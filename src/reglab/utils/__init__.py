"""Small helpers with Keras's names: ``reglab.utils.to_categorical``."""

from reglab.utils.numerical_utils import to_categorical

__all__ = ["to_categorical"]
