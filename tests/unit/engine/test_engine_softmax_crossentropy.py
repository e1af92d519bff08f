"""The fused softmax + sparse crossentropy of a training step (engine/softmax_crossentropy.py):
the same values as the layers' softmax and Keras's clipped loss, the gradient of autograd's
chain through them (written here in plain PyTorch), and used only where it applies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reglab import activations, mixed_precision
from reglab.engine import Member, Population
from reglab.engine import softmax_crossentropy as fused_module
from reglab.layers import Activation, Dense, Dropout, Flatten, RandomFlip
from reglab.losses import CategoricalCrossentropy, SparseCategoricalCrossentropy
from reglab.regularizers import L2


def reference(logits, labels, weights=None):
    """Keras's loss on the softmax layer's probabilities (the unfused path), written out:
    p = probs[y] / sum(probs), -log(clip(p, 1e-7, 1 - 1e-7)); returns (the mean over the
    batch (times the sample weights), per-sample losses, probabilities)."""
    probs = activations.softmax(logits)
    p = probs.gather(-1, labels.unsqueeze(-1)).squeeze(-1) / probs.sum(dim=-1)
    per_sample = -torch.log(torch.clamp(p, 1e-7, 1 - 1e-7))
    weighted = per_sample if weights is None else per_sample * weights
    return weighted.sum(dim=-1) / weighted.shape[-1], per_sample, probs


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("weighted", [False, True])
def test_values_and_gradient_match_autograds_chain(dtype, weighted):
    gen = torch.Generator().manual_seed(0)
    members, batch, classes = 3, 40, 10
    logits = torch.randn(members, batch, classes, generator=gen, dtype=dtype) * 4
    # Samples the clip holds: the labelled class far below (p < 1e-7) and far above
    # (p > 1 - 1e-7) every other class; its gradient is zero there, as clamp's.
    labels = torch.randint(0, classes, (members, batch), generator=gen)
    logits[0, 0, labels[0, 0]] = -60.0
    logits[1, 1, labels[1, 1]] = 60.0
    weights = torch.rand(1, batch, generator=gen, dtype=dtype) if weighted else None
    upstream = torch.tensor([1.0, 2.5, -0.5], dtype=dtype)  # members' loss weights

    mine = logits.clone().requires_grad_(True)
    per_sample, probs = fused_module.loss_and_predictions(SparseCategoricalCrossentropy(),
                                                          labels, mine)
    data_loss = per_sample * weights if weighted else per_sample
    (data_loss.sum(dim=-1) / batch * upstream).sum().backward()

    theirs = logits.clone().requires_grad_(True)
    expected_loss, expected_per_sample, expected_probs = reference(theirs, labels, weights)
    (expected_loss * upstream).sum().backward()

    torch.testing.assert_close(probs, expected_probs, rtol=0, atol=0)
    torch.testing.assert_close(per_sample, expected_per_sample.detach(), rtol=0, atol=0)
    torch.testing.assert_close(data_loss.sum(dim=-1) / batch, expected_loss.detach(),
                               rtol=0, atol=0)
    tol = 1e-6 if dtype == torch.float32 else 1e-13
    torch.testing.assert_close(mine.grad, theirs.grad, rtol=tol, atol=tol)
    assert torch.all(mine.grad[0, 0] == 0) and torch.all(mine.grad[1, 1] == 0)
    assert torch.any(theirs.grad[0, 1] != 0)


def test_soft_targets_take_the_losss_own_path():
    logits = torch.randn(2, 6, 4, requires_grad=True)
    soft = torch.softmax(torch.randn(2, 6, 4), dim=-1)
    per_sample, probs = fused_module.loss_and_predictions(SparseCategoricalCrossentropy(),
                                                          soft, logits)
    expected = -(soft * torch.log(torch.clamp(torch.softmax(logits, -1), 1e-7, 1 - 1e-7))
                 ).sum(-1)
    torch.testing.assert_close(per_sample, expected)
    torch.testing.assert_close(probs, torch.softmax(logits, -1))


def stack(last=None, **dense):
    layers = [Dense(16, activation="relu", input_shape=(6,)), Dropout(0.2)]
    layers += last if last is not None else [Dense(4, activation="softmax", **dense)]
    return layers


def plan_fuses(layers, loss="sparse_categorical_crossentropy"):
    population = Population([Member(layers, "adam", seed=0)], loss=loss)
    return fused_module.fuses(population.loss, population.plan)


def test_it_applies_to_a_softmax_output_with_the_sparse_loss_only():
    assert plan_fuses(stack())
    assert plan_fuses(stack([Dense(4), Activation("softmax")]))
    assert plan_fuses([RandomFlip("horizontal", input_shape=(4, 4, 1)), Flatten(),
                       Dense(4, activation="softmax")])
    assert not plan_fuses(stack([Dense(4, activation="sigmoid")]))
    # an activity penalty on the output is computed on the softmax of the logits
    assert plan_fuses(stack(activity_regularizer=L2(0.1)))
    assert not plan_fuses(stack(), loss=SparseCategoricalCrossentropy(from_logits=True))
    assert not plan_fuses(stack(), loss=SparseCategoricalCrossentropy(label_smoothing=0.1))
    assert not plan_fuses(stack(), loss=CategoricalCrossentropy())
    assert not plan_fuses(stack(dtype="mixed_bfloat16"))
    # every layer but the last in bfloat16 (a study's precision = "bfloat16"): it applies
    try:
        mixed_precision.set_global_policy("mixed_bfloat16")
        first = stack([])
    finally:
        mixed_precision.set_global_policy("float32")
    assert plan_fuses(first + [Dense(4, activation="softmax")])


def train(fused, monkeypatch, **fit):
    if not fused:
        monkeypatch.setattr(fused_module, "fuses", lambda *args: False)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(96, 6))
    y = rng.integers(0, 4, 96)
    members = [Member(stack(kernel_regularizer=L2(1e-3)), "adam", seed=s) for s in (0, 1)]
    population = Population(members, dtype=torch.float64)
    result = population.fit(x, y, batch_size=16, epochs=3, validation_data=(x[:32], y[:32]),
                            **fit)
    monkeypatch.undo()
    return population, result


@pytest.mark.parametrize("fit", [{}, {"sample_weight": np.linspace(0.2, 2.0, 96)}])
def test_a_population_trains_as_with_the_unfused_chain(monkeypatch, fit):
    calls = []
    real = fused_module.forward_values  # both training paths' (engine/direct_step.py)
    monkeypatch.setattr(fused_module, "forward_values", lambda *a: calls.append(1) or real(*a))
    fused_pop, fused = train(True, monkeypatch, **fit)
    assert calls, "the training step did not take the fused path"
    plain_pop, plain = train(False, monkeypatch, **fit)
    for mine, theirs in zip(fused.members, plain.members, strict=True):
        for key in theirs.history:
            np.testing.assert_allclose(mine.history[key], theirs.history[key], rtol=1e-10,
                                       err_msg=key)
    for member in range(2):
        for key, value in plain_pop.member_weights(member).items():
            np.testing.assert_allclose(fused_pop.member_weights(member)[key].numpy(),
                                       value.numpy(), rtol=1e-10, atol=1e-12)



class _TemperedDense(Dense):
    """A user's Dense with its own forward, which knows nothing of ``ctx.logits``."""

    def forward(self, x, weights, values, ctx, input_shape):
        return activations.softmax(x @ weights["kernel"] / 2.0 + weights["bias"].unsqueeze(1))


class _RenamedDense(Dense):
    pass


class _OptedOutDense(Dense):
    gives_logits = False


def test_a_subclass_with_its_own_forward_or_saying_so_is_not_fused():
    assert not plan_fuses(stack([_TemperedDense(4, activation="softmax")]))
    assert not plan_fuses(stack([_OptedOutDense(4, activation="softmax")]))
    assert plan_fuses(stack([_RenamedDense(4, activation="softmax")]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_an_output_activity_penalty_of_a_neighbour_changes_no_bit(dtype, monkeypatch):
    """The fusion is decided by the structure: a member beside one whose output layer has
    an activity penalty trains bit for bit as alone; the penalized one as unfused."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 6))
    y = rng.integers(0, 4, 64)

    def member(activity):
        return Member([Dense(16, activation="relu", input_shape=(6,)),
                       Dense(4, activation="softmax", activity_regularizer=activity)],
                      "adam", seed=0)

    def fit(members):
        population = Population(members, dtype=dtype)
        result = population.fit(x, y, batch_size=16, epochs=2)
        return population, result

    both, both_result = fit([member(None), member(L2(0.05))])
    alone, alone_result = fit([member(None)])
    assert both_result.members[0].history == alone_result.members[0].history
    for key, value in alone.member_weights(0).items():
        assert torch.equal(both.member_weights(0)[key], value), key
    if dtype == torch.float64:  # the penalized member: as the unfused chain computes it
        monkeypatch.setattr(fused_module, "fuses", lambda *args: False)
        unfused, unfused_result = fit([member(L2(0.05))])
        for key in unfused_result.members[0].history:
            np.testing.assert_allclose(both_result.members[1].history[key],
                                       unfused_result.members[0].history[key], rtol=1e-10)
        for key, value in unfused.member_weights(0).items():
            np.testing.assert_allclose(both.member_weights(1)[key].numpy(), value.numpy(),
                                       rtol=1e-10, atol=1e-13)
