"""``Sequential.summary()``: Keras 3's table of layers, output shapes and parameters."""

from __future__ import annotations

import math


def _size(count: int) -> str:
    size = count * 4.0
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} GB"  # pragma: no cover


def render(model, population) -> str:
    """The table as text, with trainable and non-trainable counts; a functional model's has
    Keras's "Connected to" column (each input as ``name[0][0]``)."""
    rows, trainable, frozen = [], 0, 0
    graph = getattr(model, "_graph", None)
    described = population.describe_layers()
    # the model's own layers (its InputLayers, where the population packs several inputs;
    # not the layer that packs several outputs)
    layers = model._engine_layers(packed=False) if hasattr(model, "_engine_layers") else \
        [info["layer"] for info in described]
    calls = getattr(model, "_calls", None) or list(range(len(layers)))
    # a shared layer is one row: its weights, its first call's shape, every call's inputs
    # Keras's node index of each call: the order the calls were made (a model from a config
    # has lost it: the order of the graph's positions)
    call_number = getattr(model, "_node_indices", None) or \
        [calls[:p].count(calls[p]) for p in range(len(calls))]
    for index in sorted(set(calls)):
        positions = sorted((p for p, layer in enumerate(calls) if layer == index),
                           key=lambda p: call_number[p])
        info = described[min(positions)]  # the first position holds the weights
        params = 0
        for _, shape, is_trainable in info["weights"]:
            n = math.prod(shape)
            params += n
            if is_trainable:
                trainable += n
            else:
                frozen += n
        shape = "(None, " + ", ".join(map(str, info["output_shape"])) + ")"
        layer = layers[min(positions)]
        row = [f"{layer.name} ({type(layer).__name__})", shape, f"{params:,}"]
        if graph is not None:
            row.append("-" if graph[positions[0]] == (-1,) else ", ".join(
                f"{layers[max(j, 0)].name}[{call_number[max(j, 0)]}][0]"
                for p in positions for j in graph[p]))
        rows.append(tuple(row))
    return _table(model, rows, graph, trainable, frozen, optimizer_params(model))


#: the columns' widths (their padding in) of Keras's table on an 80-column terminal, and
#: where a script's output is no terminal (rich lays out 76 characters then): a sequential
#: model's three columns, a functional one's four
_WIDTHS = {3: (33, 24, 15), 4: (21, 19, 12, 19)}


def _wrapped(text: str, width: int) -> list[str]:
    """A cell's lines as Keras's table (rich) writes them in ``width`` characters: each of
    the text's own lines filled word by word (words split at spaces), a word longer than a
    line cut short with '…'."""
    lines = []
    for own in text.split("\n"):
        current = None
        for word in own.split(" "):
            if len(word) > width:
                word = word[:width - 1] + "…"
            if current is None:
                current = word
            elif len(current) + 1 + len(word) <= width:
                current += " " + word
            else:
                lines.append(current)
                current = word
        lines.append(current or "")
    return lines


def _table(model, rows, graph, trainable: int, frozen: int, optimizer: int | None) -> str:
    widths = _WIDTHS[3 if graph is None else 4]
    top = "┏" + "┳".join("━" * w for w in widths) + "┓"
    mid = "┡" + "╇".join("━" * w for w in widths) + "┩"
    bottom = "└" + "┴".join("─" * w for w in widths) + "┘"

    def line(cells, left="┃", sep="┃", right="┃"):
        aligned = [f"{cell:>{width - 2}}" if i == 2 else f"{cell:<{width - 2}}"
                   for i, (cell, width) in enumerate(zip(cells, widths))]
        return f"{left} " + f" {sep} ".join(aligned) + f" {right}"

    header = ("Layer (type)", "Output Shape", "Param #", "Connected to")[:len(widths)]
    between = "├" + "┼".join("─" * w for w in widths) + "┤"
    out = [f'Model: "{model.name}"', top, line(header), mid]
    for i, row in enumerate(rows):  # Keras 3 rules a line between rows
        out += [between] if i else []
        cells = [_wrapped(cell, width - 2) for cell, width in zip(row, widths)]
        for k in range(max(map(len, cells))):  # a row as tall as its tallest cell
            out.append(line([c[k] if k < len(c) else "" for c in cells], "│", "│", "│"))
    out.append(bottom)
    total = trainable + frozen + (optimizer or 0)
    out += [f" Total params: {total:,} ({_size(total)})",
            f" Trainable params: {trainable:,} ({_size(trainable)})",
            f" Non-trainable params: {frozen:,} ({_size(frozen)})"]
    if optimizer is not None:
        out.append(f" Optimizer params: {optimizer:,} ({_size(optimizer)})")
    return "\n".join(out)


def render_unbuilt(model) -> str:
    """Keras's table of a model whose input shape is not known yet: every output shape "?",
    and "0 (unbuilt)" for a layer that will have weights (0 for one that never has)."""
    from reglab.layers.layer import Layer

    rows = [(f"{layer.name} ({type(layer).__name__})", "?",
             "0" if type(layer).weight_specs is Layer.weight_specs else "0 (unbuilt)")
            for layer in model._layers]
    return _table(model, rows, None, 0, 0, None)


def optimizer_params(model) -> int | None:
    """How many numbers Keras's optimizer holds for the model (its ``iterations``, its
    learning rate unless a schedule gives it, each weight's slots, Nadam's product, a loss
    scale's own variables), which Keras's summary counts once the optimizer is built (at
    the model's first fit, evaluate, train_on_batch or test_on_batch, or its loading
    compiled); None before, or without an optimizer."""
    from reglab.models import training_state

    population = getattr(model, "_population", None)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or population is None or not getattr(model, "_compiled", False) \
            or not getattr(optimizer, "built", False):
        return None
    tensors = population.state.members.tensors  # a slot's own shape (Adafactor's factors)
    return sum(math.prod(tensors[entry[1]][entry[2]].shape[1:]) if entry[0] == "slot" else 1
               for entry in training_state.keras_layout(model))
