"""``Model(inputs, outputs)``: Keras's functional API, a directed acyclic graph of layers
trained by the population engine with one member, with the methods of ``Sequential``.

Example:
    >>> import reglab
    >>> inputs = reglab.Input(shape=(4,))
    >>> hidden = reglab.layers.Dense(8, activation="relu")(inputs)
    >>> block = reglab.layers.Dense(8, activation="relu")(hidden)
    >>> outputs = reglab.layers.Dense(3, activation="softmax")(
    ...     reglab.layers.Add()([hidden, block]))
    >>> model = reglab.Model(inputs, outputs)
    >>> [type(layer).__name__ for layer in model.layers]
    ['Dense', 'Dense', 'Add', 'Dense']
"""

from __future__ import annotations

from reglab.errors import ConfigError
from reglab.layers import symbolic
from reglab.models.sequential import Sequential


class Model(Sequential):
    """A functional model: one input, one output, any graph of layers between them; a
    layer called more than once (a shared layer) uses one set of weights. Several inputs
    or outputs are not supported yet."""

    def __init__(self, inputs, outputs, name: str | None = None, trainable: bool = True,
                 seed: int | None = None):
        super().__init__(name=name or "functional", trainable=trainable, seed=seed)
        layers, calls, graph, input_shape = symbolic.topological(inputs, outputs)
        for layer in layers:
            owner = getattr(layer, "_model", None)
            if owner is not None and owner is not self:
                raise ConfigError(f"Model: layer {layer.name!r} already belongs to model "
                                  f"{owner.name!r}; reglab layers cannot be shared between "
                                  "models.")
        self._layers, self._graph, self._input_shape = layers, graph, tuple(input_shape)
        self._calls = None if calls == list(range(len(layers))) else calls
        self.inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        self.outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        self._name_layers()

    def add(self, layer) -> None:
        raise ConfigError("Model.add: a functional model's layers are set by its graph; "
                          "call the layer on a tensor and build a new Model.")

    def pop(self):
        raise ConfigError("Model.pop: a functional model's layers are set by its graph.")

    @classmethod
    def from_graph(cls, layers, graph, input_shape, name=None, seed=None,
                   trainable: bool = True, calls=None) -> Model:
        """A functional model from its layers (its InputLayer first) and, per layer call,
        the positions of its inputs (-1 for the model's input) and, where a layer is called
        more than once, which layer each position calls (``calls``; None: each layer once,
        in order): what ``get_config`` holds; checked when the model is built."""
        model = cls.__new__(cls)
        Sequential.__init__(model, name=name or "functional", trainable=trainable, seed=seed)
        model._layers = list(layers)
        model._graph = [tuple(inbound) for inbound in graph]
        if calls is not None:
            calls = [int(i) for i in calls]
            if len(calls) != len(model._graph) or sorted(set(calls)) != list(
                    range(len(model._layers))):
                raise ConfigError(f"Model: 'calls' must give each of the {len(model._graph)} "
                                  f"positions of the graph one of the {len(model._layers)} "
                                  f"layers, each layer at least once. Got {calls!r}.")
            if calls == list(range(len(model._layers))):
                calls = None
        model._calls = calls
        model._input_shape = tuple(input_shape)
        model.inputs = model.outputs = None
        model._name_layers()
        model._build()  # checks the graph now
        return model

    def __repr__(self) -> str:
        return f"<Model name={self.name!r} layers={len(self._layers)}>"
