"""Optimizers with Keras 3's names, arguments, defaults and update rules."""

from reglab.optimizers.optimizers import SGD, Adam, AdamW, Optimizer, RMSprop, get

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "RMSprop", "get"]
