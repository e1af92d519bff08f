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

import math

import numpy as np

from reglab.errors import ConfigError, DataError
from reglab.layers import symbolic
from reglab.models.sequential import Sequential


def _shown(value) -> str:
    return "None (not given)" if value is None else type(value).__name__


class Model(Sequential):
    """A functional model: one or several inputs and outputs, any graph of layers between
    them; a layer called more than once (a shared layer) uses one set of weights.
    Subclassing it with a ``call`` of one's own (Keras's third way to build a model) is not
    supported: the population engine needs the graph before it trains.

    With several inputs, the data is a list of arrays in the order of ``inputs`` (or a dict
    keyed by the inputs' names), as in Keras; the population the model trains takes one
    input, so each sample's inputs are packed side by side (flattened, in float) and cut out
    again by the first layer of each input (see :class:`reglab.layers.core.PackedInput`)."""

    #: Keras's variable paths in a functional model: ``layer/kernel``
    _variable_prefix = False

    def __init__(self, inputs=None, outputs=None, name: str | None = None,
                 trainable: bool = True, seed: int | None = None):
        if inputs is None or outputs is None:
            subclass = type(self).__name__
            raise ConfigError(
                f"{subclass}: reglab builds a model from its layers' graph, given as "
                "Model(inputs, outputs) (the functional API) or Sequential([...]); a "
                "subclass of Model whose own call() computes the outputs is not supported. "
                f"Got inputs={_shown(inputs)}, outputs={_shown(outputs)}.")
        super().__init__(name=name or "functional", trainable=trainable, seed=seed)
        copies = []
        if symbolic.needs_copies(inputs, outputs):
            inputs, outputs, copies = symbolic.copied_graph(inputs, outputs)
        layers, calls, graph, input_shapes, positions, output_positions = \
            symbolic.topological(inputs, outputs)
        for layer in layers:
            owner = getattr(layer, "_model", None)
            if owner is not None and owner is not self:
                raise ConfigError(f"Model: layer {layer.name!r} already belongs to model "
                                  f"{owner.name!r}; reglab layers cannot be shared between "
                                  "models.")
        self._layers, self._graph = layers, graph
        self._calls = None if calls == list(range(len(layers))) else calls
        #: per position, which call of its layer it is (for the summary's "Connected to")
        self._node_indices = symbolic.node_indices(inputs, outputs)
        self._set_inputs(input_shapes, positions)
        self._set_outputs(output_positions)
        self.inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        self.outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        self._name_layers()
        self._take_weights(copies)

    def _take_weights(self, copies) -> None:
        """The weights of the layers this model copied (see :func:`symbolic.copied_graph`)
        as their models hold them now, with Keras's difference said: Keras's model would
        share the layers, reglab's are copies (training one model leaves the other)."""
        owners = []
        for copy, original in copies:
            owner = getattr(original, "_model", None)
            if owner is None:
                continue
            weights = original.get_weights()
            if weights:
                copy.set_weights(weights)
            if owner.name not in owners:
                owners.append(owner.name)
        if owners:
            import warnings

            warnings.warn(
                f"Model: its layers are copies of those of model {', '.join(map(repr, owners))}, "
                "with their weights as they are now; Keras's model would share the layers "
                "themselves (reglab's models never share weights: training one leaves the "
                "other as it is).", UserWarning, stacklevel=3)

    def _set_inputs(self, input_shapes, positions) -> None:
        if len(input_shapes) == 1:
            self._input_shape = tuple(input_shapes[0])
            return
        engine_layers = self._engine_layers()
        if any(layer.is_augmentation or getattr(layer, "is_batch_transform", False)
               for layer in engine_layers):
            raise ConfigError("Model: augmentation and MixUp/CutMix/LabelSmoothing layers "
                              "change the whole batch before the model; a model with several "
                              "inputs cannot take them yet.")
        self._input_shapes = [tuple(shape) for shape in input_shapes]
        self._input_positions = list(positions)
        self._input_shape = (sum(math.prod(shape) for shape in self._input_shapes),)

    def _set_outputs(self, positions) -> None:
        if len(positions) == 1:
            return
        if any(getattr(layer, "is_batch_transform", False) for layer in self._engine_layers()):
            raise ConfigError("Model: MixUp, CutMix and LabelSmoothing change the targets of "
                              "one output; a model with several outputs cannot take them yet.")
        self._output_positions = list(positions)

    @property
    def metrics_names(self) -> list[str]:
        """Keras 3's (see ``Sequential.metrics_names``); for a model with several outputs,
        once its loss has been computed (``fit``, ``evaluate``, ``train_on_batch``), also
        each output's loss, ``'<output>_loss'``, as Keras tracks them."""
        names = super().metrics_names
        if self._output_positions is not None and self._compiled and self._loss_built \
                and self.loss is not None:
            names += [f"{name}_loss" for name in self.output_names]
        return names

    @property
    def output_names(self) -> list[str]:
        """The outputs' names (their layers'), as Keras names their losses and metrics."""
        layers = self._engine_layers(packed=False)
        return [layers[p].name for p in self._output_positions or [len(layers) - 1]]

    @property
    def _output_shapes(self) -> list[tuple[int, ...]]:
        plan = self._build().plan
        return [tuple(plan.layers[p].output_shape)
                for p in self._output_positions or [len(plan.layers) - 1]]

    @property
    def output_shape(self):
        """``(None, *shape)``, or a list of them for a model with several outputs (Keras)."""
        if self._output_positions is None:
            return super().output_shape
        return [(None, *shape) for shape in self._output_shapes]

    def _symbolic_graph(self) -> None:
        """A model read from a config or file has its graph as positions: its symbolic
        tensors are made from them when first asked (each layer called as in the graph)."""
        if self._symbolic_inputs is not None:
            return
        from reglab.layers.layer import Input

        made = []
        for layer, inbound in zip(self._engine_layers(packed=False), self._graph):
            if inbound == (-1,):  # an input: its InputLayer is the Input's
                tensor = Input(shape=tuple(layer.shape), name=layer.name)
                tensor._input_layer = layer
                layer._symbolic_nodes = [((tensor,), tensor)]
            else:
                parents = [made[i] for i in inbound]
                tensor = layer(parents if getattr(layer, "takes_list", False) else parents[0])
            made.append(tensor)
        self._symbolic_inputs = [made[p] for p in self._input_positions or [0]]
        self._symbolic_outputs = [made[p] for p in self._output_positions or [len(made) - 1]]

    def _engine_layers(self, packed: bool = True):
        layers = super()._engine_layers(packed)
        if packed and self._output_positions is not None:
            from reglab.layers.core import PackedOutputs

            layers.append(PackedOutputs(name="packed_outputs"))
        return layers

    def _engine_graph(self):
        if self._output_positions is None:
            return self._graph
        return [*self._graph, tuple(self._output_positions)]

    def _compile_outputs(self, loss, metrics, loss_weights, weighted_metrics=None):
        if self._output_positions is None:
            return super()._compile_outputs(loss, metrics, loss_weights, weighted_metrics)
        if weighted_metrics is not None:
            raise ConfigError("compile: 'weighted_metrics' of a model with several outputs are "
                              f"not supported yet. Got {weighted_metrics!r}.")
        if loss is None:
            return None, [], None
        from reglab.models.outputs import compile_outputs

        packed, tracked, _ = compile_outputs(self.output_names, self._output_shapes, loss,
                                             loss_weights, metrics)
        return packed, [m.__name__ for m in tracked], tracked

    def _packed_targets(self, where: str, y):
        if self._output_positions is None or y is None:
            return y
        if self.loss is None:
            raise ConfigError(f"{where}: call model.compile(optimizer=..., loss=...) before "
                              "training or evaluating the model.")
        from reglab.models.outputs import pack_targets

        return pack_targets(where, y, self.loss.parts, self.loss.losses)

    def _split(self, packed):
        """Packed predictions as one array per output (a model with several)."""
        if self._output_positions is None:
            return packed
        from reglab.models.outputs import parts_for, split_outputs

        # the outputs' places in the packed predictions do not depend on their losses
        parts = parts_for(self.output_names, self._output_shapes,
                          [_AnyTarget()] * len(self._output_positions))
        return split_outputs(packed, parts)

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """Outputs in inference mode: an array, or a list of arrays (several outputs)."""
        return self._split(super().predict(x, batch_size, verbose, steps, callbacks))

    def predict_on_batch(self, x):
        return self._split(super().predict_on_batch(x))

    def _check_weights(self, where: str, sample_weight=None, class_weight=None) -> None:
        if self._output_positions is None:
            return
        if class_weight is not None:
            raise ConfigError(f"{where}: 'class_weight' is for a model with one output (Keras "
                              "refuses it with several too).")
        if isinstance(sample_weight, (list, tuple, dict)):
            raise ConfigError(f"{where}: sample weights per output (a list or dict) are not "
                              "supported yet; pass one array of shape (N,), which weighs "
                              f"every output's loss. Got a {type(sample_weight).__name__}.")

    @property
    def input_names(self) -> list[str]:
        """The inputs' names (their InputLayers'), in the order the data comes."""
        layers = self._engine_layers(packed=False)
        positions = self._input_positions or [0]
        return [layers[p].name for p in positions]

    @property
    def input_shape(self):
        """``(None, *shape)``, or a list of them for a model with several inputs (Keras)."""
        if self._input_positions is None:
            return super().input_shape
        return [(None, *shape) for shape in self._input_shapes]

    def _packed(self, where: str, x):
        """``x`` (a list of arrays, one per input, or a dict by input name) packed into one
        array for the population; a model with one input takes ``x`` as it is."""
        if self._input_positions is None or x is None:
            return x
        return pack_inputs(where, x, self.input_names, self._input_shapes)

    def add(self, layer) -> None:
        raise ConfigError("Model.add: a functional model's layers are set by its graph; "
                          "call the layer on a tensor and build a new Model.")

    def pop(self):
        raise ConfigError("Model.pop: a functional model's layers are set by its graph.")

    @classmethod
    def from_graph(cls, layers, graph, input_shape, name=None, seed=None,
                   trainable: bool = True, calls=None, inputs=None, outputs=None) -> Model:
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
        model._input_shape = None if input_shape is None else tuple(input_shape)
        if inputs is not None and len(inputs) > 1:  # several inputs: their positions
            picked = model._engine_layers(packed=False)
            if not all(isinstance(p, int) and 0 <= p < len(picked)
                       and type(picked[p]).__name__ == "InputLayer" for p in inputs):
                raise ConfigError(f"Model: 'inputs' must give the graph positions of the "
                                  f"model's InputLayers. Got {inputs!r}.")
            model._set_inputs([picked[p].shape for p in inputs], inputs)
        if outputs is not None and len(outputs) > 1:  # several outputs: their positions
            if not all(isinstance(p, int) and 0 <= p < len(model._graph) for p in outputs):
                raise ConfigError(f"Model: 'outputs' must give graph positions. Got "
                                  f"{outputs!r}.")
            model._set_outputs(outputs)
        model.inputs = model.outputs = None
        model._name_layers()
        model._build()  # checks the graph now
        return model

    def __repr__(self) -> str:
        return f"<Model name={self.name!r} layers={len(self._layers)}>"


def pack_inputs(where: str, x, names: list[str], shapes: list[tuple[int, ...]]) -> np.ndarray:
    """The arrays of a model's inputs (a list in the inputs' order, or a dict by name),
    checked, flattened per sample and laid side by side: ``(N, sum of sizes)``, float32
    (float64 if an input is)."""
    from reglab.engine.data import as_numpy, keras_rank
    from reglab.models import fit_data
    from reglab.models.outputs import parts_of, side_by_side

    if fit_data.is_flow(x) or fit_data.is_generator(x) or fit_data.datasets.is_dataset(x):
        raise ConfigError(f"{where}: a model with several inputs takes arrays (a list, or a "
                          f"dict by input name), not {type(x).__name__} yet.")
    parts = parts_of(where, x, names, "x", "input")
    arrays = []
    for k, (part, name, shape) in enumerate(zip(parts, names, shapes)):
        array = keras_rank(as_numpy(where, f"x[{k}] ({name})", part), tuple(shape))
        if tuple(array.shape[1:]) != tuple(shape):
            raise DataError(f"{where}: input {k} ({name!r}) expects samples of shape {shape}. "
                            f"Got an array of shape {array.shape}.")
        arrays.append(array)
    return side_by_side(where, arrays, names, "inputs",
                        any(a.dtype == np.float64 for a in arrays))


class _AnyTarget:
    """A stand-in loss for where an output's predictions sit (its targets do not matter)."""

    target_kind = "any"
