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

    def __init__(self, sample_shape, layer, inbound: tuple, batch_size: int | None = None,
                 node_index: int = 0):
        self.sample_shape = tuple(sample_shape)
        self.layer = layer
        self.inbound = inbound
        self.batch_size = batch_size
        #: which call of its layer made it (Keras's node index: 0 for the first call)
        self.node_index = node_index

    @property
    def shape(self) -> tuple:
        return (self.batch_size, *self.sample_shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def dtype(self) -> str:
        """Keras's: the layer's compute dtype ("float32"; "bfloat16" under mixed_bfloat16)."""
        policy = getattr(self.layer, "dtype_policy", None)
        return getattr(policy, "compute_dtype", "float32")

    @property
    def name(self) -> str:
        """The layer's name, and which of its calls made the tensor after the first."""
        base = self.layer.name or type(self.layer).__name__
        return base if self.node_index == 0 else f"{base}_{self.node_index}"

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
    calls = getattr(layer, "_symbolic_calls", 0)
    layer._symbolic_calls = calls + 1
    output = SymbolicTensor(out, layer, tuple(tensors), tensors[0].shape[0], node_index=calls)
    layer._symbolic_nodes = [*getattr(layer, "_symbolic_nodes", ()), (tuple(tensors), output)]
    return output


def node_indices(inputs, outputs) -> list[int]:
    """Per position of :func:`topological`'s graph, which call of its layer it is, in the
    order the calls were made (Keras's node index; an input's is 0)."""
    from reglab.layers.layer import Input

    ins = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    outs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    nodes, _ = _keras_order(outs, ins)
    return [0 if isinstance(node, Input) else node.node_index for node in nodes]


def topological(inputs, outputs) -> tuple[list, list[int], list[tuple[int, ...]],
                                          list[tuple[int, ...]], list[int], list[int]]:
    """``(layers, calls, inbound, input_shapes, input_positions, output_positions)`` of the
    graph from
    ``inputs`` to ``outputs``: ``layers`` each once, in Keras's order (an input's InputLayer
    among them, at its depth: first when there is one input); then one position per call of
    a layer (a shared layer has several; an input is a position too), in an order where
    each comes after its inputs (the output last): ``calls`` gives each position's layer
    (its index in ``layers``), ``inbound`` the positions of its inputs (``(-1,)``: the
    model's input, for the positions of the inputs); ``input_shapes`` and
    ``input_positions`` are the inputs' sample shapes and positions, in ``inputs``'s
    order, ``output_positions`` the outputs' positions in ``outputs``'s order (with one
    output, the last position)."""
    from reglab.layers.layer import Input

    if isinstance(inputs, dict):
        raise ConfigError("Model: 'inputs' as a dict is not supported yet; pass a list of "
                          "reglab.Input in the order the data will come.")
    ins = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    outs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    if not ins or not all(isinstance(i, Input) for i in ins):
        raise ConfigError(f"Model: 'inputs' must be a reglab.Input or a list of them. "
                          f"Got {inputs!r}.")
    if len({id(i) for i in ins}) != len(ins):
        raise ConfigError("Model: 'inputs' lists one reglab.Input twice.")
    if isinstance(outputs, dict):
        raise ConfigError("Model: 'outputs' as a dict is not supported yet; pass a list of "
                          "layer outputs.")
    if not outs or not all(isinstance(o, SymbolicTensor) for o in outs):
        raise ConfigError(f"Model: 'outputs' must be a layer's output or a list of them. "
                          f"Got {outputs!r}.")
    if len({id(o) for o in outs}) != len(outs):
        raise ConfigError("Model: 'outputs' lists one tensor twice.")
    if len({id(o.layer) for o in outs}) != len(outs):
        raise ConfigError("Model: two outputs come from one layer; each output must be "
                          "another layer's (its name names the output's loss and metrics).")
    nodes, operations = _keras_order(outs, ins)
    index = {id(layer): i for i, layer in enumerate(operations)}
    position = {id(node): i for i, node in enumerate(nodes)}
    calls = [index[id(_layer_of(node))] for node in nodes]
    inbound = [(-1,) if isinstance(node, Input) else
               tuple(position[id(p)] for p in node.inbound) for node in nodes]
    return (operations, calls, inbound, [i.sample_shape for i in ins],
            [position[id(i)] for i in ins], [position[id(o)] for o in outs])


def _layer_of(node):
    """The layer a node calls (an input's InputLayer for an input)."""
    from reglab.layers.layer import Input

    return input_layer(node) if isinstance(node, Input) else node.layer


def _keras_order(outputs, model_inputs) -> tuple[list, list]:
    """The graph's nodes (the inputs and the layer calls) and its layers in Keras's order
    (its ``map_graph``): a node's depth is the longest path from it to the output, raised
    to the deepest call of its layer; nodes and layers by depth, deepest first; ties among
    layers in the order a depth-first walk from the outputs first reaches them, among nodes
    in the order the walk back from the outputs gives them a depth. So ``model.layers``,
    the weights' order, the weights files' layer names and the order a shared layer's calls
    run in are Keras's."""
    from reglab.layers.layer import Input

    finished: list = []  # each node after its inputs
    first_seen: dict[int, int] = {}
    layer_seen: dict[int, int] = {}
    done: set[int] = set()
    allowed = {id(i) for i in model_inputs}

    def visit(node):
        if isinstance(node, Input) and id(node) not in allowed:
            raise ConfigError("Model: the outputs depend on a reglab.Input that is not "
                              "one of the model's 'inputs'.")
        if id(node) in done:
            return
        first_seen.setdefault(id(node), len(first_seen))
        layer_seen.setdefault(id(_layer_of(node)), len(layer_seen))
        for parent in () if isinstance(node, Input) else node.inbound:
            visit(parent)
        done.add(id(node))
        finished.append(node)

    import sys

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(_ancestors(outputs)) + 100))
    try:
        for output in outputs:
            visit(output)
    finally:
        sys.setrecursionlimit(limit)
    # An input no output reads (a feature extractor's of a model with several inputs) is
    # the model's all the same, as in Keras: at depth 0, just before the output (Keras's
    # map_graph meets it last), taking its data unread
    unused = [i for i in model_inputs if id(i) not in done]
    depth: dict[int, int] = {}
    layer_depth: dict[int, int] = {}
    for k, node in enumerate(unused):
        depth[id(node)] = layer_depth[id(_layer_of(node))] = 0
        layer_seen[id(_layer_of(node))] = k - len(unused)  # before the output's layer
        finished.insert(0, node)
    for node in reversed(finished):  # from the output back: each node before its inputs
        layer = _layer_of(node)
        here = max(depth.get(id(node), 0), layer_depth.get(id(layer), 0))
        depth[id(node)] = layer_depth[id(layer)] = here
        for parent in () if isinstance(node, Input) else node.inbound:
            depth[id(parent)] = max(depth.get(id(parent), 0), here + 1)
    # Within a depth Keras runs the nodes in the order they got a depth above (its
    # nodes_by_depth): a shared layer's calls at one depth update its state in that order.
    given = {key: i for i, key in enumerate(depth)}
    nodes = sorted(finished, key=lambda n: (-depth[id(n)], given[id(n)]))
    layers = {id(_layer_of(n)): _layer_of(n) for n in finished}
    operations = sorted(layers.values(),
                        key=lambda layer: (-layer_depth[id(layer)], layer_seen[id(layer)]))
    return nodes, operations


def _ancestors(outputs) -> set[int]:
    from reglab.layers.layer import Input

    seen, stack = set(), list(outputs)
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
        tensor._input_layer._symbolic_nodes = [((tensor,), tensor)]  # Keras: both the Input
    return tensor._input_layer


def node_tensor(layer, what: str):
    """Keras's ``layer.output`` (``what``: "output") or ``layer.input``: the symbolic tensor
    of its first call in a graph, as Keras 3's (a layer of a Sequential gets its graph when
    asked); an AttributeError, as Keras's, for a layer never called."""
    nodes = getattr(layer, "_symbolic_nodes", None)
    model = getattr(layer, "_model", None)
    if not nodes and model is not None and hasattr(model, "_symbolic_graph"):
        model._symbolic_graph()
        nodes = getattr(layer, "_symbolic_nodes", None)
    name = layer.name or type(layer).__name__
    if not nodes:
        raise AttributeError(f"The layer {name} has never been called and thus has no "
                             f"defined {what}.")
    tensors, output = nodes[0]
    if what == "output":
        return output
    return tensors[0] if len(tensors) == 1 else list(tensors)


def needs_copies(inputs, outputs) -> bool:
    """Whether the graph from ``inputs`` to ``outputs`` must be made again of copies of its
    layers to be a model's: a layer of it belongs to another model (Keras would share it:
    a feature extractor ``Model(model.input, layer.output)``), or an input is a layer's
    output rather than a ``reglab.Input`` (a model of the graph's later part)."""
    from reglab.layers.layer import Input

    ins = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    outs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    if not all(isinstance(o, SymbolicTensor) for o in outs) or \
            not all(is_symbolic(i) for i in ins):
        return False  # topological() names what is wrong
    if not all(isinstance(i, Input) for i in ins):
        return True
    return any(getattr(_layer_of(node), "_model", None) is not None
               for node in _nodes_between(ins, outs))


def _nodes_between(ins, outs) -> list:
    """The graph's nodes from ``outs`` back to ``ins`` (or to the Inputs), each once, every
    node after its inputs."""
    from reglab.layers.layer import Input

    stop = {id(i) for i in ins}
    order, seen, stack = [], set(), [(o, False) for o in reversed(outs)]
    while stack:
        node, expanded = stack.pop()
        if id(node) in seen:
            continue
        if expanded or id(node) in stop or isinstance(node, Input):
            seen.add(id(node))
            order.append(node)
            continue
        stack.append((node, True))
        stack.extend((parent, False) for parent in reversed(node.inbound)
                     if id(parent) not in seen)
    return order


def copied_graph(inputs, outputs) -> tuple[Any, Any, list[tuple[Any, Any]]]:
    """``(inputs, outputs, copies)``: the graph from ``inputs`` to ``outputs`` made again of
    a copy of each of its layers (one per layer, however often it is called; its config,
    name included), each input a new ``reglab.Input`` of the same shape and name, and the
    ``(copy, original)`` pairs whose weights the caller copies."""
    from reglab.layers.layer import Input

    many_in, many_out = isinstance(inputs, (list, tuple)), isinstance(outputs, (list, tuple))
    ins = list(inputs) if many_in else [inputs]
    outs = list(outputs) if many_out else [outputs]
    made: dict[int, Any] = {}
    for given in ins:
        made[id(given)] = Input(shape=given.sample_shape, batch_size=given.batch_size,
                                name=getattr(given, "name", None))
    copies: dict[int, tuple[Any, Any]] = {}
    for node in _nodes_between(ins, outs):
        if id(node) in made:
            continue
        if isinstance(node, Input):
            raise ConfigError("Model: the outputs depend on a reglab.Input that is not one of "
                              "the model's 'inputs'.")
        layer = node.layer
        if id(layer) not in copies:
            copies[id(layer)] = (type(layer).from_config(layer.get_config()), layer)
        copy = copies[id(layer)][0]
        parents = [made[id(parent)] for parent in node.inbound]
        made[id(node)] = copy(parents if getattr(layer, "takes_list", False) else parents[0])
    new_ins = [made[id(i)] for i in ins]
    new_outs = [made[id(o)] for o in outs]
    return (new_ins if many_in else new_ins[0], new_outs if many_out else new_outs[0],
            list(copies.values()))
