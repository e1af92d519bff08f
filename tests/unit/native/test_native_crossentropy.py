"""The fused softmax + crossentropy's gradient by the native kernel: the torch path's bits
(softmax_crossentropy.backward_values with the kernels off) for every member, clipped
samples, NaN and infinite probabilities, negative and infinite incoming gradients, labels
and gradients read through expanded rows; cases it does not take fall back to torch."""

from __future__ import annotations

import pytest
import torch

from reglab import native
from reglab.engine import softmax_crossentropy
from reglab.losses import SparseCategoricalCrossentropy
from reglab.native import crossentropy as native_crossentropy


@pytest.fixture
def kernels(monkeypatch):
    monkeypatch.setenv("REGLAB_NATIVE", "1")
    if native.library() is None:
        pytest.skip("no C compiler: the native kernels are not built here")


def _saved(members=3, batch=13, classes=7, shared_labels=False):
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(members, batch, classes, generator=g) * 6
    labels = torch.randint(0, classes, (1 if shared_labels else members, batch), generator=g)
    logits[0, 0, labels[0, 0]] = -80.0  # p below the clip's lower bound
    logits[-1, 1, labels[-1, 1]] = 80.0  # above its upper bound
    index = softmax_crossentropy.hard_labels(labels, logits)
    _, _, saved = softmax_crossentropy.forward_values(logits, index)
    probs, index, picked, p, clipped = saved
    probs[1, 2, 0] = float("nan")  # a NaN probability, an infinite one
    p[1, 2] = float("nan")
    probs[2, 3, 1] = float("inf")
    return saved


def _torch_path(saved, grad_loss, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setenv("REGLAB_NATIVE", "0")
        return softmax_crossentropy.backward_values(saved, grad_loss)


@pytest.mark.parametrize("shared_labels", [False, True])
@pytest.mark.parametrize("grad_kind", ["mean", "per_sample", "odd"])
def test_the_torch_paths_bits(kernels, monkeypatch, shared_labels, grad_kind):
    saved = _saved(shared_labels=shared_labels)
    members, batch = saved[3].shape
    if grad_kind == "mean":  # the engine's mean: one value per member, expanded over the batch
        grad_loss = (torch.tensor([1.0, 2.5, -0.5]) / batch).unsqueeze(-1).expand(members, batch)
    else:
        grad_loss = torch.randn(members, batch, generator=torch.Generator().manual_seed(5))
        if grad_kind == "odd":
            grad_loss[0, 4:7] = torch.tensor([float("inf"), -float("inf"), float("nan")])
            grad_loss[1, 5] = -0.0
    calls = []
    real = native_crossentropy.backward
    monkeypatch.setattr(native_crossentropy, "backward",
                        lambda *a: calls.append(r := real(*a)) or r)
    with torch.no_grad():  # as a training step runs it
        mine = softmax_crossentropy.backward_values(saved, grad_loss)
    assert calls and calls[0] is not None, "the kernel did not take the case"
    theirs = _torch_path(saved, grad_loss, monkeypatch)
    assert mine.shape == theirs.shape and mine.is_contiguous()
    assert torch.equal(mine.view(torch.int32), theirs.view(torch.int32))
    # the clip's samples get no gradient, as clamp's
    assert torch.all(mine[0, 0] == 0) and torch.all(mine[-1, 1] == 0)


def test_cases_it_does_not_take(kernels):
    saved = _saved()
    probs, index, picked, p, clipped = saved
    grad_loss = torch.ones(p.shape)
    assert native_crossentropy.backward(probs.double(), index, p.double(), clipped.double(),
                                        grad_loss.double()) is None
    assert native_crossentropy.backward(probs.transpose(0, 1), index, p, clipped,
                                        grad_loss) is None
    assert native_crossentropy.backward(probs, index.int(), p, clipped, grad_loss) is None
    assert native_crossentropy.backward(probs, index[:, :2], p, clipped, grad_loss) is None
    strided = torch.empty(p.shape[::-1]).t().copy_(p)  # p's values, not in row order
    assert native_crossentropy.backward(probs, index, strided, clipped, grad_loss) is None
    assert native_crossentropy.backward(probs, index, p, strided, grad_loss) is None
    wrong = index.clone()
    wrong[2, 5] = probs.shape[2]  # a label past the classes: nothing written, torch's path
    assert native_crossentropy.backward(probs, wrong, p, clipped, grad_loss) is None
    wrong[2, 5] = -1
    assert native_crossentropy.backward(probs, wrong, p, clipped, grad_loss) is None


def test_without_the_kernels_the_torch_path_runs(monkeypatch):
    monkeypatch.setenv("REGLAB_NATIVE", "0")
    saved = _saved()
    grad = softmax_crossentropy.backward_values(saved, torch.ones(saved[3].shape))
    assert grad.shape == saved[0].shape


def test_a_gradient_of_the_gradient_takes_the_torch_path(kernels):
    """Under ``create_graph`` the gradient must itself be differentiable: the kernel's is not,
    so torch's operations run, and the second backward sees ``w`` through them."""
    torch.manual_seed(0)
    logits = torch.randn(1, 8, 5, requires_grad=True)
    w = torch.tensor(2.0, requires_grad=True)
    labels = torch.randint(0, 5, (1, 8))
    per_sample, _ = softmax_crossentropy.loss_and_predictions(SparseCategoricalCrossentropy(),
                                                              labels, logits)
    (grad,) = torch.autograd.grad((per_sample * w).sum(), logits, create_graph=True)
    assert grad.requires_grad
    (grad ** 2).sum().backward()
    # d/dw sum((w * g1)^2) = 2 w sum(g1^2), g1 the gradient of the unweighted loss
    (g1,) = torch.autograd.grad(per_sample.sum(), logits, retain_graph=False)
    torch.testing.assert_close(w.grad, 2 * w.detach() * (g1 ** 2).sum())
