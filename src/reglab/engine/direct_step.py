"""A training step's forward and backward passes, layer by layer, without autograd's graph.

A population's step is a chain: each layer's output feeds the next, the last feeds the
loss. Autograd records that chain at every step and walks it back, which at the small
batches of a regularization study costs more than some of the products it orders (a node
per view, reshape and cast; a Python call per custom Function, each way). Here each layer
that can (``Layer.forward_and_backward``: ``Dense`` with a linear or relu activation, the
dropouts) gives its output and a function for its gradients, the same functions its
autograd Function runs (``member_linear.forward_product``/``backward_product``,
``shared_input.forward_grouped``/``backward_grouped``, the native dropout kernels) or the
gradient autograd's own formula gives (relu's ``threshold_backward``, the product and
quotient of the torch dropout); any other layer runs under autograd on its own, its input
a leaf. The last layer's softmax and the crossentropy are differentiated as one
(``softmax_crossentropy.backward_values``); the loss's reduction by autograd.

Each gradient is therefore the value the whole-graph backward computes, bit for bit
(tested against it): the step only orders the same calls. It is used where that chain is
the whole objective: a sequential stack in the population's float32 (or float64), without
activity regularizers, penalties autograd differentiates (a custom regularizer's, an
orthogonal one's) or dynamic loss scaling; :func:`applies` says when, and the engine takes
the whole-graph path otherwise.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from reglab import losses
from reglab.engine import loss_scale, softmax_crossentropy
from reglab.engine.step import call_in_compute_dtype, compute_dtypes
from reglab.layers.layer import ForwardContext, is_shared
from reglab.native.pending_gradient import PendingKernelGradient

#: ``backward(dy, need_x) -> (dx or None, {weight name: gradient})``
Backward = Callable[[torch.Tensor, bool], tuple[torch.Tensor | None, dict]]


def applies(state, loss) -> bool:
    """Whether the step's objective is the chain this module differentiates (see above): also
    a loss of reglab's own (a user's function or subclass may read other tensors than the
    predictions, whose gradients only the whole graph would see)."""
    plan = state.plan
    return (_builtin(loss) and not any(terms.differentiable for terms in state.penalties.values())
            and not plan.is_graph
            and not loss_scale.scales_loss(state.optimizer)
            and not any(state.activity))


def forward_backward(population, state, x: torch.Tensor, y_true: torch.Tensor,
                     sample_weight: torch.Tensor | None, random_for, groups, fused: bool
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """One step's forward and backward: sets each trainable weight's ``.grad`` (or, for a
    float32 first layer's kernel, its entry of ``state.pending_grads``: see
    :mod:`reglab.native.pending_gradient`); returns ``(predictions (P, B, ...), data loss
    (P,))``, neither differentiable."""
    plan, members = state.plan, state.size
    last = softmax_crossentropy.last_layer_index(plan) if fused else None
    tape = []  # (layer index, its backward, whether its input needs a gradient)
    requires = False  # whether x depends on a trainable weight
    with torch.no_grad():
        for index, lp in enumerate(plan.layers):
            layer = lp.layer
            if layer.is_augmentation or getattr(layer, "is_batch_transform", False):
                continue  # applied to the batch before it reaches the layers
            mode = layer.takes_grouped_input
            if groups is not None and mode is None:
                x, groups = groups.expand(x), None
            weights = {spec.name: state.weights[(index, spec.name)] for spec in lp.weight_specs}
            ctx = ForwardContext(True, members, random_for(lp.canonical_name), groups,
                                 logits=index == last)
            x_next, backward, requires_next = _layer(lp, x, weights, state, ctx, index,
                                                     requires)
            if mode == "consumes":
                groups = None
            if requires_next:
                tape.append((index, backward, requires))
            requires = requires_next
            x = x_next
        if groups is not None:
            x = groups.expand(x)
        output_dtype = x.dtype
        if x.is_floating_point() and x.dtype != state.dtype:
            x = x.to(state.dtype)  # losses and metrics in float32, as the step's forward
        if is_shared(x, plan.output_shape):
            x = x.unsqueeze(0).expand(members, *x.shape)
        if not requires:  # as the whole graph's backward fails
            raise RuntimeError("no trainable weight reaches the model's output: element 0 "
                               "of tensors does not require grad and does not have a grad_fn")
        y_pred, data_loss, dy = _loss(population.loss, y_true, x, sample_weight, fused)
        dy = _cast(dy, output_dtype)
        given = set()  # the storages of the gradients set so far
        for index, backward, need_x in reversed(tape):
            if dy is None:  # a layer whose output does not depend on its input: no further
                break  # gradient, as autograd's graph would end there
            dy, grads = backward(dy, need_x)
            for name, grad in grads.items():
                if isinstance(grad, PendingKernelGradient):  # made by the optimizer's step
                    state.pending_grads[(index, name)] = grad
                else:
                    state.weights[(index, name)].grad = _own(grad, given)
    return y_pred, data_loss


def _own(grad: torch.Tensor, given: set) -> torch.Tensor:
    """``grad`` as a weight's own gradient, as autograd's accumulation gives it: contiguous
    (as every weight), and a copy when another weight's gradient shares its memory (autograd
    may return one tensor for two weights; the update chain edits gradients in place)."""
    storage = grad.untyped_storage().data_ptr()
    if storage in given or not grad.is_contiguous():
        grad = grad.clone(memory_format=torch.contiguous_format)
    given.add(grad.untyped_storage().data_ptr())
    return grad


def _layer(lp, x, weights, state, ctx, index, requires: bool
           ) -> tuple[torch.Tensor, Backward, bool]:
    """A layer's output, its backward and whether the output depends on a trainable weight:
    its own (``forward_and_backward``), else autograd's over the layer alone."""
    layer = lp.layer
    if _gives_backward(type(layer)):
        done = _in_compute_dtype(lp, x, weights, state, ctx, index)
        if done is not None:
            return (*done, requires or any(w.requires_grad for w in weights.values()))
    with torch.enable_grad():
        x_in = x.detach().requires_grad_() if requires else x
        y = call_in_compute_dtype(lp, x_in, weights, state, ctx, index)

    def backward(dy, need_x):
        trainable = [(name, w) for name, w in weights.items() if w.requires_grad]
        inputs = ([x_in] if need_x else []) + [w for _, w in trainable]
        if not y.requires_grad or not inputs:
            return None, {}
        with torch.enable_grad():
            grads = torch.autograd.grad(y, inputs, dy, allow_unused=True)
        dx = grads[0] if need_x else None
        return dx, {name: g for (name, _), g in zip(trainable, grads[int(need_x):])
                    if g is not None}
    return y.detach(), backward, y.requires_grad


def _in_compute_dtype(lp, x, weights, state, ctx, index) -> tuple[torch.Tensor, Backward] | None:
    """``forward_and_backward`` with the casts of ``call_in_compute_dtype`` around it, and
    their gradients (autograd's: each gradient cast back to the dtype it came from) around
    its backward; None where the layer gives no backward, or would need its weights cast
    for it (autograd then differentiates the layer)."""
    layer = lp.layer
    compute, inside = compute_dtypes(lp, state)
    if inside != state.dtype and weights and not layer.casts_own_weights:
        return None
    source = x.dtype
    if x.is_floating_point() and x.dtype != inside:
        x = x.to(inside)
    seen = x.dtype  # the dtype the layer's own operations take
    done = layer.forward_and_backward(x, weights, state.layer_values[index], ctx, lp.input_shape)
    if done is None:
        return None
    y, backward = done
    given = y.dtype
    if y.is_floating_point() and y.dtype != compute:
        y = y.to(compute)

    def cast_backward(dy, need_x):
        # autograd's: each gradient in the dtype of what it is the gradient of (a dropout's
        # float32 keep probability promotes its gradient: rounded to the input's dtype),
        # then the input cast's gradient, back to the dtype the layer was given
        dx, grads = backward(_cast(dy, given), need_x)
        return _cast(_cast(dx, seen), source), {
            name: _cast(grad, weights[name].dtype) for name, grad in grads.items()}
    return y, cast_backward


def _cast(grad: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    return grad if grad is None or grad.dtype == dtype else grad.to(dtype)


def _gives_backward(cls) -> bool:
    """Whether the class whose ``forward`` a layer runs also defines its
    ``forward_and_backward`` (a subclass with its own ``forward`` is left to autograd)."""
    for owner in cls.__mro__:
        if "forward" in owner.__dict__:
            return "forward_and_backward" in owner.__dict__
    return False


def _loss(loss, y_true, out, sample_weight, fused):
    """``(predictions, data loss (P,), d(sum of data losses)/d out or None)``."""
    index = softmax_crossentropy.hard_labels(y_true, out) if fused else None
    if index is not None:  # out: the last layer's logits
        per_sample, probs, saved = softmax_crossentropy.forward_values(out, index)
        data_loss, grad = _reduced(loss, per_sample, sample_weight)
        return probs, data_loss, softmax_crossentropy.backward_values(saved, grad)
    with torch.enable_grad():
        leaf = out.detach().requires_grad_()
        if fused:
            per_sample, y_pred = softmax_crossentropy.loss_and_predictions(loss, y_true, leaf)
        else:
            per_sample, y_pred = loss.per_sample(y_true, leaf), leaf
        data_loss = loss.reduce_batch(per_sample, sample_weight)
        grad = _gradient(data_loss, leaf)
    return y_pred.detach(), data_loss.detach(), grad


def _reduced(loss, per_sample, sample_weight):
    """``(data loss (P,), its sum's gradient with respect to per_sample)``: for the mean
    over an unweighted batch autograd's gradient written out (``1 / B`` for every sample,
    the quotient's gradient spread by the sum's), else the loss's own reduction
    differentiated by autograd."""
    if sample_weight is None and per_sample.dim() == 2 and _reduces_by_mean(loss):
        members, batch = per_sample.shape
        return losses.reduce_mean(per_sample), _mean_gradient(
            members, batch, per_sample.dtype, per_sample.device)
    with torch.enable_grad():
        leaf = per_sample.detach().requires_grad_()
        data_loss = loss.reduce_batch(leaf, sample_weight)
        return data_loss.detach(), _gradient(data_loss, leaf)


@functools.lru_cache(maxsize=16)
def _mean_gradient(members: int, batch: int, dtype: torch.dtype, device: torch.device):
    """The gradient of the members' summed batch means with respect to each sample's loss,
    as autograd forms it (``1 / B``, the quotient's gradient, spread over the batch by the
    sum's); read only, made once per shape."""
    ones = torch.ones((), dtype=dtype, device=device).expand(members)
    return (ones / batch).unsqueeze(-1).expand(members, batch)


#: the methods a loss computes with
_LOSS_METHODS = ("per_sample", "call", "values", "reduce", "reduce_batch")


def _builtin(loss) -> bool:
    """Whether every method ``loss`` computes with is reglab's own (not a subclass's), and
    a wrapped function is one of reglab's."""
    cls = type(loss)
    if any(getattr(getattr(cls, name, None), "__module__", losses.__name__) != losses.__name__
           for name in _LOSS_METHODS):
        return False
    return not isinstance(loss, losses.LossFunctionWrapper) or \
        getattr(loss.fn, "__module__", None) == losses.__name__


def _reduces_by_mean(loss) -> bool:
    """Whether the loss's batch reduction is :func:`reglab.losses.reduce_mean` itself."""
    cls = type(loss)
    return (cls.reduce_batch is losses.Loss.reduce_batch and cls.reduce is losses.Loss.reduce
            and loss.reduction in ("sum_over_batch_size", "mean", "mean_with_sample_weight"))


def _gradient(data_loss, leaf):
    if not data_loss.requires_grad:  # as the whole-graph backward fails
        raise RuntimeError("the loss does not depend on the model's output: element 0 of "
                           "tensors does not require grad and does not have a grad_fn")
    (grad,) = torch.autograd.grad(data_loss.sum(), leaf, allow_unused=True)
    return grad
