"""What a population is made of: its members, and the structure they must share.

A :class:`Member` is one model as a user would write it (a list of Keras-style
layers, an optimizer, a seed and an optional early-stopping rule). ``plan``
checks that all members share one structure, names every layer the way Keras
would (``dense``, ``dense_1``...), and gathers what may differ between members
(rates, strengths, learning rates) into per-member lists.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from reglab import optimizers as optimizers_module
from reglab.engine.early_stopping import EarlyStoppingRule
from reglab.errors import ConfigError, StructureError
from reglab.layers.layer import Input, Layer, Shape, WeightSpec, snake_case


@dataclass
class Member:
    """One model of a population.

    Args:
        layers: Keras-style layers; the first carries ``input_shape`` or is an ``Input``.
        optimizer: an optimizer object or Keras name (default ``'adam'``).
        seed: the seed of every random draw (initial weights, batch order, masks, augmentation).
        early_stopping: an :class:`EarlyStoppingRule`, or None.
        input_shape: the input shape without the batch, if no layer gives it.
        name: a label for reports.
        graph: for a functional model, per layer the positions (in ``layers``) of its
            inputs, -1 for the model's input, each layer after its inputs and the output
            last; None for a stack (each layer takes the one before).
    """

    layers: Sequence[Any]
    optimizer: Any = "adam"
    seed: int = 0
    early_stopping: EarlyStoppingRule | None = None
    input_shape: Shape | None = None
    name: str | None = None
    graph: Sequence[Sequence[int]] | None = None


@dataclass
class LayerPlan:
    """One layer position of the population: the members' layer objects and shapes."""

    canonical_name: str
    layers: list[Layer]
    input_shape: Shape
    output_shape: Shape
    weight_specs: list[WeightSpec]
    values: dict[str, list[float]]
    #: per member, its activity regularizer (or None); empty when no member has one
    activity: list[Any] = field(default_factory=list)
    #: the positions of the layer's inputs (-1: the population's input)
    inbound: tuple[int, ...] = ()
    #: for a shared layer's later call (the same layer object at an earlier position), that
    #: position, whose weights this one uses (it has none of its own); else None
    weights_of: int | None = None

    @property
    def layer(self) -> Layer:
        return self.layers[0]


@dataclass
class WeightPlan:
    """One weight position: its spec and, per member, its initializer, regularizer (or
    None) and constraint (or None), and the regularizer's values (its strengths, which
    :meth:`reglab.engine.Population.set_hyperparameter` may change)."""

    layer_index: int
    spec: WeightSpec
    initializers: list[Any]
    constraints: list[Any]
    regularizers: list[Any] = field(default_factory=list)
    regularizer_values: list[dict[str, float]] = field(default_factory=list)

    @property
    def key(self) -> tuple[int, str]:
        return (self.layer_index, self.spec.name)


@dataclass
class PopulationPlan:
    input_shape: Shape
    layers: list[LayerPlan]
    weights: list[WeightPlan]
    optimizers: list[optimizers_module.Optimizer]
    seeds: list[int]
    early_stopping: list[EarlyStoppingRule | None]
    names: list[str]

    @property
    def output_shape(self) -> Shape:
        return self.layers[-1].output_shape if self.layers else self.input_shape

    @property
    def is_graph(self) -> bool:
        """Whether some layer takes another input than the layer before it (computed once:
        every forward pass asks)."""
        if "_is_graph" not in self.__dict__:
            self._is_graph = any(lp.inbound != (i - 1,) or lp.weights_of is not None
                                 for i, lp in enumerate(self.layers))
        return self._is_graph

    @property
    def batch_transforms(self) -> list[LayerPlan]:
        """The leading layers that transform each batch's (x, y) (MixUp, CutMix...)."""
        if "_batch_transforms" not in self.__dict__:
            self._batch_transforms = [lp for lp in self.layers
                                      if getattr(lp.layer, "is_batch_transform", False)]
        return self._batch_transforms

    def weight(self, key: tuple[int, str]) -> WeightPlan:
        """The plan of the weight ``(layer index, weight name)``."""
        for wp in self.weights:
            if wp.key == key:
                return wp
        raise KeyError(key)


def _split_input(member: Member, index: int) -> tuple[Shape, list[Layer]]:
    if not isinstance(member, Member):
        raise ConfigError(f"Population: member {index} must be a reglab.engine.Member. "
                          f"Got {type(member).__name__}.")
    if not isinstance(member.layers, (list, tuple)):
        raise ConfigError(f"Population: member {index}: 'layers' must be a list of layers. "
                          f"Got {type(member.layers).__name__}.")
    layers = list(member.layers)
    shape = member.input_shape
    if layers and isinstance(layers[0], Input):
        shape = layers.pop(0).sample_shape
    if not layers:
        raise ConfigError(f"Population: member {index} has no layers.")
    for position, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise ConfigError(f"Population: member {index}, layer {position}: expected a "
                              f"reglab layer. Got {layer!r}.")
    if shape is None:
        shape = layers[0].input_shape
    if shape is None:
        raise ConfigError(
            f"Population: member {index} has no input shape. Give the first layer "
            "input_shape=(...), start with reglab.Input(shape=(...)), or pass input_shape.")
    return tuple(shape), layers


def _graph(member: Member, count: int, index: int) -> list[tuple[int, ...]]:
    """The member's graph, checked: a stack's when it has none."""
    if member.graph is None:
        return [(i - 1,) for i in range(count)]
    try:
        graph = [tuple(int(j) for j in inbound) for inbound in member.graph]
    except (TypeError, ValueError):
        raise ConfigError(f"Population: member {index}: 'graph' must be a list of lists of "
                          f"layer positions. Got {member.graph!r}.") from None
    if len(graph) != count or any(not inbound or any(not -1 <= j < i for j in inbound)
                                  for i, inbound in enumerate(graph)):
        raise ConfigError(f"Population: member {index}: 'graph' must give each of its "
                          f"{count} layers the positions of its inputs (earlier layers, or -1 "
                          f"for the input). Got {member.graph!r}.")
    used = {j for inbound in graph for j in inbound}
    # an input's own position may feed nothing (a model's input no output reads, as Keras's)
    if any(i not in used and graph[i] != (-1,) for i in range(count - 1)):
        raise ConfigError(f"Population: member {index}: every layer but the last must feed "
                          f"another (the last is the output). Got {member.graph!r}.")
    _check_leading_chain(member.layers, graph, index)
    return graph


def _check_leading_chain(layers, graph, index: int) -> None:
    """In a graph, augmentation and batch transforms (applied to the whole batch before the
    model) must form the chain that starts at the input, read by nothing but the next."""
    leading = [i for i, layer in enumerate(layers)
               if getattr(layer, "is_augmentation", False)
               or getattr(layer, "is_batch_transform", False)]
    if not leading or graph == [(i - 1,) for i in range(len(graph))]:
        return
    start = 1 if getattr(layers[0], "is_input", False) else 0
    chain = list(range(start, start + len(leading)))
    readers = {j: [i for i, inbound in enumerate(graph) if j in inbound]
               for j in [-1, *range(start + len(leading))]}
    ok = leading == chain and all(graph[i] == (i - 1,) for i in chain) and all(
        len(readers[j]) == 1 for j in [-1, *range(start + len(leading) - 1)])
    if not ok:
        raise ConfigError(f"Population: member {index}: augmentation and MixUp/CutMix/"
                          "LabelSmoothing layers change the whole batch before the model, so in "
                          "a functional model they must come right after the input, one after "
                          "another, read by nothing else. Got them elsewhere in the graph.")


def regularizer_values(reg) -> dict[str, float]:
    """A regularizer's per-member values: those it declares when it belongs to a family
    (computed for all members at once), else none (it is evaluated member by member)."""
    if reg is None or not hasattr(reg, "family") or reg.family() is None:
        return {}
    return {name: float(value) for name, value in reg.values().items()}


def plan(members: Sequence[Member]) -> PopulationPlan:
    """Checks that ``members`` share one structure and gathers their values."""
    if not members:
        raise ConfigError("Population: expected at least one member. Got 0.")
    resolved = [_split_input(m, i) for i, m in enumerate(members)]
    input_shape, reference = resolved[0]
    for i, (shape, layers) in enumerate(resolved[1:], start=1):
        if shape != input_shape:
            raise StructureError(f"Population: member {i} differs from member 0 in input "
                                 f"shape: {shape} vs {input_shape}.")
        if len(layers) != len(reference):
            raise StructureError(
                f"Population: member {i} differs from member 0 in its number of layers: "
                f"{len(layers)} vs {len(reference)} "
                f"({[type(x).__name__ for x in layers]} vs {[type(x).__name__ for x in reference]}). "
                "Members of one population may differ in values only; group models of "
                "different structure into separate populations.")
    graphs = [_graph(m, len(layers), i) for i, (m, (_, layers)) in
              enumerate(zip(members, resolved))]
    graph = graphs[0]
    for i, other in enumerate(graphs[1:], start=1):
        if other != graph:
            raise StructureError(f"Population: member {i} differs from member 0 in how its "
                                 "layers connect (its graph). Members of one population may "
                                 "differ in values only.")
    shared = _shared_calls(resolved, members[0].graph is not None)
    layer_plans, weight_plans, counts = [], [], {}
    for position, ref in enumerate(reference):
        inbound = [input_shape if j == -1 else layer_plans[j].output_shape
                   for j in graph[position]]
        if not getattr(ref, "takes_list", False) and len(inbound) != 1:
            raise ConfigError(f"Population: layer {position} ({type(ref).__name__}) takes one "
                              f"input; the graph gives it {len(inbound)}: {graph[position]}.")
        shape = inbound if getattr(ref, "takes_list", False) else inbound[0]
        column = [layers[position] for _, layers in resolved]
        first = shared.get(position)
        if first is not None:  # a later call of a shared layer: the first call's weights
            layer_plans.append(_shared_call_plan(layer_plans[first], position, first, shape,
                                                 column, tuple(graph[position])))
            continue
        base = snake_case(type(ref).__name__)
        canonical = base if counts.get(base, 0) == 0 else f"{base}_{counts[base]}"
        counts[base] = counts.get(base, 0) + 1
        for i, layer in enumerate(column[1:], start=1):
            for mine, theirs in ((layer.structure(), ref.structure()),
                                 (f"trainable={layer.trainable}", f"trainable={ref.trainable}"),
                                 (f"dtype={layer.dtype_policy.name}",
                                  f"dtype={ref.dtype_policy.name}")):
                if mine != theirs:
                    raise StructureError(
                        f"Population: member {i} differs from member 0 at layer {position} "
                        f"({canonical}): {mine} vs {theirs}. Members of one population may "
                        "differ in values only.")
        out_shape = ref.compute_output_shape(shape)
        if any(d <= 0 for d in out_shape):
            raise ConfigError(f"Population: layer {position} ({canonical}) turns inputs of shape "
                              f"{shape} into an empty output {out_shape}. Use a smaller kernel "
                              "or pool, or padding='same'.")
        # A frozen layer (trainable=False) freezes its weights, as in Keras.
        specs = [replace(spec, trainable=spec.trainable and ref.trainable)
                 for spec in ref.weight_specs(shape)]
        values = {name: [float(layer.values()[name]) for layer in column]
                  for name in ref.values()}
        activity = [layer.activity_regularizer for layer in column]
        layer_plans.append(LayerPlan(canonical, column, shape, out_shape, specs, values,
                                     activity if any(a is not None for a in activity) else [],
                                     tuple(graph[position])))
        for spec_index, spec in enumerate(specs):
            member_specs = [layer.weight_specs(shape)[spec_index] for layer in column]
            cons = [s.constraint for s in member_specs]
            structures = {None if c is None else c.structure() for c in cons}
            if len(structures) > 1:
                raise StructureError(
                    f"Population: members differ in the kind of constraint on "
                    f"{canonical}.{spec.name}: {sorted(map(str, structures))}.")
            _check_constraint_axes(cons[0], f"{canonical}.{spec.name}", spec.shape)
            regs = [s.regularizer for s in member_specs]
            weight_plans.append(WeightPlan(
                position, spec, [s.initializer for s in member_specs], cons, regs,
                [dict(regularizer_values(r)) for r in regs]))
    _check_augmentation_first([lp.layer for lp in layer_plans])
    opts = [optimizers_module.get(m.optimizer, where=f"Population: member {i}: 'optimizer'")
            for i, m in enumerate(members)]
    for i, opt in enumerate(opts[1:], start=1):
        if opt.structure() != opts[0].structure():
            raise StructureError(f"Population: member {i} differs from member 0 in its "
                                 f"optimizer: {opt.structure()} vs {opts[0].structure()}.")
    seeds = []
    for i, m in enumerate(members):
        if isinstance(m.seed, bool) or not isinstance(m.seed, numbers.Integral) or m.seed < 0:
            raise ConfigError(f"Population: member {i}: 'seed' must be an int >= 0. "
                              f"Got {m.seed!r}.")
        seeds.append(int(m.seed))
        if m.early_stopping is not None and not isinstance(m.early_stopping, EarlyStoppingRule):
            raise ConfigError(f"Population: member {i}: 'early_stopping' must be an "
                              "EarlyStoppingRule (EarlyStoppingRule(monitor='val_loss', "
                              f"patience=5)) or None. Got {m.early_stopping!r}.")
    names = [m.name or f"member_{i}" for i, m in enumerate(members)]
    return PopulationPlan(input_shape, layer_plans, weight_plans, opts, seeds,
                          [m.early_stopping for m in members], names)


def _shared_calls(resolved, has_graph: bool) -> dict[int, int]:
    """``{position: first position}`` for each later call of a layer object that appears
    at several positions (Keras's shared layer), the same in every member."""
    reference = resolved[0][1]
    first_at: dict[int, int] = {}
    shared = {}
    for position, layer in enumerate(reference):
        first = first_at.setdefault(id(layer), position)
        if first != position:
            shared[position] = first
    if shared and not has_graph:
        position, first = next(iter(shared.items()))
        raise ConfigError(f"Population: layer {position} is layer {first} again (a shared "
                          "layer); a stack calls each layer once: build a functional model "
                          "(reglab.Model) to call a layer twice.")
    for i, (_, layers) in enumerate(resolved[1:], start=1):
        for position, layer in enumerate(layers):
            again = next(j for j, other in enumerate(layers) if other is layer)
            if shared.get(position, position) != again:
                raise StructureError(
                    f"Population: member {i} differs from member 0 in its shared layers at "
                    f"layer {position}. Members of one population may differ in values only.")
    return shared


def _shared_call_plan(first: LayerPlan, position: int, first_position: int, shape,
                      column: list[Layer], inbound: tuple[int, ...]) -> LayerPlan:
    """The plan of a shared layer's later call: no weights of its own, the same input
    shape as its first call (the weights' shapes depend on it), its own noise stream."""
    if shape != first.input_shape:
        raise ConfigError(f"Population: layer {position} calls {first.canonical_name} again "
                          f"on inputs of shape {shape}; its weights were made for "
                          f"{first.input_shape}. A shared layer takes inputs of one shape.")
    activity = [layer.activity_regularizer for layer in column]
    # the first call's value lists themselves: a value set on the layer holds for every call
    return LayerPlan(f"{first.canonical_name}@{position}", column, shape, first.output_shape,
                     [], first.values,
                     activity if any(a is not None for a in activity) else [], inbound,
                     weights_of=first_position)


def extended(old: PopulationPlan, members: Sequence[Member]) -> PopulationPlan:
    """The plan of ``members`` (the old plan's members first, then new ones), keeping the
    per-member values that were changed in ``old`` since it was planned."""
    new = plan(members)
    first = len(old.seeds)
    for before, after in zip(old.layers, new.layers):
        for name, values in before.values.items():
            after.values[name][:first] = values
    for before, after in zip(old.weights, new.weights):
        after.regularizer_values[:first] = before.regularizer_values
    return new


def _check_constraint_axes(constraint, where: str, shape) -> None:
    """A norm constraint's axes within the weight's dimensions (Keras fails on one past
    them when it first applies it; here it is refused before training)."""
    axes = getattr(constraint, "axis", None)
    if constraint is None or axes is None:
        return
    ndim = len(shape)
    for axis in (axes if isinstance(axes, (tuple, list)) else (axes,)):
        if not -ndim <= axis < ndim:
            raise ConfigError(f"{where}: {type(constraint).__name__}'s axis {axis} is out of "
                              f"range for a weight of shape {tuple(shape)} (expected an axis "
                              f"in {-ndim}..{ndim - 1}). Got axis={axes!r}.")


def _check_augmentation_first(layers: list[Layer]) -> None:
    """Augmentation, then MixUp/CutMix/LabelSmoothing, come first (after the input): reglab
    applies them to each training batch before the model. A ``Reshape`` of flat images may
    come before augmentation (the batch is warped in its shape: ``engine/augmentation.py``),
    and so may a ``Rescaling`` of one scale and offset (a warp commutes with it: the raw
    batch is warped, its constant fill mapped back, see :func:`rescaling_before`)."""
    seen_other = reshaped = started = False
    before = None
    for layer in layers:
        leading = layer.is_augmentation or getattr(layer, "is_batch_transform", False)
        if getattr(layer, "is_input", False):
            continue
        if leading and seen_other and _per_channel_rescaling(before):
            raise ConfigError(
                f"Population: {type(layer).__name__} after a Rescaling with a scale or offset "
                "per channel: reglab augments the batch before the model, which commutes with "
                "a Rescaling of one scale and one offset only (its constant fill is mapped "
                "through it). Put the augmentation first, or rescale with one number.")
        if leading and (seen_other or (reshaped and not layer.is_augmentation)):
            raise ConfigError(
                f"Population: {type(layer).__name__} must come before every other layer (right "
                "after the input, augmentation first, then MixUp, CutMix or LabelSmoothing; "
                "a Reshape, or a Rescaling of one scale and offset, may come before the "
                "augmentation): reglab applies them to each training batch before the model.")
        before = layer
        if (is_reshape(layer) or _commutes_with_a_warp(layer)) and not seen_other \
                and not started:
            reshaped = True  # before any augmentation: the batch is warped in its shape
        else:
            seen_other = seen_other or not leading
            started = started or leading


def _commutes_with_a_warp(layer: Layer) -> bool:
    """A ``Rescaling`` of one scale and one offset: ``warp(a x + b) = a warp(x) + b`` (an
    interpolation weighs pixels by weights that sum to one), the constant fill mapped
    through it."""
    from reglab.layers.core import Rescaling

    return type(layer) is Rescaling and all(
        _one_value(v) is not None for v in (layer.scale, layer.offset))


def _per_channel_rescaling(layer) -> bool:
    from reglab.layers.core import Rescaling

    return type(layer) is Rescaling and not _commutes_with_a_warp(layer)


def _one_value(value) -> float | None:
    """A Rescaling's scale or offset as one number (a one-element list is one, as Keras
    broadcasts it); None for one per channel."""
    if isinstance(value, (list, tuple)):
        return float(value[0]) if len(value) == 1 else None
    return None if isinstance(value, bool) else float(value)


def rescaling_before(layers) -> tuple[float, float]:
    """``(a, b)``: the Rescaling(s) before the augmentation layers composed, ``x -> a x + b``
    (``(1, 0)`` without any)."""
    a, b = 1.0, 0.0
    for layer in layers:
        if layer.is_augmentation:
            break
        if _commutes_with_a_warp(layer):
            scale, offset = _one_value(layer.scale), _one_value(layer.offset)
            a, b = a * scale, b * scale + offset
    return a, b


def is_reshape(layer: Layer) -> bool:
    from reglab.layers.reshaping import Reshape

    return type(layer) is Reshape
