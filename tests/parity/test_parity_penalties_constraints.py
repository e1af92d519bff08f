"""Parity in float64: penalties, proximal L1 and constraints inside the engine, vs closed forms.

Closed forms written here: Keras's ``l1 * sum|w| + l2 * sum(w**2)``; the activity penalty
``(l1 * sum|a| + l2 * sum(a**2)) / batch_size``; the proximal step
``sign(w) * max(|w| - eta * l1, 0)``; Keras's constraints with ``epsilon = 1e-7``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from references import keras_sparse_crossentropy
from reglab.constraints import MaxNorm, MinMaxNorm, NonNeg, UnitNorm
from reglab.engine import Member, Population
from reglab.layers import Conv2D, Dense, Flatten
from reglab.optimizers.optimizers import SGD, Adam
from reglab.regularizers import l1, l1_l2, l2, proximal_l1

F64 = torch.float64
KERAS_EPSILON = 1e-7






def np_penalty(w, a, b):
    w = np.asarray(w, dtype=np.float64)
    return a * np.abs(w).sum() + b * np.square(w).sum()


def data(n, features, classes, seed=0):
    rng = np.random.default_rng(seed)
    return (torch.tensor(rng.normal(size=(n, features)), dtype=F64),
            torch.tensor(rng.integers(0, classes, size=n), dtype=torch.long))


# -- penalties in the logs ---------------------------------------------------------------------
PENALTY_MEMBERS = [  # kernel0 (l1, l2), bias0 l2, activity (l1, l2), kernel1 l1
    ((0.01, 0.02), 0.03, (0.004, 0.005), 0.006),
    ((0.0, 0.1), 0.0, (0.0, 0.02), 0.0),
    ((0.05, 0.0), 0.2, (0.03, 0.0), 0.07),
]


def penalty_population():
    members = [Member([
        Dense(5, activation="relu", input_shape=(4,), bias_initializer="he_uniform",
              kernel_regularizer=l1_l2(*k0), bias_regularizer=l2(b0) if b0 else None,
              activity_regularizer=l1_l2(*act)),
        Dense(3, activation="softmax", kernel_regularizer=l1(k1) if k1 else None),
    ], optimizer=SGD(0.1), seed=i) for i, (k0, b0, act, k1) in enumerate(PENALTY_MEMBERS)]
    return Population(members, dtype=F64)


def expected_logs(weights, member, x, y):
    """(data loss, weight penalty, activity sum) of one member on all of ``x``."""
    (k0, b0, act, k1) = member
    hidden = torch.relu(x @ weights[(0, "kernel")] + weights[(0, "bias")])
    probs = torch.softmax(hidden @ weights[(1, "kernel")] + weights[(1, "bias")], dim=-1)
    data_loss = float(keras_sparse_crossentropy(probs, y).mean())
    weight_penalty = (np_penalty(weights[(0, "kernel")], *k0)
                      + np_penalty(weights[(0, "bias")], 0.0, b0)
                      + np_penalty(weights[(1, "kernel")], k1, 0.0))
    activity = np_penalty(hidden, *act)
    return data_loss, weight_penalty, activity


def test_evaluate_reports_weight_and_activity_penalties_per_member():
    """Activity penalties are divided by each batch's size: over batches they sum to sum/N."""
    x, y = data(20, 4, 3)
    pop = penalty_population()
    logs = pop.evaluate(x, y, batch_size=7)  # batches of 7, 7 and 6
    for i, member in enumerate(PENALTY_MEMBERS):
        data_loss, weight_penalty, activity = expected_logs(pop.member_weights(i), member, x, y)
        penalty = weight_penalty + activity / 20
        assert penalty > 0
        np.testing.assert_allclose(logs[i]["data_loss"], data_loss, rtol=1e-12)
        np.testing.assert_allclose(logs[i]["penalty"], penalty, rtol=1e-12)
        np.testing.assert_allclose(logs[i]["loss"], data_loss + penalty, rtol=1e-12)


def test_training_step_penalty_and_gradient_match_keras_objective():
    """One step on one batch: the logged penalty and the update follow Keras's objective."""
    x, y = data(8, 4, 3, seed=1)
    pop = penalty_population()
    initial = [pop.member_weights(i) for i in range(3)]
    result = pop.fit(x, y, batch_size=8, epochs=1, shuffle=False)
    for i, member in enumerate(PENALTY_MEMBERS):
        data_loss, weight_penalty, activity = expected_logs(initial[i], member, x, y)
        history = result.members[i].history
        np.testing.assert_allclose(history["penalty"], [weight_penalty + activity / 8], rtol=1e-12)
        np.testing.assert_allclose(history["loss"], [data_loss + weight_penalty + activity / 8],
                                   rtol=1e-12)
        w = {k: v.clone().requires_grad_(True) for k, v in initial[i].items()}
        (k0, b0, act, k1) = member
        hidden = torch.relu(x @ w[(0, "kernel")] + w[(0, "bias")])
        probs = torch.softmax(hidden @ w[(1, "kernel")] + w[(1, "bias")], dim=-1)
        objective = (keras_sparse_crossentropy(probs, y).mean()
                     + k0[0] * w[(0, "kernel")].abs().sum() + k0[1] * w[(0, "kernel")].square().sum()
                     + b0 * w[(0, "bias")].square().sum()
                     + (act[0] * hidden.abs().sum() + act[1] * hidden.square().sum()) / 8
                     + k1 * w[(1, "kernel")].abs().sum())
        objective.backward()
        actual = pop.member_weights(i)
        for key, value in w.items():
            np.testing.assert_allclose(actual[key].numpy(), (value - 0.1 * value.grad).detach().numpy(),
                                       rtol=1e-12, atol=1e-14, err_msg=f"member {i} {key}")


# -- proximal L1 ----------------------------------------------------------------------------------
def soft_threshold_np(w, t):
    return np.sign(w) * np.maximum(np.abs(w) - t, 0.0)


def single_dense_grads(weights, x, y, l2_strength):
    w = {k: v.clone().requires_grad_(True) for k, v in weights.items()}
    probs = torch.softmax(x @ w[(0, "kernel")] + w[(0, "bias")], dim=-1)
    loss = keras_sparse_crossentropy(probs, y).mean() + l2_strength * w[(0, "kernel")].square().sum()
    loss.backward()
    return {k: v.grad.numpy() for k, v in w.items()}


PROXIMAL_MEMBERS = [(0.05, 0.0, 0.5), (0.2, 0.01, 0.2), (0.0, 0.0, 0.3)]  # (l1, l2, lr)


def test_proximal_l1_sgd_step_is_a_soft_threshold():
    x, y = data(16, 6, 3, seed=2)
    members = [Member([Dense(3, activation="softmax", input_shape=(6,),
                             kernel_regularizer=proximal_l1(a, b))], optimizer=SGD(lr), seed=0)
               for a, b, lr in PROXIMAL_MEMBERS]
    pop = Population(members, dtype=F64)
    initial = [pop.member_weights(i) for i in range(3)]
    result = pop.fit(x, y, batch_size=16, epochs=1, shuffle=False)
    for i, (a, b, lr) in enumerate(PROXIMAL_MEMBERS):
        grads = single_dense_grads(initial[i], x, y, b)  # the L1 part is not in the gradient
        w0 = initial[i][(0, "kernel")].numpy()
        expected = soft_threshold_np(w0 - lr * grads[(0, "kernel")], lr * a)
        actual = pop.member_weights(i)[(0, "kernel")].numpy()
        np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(actual == 0, expected == 0)
        np.testing.assert_allclose(result.members[i].history["penalty"],
                                   [np_penalty(w0, a, b)], rtol=1e-12)
    assert (pop.member_weights(1)[(0, "kernel")] == 0).any()  # the threshold bites


def test_proximal_l1_adam_step_thresholds_by_the_per_weight_step_size():
    """eta = alpha / (sqrt(v) + eps) with alpha = lr * sqrt(1 - b2^t) / (1 - b1^t)."""
    x, y = data(16, 6, 3, seed=3)
    l1_strengths, lr = (0.0005, 0.002), 0.01
    members = [Member([Dense(3, activation="softmax", input_shape=(6,),
                             kernel_regularizer=proximal_l1(a))], optimizer=Adam(lr), seed=1)
               for a in l1_strengths]
    pop = Population(members, dtype=F64)
    initial = [pop.member_weights(i) for i in range(2)]
    pop.fit(x, y, batch_size=16, epochs=1, shuffle=False)
    for i, a in enumerate(l1_strengths):
        g = single_dense_grads(initial[i], x, y, 0.0)[(0, "kernel")]
        m, v = 0.1 * g, 0.001 * g * g
        alpha = lr * math.sqrt(1 - 0.999) / (1 - 0.9)
        eta = alpha / (np.sqrt(v) + 1e-7)
        w1 = initial[i][(0, "kernel")].numpy() - eta * m
        expected = soft_threshold_np(w1, eta * a)
        np.testing.assert_allclose(pop.member_weights(i)[(0, "kernel")].numpy(), expected,
                                   rtol=1e-12, atol=1e-15)


def test_proximal_l1_gives_exact_zeros_where_plain_l1_gives_none():
    x, y = data(64, 10, 3, seed=4)
    members = [Member([Dense(8, activation="relu", input_shape=(10,), kernel_regularizer=reg),
                       Dense(3, activation="softmax")], optimizer=SGD(0.1), seed=0)
               for reg in (l1(0.05), proximal_l1(0.05))]
    pop = Population(members, dtype=F64)
    pop.fit(x, y, batch_size=16, epochs=8, shuffle=False)
    plain, proximal = (pop.member_weights(i)[(0, "kernel")] for i in range(2))
    assert int((plain == 0).sum()) == 0
    assert int((proximal == 0).sum()) >= 10
    # Both penalize the same way: the proximal kernel is the smaller one in L1 norm.
    assert float(proximal.abs().sum()) < float(plain.abs().sum())


# -- constraints --------------------------------------------------------------------------------
def np_norms(w, axis):
    return np.sqrt(np.sum(np.square(w), axis=axis, keepdims=True))


def np_max_norm(w, max_value, axis=0):
    norms = np_norms(w, axis)
    return w * (np.clip(norms, 0, max_value) / (KERAS_EPSILON + norms))


def np_unit_norm(w, axis=0):
    return w / (KERAS_EPSILON + np_norms(w, axis))


def np_min_max_norm(w, min_value, max_value, rate, axis=0):
    norms = np_norms(w, axis)
    desired = rate * np.clip(norms, min_value, max_value) + (1 - rate) * norms
    return w * (desired / (KERAS_EPSILON + norms))


def np_non_neg(w):
    return w * (w >= 0)


CONSTRAINTS = {
    "max_norm": ([MaxNorm(0.3), MaxNorm(0.6, axis=0), MaxNorm(0.8)],
                 [lambda w: np_max_norm(w, 0.3), lambda w: np_max_norm(w, 0.6),
                  lambda w: np_max_norm(w, 0.8)]),
    "max_norm_axis_1": ([MaxNorm(0.4, axis=1), MaxNorm(0.7, axis=1), MaxNorm(0.1, axis=1)],
                        [lambda w: np_max_norm(w, 0.4, 1), lambda w: np_max_norm(w, 0.7, 1),
                         lambda w: np_max_norm(w, 0.1, 1)]),
    "unit_norm": ([UnitNorm(), UnitNorm(), UnitNorm()], [np_unit_norm] * 3),
    "min_max_norm": ([MinMaxNorm(0.5, 0.8, 1.0), MinMaxNorm(0.9, 1.5, 0.5),
                      MinMaxNorm(0.0, 0.2, 0.25)],
                     [lambda w: np_min_max_norm(w, 0.5, 0.8, 1.0),
                      lambda w: np_min_max_norm(w, 0.9, 1.5, 0.5),
                      lambda w: np_min_max_norm(w, 0.0, 0.2, 0.25)]),
    "non_neg": ([NonNeg(), NonNeg(), NonNeg()], [np_non_neg] * 3),
}


@pytest.mark.parametrize("name", CONSTRAINTS)
def test_dense_kernel_constraint_after_sgd_step(name):
    cons, formulas = CONSTRAINTS[name]
    x, y = data(16, 6, 3, seed=5)
    lrs = (0.5, 1.0, 2.0)
    members = [Member([Dense(3, activation="softmax", input_shape=(6,), kernel_constraint=c)],
                      optimizer=SGD(lr), seed=i) for i, (c, lr) in enumerate(zip(cons, lrs))]
    pop = Population(members, dtype=F64)
    initial = [pop.member_weights(i) for i in range(3)]
    pop.fit(x, y, batch_size=16, epochs=1, shuffle=False)
    for i, (formula, lr) in enumerate(zip(formulas, lrs)):
        g = single_dense_grads(initial[i], x, y, 0.0)[(0, "kernel")]
        stepped = initial[i][(0, "kernel")].numpy() - lr * g
        expected = formula(stepped)
        assert not np.allclose(expected, stepped), "the constraint must act in this test"
        np.testing.assert_allclose(pop.member_weights(i)[(0, "kernel")].numpy(), expected,
                                   rtol=1e-12, atol=1e-15, err_msg=f"member {i}")


def test_conv_kernel_max_norm_over_three_axes():
    """MaxNorm(axis=[0, 1, 2]) on a (kh, kw, in, out) kernel bounds each filter's norm."""
    rng = np.random.default_rng(6)
    x = torch.tensor(rng.normal(size=(8, 5, 5, 2)), dtype=F64)
    y = torch.tensor(rng.integers(0, 2, size=8), dtype=torch.long)
    limits = (0.2, 0.5)
    members = [Member([Conv2D(3, 3, input_shape=(5, 5, 2), kernel_constraint=MaxNorm(m, axis=[0, 1, 2])),
                       Flatten(), Dense(2, activation="softmax")], optimizer=SGD(1.0), seed=i)
               for i, m in enumerate(limits)]
    pop = Population(members, dtype=F64)
    initial = [pop.member_weights(i) for i in range(2)]
    pop.fit(x, y, batch_size=8, epochs=1, shuffle=False)
    for i, limit in enumerate(limits):
        w = {k: v.clone().requires_grad_(True) for k, v in initial[i].items()}
        z = torch.nn.functional.conv2d(x.permute(0, 3, 1, 2), w[(0, "kernel")].permute(3, 2, 0, 1),
                                       w[(0, "bias")])
        flat = z.permute(0, 2, 3, 1).reshape(8, -1)
        probs = torch.softmax(flat @ w[(2, "kernel")] + w[(2, "bias")], dim=-1)
        keras_sparse_crossentropy(probs, y).mean().backward()
        stepped = (w[(0, "kernel")] - w[(0, "kernel")].grad).detach().numpy()
        expected = np_max_norm(stepped, limit, axis=(0, 1, 2))
        actual = pop.member_weights(i)[(0, "kernel")].numpy()
        np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-15)
        assert np.all(np_norms(actual, (0, 1, 2)) <= limit + 1e-12)
