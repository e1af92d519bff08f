"""Keras's gradient clipping, per member: ``clipnorm``, ``clipvalue``, ``global_clipnorm``.

Keras clips the gradients after the loss scale is taken off and before decoupled weight
decay and the optimizer's step; the regularizers' gradients are part of what it clips (they
are terms of the loss). For a member of a population, per weight ``g`` (its rows of the
stacked gradient) and its own threshold ``c``:

- ``clipnorm``: ``g * c / max(||g||, c)``, each weight on its own;
- ``global_clipnorm``: every weight times ``c * min(1 / n, 1 / c)``, where ``n`` is the
  norm of all the member's gradients together (NaN when ``n`` is not finite, as Keras);
- ``clipvalue``: ``g`` clamped to ``[-c, c]``.

The squared norms are the L2 penalty's own sums (:func:`reglab.regularizers.penalty.
weight_penalty` with strength 1), computed row by row, so that a member's norm does not
depend on who shares its population.
"""

from __future__ import annotations

import torch

from reglab.regularizers.penalty import weight_penalty


def squared_norms(grad: torch.Tensor) -> torch.Tensor:
    """``(P,)``: each member's sum of its gradient's squares."""
    return weight_penalty(grad, l2=1.0, member_axis=0)


def _along(values: torch.Tensor, ndim: int) -> torch.Tensor:
    return values.view(-1, *([1] * (ndim - 1)))


def clip_(kind: str, grads: list[torch.Tensor], threshold) -> None:
    """Clips ``grads`` (stacked ``(P, ...)``, the weights of one population) in place by
    ``kind``; ``threshold``: each member's ``c``, ``(P,)`` (or a float for all)."""
    if not grads:
        return
    c = torch.as_tensor(threshold, dtype=grads[0].dtype, device=grads[0].device)
    c = c.expand(grads[0].shape[0]) if c.dim() == 0 else c
    if kind == "clipvalue":
        for g in grads:
            bound = _along(c, g.dim())
            torch.clamp(g, -bound, bound, out=g)
    elif kind == "clipnorm":
        for g in grads:
            sums = squared_norms(g)
            # Keras's two-sided where: a zero gradient keeps a zero norm
            positive = sums > 0
            norm = torch.where(positive, torch.where(positive, sums, 1.0).sqrt(), sums)
            g.mul_(_along(c, g.dim())).div_(_along(torch.maximum(norm, c), g.dim()))
    elif kind == "global_clipnorm":
        total = squared_norms(grads[0])
        for g in grads[1:]:  # one add per weight, in order: the same for any P
            total = total + squared_norms(g)
        norm = total.sqrt()
        scale = c * torch.minimum(1.0 / norm, 1.0 / c) + (norm - norm)
        for g in grads:
            g.mul_(_along(scale, g.dim()))
    else:
        raise ValueError(f"clip_: unknown clipping {kind!r}.")
