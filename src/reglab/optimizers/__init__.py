"""Optimizers with Keras 3's names, arguments, defaults and update rules."""

from reglab.optimizers import schedules
from reglab.optimizers.loss_scale import LossScaleOptimizer
from reglab.optimizers.optimizers import SGD, Adam, AdamW, Optimizer, RMSprop, get

__all__ = ["SGD", "Adam", "AdamW", "LossScaleOptimizer", "Optimizer", "RMSprop", "get",
           "schedules"]
