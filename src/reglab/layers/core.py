"""Shape and activation layers: ``Flatten`` and ``Activation``."""

from __future__ import annotations

import math

from reglab import activations
from reglab.layers.layer import Layer, is_shared


class InputLayer(Layer):
    """A functional model's input, first in ``model.layers`` as in Keras (made by
    ``reglab.Model`` from its ``reglab.Input``); it passes its input on."""

    takes_grouped_input = "keeps"
    #: it does nothing to a batch: augmentation and batch transforms may follow it
    is_input = True

    def __init__(self, shape=None, **kwargs):
        super().__init__(**kwargs)
        self.shape = None if shape is None else tuple(shape)

    def forward(self, x, weights, values, ctx, input_shape):
        return x

    def get_config(self):
        return {**super().get_config(), "shape": None if self.shape is None
                else list(self.shape)}


class Flatten(Layer):
    """Flattens each sample to one axis, in channels-last order as Keras does.

    Example:
        >>> Flatten().compute_output_shape((28, 28, 1))
        (784,)
    """

    # A grouped input (G, B, ...) flattens as a per-member one does and stays grouped.
    takes_grouped_input = "keeps"

    def compute_output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def forward(self, x, weights, values, ctx, input_shape):
        lead = 1 if is_shared(x, input_shape) else 2
        return x.reshape(*x.shape[:lead], -1)


class Activation(Layer):
    """Applies an activation by Keras name: relu, softmax, sigmoid, tanh, elu, selu, gelu, linear.

    Example:
        >>> Activation("relu").structure()
        ('Activation', 'relu')
    """

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation, where="Activation: 'activation'")

    def structure(self):
        return ("Activation", activations.structure_key(self.activation))

    def forward(self, x, weights, values, ctx, input_shape):
        return activations.apply(self.activation, x, member_axis=not is_shared(x, input_shape))

    def get_config(self):
        return {**super().get_config(), "activation": activations.serialize(self.activation)}
