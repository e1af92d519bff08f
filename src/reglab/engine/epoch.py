"""One training epoch of a population: batches, steps, divergence, per-member sums.

Members are grouped by (seed, epochs trained): a group shares its batch order,
its noise and its augmentation. The sums of each step stay on the device; the
only synchronization is the check for non-finite losses: every step on a CPU, every
:data:`DIVERGENCE_CHECK_STEPS` steps and at the end of the epoch elsewhere (CUDA), where
each check would stall the queue of kernels. Between checks a diverged member keeps
stepping on its own rows (members share no arithmetic); the check finds the step at which
its loss first was not finite, records that one, and freezes the member with the weights
and optimizer state it had at the check before (finite there: its loss was).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch

from reglab.engine import data as data_module
from reglab.engine import direct_step, loss_scale, softmax_crossentropy
from reglab.engine.step import add, forward, keras_loss, weight_penalties
from reglab.engine.update import apply_updates
from reglab.layers.shared_input import MemberGroups
from reglab.metric_classes import weigh

#: steps between two checks for diverged members off the CPU
DIVERGENCE_CHECK_STEPS = 32


def divergence_check_steps(device: torch.device) -> int:
    """Steps between two checks for non-finite losses (1: every step)."""
    return 1 if device.type == "cpu" else DIVERGENCE_CHECK_STEPS


class SeedLayout:
    """The groups of the members still training, and how members map onto them."""

    def __init__(self, population, group_rows: dict[tuple[int, int], int] | None = None,
                 noise: str = "noise"):
        """``group_rows``: each group's row of the data (None: the groups in their order);
        ``noise``: the streams the layers' random numbers come from (``noise/<layer>``)."""
        state, streams, dtype = population.state, population.streams, population.dtype
        member_groups = [(state.plan.seeds[m], state.epochs(m)) for m in state.member_ids]
        self.groups = sorted(set(member_groups))
        if group_rows is None:
            group_rows = {g: r for r, g in enumerate(self.groups)}
        rows = [group_rows[g] for g in self.groups]
        self.order_rows = None if rows == list(range(len(group_rows))) else rows
        self.member_rows = self.member_groups = None
        #: the members' ids, for targets that differ by member (data.PerMember)
        self.member_ids = torch.tensor(state.member_ids, dtype=torch.long,
                                       device=population.device)
        if len(self.groups) > 1:
            where = {g: i for i, g in enumerate(self.groups)}
            self.member_groups = MemberGroups.from_rows([where[g] for g in member_groups],
                                                        population.device)
            self.member_rows = self.member_groups.rows
        groups, member_rows = self.groups, self.member_rows

        def random_for(name):
            return MemberRandom(streams, groups, member_rows, f"{noise}/{name}", dtype)

        self.random_for = random_for


class MemberRandom:
    """A layer's random numbers for the present members (``ForwardContext.random``): called,
    ``(P or 1, *shape)`` numbers, each member its seed group's row; :meth:`grouped` gives the
    same draws one row per group, with each member's row (for a kernel that reads them so)."""

    def __init__(self, streams, groups, member_rows, purpose: str, dtype: torch.dtype):
        self.streams, self.groups, self.member_rows = streams, groups, member_rows
        self.purpose, self.dtype = purpose, dtype

    def grouped(self, kind: str, shape) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(draws (G, *shape), member rows (P,) or None when G = 1)``."""
        draws = self.streams.draw(self.groups, self.purpose, kind, shape, self.dtype)
        return draws, self.member_rows

    def __call__(self, kind: str, shape) -> torch.Tensor:
        draws, rows = self.grouped(kind, shape)
        return draws if rows is None else draws.index_select(0, rows)


class EpochSums:
    """Per-member sums over batches: the loss, data loss and penalty (each batch's value times
    its size, as Keras's loss tracker sums them; the loss Keras's sum of each batch's losses,
    not made of the other two's means), and metrics (unweighted, as Keras 3's
    compiled ``metrics``)."""

    def __init__(self, population, members: int):
        def zeros():
            return torch.zeros(members, dtype=population.dtype, device=population.device)
        self.names = list(population.metrics)
        self.functions = list(population.metrics.values())
        self.loss, self.data_loss, self.penalty = zeros(), zeros(), zeros()
        # a mean metric sums one value per member; a confusion metric (Precision, AUC...)
        # its counts (reglab/confusion_metrics.py); one whose totals_shape is None (per
        # class: F1Score) is sized by its first batch
        self.metrics = [None if getattr(fn, "totals_shape", ()) is None else
                        torch.zeros(members, *getattr(fn, "totals_shape", ()),
                                    dtype=population.dtype, device=population.device)
                        for fn in self.functions]
        self.members, self.dtype, self.device = members, population.dtype, population.device
        self.samples = 0  # samples seen (metrics are means over samples)

    def add(self, yb, y_pred, data_loss, penalty, weights, count: int,
            mixed_targets: bool = False, *, loss: torch.Tensor) -> None:
        """Adds one batch; ``mixed_targets``: ``yb`` was made by the batch transforms (MixUp,
        CutMix, LabelSmoothing), scored by a metric's ``of_mixed_targets`` where it has one;
        ``loss``: the batch's loss as Keras sums it (:func:`reglab.engine.step.keras_loss`)."""
        # each batch's mean times its size, rounded, then summed: Keras's Mean tracker's two
        # roundings (an add_ with alpha rounds once, a fused multiply-add)
        self.data_loss.add_(data_loss * count)
        if penalty is not None:
            self.penalty.add_(penalty * count)
        self.loss.add_(loss * count)
        for k, metric in enumerate(self.functions):
            if mixed_targets:
                metric = getattr(metric, "of_mixed_targets", metric)
            # Keras 3 weights only 'weighted_metrics'; 'metrics' ignore sample weights. An
            # output's own loss (a model with several) is weighted as the loss is.
            values = metric(yb, y_pred)
            if weights is not None and getattr(metric, "weighted", False):
                values = weigh(metric, values, weights)
            total = self.metrics[k]
            if total is None:  # sized by its first batch
                total = self.metrics[k] = torch.zeros(self.members, *values.shape[2:],
                                                      dtype=self.dtype, device=self.device)
            if total.dim() == 1 and values.dim() > 2:  # a value per position: each sample's
                values = values.reshape(*values.shape[:2], -1).mean(dim=-1)  # mean (Keras's)
            if values.dim() == 3:  # a mean metric's [value, 1] rows: each row summed over
                # the batch as one run, as its name's (P, B) values are (the same bits). Not
                # counts (4-D): exact in any order, and their copy would cost (an AUC's rows
                # at P = 45, batch 128: 7.1 against 1.7 ms a batch)
                total.add_(values.movedim(1, -1).contiguous().sum(dim=-1))
            else:
                total.add_(values.sum(dim=1))  # over the batch (axis 1: members first)
        self.samples += count

    def with_batch(self, *batch, **options) -> EpochSums:
        """A copy of these sums with one more batch added (:meth:`add`'s arguments): the
        logs of members whose loss has just gone bad, their bad batch counted as Keras's
        running means count it (an infinite loss makes the epoch's loss infinite)."""
        copied = copy.copy(self)
        copied.loss, copied.data_loss, copied.penalty = \
            self.loss.clone(), self.data_loss.clone(), self.penalty.clone()
        copied.metrics = [None if m is None else m.clone() for m in self.metrics]
        copied.add(*batch, **options)
        return copied

    def keep(self, index: torch.Tensor) -> None:
        """Keeps the members at ``index`` (after others diverged)."""
        self.loss = self.loss.index_select(0, index)
        self.data_loss = self.data_loss.index_select(0, index)
        self.penalty = self.penalty.index_select(0, index)
        self.metrics = [None if m is None else m.index_select(0, index) for m in self.metrics]
        self.members = len(index)

    def _result(self, fn, total: torch.Tensor | None) -> torch.Tensor:
        """A metric's value per member from its sums (0 counts where it saw no batch)."""
        if not hasattr(fn, "totals_result"):
            return total / self.samples
        if total is None:
            total = torch.zeros(self.members, 4, 1, dtype=self.dtype, device=self.device)
        return fn.totals_result(total).to(self.dtype)

    def logs(self, member_ids, count: int) -> dict[int, dict[str, float]]:
        """Keras-named means per member: loss (data loss + penalty), data_loss, penalty, metrics."""
        rows = torch.stack([self.loss / count, self.data_loss / count, self.penalty / count,
                            *(self._result(fn, m) for fn, m in zip(self.functions, self.metrics))
                            ]).cpu().numpy()
        logs = {}
        for p, member_id in enumerate(member_ids):
            logs[member_id] = {"loss": float(rows[0, p]), "data_loss": float(rows[1, p]),
                               "penalty": float(rows[2, p])}
            logs[member_id].update({name: float(rows[3 + k, p])
                                    for k, name in enumerate(self.names)})
        return logs


def within_batches(keys: torch.Tensor, bounds) -> torch.Tensor:
    """``(G, N)`` orders whose batches (``bounds``: ``(lo, hi)`` pairs) hold their own rows
    in an order ``keys`` (a permutation of ``N`` per row) makes: each batch's rows
    shuffled among themselves, the batches in order (Keras's ``shuffle='batch'``)."""
    block = torch.empty(keys.shape[1], dtype=torch.long, device=keys.device)
    for index, (lo, hi) in enumerate(bounds):
        block[lo:hi] = index
    return torch.argsort(block * keys.shape[1] + keys, dim=1)


def train_epoch(population, train, batch_size, shuffle, epoch, observers, batch_sizes=None):
    """Trains the present members for one epoch; returns its :class:`EpochSums`, or None
    when every member diverged. ``batch_sizes``: the epoch's batches, in order, when they
    are not all ``batch_size`` (:func:`reglab.engine.data.batch_bounds`)."""
    state = population.state
    n = train.x.shape[0]
    population.streams.forget()
    groups = sorted({(state.plan.seeds[m], state.epochs(m)) for m in state.member_ids})
    if not shuffle:
        order = torch.arange(n, device=population.device).expand(len(groups), n)
    else:
        order = population.streams.permutations(groups, n)  # (G, N)
    bounds = data_module.batch_bounds(n, batch_size, batch_sizes)
    if shuffle == "batch":  # Keras's 'batch': the batches in order, each one's rows shuffled
        order = within_batches(order, bounds)
    group_rows = {g: i for i, g in enumerate(groups)}
    layout = SeedLayout(population, group_rows)
    sums = EpochSums(population, state.size)
    population.epoch_progress = (sums, 0)
    check_every = divergence_check_steps(population.device)
    last_step = len(bounds) - 1
    first_bad = None  # with deferred checks: per member, the step its loss went bad, or -1
    saved = _saved_state(state) if check_every > 1 else None  # as at the last check
    fused = softmax_crossentropy.fuses(population.loss, state.plan)
    mixed = bool(population.plan.batch_transforms)  # the targets the transforms make
    batch_begin = observer_hooks(observers, "on_train_batch_begin")
    batch_end = observer_hooks(observers, "on_train_batch_end")
    for step, (lo, hi) in enumerate(bounds):
        for hook in batch_begin:
            hook(step)
        index = order[:, lo:hi]  # (G, b)
        if layout.order_rows is not None:
            index = index[layout.order_rows]
        state.clear_grads()
        xb, yb, wb, groups = data_module.batch(population, train, index, layout,
                                               population.augment)
        trains = bool(state.members.trainable)  # else every weight is frozen (Keras: no step)
        y_pred, data_loss, penalty_value, custom, activity, total = _forward_backward(
            population, xb, yb, wb, layout, groups, fused, trains)
        with torch.no_grad():
            penalty = add(add(penalty_value, custom), activity)
            if check_every > 1:
                bad = ~torch.isfinite(total)
                if first_bad is None:
                    first_bad = torch.full_like(total, -1, dtype=torch.long)
                first_bad = torch.where(bad & (first_bad < 0), step, first_bad)
                sums.add(yb, y_pred, data_loss, penalty, wb, index.shape[1], mixed, loss=total)
                if (step + 1) % check_every == 0 or step == last_step:
                    remaining = _drop_diverged(population, sums, first_bad, epoch, saved)
                    if remaining is None:
                        return None
                    if remaining is not first_bad:  # some left: the groups may have changed
                        layout = SeedLayout(population, group_rows)
                    first_bad = remaining
                    saved = None  # taken again after this step's update
            # One synchronization: a non-finite member makes the sum non-finite.
            elif not math.isfinite(float(total.sum())):
                finite = torch.isfinite(total)
                if not bool(finite.all()):
                    with_bad = sums.with_batch(yb, y_pred, data_loss, penalty, wb,
                                               index.shape[1], mixed, loss=total)
                    population.diverge(finite, epoch, step,
                                       with_bad.logs(state.member_ids, with_bad.samples))
                    keep = finite.nonzero().flatten()
                    sums.keep(keep)
                    state.keep(keep.tolist())
                    if state.size == 0:
                        return None
                    layout = SeedLayout(population, group_rows)
                    y_pred, data_loss = y_pred.index_select(0, keep), data_loss.index_select(0, keep)
                    penalty = None if penalty is None else penalty.index_select(0, keep)
                    total = total.index_select(0, keep)
                    if yb.shape[0] > 1:
                        yb = yb.index_select(0, keep)
                    if wb is not None and wb.shape[0] > 1:
                        wb = wb.index_select(0, keep)
            if check_every == 1:
                sums.add(yb, y_pred, data_loss, penalty, wb, index.shape[1], mixed, loss=total)
        if trains:
            apply_updates(population.chain, state)
        if check_every > 1 and saved is None and step != last_step:
            saved = _saved_state(state)
        population.epoch_progress = (sums, hi)
        for hook in batch_end:
            hook(step)
        if population.end_epoch_requested and step != last_step:  # an observer ends it here
            if check_every > 1 and (step + 1) % check_every != 0:  # as at the last step
                with torch.no_grad():  # it puts weights back in place
                    remaining = _drop_diverged(population, sums, first_bad, epoch, saved)
                if remaining is None:
                    return None
            break
    return sums


def _forward_backward(population, xb, yb, wb, layout, groups, fused: bool, trains: bool):
    """One step's forward pass and, when ``trains``, its backward (each weight's ``.grad``):
    ``(predictions, data loss, reported penalty, differentiable penalty, activity penalty,
    the loss as Keras sums it)``, none of them differentiable. Without autograd's graph
    where the objective is a chain :mod:`reglab.engine.direct_step` differentiates (the
    same gradients), else with it:
    asked at every step (an observer's ``set_hyperparameter`` may turn on a penalty
    autograd must differentiate)."""
    state, loss = population.state, population.loss
    by_layer, by_weight = {}, []  # the penalties one by one, for the loss Keras reports
    if trains and direct_step.applies(state, loss):
        y_pred, data_loss = direct_step.forward_backward(
            population, state, xb, yb, wb, layout.random_for, groups, fused)
        penalties = weight_penalties(state, by_weight)
        return (y_pred, data_loss, *penalties, None, keras_loss(data_loss, by_layer, by_weight))
    y_pred, activity = forward(state, xb, True, layout.random_for, groups, logits=fused,
                               activity_by_layer=by_layer)
    if fused:  # y_pred holds the last layer's logits
        per_sample, y_pred = softmax_crossentropy.loss_and_predictions(loss, yb, y_pred)
    else:
        per_sample = loss.per_sample(yb, y_pred)
    data_loss = loss.reduce_batch(per_sample, wb)
    # after the forward pass: the order autograd's graph (and its sums) has always had
    penalty_value, custom = weight_penalties(state, by_weight)
    if trains:  # times each member's loss scale under dynamic loss scaling (loss_scale.py)
        loss_scale.scale(state, add(add(data_loss, custom), activity)).sum().backward()
    total = keras_loss(data_loss, by_layer, by_weight)
    activity = None if activity is None else activity.detach()
    return (y_pred.detach(), data_loss.detach(), penalty_value,
            None if custom is None else custom.detach(), activity, total)


def _saved_state(state) -> dict[tuple[str, Any], Any]:
    """Copies of what a step changes in every member's state (its weights, optimizer slots,
    moving average: ``(family, key) -> (P, ...)``; and its scalars, step count, loss scale
    and counter: ``("scalars", family) -> [value per member]``), for a deferred check to
    freeze a diverged member with, as the check of every step would have."""
    members = state.members
    saved: dict[tuple[str, Any], Any] = {
        (family, key): tensor.detach().clone() for family in state.step_families()
        for key, tensor in members.tensors[family].items()}
    saved.update({("scalars", family): list(values) for family, values in members.scalars.items()})
    return saved


def _drop_diverged(population, sums: EpochSums, first_bad: torch.Tensor, epoch: int,
                   saved: dict) -> torch.Tensor | None:
    """A deferred check: records each member whose loss went bad at the step it did, puts
    back its weights and optimizer state of the check before (``saved``), and drops it
    (state and sums). Returns ``first_bad`` itself when no member went bad, else the
    remaining members' (all -1), or None when none is left."""
    bad_steps = first_bad[first_bad >= 0]
    if bad_steps.numel() == 0:  # the synchronization
        return first_bad
    bad = (first_bad >= 0).nonzero().flatten()
    members = population.state.members
    for (family, key), value in saved.items():
        if family == "scalars":
            for p in bad.tolist():
                members.scalars[key][p] = value[p]
        else:
            members.tensors[family][key][bad] = value[bad]
    # (no running logs: the sums hold the steps after the bad one up to this check, whose
    # batch hooks have run already)
    for step in sorted(set(bad_steps.tolist())):
        population.diverge(first_bad != step, epoch, step)
    keep = (first_bad < 0).nonzero().flatten()
    sums.keep(keep)
    population.state.keep(keep.tolist())
    return first_bad.index_select(0, keep) if population.state.size else None


def evaluate_members(population, state, data, batch_size: int,
                     observers=()) -> dict[int, dict[str, float]]:
    """Each member's loss (penalties included, as Keras) and metrics on ``data``, in
    inference mode, with the weights of ``state``. Observers' ``on_test_batch_begin(step)``
    and ``on_test_batch_end(step, logs_by_member)`` (the logs so far) frame each batch."""
    sums = EpochSums(population, state.size)
    begin = observer_hooks(observers, "on_test_batch_begin")
    end = observer_hooks(observers, "on_test_batch_end")
    with torch.no_grad():
        by_weight = []
        weights_penalty = add(*weight_penalties(state, by_weight))
        ids = torch.tensor(state.member_ids, dtype=torch.long, device=data.x.device)
        for step, lo in enumerate(range(0, data.x.shape[0], batch_size)):
            for hook in begin:
                hook(step)
            xb = data.x[lo:lo + batch_size]
            yb = data.y[:, lo:lo + batch_size].index_select(0, ids) if data.per_member \
                else data.y[lo:lo + batch_size].unsqueeze(0)
            wb = None if data.sample_weight is None else \
                data.sample_weight[lo:lo + batch_size].unsqueeze(0)
            by_layer = {}
            y_pred, activity = forward(state, xb, False, activity_by_layer=by_layer)
            data_loss = population.loss.reduce_batch(population.loss.per_sample(yb, y_pred), wb)
            sums.add(yb, y_pred, data_loss, add(weights_penalty, activity), wb, xb.shape[0],
                     loss=keras_loss(data_loss, by_layer, by_weight))
            if end:
                running = sums.logs(state.member_ids, sums.samples)
                for hook in end:
                    hook(step, running)
    population.last_sums = sums
    return sums.logs(state.member_ids, data.x.shape[0])


def observer_hooks(observers, name: str) -> list:
    """The observers' methods called ``name``, where they have one."""
    return [hook for hook in (getattr(obs, name, None) for obs in observers) if hook is not None]
