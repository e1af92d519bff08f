"""Layers with Keras 3's names, arguments, defaults and weight layouts."""

from reglab.layers.augmentation import (
    RandomFlip,
    RandomRotation,
    RandomTranslation,
    RandomZoom,
)
from reglab.layers.convolution import Conv2D, MaxPooling2D
from reglab.layers.core import Activation, Flatten, InputLayer
from reglab.layers.dense import Dense
from reglab.layers.layer import Input, Layer
from reglab.layers.merging import (
    Add,
    Average,
    Concatenate,
    Maximum,
    Minimum,
    Multiply,
    Subtract,
)
from reglab.layers.mixing import CutMix, LabelSmoothing, MixUp
from reglab.layers.normalization import BatchNormalization
from reglab.layers.regularization import (
    Dropout,
    GaussianDropout,
    GaussianNoise,
    SpatialDropout2D,
    StochasticDepth,
)

__all__ = [
    "Add", "Average", "Concatenate", "Maximum", "Minimum", "Multiply", "Subtract",
    "Activation", "BatchNormalization", "Conv2D", "CutMix", "Dense", "Dropout", "Flatten",
    "GaussianDropout", "GaussianNoise", "Input", "InputLayer", "LabelSmoothing", "Layer", "MaxPooling2D",
    "MixUp", "RandomFlip",
    "RandomRotation", "RandomTranslation", "RandomZoom", "SpatialDropout2D", "StochasticDepth",
]
