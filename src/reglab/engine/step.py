"""One training step of a population: forward, loss and penalties (the update is
:mod:`reglab.engine.update`'s).

The objective is the sum over members of each member's (mean data loss +
penalty). Members share no weights, so the gradient of that sum with respect
to member p's weights is exactly the gradient of member p's own objective:
each member trains as it would alone.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from reglab import activations
from reglab.engine import penalties
from reglab.engine.softmax_crossentropy import last_layer_index
from reglab.engine.state import PopulationState
from reglab.layers.layer import ForwardContext, is_shared
from reglab.layers.shared_input import MemberGroups

RandomFactory = Callable[[str], Callable]


def add(a, b):
    """``a + b`` where either may be None (a term that is absent)."""
    if a is None:
        return b
    return a if b is None else a + b


def forward(state: PopulationState, x: torch.Tensor, training: bool,
            random_for: RandomFactory | None = None, groups: MemberGroups | None = None,
            logits: bool = False, activity_by_layer: dict[int, torch.Tensor] | None = None
            ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Runs the layers; returns ``(y_pred (P, B, ...), activity penalty (P,) or None)``;
    ``activity_by_layer``, when given, receives each penalized layer's part by position.

    ``x`` is shared ``(B, ...)``, per member ``(P, B, ...)``, or grouped ``(G, B, ...)``
    with ``groups`` saying which members see which row. A grouped input goes on to the
    layers that take it (``takes_grouped_input``) and is laid out per member before any
    other layer. With ``logits`` (a sequential stack only) the last layer gives its values
    before its softmax (:mod:`reglab.engine.softmax_crossentropy`).
    """
    plan, members = state.plan, state.size
    if plan.is_graph:
        return _forward_graph(state, x, training, random_for, groups, activity_by_layer)
    penalty = None
    last = last_layer_index(plan) if logits else None
    for index, lp in enumerate(plan.layers):
        if lp.layer.is_augmentation or getattr(lp.layer, "is_batch_transform", False):
            continue  # applied to the batch before it reaches the layers
        terms = state.activity[index]
        mode = lp.layer.takes_grouped_input
        if groups is not None and (mode is None or (mode == "keeps" and terms)):
            x, groups = groups.expand(x), None
        weights = {spec.name: state.weights[(index, spec.name)] for spec in lp.weight_specs}
        ctx = ForwardContext(training, members,
                             random_for(lp.canonical_name) if random_for else None, groups,
                             logits=index == last)
        x = call_in_compute_dtype(lp, x, weights, state, ctx, index)
        if mode == "consumes":
            groups = None
        if terms:
            if is_shared(x, lp.output_shape):
                x = x.unsqueeze(0).expand(members, *x.shape)
            # a last layer that gave its logits: its output, the penalized one, is their softmax
            out = activations.softmax(x) if index == last else x
            penalty = add(penalty, _activity(terms, out, index, activity_by_layer))
    if groups is not None:
        x = groups.expand(x)
    if x.is_floating_point() and x.dtype != state.dtype:
        x = x.to(state.dtype)  # losses and metrics in float32, as Keras's
    if is_shared(x, plan.output_shape):
        x = x.unsqueeze(0).expand(members, *x.shape)
    return x, penalty


def _activity(terms, out, index, by_layer):
    """A layer's activity penalty, recorded in ``by_layer`` (by position) when given."""
    value = activity_penalty(terms, out)
    if by_layer is not None and value is not None:
        by_layer[index] = value
    return value


def _forward_graph(state, x, training, random_for, groups, activity_by_layer=None):
    """:func:`forward` for a functional model: each layer takes its inputs' outputs (a list
    for a merge layer). A grouped input is laid out per member first."""
    plan, members = state.plan, state.size
    if groups is not None:
        x, groups = groups.expand(x), None
    penalty, outputs = None, {-1: x}
    for index, lp in enumerate(plan.layers):
        if lp.layer.is_augmentation or getattr(lp.layer, "is_batch_transform", False):
            outputs[index] = outputs[lp.inbound[0]]  # applied to the batch before
            continue
        inputs = [outputs[j] for j in lp.inbound]
        owner = index if lp.weights_of is None else lp.weights_of  # a shared layer's weights
        weights = {spec.name: state.weights[(owner, spec.name)]
                   for spec in _weight_specs(plan, lp)}
        ctx = ForwardContext(training, members,
                             random_for(lp.canonical_name) if random_for else None, None)
        y = call_in_compute_dtype(lp, inputs if getattr(lp.layer, "takes_list", False)
                                   else inputs[0], weights, state, ctx, index)
        terms = state.activity[index]
        if terms:
            if is_shared(y, lp.output_shape):
                y = y.unsqueeze(0).expand(members, *y.shape)
            penalty = add(penalty, _activity(terms, y, index, activity_by_layer))
        outputs[index] = y
    y = outputs[len(plan.layers) - 1]
    if y.is_floating_point() and y.dtype != state.dtype:
        y = y.to(state.dtype)
    if is_shared(y, plan.output_shape):
        y = y.unsqueeze(0).expand(members, *y.shape)
    return y, penalty


def call_in_compute_dtype(lp, x, weights, state, ctx, index):
    """Runs one layer in its policy's compute dtype: under mixed precision its input and
    weights (not its running statistics) are cast to bfloat16 or float16; a layer that
    computes in float32 inside (batch normalization, as in Keras) gets a float32 input and
    gives its output back in the compute dtype."""
    compute, inside = compute_dtypes(lp, state)
    if isinstance(x, list):  # a merge layer's inputs
        x = [t.to(inside) if t.is_floating_point() and t.dtype != inside else t for t in x]
    elif x.is_floating_point() and x.dtype != inside:
        x = x.to(inside)
    if inside != state.dtype and not lp.layer.casts_own_weights:
        weights = {spec.name: weights[spec.name] if spec.kind == "stat"
                   else weights[spec.name].to(inside) for spec in _weight_specs(state.plan, lp)}
    x = lp.layer.forward(x, weights, state.layer_values[index], ctx, lp.input_shape)
    if x.is_floating_point() and x.dtype != compute:
        x = x.to(compute)
    return x


def compute_dtypes(lp, state) -> tuple[torch.dtype, torch.dtype]:
    """``(compute, inside)``: the dtype a layer's output is given in (its policy's compute
    dtype; a float32 policy computes in the population's dtype, float64 in some tests) and
    the one it computes in (float32 for a layer that does inside, as batch normalization)."""
    policy = lp.layer.dtype_policy
    compute = state.dtype if policy.compute_dtype == "float32" else policy.torch_compute_dtype
    return compute, state.dtype if lp.layer.computes_in_float32 else compute


def _weight_specs(plan, lp):
    """A layer's weight specs: its own, or for a shared layer's later call its first's."""
    return lp.weight_specs if lp.weights_of is None else plan.layers[lp.weights_of].weight_specs


def activity_penalty(terms: penalties.PenaltyTerms, x: torch.Tensor) -> torch.Tensor | None:
    """A layer's activity penalty per member, divided by the batch size as Keras >= 3.14
    does; always differentiated by autograd (its gradient flows into the layers)."""
    total = None
    for (reg, values), rows in zip(terms.families, terms.rows):
        total = add(total, penalties.family_penalty(reg, values, rows, x))
    if terms.custom is not None:
        total = add(total, torch.stack([reg(x[p]) if reg is not None else x.new_zeros(())
                                        for p, reg in enumerate(terms.custom)]))
    return None if total is None else total / x.shape[1]


def weight_penalties(state: PopulationState, by_weight: list | None = None
                     ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(reported, differentiable)``: the weight penalties per member, each ``(P,)`` or
    None. The gradient of ``reported`` is added by the update chain; ``differentiable``
    joins the backward pass. ``by_weight``, when given, receives each penalized weight's
    penalty (``(P,)``, without a graph), in the model's weight order."""
    reported = differentiable = None
    for key, terms in state.penalties.items():
        value, grad_value = penalties.evaluate(terms, state.weights[key])
        reported, differentiable = add(reported, value), add(differentiable, grad_value)
        if by_weight is not None:
            by_weight.append(add(value, None if grad_value is None else grad_value.detach()))
    return reported, differentiable


def keras_loss(data_loss: torch.Tensor, activity_by_layer: dict[int, torch.Tensor],
               by_weight: list) -> torch.Tensor:
    """The loss as Keras 3 reports it, per member: its data loss, then each layer's activity
    penalty in layer order, then each weight's penalty in weight order (Keras's
    ``model.losses``), added one at a time in the data loss's dtype, as Keras's ``ops.sum``
    over that list adds them. Not differentiated: the value the logs average."""
    total = data_loss.detach()
    for term in (*(activity_by_layer[i] for i in sorted(activity_by_layer)), *by_weight):
        total = total + term.detach()
    return total
