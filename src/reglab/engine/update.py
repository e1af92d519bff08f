"""The update: a declared chain of transforms, applied in one order, after each backward.

Each transform has ``init(state)`` (declare the per-member state it keeps, in the
population's tree) and ``update(grads, state)`` (act on the gradients and weights of
the present members, in place), as Optax's ``chain(...)`` composes
``scale_by_adam()``, ``add_decayed_weights()`` and their kin. :data:`UPDATE_ORDER` is the
one place that says in which order; :func:`apply_updates` is the one place that reads it.
The order is Keras's: the penalties' gradients join the loss's, the sum is clipped (the
optimizer's ``clipnorm``, ``clipvalue`` or ``global_clipnorm``), decoupled weight decay
shrinks the weights before the optimizer's step, proximal steps and constraints follow it.
(An optimizer with a fused kernel adds the penalties' linear part, L2's ``2 * l2 * w``,
inside its step, after their other parts, as the chain would, and reglab's native Adam their
sign part, L1's ``l1 * sign(w)``, before it: see ``PopulationState.coupled_decay`` and
``coupled_sign``.)
Under dynamic loss scaling (:mod:`reglab.engine.loss_scale`) the gradients are unscaled
before the chain, and a member whose gradients are not finite skips it: its rows are set
aside before the chain and put back after it, as if it had not run for that member.
A gradient left pending by the direct step (the first layer's kernel:
:mod:`reglab.native.pending_gradient`) is made whole first unless the optimizer's step makes
it (:func:`_step_makes`): every transform but that step sees tensors.
"""

from __future__ import annotations

from typing import Protocol

import torch

from reglab.engine import clipping, loss_scale, penalties
from reglab.engine.member_state import copy_rows
from reglab.engine.state import Key, PopulationState
from reglab.engine.values import member_values


class UpdateTransform(Protocol):
    def init(self, state: PopulationState) -> None: ...

    def update(self, grads: dict[Key, torch.Tensor], state: PopulationState) -> None: ...


class PenaltyGradients:
    """Adds the gradients of the regularizers that declare ``'gradient'``."""

    def init(self, state):
        pass

    def update(self, grads, state):
        for key, terms in state.penalties.items():
            # a pending gradient is one whose penalties the step folds in (_step_makes)
            if key in grads and key not in state.pending_grads:
                penalties.add_gradient(terms, grads[key], state.weights[key],
                                       include_decay=key not in state.coupled_decay,
                                       include_sign=key not in state.coupled_sign)


class ClipGradients:
    """Keras's ``clipnorm``, ``clipvalue`` or ``global_clipnorm`` of the optimizer, each
    member with its own threshold, on the gradients with the penalties' added (Keras's
    regularizers are terms of the loss it differentiates): :mod:`reglab.engine.clipping`."""

    def init(self, state):
        pass

    def update(self, grads, state):
        kind = state.optimizer.clipping
        if kind is None or not grads:
            return
        # each member's threshold, (P,): the one per-member value rule, cached per step
        clipping.clip_(kind, list(grads.values()), state.optimizer_members.value(kind, 1))


class DecoupledWeightDecay:
    """Keras's ``weight_decay``: ``w -= w * weight_decay * learning_rate`` before the step."""

    def init(self, state):
        pass

    def update(self, grads, state):
        for key in state.decayed:
            if key in grads:
                state.optimizer.apply_weight_decay(state.weights[key], state.optimizer_members)


class OptimizerStep:
    """The optimizer's step for every weight with a gradient, its slots in the tree; with
    the penalties' linear gradient parts that its fused kernel adds (``coupled_decay``)."""

    def init(self, state):
        pass  # the slots are created with the members (PopulationState.fresh_members)

    def update(self, grads, state):
        keys = list(grads)
        if keys:
            # only an optimizer that folds (Optimizer.folds_coupled_decay, folds_coupled_sign)
            # is given decay or sign
            folded = {}
            if state.coupled_decay:
                folded["decay"] = [state.coupled_decay.get(k) for k in keys]
            if state.coupled_sign:
                folded["sign"] = [state.coupled_sign.get(k) for k in keys]
            state.optimizer.apply([state.weights[k] for k in keys], [grads[k] for k in keys],
                                  [state.slots(k) for k in keys], state.optimizer_members,
                                  **folded)


class ProximalSteps:
    """The proximal step of each regularizer that declares ``'proximal'``, scaled by the
    optimizer's per-weight step size."""

    def init(self, state):
        pass

    def update(self, grads, state):
        for key in state.proximal:
            if key not in grads:
                continue
            w = state.weights[key]
            step_size = state.optimizer.step_size(w, state.slots(key), state.optimizer_members)
            penalties.proximal_steps(state.penalties[key], w, step_size)


class ExponentialMovingAverage:
    """Keras 3's ``use_ema``: after each step, ``average = m * average + (1 - m) * w`` for
    every trainable weight, with ``m = ema_momentum`` except at a member's first step, where
    ``m = 0``; every ``ema_overwrite_frequency`` steps the weights take the average. The
    population copies the average into the weights when ``fit`` ends, as Keras's
    ``finalize_variable_values``."""

    def init(self, state):
        pass  # the family 'ema' is created with the members (PopulationState.fresh_members)

    def update(self, grads, state):
        if not state.optimizer.use_ema:
            return
        members = state.optimizer_members
        momenta = [0.0 if step == 1 else hp["ema_momentum"]
                   for step, hp in zip(members.steps, members.floats)]
        for key, average in state.members.tensors["ema"].items():
            w = state.weights[key]
            m = member_values(momenta, state.dtype, state.device, w.dim())
            average.copy_(m * average + (1 - m) * w)
        every = state.optimizer.ema_overwrite_frequency
        if every:
            due = [p for p, step in enumerate(members.steps) if step % every == 0]
            copy_rows(state.members, "ema", "weights", due)


class Constraints:
    """Each weight's constraint (Keras applies them after the optimizer's update)."""

    def init(self, state):
        pass

    def update(self, grads, state):
        for key, values in state.constraint_values.items():
            if key not in grads:
                continue
            wp = state.plan.weight(key)
            constraint = wp.constraints[state.member_ids[0]]
            w = state.weights[key]
            ndim = w.dim() - 1
            w.copy_(constraint.apply(w, values, lambda axes, n=ndim: [a % n + 1 for a in axes]))


#: the update chain, in the order it runs
UPDATE_ORDER: tuple[type, ...] = (PenaltyGradients, ClipGradients, DecoupledWeightDecay,
                                  OptimizerStep, ProximalSteps, ExponentialMovingAverage,
                                  Constraints)


def build_chain(state: PopulationState) -> list[UpdateTransform]:
    chain = [transform() for transform in UPDATE_ORDER]
    for transform in chain:
        transform.init(state)
    return chain


def apply_updates(chain: list[UpdateTransform], state: PopulationState) -> None:
    """One update of every present member: the chain over the weights that have a gradient
    (a weight without one is left alone, as in Keras), then the gradients are cleared. A
    member whose loss-scaled step is skipped keeps its weights, slots and step count."""
    state.settle_pending_grads([key for key in state.pending_grads
                                if not _step_makes(key, state)])
    pending = state.pending_grads
    grads = {key: w.grad if w.grad is not None else pending[key]
             for key, w in state.weights.items() if w.grad is not None or key in pending}
    try:
        _apply_chain(chain, grads, state)
    finally:  # also when the chain raises (an interrupt): no gradient outlives its step
        state.clear_grads()


def _apply_chain(chain, grads, state) -> None:
    """The chain over ``grads``, each member's step counted, loss-scaled skips set aside."""
    with torch.no_grad():
        skipped = loss_scale.unscale(grads, state)
    if not skipped or len(skipped) < state.size:  # else every member skips its step
        kept = loss_scale.set_aside(state, skipped) if skipped else None
        state.count_step()
        with torch.no_grad():
            for transform in chain:
                transform.update(grads, state)
            if skipped:
                loss_scale.put_back(state, skipped, kept)


def _step_makes(key: Key, state: PopulationState) -> bool:
    """Whether the optimizer's step can make a pending gradient itself
    (:mod:`reglab.native.pending_gradient`): nothing before it in the chain reads or edits
    the gradient (no loss scaling, no clipping, no penalty gradient the step does not fold
    in) and the optimizer takes it."""
    return (not loss_scale.scales_loss(state.optimizer) and state.optimizer.clipping is None
            and state.optimizer.takes_pending_gradients()
            and (key not in state.penalties or penalties.gradient_is_folded(
                state.penalties[key], key in state.coupled_decay, key in state.coupled_sign)))
