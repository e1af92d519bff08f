"""Core layers: ``InputLayer``, ``Flatten``, ``Activation``, ``Embedding``, ``Rescaling``."""

from __future__ import annotations

import math
import numbers

import torch

from reglab import activations, constraints, initializers
from reglab.errors import ConfigError
from reglab.layers.layer import Layer, WeightSpec, is_shared, resolve_regularizer, serialized


class InputLayer(Layer):
    """A functional model's input, first in ``model.layers`` as in Keras (made by
    ``reglab.Model`` from its ``reglab.Input``); it passes its input on. Keras 3's
    arguments: ``shape`` (or its older ``input_shape``), or ``batch_shape`` (or
    ``batch_input_shape``) whose first entry is the batch's; ``batch_size`` is taken and
    unused (a population's batches are its own); sparse, ragged, optional and tensor inputs
    are not supported."""

    takes_grouped_input = "keeps"
    #: it does nothing to a batch: augmentation and batch transforms may follow it
    is_input = True

    def __init__(self, shape=None, batch_size=None, dtype=None, sparse=None, ragged=None,
                 batch_shape=None, input_tensor=None, optional=False, name=None, **kwargs):
        shape = kwargs.pop("input_shape", shape)  # Keras: a deprecated name of shape
        batch_shape = kwargs.pop("batch_input_shape", batch_shape)
        for argument, value in (("sparse", sparse), ("ragged", ragged),
                                ("optional", optional)):
            if value:
                raise ConfigError(f"InputLayer: '{argument}' inputs are not supported by "
                                  f"reglab. Got {argument}={value!r}.")
        if input_tensor is not None:
            raise ConfigError("InputLayer: 'input_tensor' is not supported by reglab (give "
                              f"its shape). Got {type(input_tensor).__name__}.")
        if shape is None and batch_shape is not None:
            if isinstance(batch_shape, (str, bytes)) or not hasattr(batch_shape, "__len__") \
                    or len(batch_shape) < 2:
                raise ConfigError("InputLayer: 'batch_shape' must be (batch size or None, "
                                  f"*sample shape). Got {batch_shape!r}.")
            shape = tuple(batch_shape)[1:]
        super().__init__(name=name, dtype=dtype, **kwargs)
        self.batch_size = batch_size
        self.shape = None if shape is None else tuple(shape)

    def forward(self, x, weights, values, ctx, input_shape):
        return x

    def get_config(self):
        return {**super().get_config(), "shape": None if self.shape is None
                else list(self.shape)}


class PackedInput(Layer):
    """One input of a model with several, in the population it trains: the engine takes
    one input tensor, so ``reglab.Model`` packs each sample's inputs, flattened, side by
    side, and this layer cuts input ``k`` back out (``[offset, offset + size)``) in its
    own shape. Made by the model for its population; not a Keras layer."""

    takes_grouped_input = "keeps"
    is_input = True

    def __init__(self, offset: int, shape, **kwargs):
        super().__init__(**kwargs)
        self.offset, self.part_shape = int(offset), tuple(int(d) for d in shape)

    def compute_output_shape(self, input_shape):
        return self.part_shape

    def forward(self, x, weights, values, ctx, input_shape):
        part = x[..., self.offset:self.offset + math.prod(self.part_shape)]
        return part.reshape(*x.shape[:-1], *self.part_shape)

    def get_config(self):
        return {**super().get_config(), "offset": self.offset, "shape": list(self.part_shape)}


class PackedOutputs(Layer):
    """A model's several outputs, each sample's flattened and laid side by side: the
    population's one output (``reglab.models.outputs`` cuts them apart again). Made by
    ``reglab.Model`` for the population it builds; not a Keras layer."""

    takes_list = True

    def compute_output_shape(self, input_shape):
        return (sum(math.prod(shape) for shape in input_shape),)

    def forward(self, x, weights, values, ctx, input_shape):
        from reglab.layers.merging import _aligned

        parts = _aligned(x, input_shape, ctx.members)
        lead = [t.dim() - len(shape) for t, shape in zip(parts, input_shape)]
        return torch.cat([t.reshape(*t.shape[:k], -1) for t, k in zip(parts, lead)], dim=-1)


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


class Lambda(Layer):
    """Keras's ``Lambda(function)``: ``function(x, **arguments)`` on a batch of samples, with
    torch operations (or ``reglab.ops``). In a population each member's batch goes through
    ``function`` on its own, so what it computes over the batch stays the member's. Its
    output shape is ``output_shape`` (a shape without the batch, or a function of the input
    shape) or found by calling ``function`` on one zero sample. A file cannot hold a
    function: a model with a Lambda trains, predicts and is copied, but is not saved (Keras
    saves its bytecode and refuses to load it in safe mode).

    Example:
        >>> import torch
        >>> Lambda(lambda x: torch.cat([x, x], dim=-1)).compute_output_shape((3,))
        (6,)
    """

    def __init__(self, function, output_shape=None, mask=None, arguments=None, **kwargs):
        super().__init__(**kwargs)
        if not callable(function):
            raise ConfigError(f"Lambda: 'function' must be a function of the batch. Got "
                              f"{function!r}.")
        if mask is not None:
            raise ConfigError(f"Lambda: 'mask' is not supported (reglab's layers take no "
                              f"masks). Got {mask!r}.")
        if arguments is not None and not isinstance(arguments, dict):
            raise ConfigError(f"Lambda: 'arguments' must be a dict of keyword arguments for "
                              f"the function. Got {arguments!r}.")
        self.function, self.output_shape_given = function, output_shape
        self.arguments = dict(arguments or {})

    def structure(self):
        # one function object: members share a population only with the very same one
        return ("Lambda", id(self.function), tuple(sorted(self.arguments.items(), key=str)))

    def _call(self, x):
        return self.function(x, **self.arguments)

    def compute_output_shape(self, input_shape):
        given = self.output_shape_given
        if callable(given):
            given = given(tuple(input_shape))
        if given is not None:
            shape = tuple(given)
            return shape[1:] if len(shape) == len(input_shape) + 1 and shape[0] is None \
                else shape
        try:
            with torch.no_grad():
                out = self._call(torch.zeros((1, *input_shape)))
        except Exception as error:  # noqa: BLE001 - the user's function, named
            raise ConfigError(f"Lambda ({self.name or 'lambda'}): calling the function on a "
                              f"zero batch of shape {(1, *input_shape)} to find its output "
                              f"shape failed ({type(error).__name__}: {error}); pass "
                              "output_shape=(...) (without the batch).") from None
        if not isinstance(out, torch.Tensor) or out.dim() < 1 or out.shape[0] != 1:
            raise ConfigError(f"Lambda ({self.name or 'lambda'}): the function must return a "
                              f"torch tensor with the batch first. Got {type(out).__name__}"
                              f"{'' if not isinstance(out, torch.Tensor) else ' of shape ' + str(tuple(out.shape))}.")
        return tuple(out.shape[1:])

    def forward(self, x, weights, values, ctx, input_shape):
        if is_shared(x, input_shape):
            return self._call(x)
        return torch.stack([self._call(member) for member in x.unbind(0)])

    def get_config(self):
        return {**super().get_config(), "function": self.function,
                "output_shape": self.output_shape_given, "mask": None,
                "arguments": self.arguments}


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

    def as_activation(self, where: str):
        """Its activation function, as another layer's ``activation`` (Keras calls it)."""
        return self.activation

    gives_logits = True  # as a last layer with a softmax (see Dense)

    def forward(self, x, weights, values, ctx, input_shape):
        if ctx.logits:
            return x
        return activations.apply(self.activation, x, member_axis=not is_shared(x, input_shape))

    def get_config(self):
        return {**super().get_config(), "activation": activations.serialize(self.activation)}


class Embedding(Layer):
    """Maps integer indices to vectors: ``(L,) -> (L, output_dim)`` with a table
    ``(input_dim, output_dim)`` (Keras's ``embeddings``, drawn uniform in ±0.05).

    Indices arrive as the data's floats (exact up to 2**24) and are kept in float32 under
    mixed precision; an index outside ``[0, input_dim)`` is an error, as in Keras on torch.

    Example:
        >>> Embedding(1000, 16).compute_output_shape((20,))
        (20, 16)
    """

    computes_in_float32 = True

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform",
                 embeddings_regularizer=None, embeddings_constraint=None, mask_zero=False,
                 **kwargs):
        super().__init__(**kwargs)
        for name, value in (("input_dim", input_dim), ("output_dim", output_dim)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ConfigError(f"Embedding: '{name}' must be a positive int. Got {value!r}.")
        if mask_zero:
            raise ConfigError("Embedding: 'mask_zero' (masking) is not supported. Got True.")
        self.input_dim, self.output_dim, self.mask_zero = int(input_dim), int(output_dim), False
        self.embeddings_initializer = initializers.get(embeddings_initializer,
                                                       "Embedding: 'embeddings_initializer'")
        self.embeddings_regularizer = resolve_regularizer("Embedding", "embeddings_regularizer",
                                                          embeddings_regularizer)
        self.embeddings_constraint = constraints.get(embeddings_constraint,
                                                     "Embedding: 'embeddings_constraint'")

    def weight_specs(self, input_shape):
        return [WeightSpec("embeddings", (self.input_dim, self.output_dim),
                           self.embeddings_initializer, kind="kernel",
                           regularizer=self.embeddings_regularizer,
                           constraint=self.embeddings_constraint)]

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.output_dim)

    def structure(self):
        return ("Embedding", self.input_dim, self.output_dim)

    def forward(self, x, weights, values, ctx, input_shape):
        table = weights["embeddings"]  # (P, V, D)
        indices = x.long()
        if bool(((indices < 0) | (indices >= self.input_dim)).any()):
            raise ConfigError(f"Embedding: indices must be in [0, {self.input_dim}). Got "
                              f"values from {int(indices.min())} to {int(indices.max())}.")
        if is_shared(x, input_shape):
            return table[:, indices]  # (P, B, ..., D)
        members = torch.arange(table.shape[0], device=table.device).view(
            -1, *([1] * (indices.dim() - 1)))
        return table[members, indices]

    def get_config(self):
        return {**super().get_config(), "input_dim": self.input_dim,
                "output_dim": self.output_dim, "mask_zero": self.mask_zero,
                **serialized(self, "embeddings_initializer", "embeddings_regularizer",
                             "embeddings_constraint")}


class Rescaling(Layer):
    """``keras.layers.Rescaling``: ``x * scale + offset`` (Keras's ``Rescaling(1 / 255)``
    for pixels); ``scale`` and ``offset`` are numbers or per-channel lists (the last axis).

    Example:
        >>> Rescaling(1 / 255).compute_output_shape((28, 28, 1))
        (28, 28, 1)
    """

    # elementwise, the same for every member: a grouped input stays grouped (the first
    # Dense after it keeps its shared product)
    takes_grouped_input = "keeps"

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = _factor("scale", scale)
        self.offset = _factor("offset", offset)

    def structure(self):
        return ("Rescaling", self.scale, self.offset)

    def compute_output_shape(self, input_shape):
        for name, value in (("scale", self.scale), ("offset", self.offset)):
            if isinstance(value, tuple) and len(value) not in (1, input_shape[-1]):
                raise ConfigError(f"Rescaling: '{name}' has {len(value)} values for inputs "
                                  f"with {input_shape[-1]} channels (the last axis). Got "
                                  f"{name}={list(value)!r}.")
        return input_shape

    def forward(self, x, weights, values, ctx, input_shape):
        def as_tensor(value):
            return torch.tensor(value, dtype=x.dtype, device=x.device)
        return x * as_tensor(self.scale) + as_tensor(self.offset)

    def get_config(self):
        def plain(value):
            return list(value) if isinstance(value, tuple) else value
        return {**super().get_config(), "scale": plain(self.scale), "offset": plain(self.offset)}


def _factor(name: str, value) -> float | tuple[float, ...]:
    """Rescaling's ``scale`` or ``offset``: a finite number or a non-empty list of them."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values or any(isinstance(v, bool) or not isinstance(v, numbers.Real)
                         or not math.isfinite(v) for v in values):
        raise ConfigError(f"Rescaling: '{name}' must be a finite number or a list of them "
                          f"(one per channel). Got {value!r}.")
    return tuple(float(v) for v in values) if isinstance(value, (list, tuple)) \
        else float(values[0])
