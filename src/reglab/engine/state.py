"""The training state of a population: weights, optimizer state and member values.

Every per-member tensor has the member axis first: a Dense kernel is
``(P, in, out)``, one member's slice is Keras's ``(in, out)``. Values that may
differ between members are kept as Python floats when all members agree (the
fast path) and as tensors shaped to broadcast along the member axis otherwise.
When members stop, :meth:`PopulationState.keep` slices them all out, so a
stopped member costs nothing afterwards.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from reglab.engine.member import PopulationPlan
from reglab.engine.rng import generator
from reglab.regularizers.penalty import is_active

Value = float | torch.Tensor
Key = tuple[int, str]


def collapse(values: Sequence[float], dtype: torch.dtype, device, ndim: int = 1) -> Value:
    """A float when all ``values`` agree, else a ``(P, 1, ..., 1)`` tensor with ``ndim`` dims."""
    if not values:
        return 0.0
    first = values[0]
    if all(v == first for v in values):
        return float(first)
    return torch.tensor(values, dtype=dtype, device=device).view(-1, *([1] * (ndim - 1)))


class PopulationState:
    """Weights and optimizer state of the members still training."""

    def __init__(self, plan: PopulationPlan, dtype: torch.dtype, device: torch.device):
        self.plan = plan
        self.dtype = dtype
        self.device = device
        self.member_ids: list[int] = list(range(len(plan.seeds)))
        self.learning_rates = [opt.learning_rate for opt in plan.optimizers]
        # Per member id, across fits: optimizer steps taken (Adam's bias correction) and
        # epochs trained (which keys the member's random streams).
        self.member_steps = [0] * len(plan.seeds)
        self.member_epochs = [0] * len(plan.seeds)
        self.weights: dict[Key, torch.Tensor] = {}
        for wp in plan.weights:
            name = plan.layers[wp.layer_index].canonical_name
            purpose = f"init/{name}/{wp.spec.name}"
            stacked = torch.stack([
                initializer(wp.spec.shape, generator(seed, purpose), dtype)
                for seed, initializer in zip(plan.seeds, wp.initializers)
            ]).to(device)
            stacked.requires_grad_(wp.spec.trainable)
            self.weights[wp.key] = stacked
        self.optimizer = plan.optimizers[0]
        self.optimizer_state = {wp.key: self.optimizer.init_state(self.weights[wp.key])
                                for wp in plan.weights if wp.spec.trainable}
        self.snapshots: dict[Key, torch.Tensor] | None = None
        self.refresh_values()

    # -- members --------------------------------------------------------------
    @property
    def size(self) -> int:
        return len(self.member_ids)

    @property
    def seeds(self) -> list[int]:
        return [self.plan.seeds[i] for i in self.member_ids]

    def position(self, member_id: int) -> int:
        try:
            return self.member_ids.index(member_id)
        except ValueError:
            raise ValueError(f"Population: member {member_id!r} is not training now. Members "
                             f"training: {self.member_ids}.") from None

    def keep(self, positions: Sequence[int]) -> None:
        """Keeps only the members at ``positions`` (in the current order)."""
        index = torch.tensor(list(positions), dtype=torch.long, device=self.device)
        with torch.no_grad():
            for key, w in self.weights.items():
                kept = w.detach().index_select(0, index).requires_grad_(w.requires_grad)
                if w.grad is not None:  # mid-step (a member diverged): keep the others' grads
                    kept.grad = w.grad.index_select(0, index)
                self.weights[key] = kept
            for state in self.optimizer_state.values():
                for name, t in state.items():
                    state[name] = t.index_select(0, index)
            if self.snapshots is not None:
                self.snapshots = {k: t.index_select(0, index) for k, t in self.snapshots.items()}
        self.member_ids = [self.member_ids[p] for p in positions]
        self.refresh_values()

    def set_learning_rate(self, member_id: int, learning_rate: float) -> None:
        self.learning_rates[member_id] = float(learning_rate)
        self.refresh_values()

    def refresh_values(self) -> None:
        """Rebuilds every per-member value for the members still present."""
        ids, dtype, device = self.member_ids, self.dtype, self.device
        self._update_plan = None
        self.layer_values = [
            {name: collapse([vals[i] for i in ids], dtype, device) for name, vals in lp.values.items()}
            for lp in self.plan.layers
        ]
        self.hyperparameters: dict[Key, dict[str, Value]] = {}
        self.penalties: dict[Key, dict[str, Value]] = {}
        self.constraint_values: dict[Key, dict[str, Value]] = {}
        self.penalized_weights = []  # the weights some member penalizes
        self._activity = []
        for lp in self.plan.layers:
            terms = [lp.activity[i] for i in ids] if lp.activity else []
            if all(t is None for t in terms):
                self._activity.append(None)
                continue
            terms = [t or (0.0, 0.0, None) for t in terms]
            self._activity.append({
                "l1": collapse([t[0] for t in terms], dtype, device),
                "l2": collapse([t[1] for t in terms], dtype, device),
                "custom": [t[2] for t in terms],
            })
        hp_lists = [opt.hyperparameters() for opt in self.plan.optimizers]
        for member, hp in enumerate(hp_lists):
            hp["learning_rate"] = self.learning_rates[member]
        for wp in self.plan.weights:
            ndim = len(wp.spec.shape) + 1
            if wp.spec.trainable:
                hp = {name: collapse([hp_lists[i][name] for i in ids], dtype, device, ndim)
                      for name in hp_lists[0]}
                if wp.spec.kind in self.optimizer.decay_excludes:
                    hp["weight_decay"] = 0.0
                self.hyperparameters[wp.key] = hp
            l1 = [wp.l1[i] for i in ids]
            prox = [wp.proximal[i] for i in ids]
            self.penalties[wp.key] = {
                "l1": collapse([a * (1 - p) for a, p in zip(l1, prox)], dtype, device),
                "l2": collapse([wp.l2[i] for i in ids], dtype, device),
                "l1_all": collapse(l1, dtype, device),
                "l1_proximal_broadcast": collapse([a * p for a, p in zip(l1, prox)], dtype,
                                                  device, ndim),
            }
            if any(isinstance(v, torch.Tensor) or v for v in self.penalties[wp.key].values()) \
                    or wp.custom:
                self.penalized_weights.append(wp)
            cons = [wp.constraints[i] for i in ids]
            if cons and cons[0] is not None:
                self.constraint_values[wp.key] = {
                    name: collapse([c.values()[name] for c in cons], dtype, device, ndim)
                    for name in cons[0].values()
                }

    def update_plan(self) -> UpdatePlan:
        """How this step's update is organised; rebuilt only when members or values change."""
        if self._update_plan is None:
            self._update_plan = UpdatePlan(self)
        return self._update_plan

    def activity_values(self, layer_index: int) -> dict[str, Value] | None:
        """Per-member activity-penalty strengths of a layer, or None when it has none."""
        return self._activity[layer_index]

    def custom_regularizers(self, key: Key) -> list:
        """Per present member, its user-defined regularizer on weight ``key``, or None."""
        wp = next(w for w in self.plan.weights if w.key == key)
        return [wp.custom_regularizers[i] for i in self.member_ids]

    # -- weights of one member --------------------------------------------------
    def member_weights(self, member_id: int, use_snapshot: bool = False) -> dict[Key, torch.Tensor]:
        """One member's weights in Keras's layout (copies, detached, on the CPU)."""
        p = self.position(member_id)
        source = self.snapshots if use_snapshot and self.snapshots is not None else self.weights
        return {k: t[p].detach().to("cpu", copy=True) for k, t in source.items()}

    def set_member_weights(self, member_id: int, weights: dict[Key, torch.Tensor]) -> None:
        p = self.position(member_id)
        with torch.no_grad():
            for key, value in weights.items():
                target = self.weights[key]
                value = torch.as_tensor(value, dtype=target.dtype)
                if tuple(value.shape) != tuple(target.shape[1:]):
                    name = self.plan.layers[key[0]].canonical_name
                    raise ValueError(f"set_weights: {name}.{key[1]} expects shape "
                                     f"{tuple(target.shape[1:])}. Got {tuple(value.shape)}.")
                target[p].copy_(value.to(target.device))

    def step_value(self, ndim: int) -> Value:
        """The present members' step counts (after this step's increment) for a weight of
        ``ndim`` dims: an int when they agree, as they do unless members resumed apart."""
        steps = [self.member_steps[i] for i in self.member_ids]
        value = collapse(steps, self.dtype, self.device, ndim)
        return int(value) if isinstance(value, float) else value

    def extract(self, member_id: int, use_snapshot: bool = False) -> dict:
        """One member's weights (CPU copies, Keras layout) and optimizer state, for parking."""
        p = self.position(member_id)
        return {
            "weights": self.member_weights(member_id, use_snapshot=use_snapshot),
            "optimizer": {k: {n: t[p].detach().clone() for n, t in s.items()}
                          for k, s in self.optimizer_state.items()},
        }

    def merged(self, parked: dict[int, dict], with_optimizer: bool = True) -> PopulationState:
        """A state holding the present members and the ``parked`` ones, in member order.

        ``self`` is left as it is; without ``with_optimizer`` the result is for inference.
        """
        present = {m: p for p, m in enumerate(self.member_ids)}
        everyone = sorted(set(present) | set(parked))

        def rows(tensor_of):
            return torch.stack([tensor_of(m) for m in everyone])

        view = copy.copy(self)
        with torch.no_grad():
            view.weights = {
                key: rows(lambda m, key=key, w=w: w[present[m]].detach() if m in present else
                          parked[m]["weights"][key].to(self.device)).requires_grad_(w.requires_grad)
                for key, w in self.weights.items()}
            view.optimizer_state = {
                key: {name: rows(lambda m, key=key, name=name, t=t: t[present[m]] if m in present
                                 else parked[m]["optimizer"][key][name].to(self.device))
                      for name, t in opt_state.items()}
                for key, opt_state in self.optimizer_state.items()} if with_optimizer else {}
        view.member_ids = everyone
        view.snapshots = None
        view.refresh_values()
        return view

    def snapshot(self, positions: Sequence[int]) -> None:
        """Copies the current weights of the members at ``positions`` into the snapshot."""
        if not positions:
            return
        with torch.no_grad():
            if self.snapshots is None:
                self.snapshots = {k: w.detach().clone() for k, w in self.weights.items()}
                return
            index = torch.tensor(list(positions), dtype=torch.long, device=self.device)
            for key, w in self.weights.items():
                self.snapshots[key].index_copy_(0, index, w.detach().index_select(0, index))


class UpdatePlan:
    """Which weights decay, which need a step of their own (proximal L1 or a constraint),
    and which are updated together in one (possibly fused) optimizer call."""

    def __init__(self, state: PopulationState):
        trainable = [wp for wp in state.plan.weights if wp.spec.trainable]
        self.decayed = [wp.key for wp in trainable
                        if is_active(state.hyperparameters[wp.key]["weight_decay"])]
        self.one_by_one, self.grouped = [], []
        for wp in trainable:
            prox = state.penalties[wp.key]["l1_proximal_broadcast"]
            special = is_active(prox) or (state.member_ids and
                                         wp.constraints[state.member_ids[0]] is not None)
            (self.one_by_one if special else self.grouped).append(wp if special else wp.key)
        self.grouped_hyperparameters = [state.hyperparameters[key] for key in self.grouped]
        self.fused = bool(self.grouped) and state.optimizer.can_fuse(
            [state.weights[key] for key in self.grouped], self.grouped_hyperparameters)

