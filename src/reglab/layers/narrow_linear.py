"""The per-member product of a layer narrower than a vector tile (an output layer of 10 classes).

``y[m] = x[m] @ kernel[m] + bias[m]`` with ``units`` below 16 leaves the CPU's 16-float
vector tiles mostly empty: batched GEMMs of shape ``(b, in) @ (in, 10)`` run at a
tenth of the machine's rate. Computed transposed, ``y[m]^T = kernel[m]^T @ x[m]^T``, the
long batch axis fills the tiles instead; likewise the weight gradient as
``(dy[m]^T @ x[m])^T``. Measured on the population benchmark's output layer (45 members,
batch 128, 64 -> 10): forward 0.35 -> 0.12 ms, weight gradient 0.38 -> 0.12 ms. At 16
units and wider the usual orientation is as fast or faster, so it stays.

The orientation depends on the layer's shape only, never on the number of members, so a
member computes the same products in a population as alone; as in
``layers/member_linear.py``, the products are one batched call only for shapes where that
gives each member its bits alone, else one per member on 64-byte-aligned operands.
"""

from __future__ import annotations

import torch

from reglab.layers.member_linear import member_linear

#: below this many units a layer's product runs transposed
NARROW_UNITS = 16


def applies(units: int) -> bool:
    return units < NARROW_UNITS


def narrow_linear(x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None,
                  transposed: bool = False) -> torch.Tensor:
    """``(P, B, in)`` inputs, ``(P, in, u)`` kernels, ``(P, u)`` biases -> ``(P, B, u)``;
    with ``transposed`` laid out as ``(P, u, B)`` in memory (for a consumer that reads it so:
    the fused softmax of engine/softmax_crossentropy.py), else contiguous."""
    return member_linear(x, kernel, bias, transposed=True, keep_layout=transposed)
