"""Keras's functional API: layers called on symbolic tensors build a graph, which
``reglab.Model(inputs, outputs)`` trains.

``reglab.Input(shape=...)`` is a graph's input; calling a layer on it (or on what another
layer returned) gives a :class:`SymbolicTensor` that remembers the layer and its inputs; no
computation happens until the model trains or predicts.
"""

from __future__ import annotations

from typing import Any

from reglab.errors import ConfigError


class SymbolicTensor:
    """A layer's output in a graph: its shape (``shape[0]`` is the batch: the input's
    ``batch_size``, None by default), the layer that makes it, and that layer's inputs."""

    def __init__(self, sample_shape, layer, inbound: tuple, batch_size: int | None = None):
        self.sample_shape = tuple(sample_shape)
        self.layer = layer
        self.inbound = inbound
        self.batch_size = batch_size

    @property
    def shape(self) -> tuple:
        return (self.batch_size, *self.sample_shape)

    def __repr__(self) -> str:
        return f"<SymbolicTensor shape={self.shape} from {self.layer.name or type(self.layer).__name__}>"


def sample_shape(value) -> tuple[int, ...]:
    """A symbolic tensor's (or ``reglab.Input``'s) shape without the batch."""
    return value.sample_shape


def is_symbolic(value: Any) -> bool:
    from reglab.layers.layer import Input

    return isinstance(value, (Input, SymbolicTensor))


def call(layer, inputs) -> SymbolicTensor:
    """``layer(inputs)`` on symbolic tensors: the output's shape, checked now."""
    many = isinstance(inputs, (list, tuple))
    tensors = list(inputs) if many else [inputs]
    name = layer.name or type(layer).__name__
    if not tensors or not all(is_symbolic(t) for t in tensors):
        raise ConfigError(
            f"{name}: layers are called on reglab.Input(...) or on what other layers "
            "returned, to build a functional model; to compute outputs, build the model and "
            f"call model.predict(x). Got {type(inputs).__name__}.")
    takes_list = getattr(layer, "takes_list", False)
    if takes_list != many or (not many and len(tensors) != 1):
        expected = "a list of inputs" if takes_list else "one input"
        raise ConfigError(f"{name}: expected {expected}. Got "
                          f"{len(tensors) if many else 1} input(s) "
                          f"{'in a list' if many else ''}".rstrip() + ".")
    shapes = [sample_shape(t) for t in tensors]
    first = getattr(layer, "_symbolic_input_shapes", None)
    if first is not None and first != shapes:  # a shared layer: its weights fit one shape
        raise ConfigError(f"{name}: called before on inputs of shape "
                          f"{first if takes_list else first[0]}; a shared layer takes inputs "
                          f"of one shape (its weights were made for it). Got "
                          f"{shapes if takes_list else shapes[0]}.")
    out = layer.compute_output_shape(shapes if takes_list else shapes[0])
    layer._symbolic_input_shapes = shapes
    return SymbolicTensor(out, layer, tuple(tensors), tensors[0].shape[0])


def topological(inputs, outputs) -> tuple[list, list[int], list[tuple[int, ...]],
                                          tuple[int, ...]]:
    """``(layers, calls, inbound, input_shape)`` of the graph from ``inputs`` to ``outputs``:
    ``layers`` each once, in Keras's order (the model's InputLayer first); then one position
    per call of a layer (a shared layer has several), in an order where each comes after its
    inputs (the output last): ``calls`` gives each position's layer (its index in
    ``layers``), ``inbound`` the positions of its inputs (-1: the model's input)."""
    from reglab.layers.layer import Input

    ins = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    outs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    if len(ins) != 1 or not isinstance(ins[0], Input):
        raise ConfigError(f"Model: 'inputs' must be one reglab.Input (several inputs are not "
                          f"supported yet). Got {inputs!r}.")
    if len(outs) != 1 or not isinstance(outs[0], SymbolicTensor):
        raise ConfigError(f"Model: 'outputs' must be one layer output (several outputs are "
                          f"not supported yet). Got {outputs!r}.")
    nodes, operations = _keras_order(outs[0], ins[0])
    # the model's input layer first (Keras lists it in model.layers), then the graph
    layers = [input_layer(ins[0])] + operations
    index = {id(layer): i for i, layer in enumerate(layers)}
    position = {id(node): i + 1 for i, node in enumerate(nodes)}
    calls = [0] + [index[id(node.layer)] for node in nodes]
    inbound = [(-1,)] + [tuple(0 if isinstance(p, Input) else position[id(p)]
                               for p in node.inbound) for node in nodes]
    return layers, calls, inbound, ins[0].sample_shape


def _keras_order(output, model_input) -> tuple[list[SymbolicTensor], list]:
    """The graph's nodes (layer calls) and its layers in Keras's order (its ``map_graph``):
    a node's depth is the longest path from it to the output, raised to the deepest call
    of its layer; nodes and layers by depth, deepest first, ties in the order a depth-first
    walk from the output first reaches them. So ``model.layers``, the weights' order and
    the weights files' layer names are Keras's."""
    from reglab.layers.layer import Input

    finished: list[SymbolicTensor] = []  # each node after its inputs
    first_seen: dict[int, int] = {}
    layer_seen: dict[int, int] = {}
    done: set[int] = set()

    def visit(node):
        if isinstance(node, Input):
            if node is not model_input:
                raise ConfigError("Model: the outputs depend on a reglab.Input that is not "
                                  "the model's 'inputs'.")
            return
        if id(node) in done:
            return
        first_seen.setdefault(id(node), len(first_seen))
        layer_seen.setdefault(id(node.layer), len(layer_seen))
        for parent in node.inbound:
            visit(parent)
        done.add(id(node))
        finished.append(node)

    import sys

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(_ancestors(output)) + 100))
    try:
        visit(output)
    finally:
        sys.setrecursionlimit(limit)
    depth: dict[int, int] = {}
    layer_depth: dict[int, int] = {}
    for node in reversed(finished):  # from the output back: each node before its inputs
        here = max(depth.get(id(node), 0), layer_depth.get(id(node.layer), 0))
        depth[id(node)] = layer_depth[id(node.layer)] = here
        for parent in node.inbound:
            if not isinstance(parent, Input):
                depth[id(parent)] = max(depth.get(id(parent), 0), here + 1)
    nodes = sorted(finished, key=lambda n: (-depth[id(n)], first_seen[id(n)]))
    layers = {id(n.layer): n.layer for n in finished}
    operations = sorted(layers.values(),
                        key=lambda layer: (-layer_depth[id(layer)], layer_seen[id(layer)]))
    return nodes, operations


def _ancestors(output) -> set[int]:
    from reglab.layers.layer import Input

    seen, stack = set(), [output]
    while stack:
        node = stack.pop()
        if isinstance(node, Input) or id(node) in seen:
            continue
        seen.add(id(node))
        stack.extend(node.inbound)
    return seen


def input_layer(tensor):
    """The InputLayer of a ``reglab.Input`` (one per Input, made on first use)."""
    from reglab.layers.core import InputLayer

    if getattr(tensor, "_input_layer", None) is None:
        tensor._input_layer = InputLayer(tensor.sample_shape, name=tensor.name)
    return tensor._input_layer
