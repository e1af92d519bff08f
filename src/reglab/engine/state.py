"""The training state of a population: its per-member tree and the values its math reads.

Every per-member tensor has the member axis first: a Dense kernel is ``(P, in, out)``,
one member's slice is Keras's ``(in, out)``. The tensors live in one
:class:`~reglab.engine.member_state.MemberState` (weights, optimizer slots, snapshots,
steps and epochs per member); the values (rates, strengths, learning rates) follow the
rule of :mod:`reglab.engine.values`, rebuilt whenever members or values change.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch

from reglab.engine import loss_scale
from reglab.engine import member_state as tree
from reglab.engine.member import PopulationPlan
from reglab.engine.penalties import PenaltyTerms, coupled_decay, coupled_sign, penalty_terms
from reglab.engine.rng import generator
from reglab.engine.values import Value, member_values
from reglab.native.pending_gradient import PendingKernelGradient
from reglab.optimizers.optimizers import OptimizerMembers

Key = tuple[int, str]

tree.declare_family("best", fill="weights")
tree.declare_family("ema", fill="weights")  # Keras's use_ema: the average of each step
tree.declare_family("swa", fill="weights")  # stochastic weight averaging: one per epoch
tree.declare_scalar("swa_count", 0)
tree.declare_scalar("early_stopping", None)  # the member's EarlyStoppingState during a fit


def initial_weights(plan: PopulationPlan, member_ids: Sequence[int], dtype, device
                    ) -> dict[Key, torch.Tensor]:
    """Each member's initial weights, drawn from its seed's stream for each weight."""
    weights = {}
    for wp in plan.weights:
        name = plan.layers[wp.layer_index].canonical_name
        purpose = f"init/{name}/{wp.spec.name}"
        try:
            weights[wp.key] = torch.stack([
                wp.initializers[m](wp.spec.shape, generator(plan.seeds[m], purpose), dtype)
                for m in member_ids]).to(device)
        except RuntimeError as error:  # torch's allocators' failures (CPU and CUDA)
            if "allocate" not in str(error) and "out of memory" not in str(error):
                raise
            size = math.prod(wp.spec.shape) * len(member_ids) * torch.finfo(dtype).bits // 8
            raise MemoryError(
                f"layer {name!r}: its {wp.spec.name} of shape {tuple(wp.spec.shape)} for "
                f"{len(member_ids)} member(s) needs {_readable_bytes(size)} on {device}, "
                f"which could not be allocated ({str(error).splitlines()[0]}). Make the "
                "layer smaller or train fewer members at once.") from None
    return weights


def _readable_bytes(size: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


class PopulationState:
    """The members still training: their tree, and the values derived from the plan."""

    def __init__(self, plan: PopulationPlan, dtype: torch.dtype, device: torch.device,
                 members: tree.MemberState | None = None):
        self.plan = plan
        self.dtype = dtype
        self.device = device
        self.optimizer = plan.optimizers[0]
        #: per member id: the optimizer's hyperparameters (set_hyperparameter changes them)
        self.optimizer_values = [opt.hyperparameters() for opt in plan.optimizers]
        if members is None:
            members = self.fresh_members(range(len(plan.seeds)))
        self.members = members
        #: gradients a direct step left pending until the update (see
        #: :mod:`reglab.native.pending_gradient`), by weight key; empty between steps
        self.pending_grads: dict[Key, PendingKernelGradient] = {}
        self.refresh_values()

    def fresh_members(self, member_ids: Sequence[int]) -> tree.MemberState:
        """Rows for ``member_ids`` at their start: initial weights, zero optimizer slots."""
        member_ids = list(member_ids)
        trainable = frozenset(wp.key for wp in self.plan.weights if wp.spec.trainable)
        weights = initial_weights(self.plan, member_ids, self.dtype, self.device)
        scalars = {"steps": [0] * len(member_ids), "epochs": [0] * len(member_ids)}
        if loss_scale.scales_loss(self.optimizer):  # each member's scale and growth counter
            scalars.update(loss_scale.initial_scalars(self.plan.optimizers, member_ids))
        state = tree.MemberState(member_ids, {"weights": weights}, scalars, trainable)
        starts = self.optimizer.slot_initial_values()
        for slot in self.optimizer.slots():
            family = f"optimizer/{slot}"
            tree.declare_family(family)
            start = None if slot not in starts else [
                self.optimizer_values[m][starts[slot]] for m in member_ids]
            state.add_family(family, {
                key: self._fresh_slot(slot, weights[key], start) for key in trainable})
        if self.optimizer.use_ema:
            state.add_family("ema", {key: weights[key].clone() for key in trainable})
        state._mark_trainable()
        return state

    def _fresh_slot(self, slot: str, weight: torch.Tensor, start) -> torch.Tensor:
        """A slot's rows at their start, in the shape the optimizer gives it
        (``Optimizer.slot_shape``): zeros, or each member's ``start``."""
        shape = self.optimizer.slot_shape(slot, tuple(weight.shape[1:]))
        fresh = weight.new_zeros((weight.shape[0], *shape))
        if start is not None:
            fresh += member_values(start, fresh.dtype, fresh.device, fresh.dim())
        return fresh

    def _ensure_averaging(self) -> None:
        """Creates the SWA family once some present member has a ``swa_start`` (given at the
        start, by set_hyperparameter, or by a member added later)."""
        if "swa" in self.members.tensors or not any(
                math.isfinite(self.optimizer_values[m]["swa_start"]) for m in self.member_ids):
            return
        self.members.add_family("swa", {key: self.weights[key].detach().clone()
                                        for key in self.members.trainable})
        self.members.scalars["swa_count"] = [0] * self.size

    def adopt(self, plan: PopulationPlan, new_ids: Sequence[int]) -> None:
        """Takes ``plan`` (this one's members plus ``new_ids``) and gives the new members
        fresh rows (initial weights, zero slots) beside the present ones."""
        self.plan = plan
        self.optimizer_values += [opt.hyperparameters() for opt in plan.optimizers[-len(new_ids):]]
        fresh = self.fresh_members(new_ids)
        self.members = tree.merge(self.members, tree.take_rows(fresh, new_ids))
        self.refresh_values()

    # -- members --------------------------------------------------------------
    @property
    def member_ids(self) -> list[int]:
        return self.members.member_ids

    @property
    def size(self) -> int:
        return self.members.size

    @property
    def weights(self) -> dict[Key, torch.Tensor]:
        return self.members.weights

    @property
    def seeds(self) -> list[int]:
        return [self.plan.seeds[i] for i in self.member_ids]

    def position(self, member_id: int) -> int:
        return self.members.position(member_id)

    def keep(self, positions: Sequence[int]) -> None:
        """Keeps only the members at ``positions`` (in the current order), with the rows of
        their gradients (pending ones made first)."""
        self.settle_pending_grads()
        self.members = tree.select(self.members, positions)
        self.refresh_values()

    def settle_pending_grads(self, keys: Iterable[Key] | None = None) -> None:
        """Makes the pending gradients (those of ``keys``, or all) whole, as the weights'
        ``.grad``."""
        for key in list(self.pending_grads) if keys is None else keys:
            self.weights[key].grad = self.pending_grads.pop(key).materialize()

    def clear_grads(self) -> None:
        """Forgets every weight's gradient, pending ones too."""
        for w in self.weights.values():
            w.grad = None
        self.pending_grads.clear()

    def epochs(self, member_id: int) -> int:
        return self.members.scalar("epochs", member_id)

    def slots(self, key: Key) -> dict[str, torch.Tensor]:
        return {slot: self.members.tensors[f"optimizer/{slot}"][key]
                for slot in self.optimizer.slots()}

    # -- values -----------------------------------------------------------------
    def refresh_values(self) -> None:
        """Rebuilds every per-member value for the members present."""
        self._ensure_averaging()
        ids, dtype, device = self.member_ids, self.dtype, self.device
        self.layer_values = [
            {name: member_values([vals[i] for i in ids], dtype, device)
             for name, vals in lp.values.items()}
            for lp in self.plan.layers]
        self.activity: list[PenaltyTerms | None] = [
            penalty_terms([lp.activity[i] for i in ids],
                          [_values_of(lp.activity[i]) for i in ids], dtype, device)
            if lp.activity else None for lp in self.plan.layers]
        self.penalties: dict[Key, PenaltyTerms] = {}
        self.constraint_values: dict[Key, dict[str, Value]] = {}
        for wp in self.plan.weights:
            terms = penalty_terms([wp.regularizers[i] for i in ids],
                                  [wp.regularizer_values[i] for i in ids], dtype, device)
            if terms and wp.spec.trainable:  # Keras counts trainable weights' penalties only
                self.penalties[wp.key] = terms
            cons = [wp.constraints[i] for i in ids]
            if cons and cons[0] is not None:
                ndim = len(wp.spec.shape) + 1
                self.constraint_values[wp.key] = {
                    name: _constraint_value([c.values()[name] for c in cons], dtype, device, ndim)
                    for name in cons[0].values()}
        # The steps list is the tree's own: count_step increments it in place.
        self.optimizer_members = OptimizerMembers(
            [self.optimizer_values[i] for i in ids], self.members.scalars["steps"], dtype, device)
        #: the present members whose learning rate follows a schedule: (position, schedule)
        self.schedules = [(p, self.plan.optimizers[i].schedule) for p, i in enumerate(ids)
                          if self.plan.optimizers[i].schedule is not None]
        #: the weights that some present member decays (every trainable one, as Keras, but
        #: those the optimizer's exclude_from_weight_decay names), and those whose
        #: regularizers take a proximal step
        decays = any(hp["weight_decay"] for hp in self.optimizer_members.floats)
        self.decayed = [wp.key for wp in self.plan.weights if decays and wp.spec.trainable
                        and self.optimizer.decays(wp.spec.name)]
        self.proximal = [key for key, terms in self.penalties.items()
                         if terms.with_capability("proximal")]
        #: per weight whose penalties' linear gradient part (L2's ``2 * l2 * w``) the
        #: optimizer's fused step adds: each member's coefficient. Not for a weight that
        #: decoupled decay shrinks between the penalties' gradients and the step.
        self.coupled_decay: dict[Key, list[float]] = {}
        # Not under clipping: the penalties' gradients are part of what is clipped, before
        # the optimizer's step.
        folds = self.optimizer.clipping is None
        if folds and self.optimizer.folds_coupled_decay(device):
            for key, terms in self.penalties.items():
                coefficients = coupled_decay(terms) if key not in self.decayed else None
                if coefficients is not None:
                    self.coupled_decay[key] = coefficients
        #: likewise their sign part (L1's ``l1 * sign(w)``), where the optimizer's step adds it
        #: (reglab's native Adam): each member's coefficient.
        self.coupled_sign: dict[Key, list[float]] = {}
        if folds and self.optimizer.folds_coupled_sign(device, dtype):
            for key, terms in self.penalties.items():
                coefficients = coupled_sign(terms) if key not in self.decayed else None
                if coefficients is not None:
                    self.coupled_sign[key] = coefficients

    def step_families(self) -> list[str]:
        """The tensor families a training step writes: the weights, the optimizer's slots and
        the moving average (EMA); ``best`` and ``swa`` change only at an epoch's end."""
        return ["weights", *(f"optimizer/{slot}" for slot in self.optimizer.slots()),
                *(["ema"] if "ema" in self.members.tensors else [])]

    def count_step(self) -> None:
        """Counts one optimizer step for every present member; a member whose learning rate
        follows a schedule takes the schedule's rate at the steps taken before this one
        (Keras's ``iterations``)."""
        steps = self.members.scalars["steps"]
        rates = [(p, schedule.rate(steps[p])) for p, schedule in self.schedules]  # may raise
        for p in range(len(steps)):
            steps[p] += 1
        if rates:
            floats = self.optimizer_members.floats
            for p, rate in rates:
                floats[p]["learning_rate"] = rate
            self.optimizer_members.forget()

    def count_epoch(self) -> None:
        epochs = self.members.scalars["epochs"]
        for p in range(len(epochs)):
            epochs[p] += 1

    # -- weights of one member --------------------------------------------------
    def member_weights(self, member_id: int, family: str = "weights") -> dict[Key, torch.Tensor]:
        """One member's weights in Keras's layout (copies, detached, on the CPU)."""
        source = family if family in self.members.tensors else "weights"
        return tree.take_row(self.members, member_id, [source])["tensors"][source]

    def set_member_weights(self, member_id: int, weights: dict[Key, torch.Tensor]) -> None:
        p = self.position(member_id)
        with torch.no_grad():
            for key, value in weights.items():
                target = self.weights[key]
                value = torch.as_tensor(value, dtype=target.dtype)
                if tuple(value.shape) != tuple(target.shape[1:]):
                    layer = self.plan.layers[key[0]]  # the user's name, as Keras gives it
                    name = getattr(layer.layer, "name", None) or layer.canonical_name
                    raise ValueError(f"set_weights: {name}.{key[1]} expects shape "
                                     f"{tuple(target.shape[1:])}. Got {tuple(value.shape)}.")
                target[p].copy_(value.to(target.device))

    def extract(self, member_ids: Sequence[int], use_snapshot: Iterable[int] = (),
                average: dict[int, str] | None = None) -> dict[int, tree.Row]:
        """Members' rows (CPU copies, taken together), for parking, by member id; a member's
        ``weights`` are its snapshot's when it is in ``use_snapshot`` and one exists, else
        its trainable weights are those of its ``average`` family ('ema' or 'swa') when
        ``average`` names one for it."""
        rows = tree.take_rows(self.members, member_ids)
        snapshot, average = set(use_snapshot), average or {}
        for member_id, row in rows.items():
            tensors = row["tensors"]
            family = average.get(member_id)
            if member_id in snapshot and "best" in tensors:
                tensors["weights"] = tensors["best"]
            elif family is not None and family in tensors:
                tensors["weights"] = {**tensors["weights"], **tensors[family]}
        return rows

    def averaged_view(self, family: str) -> PopulationState:
        """A view whose trainable weights are those of ``family`` (for evaluation)."""
        view = PopulationState.__new__(PopulationState)
        view.__dict__.update(self.__dict__)
        members = tree.MemberState(self.members.member_ids, dict(self.members.tensors),
                                   self.members.scalars, self.members.trainable)
        members.tensors["weights"] = {**self.weights, **{
            key: t.detach() for key, t in self.members.tensors[family].items()}}
        view.members = members
        view.pending_grads = {}  # a view's own (it takes no step)
        return view

    def merged(self, parked: dict[int, tree.Row], with_optimizer: bool = True
               ) -> PopulationState:
        """A state holding the present members and the ``parked`` ones, in member order;
        ``self`` is left as it is. Without ``with_optimizer`` only weights (for inference)."""
        families = None if with_optimizer else ["weights"]
        merged = tree.merge(self.members, parked, families)
        view = PopulationState.__new__(PopulationState)
        view.__dict__.update(self.__dict__)
        view.members = merged
        view.pending_grads = {}  # other rows than self's: none of self's gradients
        view.refresh_values()
        return view

    def snapshot(self, positions: Sequence[int]) -> None:
        """Copies the current weights of the members at ``positions`` into the snapshot."""
        tree.copy_rows(self.members, "weights", "best", positions)


def _values_of(reg) -> dict[str, float]:
    from reglab.engine.member import regularizer_values

    return regularizer_values(reg)


def _constraint_value(values, dtype, device, ndim) -> Value:
    """Constraint values are never skipped when zero (a max norm of 0 is a constraint)."""
    if all(v == values[0] for v in values) and values[0] == 0:
        return torch.zeros((len(values),) + (1,) * (ndim - 1), dtype=dtype, device=device)
    return member_values(values, dtype, device, ndim)
