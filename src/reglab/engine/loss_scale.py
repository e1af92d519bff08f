"""Dynamic loss scaling in a population: each member has its own scale and growth counter.

When the population's optimizer is a :class:`~reglab.optimizers.LossScaleOptimizer`, every
member's loss is multiplied by its scale before the backward pass (:func:`scale`) and its
gradients are divided by it before the update chain (:func:`unscale`), which also applies
Keras 3's rule member by member: a member with a non-finite gradient skips the update (its
weights, optimizer slots, averages and step count stay as they were: :func:`set_aside` and
:func:`put_back` around the chain), its scale halves and its counter goes back to 0;
another counts the step and doubles its scale after ``dynamic_growth_steps`` in a row.
The scale is never bounded (Keras's is not either): a member whose gradients are not
finite even at scale 1 keeps skipping and halving its scale, with a finite loss; it has
not diverged (divergence is a non-finite loss) and keeps its last weights.

The scale and counter are per-member scalars of the population's tree
(:mod:`reglab.engine.member_state`): they follow the members when they are parked,
checkpointed, resumed, copied or merged, and a member's arithmetic is the same whoever
shares its population. The scale is held as a float32 value would be (Keras's
``dynamic_scale`` is a float32 variable).

Deciding which members skip needs the gradients' finiteness on the host: one
synchronization per step, as torch's ``GradScaler`` makes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from reglab.engine import member_state as tree
from reglab.optimizers.loss_scale import LossScaleOptimizer

#: the per-member scalars: the current scale, and finite steps since it last changed
SCALE, COUNTER = "loss_scale", "loss_scale_counter"
tree.declare_scalar(SCALE, None)
tree.declare_scalar(COUNTER, 0)


def scales_loss(optimizer) -> bool:
    return isinstance(optimizer, LossScaleOptimizer)


def _float32(value: float) -> float:
    """``value`` rounded as a float32 variable holds it (inf past float32's range)."""
    with np.errstate(over="ignore"):
        return float(np.float32(value))


def initial_scalars(optimizers: Sequence, member_ids: Sequence[int]) -> dict[str, list[Any]]:
    """The scalars of members at their start: each its optimizer's ``initial_scale``."""
    return {SCALE: [_float32(optimizers[m].initial_scale) for m in member_ids],
            COUNTER: [0] * len(member_ids)}


def _scales(state) -> torch.Tensor:
    """The present members' scales, ``(P,)`` in the state's dtype (rebuilt only when they
    change)."""
    values = tuple(state.members.scalars[SCALE])
    cached = state.__dict__.get("_loss_scales")
    if cached is None or cached[0] != values or cached[1].device != state.device \
            or cached[1].dtype != state.dtype:
        cached = (values, torch.tensor(values, dtype=state.dtype, device=state.device))
        state._loss_scales = cached
    return cached[1]


def scale(state, objective: torch.Tensor) -> torch.Tensor:
    """Each member's objective ``(P,)`` times its scale (``objective`` itself without
    loss scaling)."""
    if not scales_loss(state.optimizer):
        return objective
    return objective * _scales(state)


def unscale(grads: dict, state) -> list[int]:
    """Divides the gradients by each member's scale, in place, and updates the scales and
    counters by Keras's rule; returns the positions of the members whose step is skipped
    (none without loss scaling). As Keras's ``check_finite``, the scaled gradients are
    checked."""
    if not scales_loss(state.optimizer):
        return []
    finite = None
    for g in grads.values():
        row = torch.isfinite(g).reshape(g.shape[0], -1).all(dim=1)  # (P,)
        finite = row if finite is None else finite & row
    scales = _scales(state)
    for g in grads.values():
        g.div_(scales.view(-1, *([1] * (g.dim() - 1))))
    size = state.size
    if finite is None or bool(finite.all()):  # the synchronization
        finite_rows = [True] * size
    else:
        finite_rows = finite.tolist()
    values, counters = state.members.scalars[SCALE], state.members.scalars[COUNTER]
    growth = [state.plan.optimizers[m].dynamic_growth_steps for m in state.member_ids]
    skipped = []
    for p in range(size):
        if not finite_rows[p]:
            counters[p], values[p] = 0, _float32(values[p] * 0.5)
            skipped.append(p)
        elif counters[p] == growth[p] - 1:
            counters[p], values[p] = 0, _float32(values[p] * 2.0)
        else:
            counters[p] += 1
    return skipped


def set_aside(state, positions: Sequence[int]) -> dict[tuple[str, Any], torch.Tensor]:
    """Copies of what the update chain changes for the members at ``positions``: their
    trainable weights (not batch normalization's statistics, which the forward pass
    updated, as Keras's do on a skipped step), optimizer slots and EMA."""
    index = torch.tensor(list(positions), dtype=torch.long, device=state.device)
    kept = {}
    for family in state.step_families():
        for key, t in state.members.tensors[family].items():
            if family != "weights" or key in state.members.trainable:
                kept[(family, key)] = t.detach().index_select(0, index)
    return kept


def put_back(state, positions: Sequence[int], kept: dict) -> None:
    """Restores what :func:`set_aside` copied, and takes back the step the chain counted."""
    index = torch.tensor(list(positions), dtype=torch.long, device=state.device)
    for (family, key), rows in kept.items():
        state.members.tensors[family][key].detach().index_copy_(0, index, rows)
    steps = state.members.scalars["steps"]
    for p in positions:
        steps[p] -= 1


def member_state(population, member_id: int) -> dict[str, Any] | None:
    """``{'scale', 'counter'}`` of one member, training or parked (None when it has none)."""
    scale = population.member_scalar(member_id, SCALE)
    if scale is None:
        return None
    return {"scale": scale, "counter": population.member_scalar(member_id, COUNTER)}
