"""Layers with Keras 3's names, arguments, defaults and weight layouts."""

from reglab.layers.activation_layers import ELU, LeakyReLU, ReLU, Softmax
from reglab.layers.augmentation import (
    RandomBrightness,
    RandomContrast,
    RandomFlip,
    RandomRotation,
    RandomTranslation,
    RandomZoom,
)
from reglab.layers.convolution import (
    AveragePooling2D,
    Conv2D,
    GlobalAveragePooling2D,
    GlobalMaxPooling2D,
    MaxPooling2D,
)
from reglab.layers.core import (
    Activation,
    Embedding,
    Flatten,
    InputLayer,
    Lambda,
    Rescaling,
)
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
from reglab.layers.normalization import BatchNormalization, LayerNormalization, UnitNormalization
from reglab.layers.regularization import (
    ActivityRegularization,
    AlphaDropout,
    Dropout,
    GaussianDropout,
    GaussianNoise,
    SpatialDropout1D,
    SpatialDropout2D,
    StochasticDepth,
)
from reglab.layers.reshaping import (
    Cropping2D,
    Identity,
    Permute,
    Reshape,
    UpSampling2D,
    ZeroPadding2D,
)

# Keras's other names for the same classes
AvgPool2D = AveragePooling2D
MaxPool2D = MaxPooling2D
GlobalAvgPool2D = GlobalAveragePooling2D
GlobalMaxPool2D = GlobalMaxPooling2D
Convolution2D = Conv2D


def add(inputs, **kwargs):
    """Keras's functional ``layers.add([a, b])``: ``Add(**kwargs)(inputs)``."""
    return Add(**kwargs)(inputs)


def subtract(inputs, **kwargs):
    return Subtract(**kwargs)(inputs)


def multiply(inputs, **kwargs):
    return Multiply(**kwargs)(inputs)


def average(inputs, **kwargs):
    return Average(**kwargs)(inputs)


def maximum(inputs, **kwargs):
    return Maximum(**kwargs)(inputs)


def minimum(inputs, **kwargs):
    return Minimum(**kwargs)(inputs)


def concatenate(inputs, axis=-1, **kwargs):
    """Keras's functional ``layers.concatenate([a, b], axis=-1)``."""
    return Concatenate(axis=axis, **kwargs)(inputs)


__all__ = [
    "add", "average", "concatenate", "maximum", "minimum", "multiply", "subtract",
    "Add", "Average", "Concatenate", "Maximum", "Minimum", "Multiply", "Subtract",
    "Activation", "AveragePooling2D", "Embedding", "LayerNormalization", "Permute", "Reshape",
    "ZeroPadding2D", "BatchNormalization", "Conv2D", "CutMix", "Dense", "Dropout", "Flatten",
    "GaussianDropout", "GaussianNoise", "GlobalAveragePooling2D", "Input", "InputLayer", "LabelSmoothing", "Layer", "MaxPooling2D",
    "MixUp", "RandomFlip",
    "RandomRotation", "RandomTranslation", "RandomZoom", "SpatialDropout2D", "StochasticDepth",
    "ELU", "LeakyReLU", "ReLU", "Softmax", "ActivityRegularization", "Rescaling",
    "AlphaDropout", "SpatialDropout1D", "UnitNormalization", "Cropping2D", "GlobalMaxPooling2D",
    "Identity", "UpSampling2D", "AvgPool2D", "MaxPool2D", "GlobalAvgPool2D", "GlobalMaxPool2D",
    "Convolution2D", "Lambda", "RandomBrightness", "RandomContrast",
]


def __getattr__(name: str):
    """A Keras layer reglab has not (``reglab.layers.LSTM``): an AttributeError that says so
    and lists the layers it has, where Python's would name the module alone."""
    if name[:1].isupper():
        layers = sorted(n for n in __all__ if n[:1].isupper())
        raise AttributeError(f"reglab.layers has no layer {name!r} (not supported yet, if "
                             f"Keras has it). Its layers: {', '.join(layers)}.")
    raise AttributeError(f"module 'reglab.layers' has no attribute {name!r}")
