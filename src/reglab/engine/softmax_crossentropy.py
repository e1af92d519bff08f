"""The last layer's softmax and Keras's sparse crossentropy, differentiated as one.

A classifier's step ends ``softmax -> p = probs[y] / sum(probs) -> -log(clip(p, 1e-7,
1 - 1e-7))``. Left to autograd that is a dozen small operations forward and twice as many
backward (the transposes of the softmax, the gather, the division, the clip's masks), which
at batch 32 cost more than the output layer's product. Their gradient with respect to the
logits has a closed form: ``coef * (probs - onehot(y))`` with ``coef`` the incoming
gradient where ``p`` lies inside the clip's bounds and 0 where the clip holds it (torch's
``clamp`` passes the gradient at the bounds themselves, and so does this).

The values are computed as before, by the same functions (:func:`reglab.activations.softmax`
and the loss's own arithmetic), so losses, metrics and predictions do not change; the
gradient differs from autograd's chain by rounding only. It is one function of each
member's own rows, so a member still trains in a population as it would alone.

The engine uses it while training (:func:`fuses` says when); evaluation and prediction
take the layers' own softmax.
"""

from __future__ import annotations

import torch

from reglab import activations
from reglab.losses import EPSILON, SparseCategoricalCrossentropy, is_soft
from reglab.native import crossentropy as native_crossentropy


def fuses(loss, plan) -> bool:
    """Whether a training step may fuse the last layer's softmax into ``loss``: a sparse
    crossentropy on probabilities without label smoothing, a sequential stack whose last
    computing layer ends in a float32 softmax and can give its logits. The decision depends
    on the structure only, never on which members are present (an activity penalty on the
    last layer is computed on the softmax of the logits: :func:`reglab.engine.step.forward`),
    so a member takes the same path in any population."""
    if type(loss) is not SparseCategoricalCrossentropy or loss.from_logits \
            or loss.label_smoothing or plan.is_graph:
        return False
    last = last_layer_index(plan)
    if last is None:
        return False
    layer = plan.layers[last].layer
    return (_declares_logits(type(layer))
            and activations.structure_key(layer.activation) == "softmax"
            and layer.dtype_policy.compute_dtype == "float32")


def _declares_logits(cls) -> bool:
    """Whether the layer says it gives its logits (a subclass may say not) and the class
    whose ``forward`` it runs is the one that honours ``ctx.logits`` (a subclass with its own
    ``forward`` may not)."""
    owner = next((c for c in cls.__mro__ if "forward" in c.__dict__), None)
    return (getattr(cls, "gives_logits", False) is True and owner is not None
            and owner.__dict__.get("gives_logits", False) is True)


def last_layer_index(plan) -> int | None:
    """The index of the last layer that computes (augmentation and batch transforms are
    applied before the layers)."""
    for index in range(len(plan.layers) - 1, -1, -1):
        layer = plan.layers[index].layer
        if not (layer.is_augmentation or getattr(layer, "is_batch_transform", False)):
            return index
    return None


def loss_and_predictions(loss: SparseCategoricalCrossentropy, y_true: torch.Tensor,
                         logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(per-sample loss (P, B), probabilities (P, B, K))`` from the last layer's logits.
    Soft targets (MixUp, CutMix, label smoothing on the batch) take ``loss``'s general
    path on the softmax's probabilities."""
    index = hard_labels(y_true, logits)
    if index is None:
        probs = activations.softmax(logits)
        return loss.per_sample(y_true, probs), probs
    return _SoftmaxCrossentropy.apply(logits, index)


def hard_labels(y_true: torch.Tensor, logits: torch.Tensor) -> torch.Tensor | None:
    """The labels as ``(P, B)`` class indices for :func:`forward_values`, or None for soft
    targets (or logits that are not ``(P, B, K)``)."""
    if is_soft(y_true, logits) or logits.dim() != 3:
        return None
    if y_true.dim() == logits.dim() and y_true.shape[-1] == 1:
        y_true = y_true.squeeze(-1)
    if y_true.dtype != torch.long:
        y_true = y_true.long()
    rows = logits.shape[:-1]
    return y_true if y_true.shape == rows else y_true.expand(rows)


def forward_values(logits: torch.Tensor, index: torch.Tensor):
    """``(loss (P, B), probabilities (P, B, K), saved)``; ``saved`` is what
    :func:`backward_values` takes."""
    # The layer's own softmax, contiguous: its sum along the classes is then the
    # unfused path's, bit for bit (and metrics' argmax runs along rows).
    probs = activations.softmax(logits)
    picked = index.unsqueeze(-1)
    p = probs.gather(-1, picked).squeeze(-1) / probs.sum(dim=-1)
    clipped = torch.clamp(p, EPSILON, 1.0 - EPSILON)
    loss = -torch.log(clipped)
    return loss, probs, (probs, index, picked, p, clipped)


def backward_values(saved, grad_loss: torch.Tensor) -> torch.Tensor:
    """The gradient with respect to the logits, given the loss's ``grad_loss`` (P, B): by
    the native kernel where it takes the case (the same bits, one pass), else by torch
    (also under ``create_graph``, whose gradient must itself be differentiable)."""
    probs, index, picked, p, clipped = saved
    if not torch.is_grad_enabled():
        grad = native_crossentropy.backward(probs, index, p, clipped, grad_loss)
        if grad is not None:
            return grad
    inside = clipped == p  # within the clip's bounds, the bounds included (NaN: not)
    coef = torch.where(inside, grad_loss, 0.0).unsqueeze(-1)  # (P, B, 1)
    grad = probs * coef
    grad.scatter_add_(-1, picked, -coef)
    return grad


class _SoftmaxCrossentropy(torch.autograd.Function):
    """``(logits (P, B, K), labels (P, B)) -> (loss (P, B), probabilities (P, B, K))``."""

    @staticmethod
    def forward(ctx, logits, index):
        loss, probs, saved = forward_values(logits, index)
        ctx.save_for_backward(*saved)
        ctx.mark_non_differentiable(probs)
        ctx.set_materialize_grads(False)  # no zeros made for the probabilities' gradient
        return loss, probs

    @staticmethod
    def backward(ctx, grad_loss, grad_probs):
        return backward_values(ctx.saved_tensors, grad_loss), None
