"""One training epoch of a population: batches, steps, divergence, per-member sums.

Members are grouped by (seed, epochs trained): a group shares its batch order,
its noise and its augmentation. The sums of each step stay on the device; the
only synchronization per step is the check for non-finite losses.
"""

from __future__ import annotations

import torch

from reglab import losses as losses_module
from reglab.engine import data as data_module
from reglab.engine.step import apply_update, forward, weight_penalties


def add(a, b):
    """``a + b`` where either may be None (a term that is absent)."""
    if a is None:
        return b
    return a if b is None else a + b


class SeedLayout:
    """The groups of the members still training, and how members map onto them."""

    def __init__(self, population, group_rows: dict[tuple[int, int], int]):
        state, streams, dtype = population.state, population.streams, population.dtype
        member_groups = [(state.plan.seeds[m], state.member_epochs[m]) for m in state.member_ids]
        self.groups = sorted(set(member_groups))
        rows = [group_rows[g] for g in self.groups]
        self.order_rows = None if rows == list(range(len(group_rows))) else rows
        self.member_rows = None
        if len(self.groups) > 1:
            where = {g: i for i, g in enumerate(self.groups)}
            self.member_rows = torch.tensor([where[g] for g in member_groups],
                                            device=population.device)
        groups, member_rows = self.groups, self.member_rows

        def random_for(name):
            def random(kind, shape):
                draws = streams.draw(groups, f"noise/{name}", kind, shape, dtype)
                return draws if member_rows is None else draws.index_select(0, member_rows)
            return random

        self.random_for = random_for


def batch_stats(population, yb, y_pred, data_loss, penalty, weights, count):
    """``[data_loss, penalty, weight, *metrics]`` sums of one batch, ``(K, P)``.

    Metrics are weighted by ``weights`` (sample weights) as Keras's metrics are; the
    losses are batch means already, so they are weighted by the batch size.
    """
    if penalty is None:
        penalty = torch.zeros_like(data_loss)
    metrics = [m(yb, y_pred) for m in population.metrics.values()]
    if weights is None:
        weight = torch.full_like(data_loss, float(count))
        metrics = [m.sum(dim=-1).expand_as(data_loss) for m in metrics]
    else:
        weight = weights.sum(dim=-1).expand_as(data_loss)
        metrics = [(m * weights).sum(dim=-1).expand_as(data_loss) for m in metrics]
    return torch.stack([data_loss * count, penalty * count, weight, *metrics])


def train_epoch(population, train, batch_size, shuffle, epoch, stoppers, observers):
    """Trains the present members for one epoch; returns the summed stats ``(K, P)``."""
    state = population.state
    n = train.x.shape[0]
    population.streams.forget()
    groups = sorted({(state.plan.seeds[m], state.member_epochs[m]) for m in state.member_ids})
    if shuffle:
        order = population.streams.permutations(groups, n)  # (G, N)
    else:
        order = torch.arange(n, device=population.device).expand(len(groups), n)
    group_rows = {g: i for i, g in enumerate(groups)}
    layout = SeedLayout(population, group_rows)
    totals = None
    for step, lo in enumerate(range(0, n, batch_size)):
        index = order[:, lo:lo + batch_size]  # (G, b)
        if layout.order_rows is not None:
            index = index[layout.order_rows]
        for w in state.weights.values():
            w.grad = None
        xb, yb, wb = data_module.batch(population, train, index, layout, population.augment)
        y_pred, activity = forward(state, xb, True, layout.random_for)
        data_loss = losses_module.reduce_mean(population.loss.per_sample(yb, y_pred), wb)
        penalty_value, custom = weight_penalties(state)
        add(add(data_loss, custom), activity).sum().backward()
        with torch.no_grad():
            penalty = add(add(penalty_value, custom), activity)
            penalty = None if penalty is None else penalty.detach()
            stats = batch_stats(population, yb, y_pred.detach(), data_loss.detach(), penalty,
                                wb, index.shape[1])
        finite = torch.isfinite(stats[0] + stats[1])
        if not bool(finite.all()):
            population.diverge(finite, epoch, step, stoppers)
            keep = finite.nonzero().flatten()
            stats = stats.index_select(1, keep)
            totals = None if totals is None else totals.index_select(1, keep)
            state.keep(keep.tolist())
            if state.size == 0:
                return None
            layout = SeedLayout(population, group_rows)
        apply_update(state)
        totals = stats if totals is None else totals.add_(stats)
        for obs in observers:
            hook = getattr(obs, "on_train_batch_end", None)
            if hook is not None:
                hook(step)
    return totals
