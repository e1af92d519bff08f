"""``Sequential``: Keras's model API, trained by the population engine with one member.

Example:
    >>> import numpy as np
    >>> from reglab.layers import Dense
    >>> from reglab.regularizers import l2
    >>> model = Sequential([Dense(8, activation="relu", input_shape=(4,),
    ...                           kernel_regularizer=l2(0.01)), Dense(3, activation="softmax")])
    >>> model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
    ...               metrics=["accuracy"])
    >>> x, y = np.random.rand(32, 4).astype("float32"), np.arange(32) % 3
    >>> history = model.fit(x, y, epochs=2, verbose=0)
    >>> sorted(history.history)
    ['accuracy', 'loss']
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch

from reglab import losses as losses_module
from reglab import metrics as metrics_module
from reglab import mixed_precision
from reglab import optimizers as optimizers_module
from reglab.engine import Member, Population
from reglab.errors import ConfigError
from reglab.layers.layer import Input, Layer, VariableNames, snake_case
from reglab.metric_classes import CompileMetrics, StatefulMetric
from reglab.models import summary as summary_module
from reglab.utils.random_seed import next_seed


class Sequential(VariableNames):
    """A linear stack of layers, with Keras's ``compile``/``fit``/``evaluate``/``predict``.

    Args:
        layers: layers to add, optionally starting with ``reglab.Input(shape=...)``.
        name: the model's name (``'sequential'``).
        seed: beyond Keras, the seed of initial weights, batch order, dropout and
            augmentation; by default drawn from :func:`reglab.utils.set_random_seed`'s source.
    """

    _warned_fit_generator = False  # the deprecation warning is given once per process
    # (see __init__; here too for a model pickled before they were kept)
    _loss_built = False
    _optimizer_elsewhere = False

    def __init__(self, layers=None, trainable: bool = True, name: str | None = None,
                 seed: int | None = None):
        self.name = name or "sequential"
        self._trainable = bool(trainable)
        self.seed = next_seed() if seed is None else int(seed)
        self._layers: list[Layer] = []
        #: a functional model's graph: per layer, the positions of its inputs (-1: the
        #: model's input); None for a stack
        self._graph: list[tuple[int, ...]] | None = None
        #: a functional model with shared layers: per position of the graph, the index of
        #: the layer it calls; None when each layer is called once, in order
        self._calls: list[int] | None = None
        #: the activity penalties of the last model(x), by layer index (see losses)
        self._call_activity: dict | None = None
        #: a functional model with several inputs: their positions in the graph and sample
        #: shapes, in the order the data comes; None with one input
        self._input_positions: list[int] | None = None
        self._input_shapes: list[tuple[int, ...]] | None = None
        #: what the population computes besides the loss when it is not logged_metric_names
        #: (a model with several outputs: each output's loss and metrics on its part)
        self._population_metrics: list | None = None
        #: a functional model with several outputs: their positions in the graph, in the
        #: order of its outputs; None with one output
        self._output_positions: list[int] | None = None
        self._input_shape: tuple[int, ...] | None = None
        #: Keras's ``inputs`` and ``outputs``: symbolic tensors (a Sequential's made when
        #: first asked: :meth:`_symbolic_graph`)
        self._symbolic_inputs: list | None = None
        self._symbolic_outputs: list | None = None
        #: the global policy when the model is created, as Keras 3's ``Model.dtype_policy``
        self.dtype_policy = mixed_precision.global_policy()
        self.optimizer: optimizers_module.Optimizer | None = None
        self.loss = None
        #: the compiled metrics' names as the logs carry them (``History``,
        #: ``evaluate(return_dict=True)``), in the order ``evaluate`` returns them after the loss
        self.logged_metric_names: list[str] = []
        #: whether compile was given metrics (Keras then groups them as 'compile_metrics')
        self._metrics_given = False
        #: Keras's metric objects of the compiled model (see :attr:`metrics`)
        self._loss_tracker = metrics_module.Mean(name="loss")
        self._compiled_metric_objects: dict[str, Any] = {}
        self._compiled = False
        #: whether the compiled loss has been computed (fit, evaluate, train_on_batch): Keras
        #: then tracks a multi-output model's per-output losses among its metrics
        self._loss_built = False
        #: whether the compiled optimizer had stepped for another model (fit refuses it)
        self._optimizer_elsewhere = False
        self._population: Population | None = None
        #: True while fit trains the population (it is not rebuilt under it)
        self._fitting = False
        self.stop_training = False
        self.history = None
        for layer in layers or []:
            self.add(layer)

    # -- structure ------------------------------------------------------------------
    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value) -> None:
        """Keras's: freezes (or unfreezes) every layer; the next fit, evaluation or
        summary sees it, compiled or not. While it is off the model has no trainable
        weights, a layer's own flag notwithstanding (Keras's gate)."""
        self._trainable = bool(value)
        for layer in self._layers:
            layer.trainable = self._trainable

    def add(self, layer) -> None:
        """Appends a layer (or sets the input shape with ``reglab.Input``)."""
        if isinstance(layer, Input) or type(layer).__name__ == "InputLayer":
            if self._layers:
                raise ConfigError("Sequential.add: an Input must come first. Got one after "
                                  f"{len(self._layers)} layers.")
            shape = layer.sample_shape if isinstance(layer, Input) else layer.shape
            if shape is None:
                raise ConfigError("Sequential.add: an InputLayer needs its shape. Got None.")
            self._input_shape = tuple(shape)
            return
        if not isinstance(layer, Layer):
            raise ConfigError(f"Sequential.add: expected a reglab layer. Got {layer!r}.")
        owner = getattr(layer, "_model", None)
        if owner is not None and owner is not self:
            raise ConfigError(
                f"Sequential.add: layer {layer.name!r} already belongs to model {owner.name!r}; "
                "reglab layers cannot be shared between models. Create a new layer, e.g. "
                "type(layer).from_config(layer.get_config()), and copy weights with "
                "new_model.layers[i].set_weights(old_model.layers[i].get_weights()).")
        if not self._layers and self._input_shape is None and layer.input_shape is not None:
            self._input_shape = layer.input_shape
        if layer.name is not None and any(other.name == layer.name and other is not layer
                                          for other in self._layers):
            raise ConfigError(f"Sequential.add: all layers of a model must have unique names, "
                              f"as in Keras. Got a second layer named {layer.name!r}; pass "
                              "another name=... (or none for an automatic one).")
        weights = self.get_weights() if self._population is not None else None
        self._forget_symbolic_graph()
        self._layers.append(layer)
        self._name_layers()
        if weights is not None:  # keep the trained layers' weights, as Keras does
            self._population = None
            self._build()
            self._set_leading_weights(weights)

    def pop(self) -> Layer:
        """Removes and returns the last layer."""
        if not self._layers:
            raise ConfigError("Sequential.pop: the model has no layers.")
        weights = self.get_weights() if self._population is not None else None
        keys = self._weight_keys() if weights is not None else []
        self._forget_symbolic_graph()
        layer = self._layers.pop()
        layer._model = None
        self._population = None
        if weights is not None and self._layers:
            kept = [w for (i, _), w in zip(keys, weights) if i < len(self._layers)]
            self._build()
            self._set_leading_weights(kept)
        return layer

    @property
    def layers(self) -> list[Layer]:
        return list(self._layers)

    def _name_layers(self) -> None:
        """Keras's automatic names for layers that have none: the class's snake_case name,
        then ``_1``, ``_2``... per class, skipping names taken (an explicitly named
        ``Dense`` leaves ``dense`` to the first unnamed one, as in a fresh Keras session).
        A name once given stays."""
        taken = {layer.name for layer in self._layers if layer.name is not None}
        counts: dict[str, int] = {}
        for layer in self._layers:
            if layer.name is None:
                base = snake_case(type(layer).__name__)
                while True:
                    count = counts.get(base, 0)
                    counts[base] = count + 1
                    auto = base if count == 0 else f"{base}_{count}"
                    if auto not in taken:
                        break
                layer.name, layer._auto_named = auto, True
                taken.add(auto)
            layer._model = self

    @property
    def built(self) -> bool:
        """Keras's: True once the input shape is known (an ``Input``, a first layer's
        ``input_shape``, ``build`` or ``fit``); the weights are made when first needed."""
        return self._population is not None or self._input_shape is not None

    def build(self, input_shape=None) -> None:
        """Creates the weights; ``input_shape`` may include the batch axis (``(None, 784)``)."""
        if input_shape is not None:
            shape = tuple(input_shape)
            self._input_shape = shape[1:] if shape and shape[0] is None else shape
        self._build()

    def _signature(self) -> tuple:
        """What the population was built for that may change after: each layer's
        ``trainable``, and the optimizer's structure (``exclude_from_weight_decay``)."""
        optimizer = self.optimizer.structure() if self.optimizer is not None else None
        return (self._trainable, tuple(bool(layer.trainable) for layer in self._layers),
                optimizer)

    def _build(self) -> Population:
        if self._population is not None and not self._fitting and \
                self._signature() != self._built_signature:
            # a layer frozen or unfrozen, or weights excluded from decay, since the build
            # (Keras 3 reads trainable at every step): the same weights, optimizer state and
            # step count in a population whose frozen weights take no gradient. Never during
            # a fit, which goes on with the population it trains (fit then warns).
            old, self._population = self._population, None
            self._build().set_member_weights(0, old.member_weights(0))
            _carry_training_state(old, self._population)
        if self._population is None:
            if not self._layers:
                raise ConfigError("Sequential: the model has no layers. Add some with "
                                  "model.add(...) before building or training it.")
            if self._input_shape is None:
                raise ConfigError(
                    "Sequential: the input shape is unknown. Give the first layer "
                    "input_shape=(...), start with reglab.Input(shape=(...)), or call fit.")
            metrics = self.logged_metric_names if self._population_metrics is None else \
                self._population_metrics
            # Keras: a model whose own flag is off has no trainable weights, whatever its
            # layers say; its layers' flags are left as they are (read while the plan is made)
            gated = [] if self._trainable else [layer for layer in self._layers
                                                if layer.trainable]
            for layer in gated:
                layer.trainable = False
            try:
                member = Member(self._engine_layers(), self.optimizer or "rmsprop", self.seed,
                                input_shape=self._input_shape, name=self.name,
                                graph=self._engine_graph())
                self._population = Population([member], loss=self.loss or "mse",
                                              metrics=metrics)
            finally:
                for layer in gated:
                    layer.trainable = True
            self._built_signature = self._signature()
            if not self._optimizer_elsewhere:  # it reads the model it has trained
                _attach(self.optimizer, self._population)
                if isinstance(self.optimizer, optimizers_module.Optimizer):
                    self.optimizer._trained_model = id(self)  # (compile's check)
        return self._population

    def _engine_layers(self, packed: bool = True) -> list[Layer]:
        """The population's layers: one per position of the graph (a shared layer at each
        of its calls); with several inputs (and ``packed``), each input's InputLayer
        replaced by the layer that cuts that input out of the packed one."""
        layers = list(self._layers) if self._calls is None else [self._layers[i]
                                                                 for i in self._calls]
        if packed and self._input_positions is not None:
            from reglab.layers.core import PackedInput

            offset = 0
            for position, shape in zip(self._input_positions, self._input_shapes):
                layers[position] = PackedInput(offset, shape, name=layers[position].name)
                offset += math.prod(shape)
        return layers

    def _packed(self, where: str, x):
        """The data as the population takes it (a model with several inputs packs them)."""
        return x

    def _packed_targets(self, where: str, y):
        """The targets as the population takes them (a model with several outputs packs
        them)."""
        return y

    def _check_weights(self, where: str, sample_weight=None, class_weight=None) -> None:
        """Refuses the sample or class weights this model cannot take (see Model)."""

    def _engine_graph(self):
        """The population's graph (a functional model's; None for a stack)."""
        return self._graph

    @property
    def compiled(self) -> bool:
        """Whether :meth:`compile` has run (Keras's ``model.compiled``)."""
        return self._compiled

    @property
    def metrics_names(self) -> list[str]:
        """Keras 3's: ``[]`` before compile, ``['loss']`` compiled without metrics, else
        ``['loss', 'compile_metrics']`` (Keras keeps the compiled metrics in one object, so
        ``dict(zip(metrics_names, evaluate(...)))`` names one metric at most); the metrics'
        own names are :attr:`logged_metric_names`."""
        if not self._compiled:
            return []
        return ["loss", "compile_metrics"] if self._metrics_given else ["loss"]

    @property
    def metrics(self) -> list:
        """Keras 3's: ``[]`` before compile, then the loss tracker (a ``metrics.Mean`` named
        'loss') and, where compile was given metrics, their container ('compile_metrics'),
        as :attr:`metrics_names` names them. After ``fit`` or ``evaluate`` they hold what
        its last pass over data saw, as Keras's do: the last validation, else the last
        epoch's training; evaluate's data. A metric object given to compile is itself the
        one that holds it; ``predict`` leaves them as they were."""
        if not self._compiled:
            return []
        tracker = [self._loss_tracker]
        if not self._metrics_given:
            return tracker
        return [*tracker, CompileMetrics(self._compiled_metric_objects.values())]

    def get_metrics_result(self) -> dict[str, Any]:
        """Keras 3's: the values :attr:`metrics` hold, by name (the compiled metrics' own)."""
        result = {}
        for metric in self.metrics:
            value = metric.result()
            result.update(value if isinstance(value, dict) else {metric.name: value})
        return result

    def reset_metrics(self) -> None:
        """Keras 3's: resets every object of :attr:`metrics`."""
        for metric in self.metrics:
            metric.reset_state()

    def _hold_metric_states(self) -> None:
        """The metric objects take what the population's last pass summed (its one member's
        row), as Keras's end a fit or evaluate."""
        sums = getattr(self._population, "last_sums", None)
        if sums is None or sums.members == 0:
            return
        samples = torch.tensor(float(sums.samples), dtype=torch.float64)
        self._loss_tracker.hold_totals(torch.stack([sums.loss[0].double(), samples]))
        for name, total in zip(sums.names, sums.metrics):
            holder = self._compiled_metric_objects.get(name)
            if holder is None or total is None:
                continue
            if total.dim() == 1:  # a function's values summed over the samples: a mean
                holder.hold_totals(torch.stack([total[0].double(), samples]))
            else:  # rows of totals: the object's own ([value, 1] summed, counts...)
                holder.hold_totals(total[0])

    @property
    def _metric_directions(self) -> dict[str, str]:
        """The compiled metric objects' directions by logged name ('up' or 'down', Keras's
        ``_direction``), for the monitoring callbacks' mode 'auto'."""
        given = self._population_metrics
        if given is None:  # names only, each logged as written
            given = list(self.logged_metric_names) if self._compiled else []
        directions = {}
        for metric in given:
            if isinstance(metric, str):  # 'MSE', 'Accuracy': as Keras's object of the name
                metric = metrics_module.Named(metric, metric)
            if getattr(metric, "_direction", None):
                directions[metric.__name__] = metric._direction
        return directions

    # -- compile ----------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None,
                weighted_metrics=None, run_eagerly=False, steps_per_execution=1,
                jit_compile="auto", auto_scale_loss=True) -> None:
        """Sets the optimizer, loss and metrics (Keras's defaults: 'rmsprop', no metrics);
        ``weighted_metrics`` are averaged with the sample (or class) weights, Keras's
        ``sum(value * weight) / sum(weight)``, and logged as ``weighted_<name>`` where a
        metric of ``metrics`` has the name."""
        # Resolve and check everything before changing the model: a failed compile leaves
        # the model (and its trained weights) as it was.
        optimizer = optimizers_module.get(optimizer, where="compile: 'optimizer'")
        if auto_scale_loss and self.dtype_policy.name == "mixed_float16" and \
                not isinstance(optimizer, optimizers_module.LossScaleOptimizer):
            # Keras 3: float16 gradients underflow without dynamic loss scaling
            optimizer = optimizers_module.LossScaleOptimizer(optimizer,
                                                             name="loss_scale_optimizer")
        given_loss = loss
        loss, names, population_metrics = self._compile_outputs(loss, metrics, loss_weights,
                                                                weighted_metrics)
        weights = self.get_weights() if self._population is not None else None
        # the same optimizer object keeps its state (its step count, Adam's moments), as
        # Keras's optimizer keeps its variables; another one starts fresh
        kept = self._population if optimizer is self.optimizer else None
        # an optimizer that has stepped for another model is bound to that model's weights:
        # Keras's fit then fails ('Unknown variable'), and so does this model's
        elsewhere = (optimizer is not self.optimizer and optimizer.iterations > 0
                     and getattr(optimizer, "_trained_model", None) != id(self)
                     if isinstance(optimizer, optimizers_module.Optimizer) else False)
        previous = (self.optimizer, self.loss, self.logged_metric_names, self._metrics_given,
                    self._population_metrics, self._compiled, self._population)
        self.optimizer, self.loss, self.logged_metric_names = optimizer, loss, names
        self._compile_arguments = {"loss": given_loss, "metrics": metrics,
                                   "loss_weights": loss_weights,
                                   "weighted_metrics": weighted_metrics,
                                   "auto_scale_loss": auto_scale_loss}  # for clone_model
        self._metrics_given = metrics is not None
        self._population_metrics = population_metrics
        self._loss_tracker = metrics_module.Mean(name="loss")
        self._compiled_metric_objects = metric_objects(names, population_metrics)
        self._compiled, self._population = True, None
        self._optimizer_elsewhere, self._loss_built = elsewhere, False
        try:
            if self._input_shape is not None and self._layers:
                self._build()
                if weights is not None:
                    self.set_weights(weights)
                if kept is not None:
                    _carry_training_state(kept, self._population)
        except Exception:
            (self.optimizer, self.loss, self.logged_metric_names, self._metrics_given,
             self._population_metrics, self._compiled, self._population) = previous
            self._optimizer_elsewhere = False
            raise

    def _compile_outputs(self, loss, metrics, loss_weights, weighted_metrics=None):
        """``(loss, metric names as logged, what the population computes)`` from compile's
        arguments, for a model with one output."""
        output = self._layers[-1].name if self._layers else None
        loss = _of_the_output("loss", loss, output)
        weight = _of_the_output("loss_weights", loss_weights, output)
        if weight is not None and (isinstance(weight, bool) or not isinstance(
                weight, (int, float)) or not math.isfinite(weight) or weight < 0):
            raise ConfigError(f"compile: 'loss_weights' must be a number >= 0 (or a list of "
                              f"one, or a dict by the output's name). Got {loss_weights!r}.")
        if isinstance(metrics, dict):
            metrics = _of_the_output("metrics", metrics, output)
            metrics = [metrics] if isinstance(metrics, str) or callable(metrics) else metrics
        loss = None if loss is None else losses_module.check_trainable(
            losses_module.resolve(loss, where="compile: 'loss'"), "compile: 'loss'")
        if loss is not None and weight is not None and weight != 1:
            loss = losses_module.ScaledLoss(loss, weight)  # Keras: the data loss times it
        if isinstance(metrics, str) or (metrics is not None
                                        and not isinstance(metrics, (list, tuple))):
            raise ConfigError(f"compile: 'metrics' must be a list, such as ['accuracy']. "
                              f"Got {metrics!r}.")
        if isinstance(weighted_metrics, str) or (weighted_metrics is not None and
                                                 not isinstance(weighted_metrics, (list, tuple))):
            raise ConfigError(f"compile: 'weighted_metrics' must be a list, such as "
                              f"['accuracy']. Got {weighted_metrics!r}.")
        names, given = [], []
        unweighted = len(metrics or [])
        for position, metric in enumerate([*(metrics or []), *(weighted_metrics or [])]):
            argument = "metrics" if position < unweighted else "weighted_metrics"
            name = metrics_module.label_of(metric)
            if not isinstance(name, str):
                raise ConfigError(f"compile: '{argument}' must be metric names such as "
                                  f"'accuracy', functions of (y_true, y_pred) or loss objects. "
                                  f"Got {metric!r}.")
            resolved = metrics_module.resolve(metric if callable(metric) else name, (1,),
                                              (1, 2), where=f"compile: '{argument}'")
            custom = getattr(resolved, "resolved", False)  # an object: a function, AUC...
            if custom and not isinstance(metric, str):  # an object: by its own name; a
                name = resolved.__name__  # name is logged as written ('AUC'), as Keras's
            if argument == "weighted_metrics":
                if name in names[:unweighted]:  # Keras's name beside the unweighted one
                    name = f"weighted_{name}"
                resolved, custom = metrics_module.WeightedMetric(metric, name), True
            taken, count = name, 0
            while name in names:  # Keras: a second 'lambda' is logged as 'lambda_1'
                count += 1
                name = f"{taken}_{count}"
            if isinstance(metric, str) and argument != "weighted_metrics" and (
                    name != metric or custom):  # resolved from its string, logged by name
                resolved, custom = metrics_module.Named(metric, name), True
            elif custom and name != resolved.__name__:
                if resolved is metric:  # the user's object keeps its name (as Keras's):
                    resolved = copy.copy(metric)  # this model logs its copy under the new one
                resolved.__name__ = name
            names.append(name)
            given.append(resolved if custom else name)
        custom = any(not isinstance(g, str) for g in given)
        return loss, names, given if custom else None

    # -- weights ------------------------------------------------------------------------
    def _weight_keys(self) -> list[tuple[int, str]]:
        """Each weight as ``(index in model.layers, name)``, in Keras's order (by layer)."""
        keys = self._build().weight_keys()
        if self._calls is None:
            return keys
        mapped = [(self._calls[position], name) for position, name in keys]
        return sorted(mapped, key=lambda key: key[0])  # stable: a layer's own order kept

    def _engine_key(self, key: tuple[int, str]) -> tuple[int, str]:
        """The population's key of a weight: the position of its layer's first call."""
        index, name = key
        return key if self._calls is None else (self._calls.index(index), name)

    def _engine_weights(self, keys, weights) -> dict:
        return {self._engine_key(key): value for key, value in zip(keys, weights)}

    def get_weights(self) -> list[np.ndarray]:
        """Every weight in Keras's order and layouts (Dense kernel ``(in, out)``, ...); none
        before the model knows its input shape (Keras: not built)."""
        if self._population is None and (self._input_shape is None or not self._layers):
            return []
        weights = self._build().member_weights(0)
        return [weights[self._engine_key(key)].numpy() for key in self._weight_keys()]

    def set_weights(self, weights) -> None:
        keys = self._weight_keys()
        if len(weights) != len(keys):
            raise ConfigError(f"Sequential.set_weights: expected a list of {len(keys)} arrays "
                              f"({', '.join(self._layers[i].name + '.' + n for i, n in keys)}). "
                              f"Got {len(weights)}.")
        self._population.set_member_weights(0, self._engine_weights(keys, weights))

    def _layer_weights(self, layer) -> list[np.ndarray]:
        index = self._layers.index(layer)
        return [w for (i, _), w in zip(self._weight_keys(), self.get_weights()) if i == index]

    def _set_layer_weights(self, layer, weights) -> None:
        index = self._layers.index(layer)
        keys = [k for k in self._weight_keys() if k[0] == index]
        if len(weights) != len(keys):
            raise ConfigError(f"{layer.name}.set_weights: expected {len(keys)} arrays. "
                              f"Got {len(weights)}.")
        self._population.set_member_weights(0, self._engine_weights(keys, weights))

    def _set_leading_weights(self, weights) -> None:
        keys = self._weight_keys()
        self._population.set_member_weights(0, self._engine_weights(keys, weights))

    def save_weights(self, filepath, overwrite: bool = True) -> None:
        """Writes the weights in Keras 3's ``.weights.h5`` layout (Keras loads the file)."""
        from reglab.models import weights_file

        weights_file.save_weights(self, filepath, overwrite)

    def load_weights(self, filepath, skip_mismatch: bool = False) -> None:
        """Reads weights saved by Keras 3 or reglab (``.weights.h5``, or a ``.keras``
        archive's weights), checked layer by layer before anything changes."""
        from reglab.models import weights_file

        weights_file.load_weights(self, filepath, skip_mismatch)

    def count_params(self) -> int:
        if self._population is None and self._input_shape is None:
            # Keras's ValueError: a model not built has no weights to count yet
            raise ConfigError(f"count_params: the model '{self.name}' is not built (its input "
                              "shape is unknown). Give the first layer input_shape=(...), "
                              "call build(input_shape) or fit first.")
        return int(sum(w.size for w in self.get_weights()))

    # -- Keras's variables: views of the member's weights ---------------------------------
    def _variables(self, layer=None) -> list:
        """Every weight (or ``layer``'s) as a :class:`~reglab.models.variable.Variable`, in
        Keras's order; none before the model knows its input shape (Keras: not built)."""
        from reglab.models.variable import Variable

        if self._population is None and (self._input_shape is None or not self._layers):
            return []
        population = self._build()
        specs = {wp.key: wp.spec for wp in population.plan.weights}
        index = None if layer is None else self._layers.index(layer)
        # one view per weight, kept (Keras's variables are objects: `v in model.weights`)
        views = self.__dict__.setdefault("_variable_views", {})
        found = []
        for key in self._weight_keys():
            if index is not None and key[0] != index:
                continue
            spec = specs[self._engine_key(key)]
            view = Variable(self, key, spec.shape, spec.trainable)
            kept = views.get(key)
            if kept is not None and (kept.path, kept.shape) == (view.path, view.shape):
                kept.trainable = view.trainable
                view = kept
            views[key] = view
            found.append(view)
        return found

    @property
    def weights(self) -> list:
        """Keras's ``model.weights``: every weight, as views (``.numpy()``, ``.assign``)."""
        return self._variables()

    @property
    def trainable_weights(self) -> list:
        return [v for v in self._variables() if v.trainable]

    @property
    def non_trainable_weights(self) -> list:
        return [v for v in self._variables() if not v.trainable]

    def _weight_array(self, key: tuple[int, str]) -> np.ndarray:
        return self._build().member_weights(0)[self._engine_key(key)].numpy()

    def _assign_weight(self, key: tuple[int, str], array: np.ndarray) -> None:
        self._build().set_member_weights(0, {self._engine_key(key): array})

    def __call__(self, inputs, training=False):
        """Keras's ``model(x)``: the outputs of ``x`` (one batch, inference mode) as a torch
        tensor (a list of them for several outputs), as Keras on its torch backend returns
        them, though without a gradient graph (reglab trains through ``fit``).
        ``training=True`` runs the batch in training mode, as Keras (dropout and noise on,
        batch statistics; BatchNormalization's moving statistics updated). Symbolic inputs
        (a model used as a layer) are refused."""
        import torch

        from reglab.layers import symbolic

        if symbolic.is_symbolic(inputs) or (isinstance(inputs, (list, tuple)) and any(
                symbolic.is_symbolic(i) for i in inputs)):
            raise ConfigError(f"{self.name}: a model called on a symbolic input (a model used "
                              "as a layer) is not supported yet. Build one model from the "
                              "layers instead.")
        if training:
            return self._call_in_training_mode(inputs)
        outputs = self.predict_on_batch(inputs)
        self._call_activity = None
        if any(getattr(layer, "activity_regularizer", None) is not None for layer in self._layers):
            from reglab.models.fit_data import batch_arrays

            x, _, _ = batch_arrays("call", self._packed("call", inputs))
            found = self._population.activity_penalties(x)
            self._call_activity = {position if self._calls is None else self._calls[position]:
                                   value[0] for position, value in found.items()}
        if isinstance(outputs, list):
            return [torch.from_numpy(np.asarray(o)) for o in outputs]
        return torch.from_numpy(np.asarray(outputs))

    def _call_in_training_mode(self, inputs):
        """``model(x, training=True)``: one batch in training mode, as Keras computes it
        (dropout and noise on, new random numbers each call; batch statistics, and
        BatchNormalization's moving statistics updated)."""
        import torch

        from reglab.models.fit_data import batch_arrays

        x, _, _ = batch_arrays("call", self._packed("call", inputs))
        if self._input_shape is None:
            self._input_shape = tuple(np.shape(x)[1:])
        population = self._build()
        self._training_calls = getattr(self, "_training_calls", 0) + 1
        found: dict = {}
        outputs = population.call_in_training_mode(x, f"call{self._training_calls}",
                                                   found)[0]
        # Keras's layer losses: the activity penalties of this call's (training) outputs
        self._call_activity = {position if self._calls is None else self._calls[position]:
                               value[0] for position, value in found.items()} or None
        split = getattr(self, "_split", None)
        if split is not None:
            outputs = split(outputs.numpy())
            if isinstance(outputs, list):
                return [torch.from_numpy(np.asarray(o)) for o in outputs]
            return torch.from_numpy(np.asarray(outputs))
        return outputs

    def _building_optimizer(self, call):
        """``call()``, after which the optimizer is built, as Keras builds it once the data
        passed its checks: not where the call was refused, unless it had taken a step."""
        try:
            result = call()
        except BaseException:
            population = self._population
            if population is not None and \
                    population.member_training_state(0)["scalars"].get("steps", 0) > 0:
                self._build_optimizer()
            raise
        self._build_optimizer()
        return result

    def _build_optimizer(self) -> None:
        """Marks the compiled optimizer built, where Keras builds its variables (the first
        fit, evaluate, train_on_batch or test_on_batch; a model loaded compiled)."""
        optimizer = self.optimizer if self._compiled else None
        while optimizer is not None:  # a LossScaleOptimizer's inner one with it
            optimizer.built = True
            optimizer = getattr(optimizer, "inner_optimizer", None)

    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False,
                show_trainable=False, layer_range=None) -> None:
        """Prints Keras's table: layer (type), output shape, parameter count (before the
        input shape is known, Keras's unbuilt table: shapes "?", counts "0 (unbuilt)").
        Keras's layout arguments (``line_length``, ``positions``, ``expand_nested``: reglab's
        models nest none) are taken, the columns fitted to the names as they are;
        ``show_trainable`` and ``layer_range`` are not supported yet, refused when set."""
        for name, value in (("show_trainable", show_trainable), ("layer_range", layer_range)):
            if value or (name == "layer_range" and value is not None):
                raise ConfigError(f"summary: '{name}' is not supported yet (Keras's table of "
                                  f"the whole model is printed without it). Got {value!r}.")
        if line_length is not None and (isinstance(line_length, bool) or not isinstance(
                line_length, int) or line_length <= 0):
            raise ConfigError(f"summary: 'line_length' must be a positive int. Got "
                              f"{line_length!r}.")
        if self._population is None and self._input_shape is None and self._layers:
            text = summary_module.render_unbuilt(self)
        else:
            text = summary_module.render(self, self._build())
        (print_fn or print)(text)

    # -- training ---------------------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, validation_freq=1):
        """Trains the model as Keras does; returns a ``History``."""
        from reglab.models.training import fit

        self._check_weights("fit", sample_weight, class_weight)
        x, y = self._packed("fit", x), self._packed_targets("fit", y)
        if validation_data is not None and (self._input_positions is not None
                                            or self._output_positions is not None):
            if not isinstance(validation_data, (list, tuple)) or len(validation_data) not in (2, 3):
                raise ConfigError("fit: 'validation_data' must be (x_val, y_val) or (x_val, "
                                  f"y_val, sample_weight_val). Got {type(validation_data).__name__}.")
            validation_data = (self._packed("fit: validation_data", validation_data[0]),
                               self._packed_targets("fit: validation_data", validation_data[1]),
                               *validation_data[2:])
        return self._building_optimizer(lambda: fit(
            self, x, y, batch_size, epochs, verbose, callbacks, validation_split,
            validation_data, shuffle, class_weight, sample_weight, initial_epoch,
            steps_per_epoch, validation_batch_size, validation_freq, validation_steps))

    def fit_generator(self, generator, steps_per_epoch=None, epochs=1, verbose="auto",
                      callbacks=None, validation_data=None, **kwargs):
        """Deprecated alias of :meth:`fit` (removed in Keras 3); warns once."""
        import warnings

        if not Sequential._warned_fit_generator:
            warnings.warn("`model.fit_generator` is deprecated; use `model.fit`, which accepts "
                          "generators.", DeprecationWarning, stacklevel=2)
            Sequential._warned_fit_generator = True
        return self.fit(generator, steps_per_epoch=steps_per_epoch, epochs=epochs,
                        verbose=verbose, callbacks=callbacks, validation_data=validation_data,
                        **kwargs)

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 steps=None, callbacks=None, return_dict=False):
        """Loss (penalties included, as Keras) and metrics in inference mode."""
        from reglab.models.training import evaluate

        self._check_weights("evaluate", sample_weight)
        return self._building_optimizer(lambda: evaluate(
            self, self._packed("evaluate", x), self._packed_targets("evaluate", y),
            batch_size, verbose, sample_weight, return_dict, steps, callbacks))

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """Outputs in inference mode (no dropout, moving statistics)."""
        from reglab.models.training import predict

        return predict(self, self._packed("predict", x), batch_size, steps, callbacks, verbose)

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None,
                       return_dict=False):
        """One gradient step on one batch; returns that batch's loss (and metrics), as
        Keras 3 does (computed in the step, before the update; not accumulated)."""
        from reglab.models.training import train_on_batch

        self._check_weights("train_on_batch", sample_weight, class_weight)
        return self._building_optimizer(lambda: train_on_batch(
            self, self._packed("train_on_batch", x), self._packed_targets("train_on_batch", y),
            sample_weight, class_weight, return_dict))

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        """Loss and metrics of one batch in inference mode."""
        from reglab.models.fit_data import batch_arrays
        from reglab.models.training import evaluate

        self._check_weights("test_on_batch", sample_weight)
        x, y, sample_weight = batch_arrays("test_on_batch", self._packed("test_on_batch", x),
                                           self._packed_targets("test_on_batch", y),
                                           sample_weight)
        return self._building_optimizer(
            lambda: evaluate(self, x, y, max(len(x), 1), 0, sample_weight, return_dict))

    def predict_on_batch(self, x):
        """Outputs of one batch in inference mode (a NumPy array)."""
        from reglab.models.fit_data import batch_arrays
        from reglab.models.training import predict

        x, _, _ = batch_arrays("predict_on_batch", self._packed("predict_on_batch", x))
        return predict(self, x, max(len(x), 1))

    # -- Keras's model attributes ------------------------------------------------------------
    @property
    def losses(self) -> list:
        """Keras's ``model.losses``: the activity penalties of the last ``model(x)``'s batch
        (each divided by its size, as training adds it), layer by layer, then each
        regularized trainable weight's penalty at the current weights, in Keras's weight
        order (scalar tensors; a frozen layer's weights add nothing). ``fit``, ``evaluate``
        and ``predict`` forget the last call's activity penalties."""
        indices = range(len(self._layers))
        return [*(loss for i in indices for loss in self._activity_losses(i)),
                *self._weight_losses(indices)]

    def _layer_losses(self, layer) -> list:
        """Keras's ``layer.losses``: its activity penalty, then its weights'."""
        index = self._layers.index(layer)
        return [*self._activity_losses(index), *self._weight_losses([index])]

    def _activity_losses(self, index: int) -> list:
        activity = (self._call_activity or {}).get(index)
        return [] if activity is None else [activity]

    def _weight_losses(self, indices) -> list:
        """The penalties of the regularized trainable weights of the layers at ``indices``."""
        import torch

        if self._population is None and (self._input_shape is None or not self._layers):
            return []
        population = self._build()
        # the regularizers the model trains with (a layer's attribute set after compile
        # takes effect at the next compile, here as in training)
        planned = {wp.key: (wp.regularizers[0] if wp.regularizers else None)
                   for wp in population.plan.weights if wp.spec.trainable}
        out, weights, wanted = [], None, set(indices)
        for index, name in self._weight_keys():
            key = self._engine_key((index, name))
            regularizer = planned.get(key)
            if index in wanted and regularizer is not None:
                weights = population.member_weights(0) if weights is None else weights
                out.append(regularizer(weights[key].to(torch.float32)))
        return out

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """A layer by ``name`` or by ``index`` (Keras's rules and messages)."""
        if index is not None and name is not None:
            raise ValueError("Provide only a layer name or a layer index. Received: "
                             f"index={index}, name={name}.")
        if index is not None:
            if len(self._layers) <= index:
                raise ValueError(f"Was asked to retrieve layer at index {index} but model "
                                 f"only has {len(self._layers)} layers.")
            return self._layers[index]
        if name is not None:
            for layer in self._layers:
                if layer.name == name:
                    return layer
            raise ValueError(f"No such layer: {name}. Existing layers are: "
                             f"{[layer.name for layer in self._layers]}.")
        raise ValueError("Provide either a layer name or layer index at `get_layer`.")

    @property
    def inputs(self) -> list:
        """Keras's: the model's symbolic inputs (for a feature extractor
        ``Model(model.inputs, model.layers[k].output)``)."""
        self._symbolic_graph()
        return list(self._symbolic_inputs)

    @inputs.setter
    def inputs(self, value) -> None:
        self._symbolic_inputs = None if value is None else list(value)

    @property
    def outputs(self) -> list:
        """Keras's: the model's symbolic outputs."""
        self._symbolic_graph()
        return list(self._symbolic_outputs)

    @outputs.setter
    def outputs(self, value) -> None:
        self._symbolic_outputs = None if value is None else list(value)

    @property
    def input(self):
        """Keras's: the symbolic input (a list for several)."""
        inputs = self.inputs
        return inputs[0] if len(inputs) == 1 else inputs

    @property
    def output(self):
        """Keras's: the symbolic output (a list for several)."""
        outputs = self.outputs
        return outputs[0] if len(outputs) == 1 else outputs

    def _symbolic_graph(self) -> None:
        """A Sequential's layers called in order on a ``reglab.Input`` of its input shape,
        once (again after ``add`` or ``pop``): Keras's graph of a Sequential, whose tensors
        ``layer.output`` and ``model.inputs`` give."""
        if self._symbolic_inputs is not None:
            return
        from reglab.layers.layer import Input

        start = x = Input(shape=self.input_shape[1:])
        for layer in self._layers:
            x = layer(x)
        self._symbolic_inputs, self._symbolic_outputs = [start], [x]

    def _forget_symbolic_graph(self) -> None:
        """After ``add`` or ``pop``: the graph is made again when asked."""
        if self._symbolic_inputs is None:
            return
        self._symbolic_inputs = self._symbolic_outputs = None
        for layer in self._layers:
            for name in ("_symbolic_nodes", "_symbolic_calls", "_symbolic_input_shapes"):
                layer.__dict__.pop(name, None)

    @property
    def input_shape(self) -> tuple:
        """``(None, *shape)`` of the input, as Keras (the model must know its input)."""
        if self._input_shape is None:
            raise AttributeError("Sequential: the model has no defined input yet (give the "
                                 "first layer input_shape=..., start with reglab.Input, or "
                                 "call fit).")
        return (None, *self._input_shape)

    @property
    def output_shape(self) -> tuple:
        """``(None, *shape)`` of the output."""
        self.input_shape  # noqa: B018 - the same error without an input
        return (None, *self._build().plan.output_shape)

    def to_json(self, **kwargs) -> str:
        """The architecture as JSON (layers with their regularizers and constraints; no
        weights) in Keras's form, which :func:`reglab.models.model_from_json` and Keras's
        ``keras.models.model_from_json`` read (a class Keras lacks, such as ``ProximalL1``,
        is written as it is, and Keras's reader names it); ``kwargs`` go to
        ``json.dumps``."""
        import json

        from reglab.models import keras_export
        from reglab.models.saving import model_to_config

        document = model_to_config(self, "to_json")
        return json.dumps(keras_export.keras_model_config(
            {"class_name": document["class_name"], "config": document["config"]}, self),
            **kwargs)

    @classmethod
    def from_config(cls, config: dict, custom_objects=None) -> Sequential:
        """A new model from :meth:`get_config`'s dict (or ``to_json``'s ``config``), with
        new initial weights (a fresh seed, as Keras's fresh weights). ``custom_objects``:
        the user's Regularizer classes the config names (see :mod:`reglab.saving`)."""
        from reglab.models import keras_files
        from reglab.models.saving import sequential_from_config
        from reglab.saving import custom_object_scope

        where = "Sequential.from_config"
        if keras_files.is_keras_sequential_config(config):  # Keras's own model's config
            config = keras_files.sequential_config(config, where)
        with custom_object_scope(custom_objects, where):
            return sequential_from_config(config, where, keep_seed=False)

    def get_config(self) -> dict[str, Any]:
        config = {"name": self.name, "seed": self.seed,
                  "input_shape": None if self._input_shape is None else list(self._input_shape),
                  "layers": [{"class_name": type(layer).__name__, "config": layer.get_config()}
                             for layer in self._layers]}
        if self._graph is not None:
            config["graph"] = [list(inbound) for inbound in self._graph]
        if self._calls is not None:
            config["calls"] = list(self._calls)
        if self._input_positions is not None:
            config["inputs"] = list(self._input_positions)
        if self._output_positions is not None:
            config["outputs"] = list(self._output_positions)
        return config

    def save(self, filepath, overwrite=True, zipped=None, **kwargs) -> None:
        """Saves architecture, compile settings and weights in one file (no pickled code);
        the arguments as :func:`reglab.models.saving.save_model`'s."""
        from reglab.models.saving import save_model

        save_model(self, filepath, overwrite, zipped, **kwargs)

    def __repr__(self) -> str:
        return f"<Sequential name={self.name!r} layers={len(self._layers)}>"

    def __setstate__(self, state: dict) -> None:
        """Unpickled or copied: a loss-scaling optimizer reads the copy's own member."""
        self.__dict__.update(state)
        if self._population is not None and not self._optimizer_elsewhere:
            _attach(self.optimizer, self._population)


def metric_objects(names: list[str], given) -> dict[str, Any]:
    """Keras's objects of a compiled model's metrics, by logged name: the object compile was
    given (a weighted metric's own), else a ``metrics.Mean`` of the name, to hold what the
    engine logs under it."""
    objects = {}
    for item in given or ():
        inner = getattr(item, "metric", item) if isinstance(item, metrics_module.WeightedMetric) \
            else item
        if isinstance(inner, StatefulMetric):
            objects[getattr(item, "__name__", inner.name)] = inner
    return {name: objects.get(name) or metrics_module.Mean(name=name) for name in names}


def _of_the_output(argument: str, value, output: str | None):
    """Keras's forms of a one-output model's ``loss`` (a list of one) or ``loss``/``metrics``
    (a dict by the output's name, its last layer's) as the value they hold."""
    if argument in ("loss", "loss_weights") and isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise ConfigError(f"compile: '{argument}' as a list takes one entry per output; "
                              f"this model has one. Got {len(value)}.")
        return value[0]
    if isinstance(value, dict):
        if set(value) != {output}:
            raise ConfigError(f"compile: '{argument}' as a dict is keyed by the output's name; "
                              f"this model's one output is {output!r}. Got keys "
                              f"{sorted(map(str, value))}.")
        return value[output]
    return value


def _attach(optimizer, population) -> None:
    """Links ``optimizer`` to the member ``population`` trains for the model: its
    ``iterations`` (so a schedule's current rate) and a LossScaleOptimizer's
    ``dynamic_scale`` read that member's state."""
    from reglab.engine import loss_scale

    if not isinstance(optimizer, optimizers_module.Optimizer):
        return
    optimizer._steps_reader = lambda: _steps_taken(population, 0)
    if isinstance(optimizer, optimizers_module.LossScaleOptimizer):
        optimizer.inner_optimizer._steps_reader = optimizer._steps_reader
        optimizer._state_reader = lambda: loss_scale.member_state(population, 0)


def _steps_taken(population, member_id: int) -> int:
    """The optimizer steps member ``member_id`` has taken, training or parked."""
    return population.member_scalar(member_id, "steps") or 0


def _carry_training_state(old: Population, new: Population) -> None:
    """The optimizer's slots, averages and per-member counters (step count, loss scale) of
    ``old`` into ``new``, for the weights trainable in both (a weight trainable only now
    starts with zero slots, as a fresh one)."""
    import torch

    before, after = old.state.members, new.state.members
    with torch.no_grad():
        for family, tensors in before.tensors.items():
            target = after.tensors.get(family)
            if family == "weights" or target is None:
                continue
            for key, tensor in tensors.items():
                if key in target:
                    target[key].copy_(tensor)
    for name, values in before.scalars.items():
        if name in after.scalars:
            after.scalars[name][:] = values  # in place: the optimizer reads this list
