"""Parity of the optimizer paths the other parity tests do not reach.

The reference is Keras's update rules written here in plain torch (float64), on one Dense
softmax layer: the fused Adam kernel that every one-member model takes (all members
sharing hyperparameters), amsgrad over many steps, RMSprop with ``centered=True`` and with
momentum, and the proximal L1 step's size under RMSprop and Adam. Each test also checks
that its reference would notice the thing it guards (a doubled learning rate, a missing
maximum, an uncentred denominator).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from references import keras_sparse_crossentropy
from reglab.engine import Member, Population
from reglab.layers import Dense
from reglab.models import Sequential
from reglab.optimizers import Adam, RMSprop
from reglab.regularizers import ProximalL1

F64 = torch.float64
FEATURES, CLASSES = 6, 3


def data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, FEATURES))
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)
    return x, y


def gradients(weights, xb, yb):
    """The data loss's gradients for a Dense softmax layer, in float64."""
    kernel = torch.as_tensor(weights[(0, "kernel")], dtype=F64).clone().requires_grad_(True)
    bias = torch.as_tensor(weights[(0, "bias")], dtype=F64).clone().requires_grad_(True)
    probs = torch.softmax(torch.as_tensor(xb, dtype=F64) @ kernel + bias, dim=-1)
    keras_sparse_crossentropy(probs, torch.as_tensor(yb)).mean().backward()
    return {(0, "kernel"): kernel.grad, (0, "bias"): bias.grad}


def keras_adam(weights, batches, lr, amsgrad=False, b1=0.9, b2=0.999, eps=1e-7):
    w = {k: torch.as_tensor(v, dtype=F64).clone() for k, v in weights.items()}
    m = {k: torch.zeros_like(v) for k, v in w.items()}
    v = {k: torch.zeros_like(t) for k, t in w.items()}
    v_hat = {k: torch.zeros_like(t) for k, t in w.items()}
    for t, (xb, yb) in enumerate(batches, start=1):
        grads = gradients(w, xb, yb)
        alpha = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        for k in w:
            m[k] += (grads[k] - m[k]) * (1 - b1)
            v[k] += (grads[k] ** 2 - v[k]) * (1 - b2)
            v_hat[k] = torch.maximum(v_hat[k], v[k])
            w[k] -= alpha * m[k] / ((v_hat[k] if amsgrad else v[k]).sqrt() + eps)
    return w


def keras_rmsprop(weights, batches, lr, rho=0.9, momentum=0.0, centered=False, eps=1e-7,
                  proximal_l1=0.0):
    w = {k: torch.as_tensor(v, dtype=F64).clone() for k, v in weights.items()}
    vel = {k: torch.zeros_like(t) for k, t in w.items()}
    avg = {k: torch.zeros_like(t) for k, t in w.items()}
    mom = {k: torch.zeros_like(t) for k, t in w.items()}
    for xb, yb in batches:
        grads = gradients(w, xb, yb)
        for k in w:
            g = grads[k]
            vel[k] = rho * vel[k] + (1 - rho) * g**2
            denominator = vel[k] + eps
            if centered:
                avg[k] = rho * avg[k] + (1 - rho) * g
                denominator = vel[k] - avg[k] ** 2 + eps
            mom[k] = momentum * mom[k] + lr * g / denominator.sqrt()
            w[k] -= mom[k]
            if proximal_l1 and k[1] == "kernel":  # soft threshold, step lr / sqrt(denominator)
                threshold = lr / denominator.sqrt() * proximal_l1
                w[k] = torch.sign(w[k]) * torch.clamp(w[k].abs() - threshold, min=0.0)
    return w


def batches_of(x, y, size):
    return [(x[i:i + size], y[i:i + size]) for i in range(0, len(x), size)]


def assert_weights(actual, expected, rtol, atol=0.0):
    for key, value in expected.items():
        np.testing.assert_allclose(np.asarray(actual[key], dtype=np.float64), value.numpy(),
                                   rtol=rtol, atol=atol, err_msg=str(key))


def test_a_one_member_sequential_takes_the_fused_adam_path_with_keras_numbers():
    x, y = data()
    model = Sequential([Dense(CLASSES, activation="softmax", input_shape=(FEATURES,))], seed=3)
    model.compile(optimizer=Adam(0.01), loss="sparse_categorical_crossentropy")
    initial = dict(zip([(0, "kernel"), (0, "bias")], model.get_weights()))
    model.fit(x.astype("float32"), y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    batches = batches_of(x.astype("float32"), y, 8) * 2
    expected = keras_adam(initial, batches, lr=0.01)
    actual = dict(zip([(0, "kernel"), (0, "bias")], model.get_weights()))
    assert_weights(actual, expected, rtol=2e-4, atol=2e-6)
    doubled = keras_adam(initial, batches, lr=0.02)  # what a doubled rate would give
    assert np.abs(doubled[(0, "kernel")].numpy() - actual[(0, "kernel")]).max() > 1e-3


@pytest.mark.parametrize("amsgrad", [False, True])
def test_amsgrad_keeps_the_largest_second_moment_over_many_steps(amsgrad):
    x, y = data(48)
    # A large then small gradient scale, so that v falls below its past maximum.
    x = np.concatenate([x[:24] * 8, x[24:] * 0.2])
    members = [Member([Dense(CLASSES, activation="softmax", input_shape=(FEATURES,))],
                      Adam(0.05, amsgrad=amsgrad), seed=seed) for seed in (0, 1)]
    population = Population(members, dtype=F64)
    initial = [population.member_weights(m) for m in (0, 1)]
    population.fit(x, y, batch_size=4, epochs=3, shuffle=False)
    batches = batches_of(x, y, 4) * 3
    for m in (0, 1):
        expected = keras_adam(initial[m], batches, lr=0.05, amsgrad=amsgrad)
        assert_weights(population.member_weights(m), expected, rtol=1e-9, atol=1e-12)
    other = keras_adam(initial[0], batches, lr=0.05, amsgrad=not amsgrad)
    assert np.abs(other[(0, "kernel")].numpy()
                  - population.member_weights(0)[(0, "kernel")].numpy()).max() > 1e-4


@pytest.mark.parametrize("centered,momentum", [(True, 0.0), (True, 0.5), (False, 0.5)])
def test_rmsprop_centered_and_momentum(centered, momentum):
    x, y = data(32)
    members = [Member([Dense(CLASSES, activation="softmax", input_shape=(FEATURES,))],
                      RMSprop(lr, momentum=momentum, centered=centered), seed=0)
               for lr in (0.01, 0.003)]
    population = Population(members, dtype=F64)
    initial = population.member_weights(0)
    population.fit(x, y, batch_size=8, epochs=2, shuffle=False)
    batches = batches_of(x, y, 8) * 2
    for m, lr in enumerate((0.01, 0.003)):
        expected = keras_rmsprop(initial, batches, lr, momentum=momentum, centered=centered)
        assert_weights(population.member_weights(m), expected, rtol=1e-9, atol=1e-12)
    if centered:
        uncentred = keras_rmsprop(initial, batches, 0.01, momentum=momentum, centered=False)
        assert np.abs(uncentred[(0, "kernel")].numpy()
                      - population.member_weights(0)[(0, "kernel")].numpy()).max() > 1e-5


@pytest.mark.parametrize("centered", [False, True])
def test_proximal_l1_step_size_under_rmsprop(centered):
    x, y = data(16)
    strengths = (3.0, 0.0)
    members = [Member([Dense(CLASSES, activation="softmax", input_shape=(FEATURES,),
                             kernel_regularizer=ProximalL1(s))],
                      RMSprop(0.01, centered=centered), seed=0) for s in strengths]
    population = Population(members, dtype=F64)
    initial = population.member_weights(0)
    population.fit(x, y, batch_size=8, epochs=2, shuffle=False)
    batches = batches_of(x, y, 8) * 2
    for m, strength in enumerate(strengths):
        expected = keras_rmsprop(initial, batches, 0.01, centered=centered,
                                 proximal_l1=strength)
        actual = population.member_weights(m)
        assert_weights(actual, expected, rtol=1e-9, atol=1e-12)
        zeros = (actual[(0, "kernel")] == 0).numpy()
        np.testing.assert_array_equal(zeros, expected[(0, "kernel")].numpy() == 0)
    assert (population.member_weights(0)[(0, "kernel")] == 0).any()  # it does make zeros


def test_proximal_l1_step_size_under_adam():
    x, y = data(8)
    member = Member([Dense(CLASSES, activation="softmax", input_shape=(FEATURES,),
                           kernel_regularizer=ProximalL1(0.2))], Adam(0.01), seed=0)
    population = Population([member], dtype=F64)
    initial = {k: v.clone() for k, v in population.member_weights(0).items()}
    population.fit(x, y, batch_size=8, epochs=1, shuffle=False)
    grads = gradients(initial, x, y)
    alpha = 0.01 * math.sqrt(1 - 0.999) / (1 - 0.9)
    m, v = grads[(0, "kernel")] * 0.1, grads[(0, "kernel")] ** 2 * 0.001
    stepped = initial[(0, "kernel")] - alpha * m / (v.sqrt() + 1e-7)
    threshold = alpha / (v.sqrt() + 1e-7) * 0.2
    expected = torch.sign(stepped) * torch.clamp(stepped.abs() - threshold, min=0.0)
    np.testing.assert_allclose(population.member_weights(0)[(0, "kernel")].numpy(),
                               expected.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("stacked", [False, True], ids=["member_slices", "stacked_tensors"])
def test_fused_adam_on_a_population_member_slices_and_stacked(monkeypatch, stacked):
    """Members sharing their hyperparameters take one fused call: on their own slices on a
    CPU, on the stacked tensors on CUDA (forced here); either way each member follows
    Keras's rule."""
    from reglab.optimizers import optimizers as optimizers_module
    monkeypatch.setattr(optimizers_module, "_fuses_stacked", lambda device: stacked)
    calls = []
    fused_call = Adam._fused_call
    monkeypatch.setattr(Adam, "_fused_call",
                        lambda self, params, *rest: (calls.append(len(params)),
                                                     fused_call(self, params, *rest)))
    x, y = data(32)
    members = [Member([Dense(CLASSES, activation="softmax", input_shape=(FEATURES,))],
                      Adam(0.02), seed=seed) for seed in (0, 1, 2)]
    population = Population(members, dtype=F64)
    initial = [population.member_weights(m) for m in range(3)]
    population.fit(x, y, batch_size=8, epochs=2, shuffle=False)
    assert set(calls) == {2 if stacked else 2 * 3}  # kernel and bias, stacked or per member
    batches = batches_of(x, y, 8) * 2
    for m in range(3):
        expected = keras_adam(initial[m], batches, lr=0.02)
        assert_weights(population.member_weights(m), expected, rtol=1e-9, atol=1e-12)


def keras_adam_penalized(weights, batches, lr, l1=0.0, l2=0.0, bias_l2=0.0, weight_decay=0.0,
                         b1=0.9, b2=0.999, eps=1e-7):
    """Keras's Adam on the data loss plus ``l1 * sum|kernel| + l2 * sum(kernel**2) +
    bias_l2 * sum(bias**2)``, with decoupled weight decay on every weight before the step."""
    w = {k: torch.as_tensor(v, dtype=F64).clone() for k, v in weights.items()}
    m = {k: torch.zeros_like(t) for k, t in w.items()}
    v = {k: torch.zeros_like(t) for k, t in w.items()}
    for t, (xb, yb) in enumerate(batches, start=1):
        grads = gradients(w, xb, yb)
        grads[(0, "kernel")] += l1 * torch.sign(w[(0, "kernel")]) + 2 * l2 * w[(0, "kernel")]
        grads[(0, "bias")] += 2 * bias_l2 * w[(0, "bias")]
        alpha = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        for k in w:
            w[k] -= w[k] * weight_decay * lr
            m[k] += (grads[k] - m[k]) * (1 - b1)
            v[k] += (grads[k] ** 2 - v[k]) * (1 - b2)
            w[k] -= alpha * m[k] / (v[k].sqrt() + eps)
    return w


def spy_coupled_decay(monkeypatch) -> list[float]:
    """The coupled-decay coefficient of every fused Adam call, in order."""
    coefficients = []
    fused_call = Adam._fused_call
    monkeypatch.setattr(Adam, "_fused_call",
                        lambda self, params, grads, slots, hyper, decay: (
                            coefficients.append(decay),
                            fused_call(self, params, grads, slots, hyper, decay)))
    return coefficients


PENALIZED = [  # (l1, l2 on the kernel, l2 on the bias)
    (0.0, 0.0, 0.0), (0.0, 0.05, 0.0), (0.01, 0.02, 0.03), (0.02, 0.0, 0.0), (0.0, 0.05, 0.1)]


@pytest.mark.parametrize("weight_decay", [0.0, 0.1], ids=["coupled", "with_decoupled_decay"])
def test_adam_takes_the_l2_gradient_in_its_fused_kernel_with_keras_numbers(monkeypatch,
                                                                          weight_decay):
    """On a CPU the fused Adam kernel adds L2's ``2 * l2 * w`` itself (torch's coupled
    weight decay), after L1's part, as Keras's gradient of the penalized loss; with
    Keras's decoupled weight decay, which shrinks the weights in between, it does not."""
    from reglab.regularizers import L1L2, l2

    coefficients = spy_coupled_decay(monkeypatch)
    x, y = data(32)
    members = [Member([Dense(CLASSES, activation="softmax", input_shape=(FEATURES,),
                             kernel_regularizer=L1L2(a, b) if a or b else None,
                             bias_regularizer=l2(c) if c else None)],
                      Adam(0.02, weight_decay=weight_decay or None), seed=i)
               for i, (a, b, c) in enumerate(PENALIZED)]
    population = Population(members, dtype=F64)
    initial = [population.member_weights(m) for m in range(len(members))]
    population.fit(x, y, batch_size=8, epochs=2, shuffle=False)
    expected_folded = {0.0} if weight_decay else {0.0, 0.1, 0.04, 0.06, 0.2}
    assert set(coefficients) == expected_folded
    batches = batches_of(x, y, 8) * 2
    for i, (a, b, c) in enumerate(PENALIZED):
        expected = keras_adam_penalized(initial[i], batches, lr=0.02, l1=a, l2=b, bias_l2=c,
                                        weight_decay=weight_decay)
        assert_weights(population.member_weights(i), expected, rtol=1e-9, atol=1e-12)
    # the reference notices a missing L2 gradient
    wrong = keras_adam_penalized(initial[1], batches, lr=0.02, weight_decay=weight_decay)
    with pytest.raises(AssertionError):
        assert_weights(population.member_weights(1), wrong, rtol=1e-9, atol=1e-12)


def test_a_subclass_whose_add_gradient_keeps_the_old_signature_keeps_its_l2(monkeypatch):
    """An ``L2`` subclass that overrides ``add_gradient(grad, w, values)`` (without
    ``include_decay``) still gets its whole gradient: nothing is folded into Adam."""
    from reglab.regularizers import L2
    from reglab.regularizers.penalty import add_penalty_gradient_

    class MyL2(L2):
        def add_gradient(self, grad, w, values):
            add_penalty_gradient_(grad, w, values["l1"], values["l2"])

    coefficients = spy_coupled_decay(monkeypatch)
    x, y = data(32)
    member = Member([Dense(CLASSES, activation="softmax", input_shape=(FEATURES,),
                           kernel_regularizer=MyL2(0.05))], Adam(0.02), seed=0)
    population = Population([member], dtype=F64)
    initial = population.member_weights(0)
    population.fit(x, y, batch_size=8, epochs=1, shuffle=False)
    assert set(coefficients) == {0.0}
    expected = keras_adam_penalized(initial, batches_of(x, y, 8), lr=0.02, l2=0.05)
    assert_weights(population.member_weights(0), expected, rtol=1e-9, atol=1e-12)
