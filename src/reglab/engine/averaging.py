"""Stochastic weight averaging with ``torch.optim.swa_utils``'s semantics, per member.

A member whose optimizer has ``swa_start = k`` averages its trainable weights at the end of
each of its epochs from its k-th (counted from 0): the first average is a copy, then
``average += (w - average) / (n + 1)`` (``AveragedModel``'s default). When the member's
training ends (not by divergence, and not restoring an early-stopping snapshot), its
weights become the average, and its BatchNormalization statistics are recomputed as
``torch.optim.swa_utils.update_bn`` does: reset (mean 0, variance 1), then one pass over the
training data in training mode, each batch weighted equally (a cumulative average).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from reglab.engine.member_state import copy_rows


def averages(state) -> bool:
    return "swa" in state.members.tensors


def update_at_epoch_end(state, epochs_done: Sequence[int]) -> None:
    """Averages the members whose ``swa_start`` is at most the epoch they just finished
    (``epochs_done[p]`` epochs trained, this one included)."""
    if not averages(state):
        return
    counts = state.members.scalars["swa_count"]
    with torch.no_grad():
        for p, member_id in enumerate(state.member_ids):
            start = state.optimizer_values[member_id]["swa_start"]
            if math.isinf(start) or epochs_done[p] - 1 < start:
                continue
            n = counts[p]
            for key, average in state.members.tensors["swa"].items():
                w = state.weights[key][p]
                if n == 0:
                    average[p].copy_(w)
                else:
                    average[p].add_((w - average[p]) / (n + 1))
            counts[p] = n + 1


def finalize(population, positions: Sequence[int], train, batch_size: int) -> None:
    """Gives the members at ``positions`` their averaged weights and recomputes their batch
    normalization statistics with one pass over ``train``."""
    state = population.state
    positions = [p for p in positions if state.members.scalars["swa_count"][p] > 0]
    if not positions:
        return
    copy_rows(state.members, "swa", "weights", positions)
    # A frozen layer (trainable=False) keeps its statistics: it never updates them.
    norms = [i for i, lp in enumerate(state.plan.layers)
             if type(lp.layer).__name__ == "BatchNormalization" and lp.layer.trainable]
    if not norms:
        return
    from reglab.engine.epoch import SeedLayout
    from reglab.engine.step import forward

    chosen = torch.zeros(state.size, dtype=torch.bool, device=state.device)
    chosen[positions] = True
    with torch.no_grad():
        for i in norms:  # reset the chosen members' statistics
            for name, fill in (("moving_mean", 0.0), ("moving_variance", 1.0)):
                stats = state.weights[(i, name)]
                stats[chosen] = fill
        saved = [dict(state.layer_values[i]) for i in norms]
        layout = SeedLayout(population)  # the groups' rows in their order
        n = train.x.shape[0]
        for k, lo in enumerate(range(0, n, batch_size), start=1):
            # Keras's momentum is the old value's weight: (k - 1) / k averages the batches
            # equally; 1 keeps the other members' statistics as they are.
            momentum = torch.where(chosen, torch.tensor((k - 1) / k, dtype=state.dtype),
                                   torch.tensor(1.0, dtype=state.dtype)).to(state.device)
            for i in norms:
                state.layer_values[i]["momentum"] = momentum
            xb = train.x[lo:lo + batch_size]
            forward(state, xb, True, layout.random_for)
        for i, values in zip(norms, saved):
            state.layer_values[i] = values
