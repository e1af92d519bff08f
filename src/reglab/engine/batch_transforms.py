"""Batch transforms that act on ``(x, y)`` member by member: MixUp, CutMix, LabelSmoothing.

After the per-seed augmentation, a population whose model leads with such layers gives
every member its own copy of the batch: integer labels become one-hot (float) targets, and
each transform layer, in model order, transforms each member's batch with that member's
value (its strength) and its own NumPy generator, keyed by the member's seed, the layer
and the member's epoch. A member's batch thus depends on nothing but its own seed, values
and epoch, whoever shares its population.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from reglab.engine.rng import derive_seed, epoch_purpose


def soft_targets(y: torch.Tensor, classes: int, dtype: torch.dtype) -> torch.Tensor:
    """Float targets: one-hot ``(P, b, K)`` for the sparse loss's class labels ``(P, b)``;
    any other target (0/1 labels of a sigmoid unit ``(P, b, 1)``, one-hot rows) cast."""
    if y.is_floating_point() or y.dim() != 2 or classes == 1:
        return y.to(dtype)
    return F.one_hot(y.long(), classes).to(dtype)


def member_generator(population, member_id: int, purpose: str) -> np.random.Generator:
    """The member's NumPy generator for ``purpose`` in its current epoch (one per fit epoch)."""
    cache = population.streams.__dict__.setdefault("_numpy", {})
    seed, epoch = population.plan.seeds[member_id], population.state.epochs(member_id)
    key = (member_id, purpose, epoch)
    if key not in cache:
        cache[key] = np.random.default_rng(derive_seed(seed, epoch_purpose(purpose, epoch)))
    return cache[key]


def transform_members(population, layers, x: torch.Tensor, y: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` ``(P, b, ...)`` and ``y`` ``(P, b[, K])``: each member's batch transformed by
    ``layers`` (their :class:`~reglab.engine.member.LayerPlan`), in order."""
    classes = population.plan.output_shape[-1]
    y = soft_targets(y, classes, population.dtype)
    xs, ys = list(x.unbind(0)), list(y.unbind(0))
    for p, member_id in enumerate(population.state.member_ids):
        for lp in layers:
            name, = lp.values  # one value per transform layer: its strength
            rng = member_generator(population, member_id, f"transform/{lp.canonical_name}")
            xs[p], ys[p] = lp.layer.transform(xs[p], ys[p], lp.values[name][member_id], rng)
    return torch.stack(xs), torch.stack(ys)
