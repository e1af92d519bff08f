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
    """The table as text, with trainable and non-trainable counts."""
    rows, trainable, frozen = [], 0, 0
    for info in population.describe_layers():
        params = 0
        for _, shape, is_trainable in info["weights"]:
            n = math.prod(shape)
            params += n
            if is_trainable:
                trainable += n
            else:
                frozen += n
        shape = "(None, " + ", ".join(map(str, info["output_shape"])) + ")"
        layer = info["layer"]
        rows.append((f"{layer.name} ({type(layer).__name__})", shape, f"{params:,}"))
    widths = (max(33, max((len(r[0]) for r in rows), default=0) + 2), 24, 15)
    top = "┏" + "┳".join("━" * w for w in widths) + "┓"
    mid = "┡" + "╇".join("━" * w for w in widths) + "┩"
    bottom = "└" + "┴".join("─" * w for w in widths) + "┘"

    def line(cells, left="┃", sep="┃", right="┃"):
        a, b, c = cells
        return (f"{left} {a:<{widths[0] - 2}} {sep} {b:<{widths[1] - 2}} {sep} "
                f"{c:>{widths[2] - 2}} {right}")

    out = [f'Model: "{model.name}"', top, line(("Layer (type)", "Output Shape", "Param #")), mid]
    out += [line(row, "│", "│", "│") for row in rows]
    out.append(bottom)
    total = trainable + frozen
    out += [f" Total params: {total:,} ({_size(total)})",
            f" Trainable params: {trainable:,} ({_size(trainable)})",
            f" Non-trainable params: {frozen:,} ({_size(frozen)})"]
    return "\n".join(out)
