"""One training step of a population: forward, loss and penalties, update.

The objective is the sum over members of each member's (mean data loss +
penalty). Members share no weights, so the gradient of that sum with respect
to member p's weights is exactly the gradient of member p's own objective:
each member trains as it would alone.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from reglab.engine.state import PopulationState
from reglab.layers.layer import ForwardContext, is_shared
from reglab.regularizers.penalty import (
    activity_penalty,
    add_penalty_gradient_,
    is_active,
    soft_threshold,
    weight_penalty,
)

RandomFactory = Callable[[str], Callable]


def forward(state: PopulationState, x: torch.Tensor, training: bool,
            random_for: RandomFactory | None = None
            ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Runs the layers; returns ``(y_pred (P, B, ...), activity penalty (P,) or None)``."""
    plan, members = state.plan, state.size
    penalty = None
    for index, lp in enumerate(plan.layers):
        if lp.layer.is_augmentation:
            continue  # applied to the batch before it reaches the layers
        weights = {spec.name: state.weights[(index, spec.name)] for spec in lp.weight_specs}
        ctx = ForwardContext(training, members,
                             random_for(lp.canonical_name) if random_for else None)
        x = lp.layer.forward(x, weights, state.layer_values[index], ctx, lp.input_shape)
        activity = state.activity_values(index)
        if activity is not None:
            if is_shared(x, lp.output_shape):
                x = x.unsqueeze(0).expand(members, *x.shape)
            term = activity_penalty(x, activity["l1"], activity["l2"], batch_axis=1,
                                    member_axis=0)
            penalty = term if penalty is None else penalty + term
            if any(reg is not None for reg in activity["custom"]):
                penalty = penalty + torch.stack([
                    reg(x[p]) / x.shape[1] if reg is not None else x.new_zeros(())
                    for p, reg in enumerate(activity["custom"])])
    if is_shared(x, plan.output_shape):
        x = x.unsqueeze(0).expand(members, *x.shape)
    return x, penalty


def weight_penalties(state: PopulationState) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(value, custom)``: the weight penalties per member, each ``(P,)`` or None.

    ``value`` is the L1/L2 family's penalty (proximal L1 included), computed without
    autograd: its gradient is added by :func:`add_penalty_gradients`, and the proximal
    part is applied by the soft-threshold after each step. ``custom`` is the sum of
    user-defined regularizers, differentiable.
    """
    if not state.penalized_weights:
        return None, None
    value, custom = None, None
    for wp in state.penalized_weights:
        w = state.weights[wp.key]
        pen = state.penalties[wp.key]
        with torch.no_grad():
            term = weight_penalty(w, pen["l1_all"], pen["l2"], member_axis=0)
        value = term if value is None else value + term
        if wp.custom:
            regs = state.custom_regularizers(wp.key)
            term = torch.stack([reg(w[p]) if reg is not None else w.new_zeros(())
                                for p, reg in enumerate(regs)])
            custom = term if custom is None else custom + term
    return value, custom


def add_penalty_gradients(state: PopulationState) -> None:
    """Adds each member's L1 (non-proximal) and L2 penalty gradients to the weights' grads."""
    with torch.no_grad():
        for wp in state.penalized_weights:
            w = state.weights[wp.key]
            if not wp.spec.trainable or w.grad is None:
                continue
            pen = state.penalties[wp.key]
            add_penalty_gradient_(w.grad, w, pen["l1"], pen["l2"], member_axis=0)


def apply_update(state: PopulationState) -> None:
    """One optimizer step for every trainable weight, then proximal L1, then constraints."""
    add_penalty_gradients(state)
    for member_id in state.member_ids:
        state.member_steps[member_id] += 1
    plan = state.update_plan()
    optimizer = state.optimizer
    with torch.no_grad():
        for key in plan.decayed:  # a weight without a gradient is left alone, as in Keras
            if state.weights[key].grad is not None:
                optimizer.apply_weight_decay(state.weights[key], state.hyperparameters[key])
        for wp in plan.one_by_one:
            w = state.weights[wp.key]
            if w.grad is None:
                continue
            prox = state.penalties[wp.key]["l1_proximal_broadcast"]
            wants_prox = is_active(prox)
            ndim = len(wp.spec.shape) + 1
            step_size = optimizer.update(w, w.grad, state.optimizer_state[wp.key],
                                         state.hyperparameters[wp.key], state.step_value(ndim),
                                         want_step_size=wants_prox)
            if wants_prox:
                w.copy_(soft_threshold(w, step_size * prox))
            constraint = wp.constraints[state.member_ids[0]]
            if constraint is not None:
                w.copy_(constraint.apply(w, state.constraint_values[wp.key],
                                         lambda axes, n=ndim - 1: [a % n + 1 for a in axes]))
            w.grad = None
        live = [i for i, key in enumerate(plan.grouped) if state.weights[key].grad is not None]
        if live:
            keys = [plan.grouped[i] for i in live]
            step = state.step_value(1)
            if isinstance(step, torch.Tensor):  # members at different steps: one by one
                for key in keys:
                    w = state.weights[key]
                    optimizer.update(w, w.grad, state.optimizer_state[key],
                                     state.hyperparameters[key], state.step_value(w.dim()))
            else:
                params = [state.weights[key] for key in keys]
                optimizer.update_many(params, [w.grad for w in params],
                                      [state.optimizer_state[key] for key in keys],
                                      [plan.grouped_hyperparameters[i] for i in live], step,
                                      fused=plan.fused)
            for key in keys:
                state.weights[key].grad = None
