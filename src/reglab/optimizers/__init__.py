"""Optimizers with Keras 3's names, arguments, defaults and update rules."""

from reglab.optimizers import schedules
from reglab.optimizers.adaptive import Adadelta, Adagrad, Adamax, Ftrl, Lamb, Lion, Nadam
from reglab.optimizers.factored import Adafactor
from reglab.optimizers.loss_scale import LossScaleOptimizer
from reglab.optimizers.optimizers import (
    SGD,
    Adam,
    AdamW,
    Optimizer,
    RMSprop,
    deserialize,
    get,
    serialize,
)

__all__ = ["SGD", "Adadelta", "Adafactor", "Adagrad", "Adam", "AdamW", "Adamax", "Ftrl", "Lamb", "Lion",
           "LossScaleOptimizer", "Nadam", "Optimizer", "RMSprop", "deserialize", "get",
           "schedules", "serialize"]
