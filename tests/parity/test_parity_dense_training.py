"""Parity: a Dense population against plain PyTorch models trained member by member.

The reference is written here, independently of reglab: ``nn.Linear`` layers holding
the same initial weights, Keras's crossentropy (``-log(clip(p / sum(p), 1e-7, 1 - 1e-7))``),
Keras's penalty (``l1 * sum|w| + l2 * sum(w**2)``) added to the batch-mean loss, and
Keras's optimizer update rules written out by hand. Every member of the population has
its own penalty strengths and learning rate; each must train exactly as its reference.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from references import keras_sparse_crossentropy
from reglab.engine import Member, Population
from reglab.layers import Dense
from reglab.optimizers.optimizers import SGD, Adam, AdamW, RMSprop
from reglab.regularizers import l1_l2

F32, F64 = torch.float32, torch.float64
KERAS_EPSILON = 1e-7
N_FEATURES, N_HIDDEN, N_CLASSES = 20, 8, 4

# Per member: kernel (l1, l2) of both layers, bias (l1, l2) of the first layer, learning
# rate and a second optimizer value (momentum, beta_1 or rho) that differs between members.
MEMBERS = [
    {"k0": (0.0, 0.01), "k1": (0.0, 0.0), "b0": (0.0, 0.0), "lr_scale": 1.0, "aux": 0},
    {"k0": (0.003, 0.0), "k1": (0.001, 0.02), "b0": (0.0, 0.05), "lr_scale": 0.5, "aux": 1},
    {"k0": (0.001, 0.03), "k1": (0.002, 0.0), "b0": (0.01, 0.0), "lr_scale": 2.0, "aux": 2},
]

# optimizer kind -> base learning rate (scaled per member by "lr_scale")
OPTIMIZERS = {
    "sgd": 0.1,
    "sgd_momentum": 0.05,
    "sgd_nesterov": 0.05,
    "adam": 0.01,
    "rmsprop": 0.005,
    "adamw": 0.01,
    "adamw_kernels": 0.01,
}
MOMENTA = (0.9, 0.5, 0.0)
BETA_1 = (0.9, 0.8, 0.95)
RHO = (0.9, 0.8, 0.95)




# -- the reference ----------------------------------------------------------------------
class KerasSGD:
    """``v = momentum * v - lr * g``; ``w += v``, or ``w += momentum * v - lr * g`` (Nesterov)."""

    def __init__(self, lr, momentum=0.0, nesterov=False):
        self.lr, self.momentum, self.nesterov = lr, momentum, nesterov
        self.velocity = {}

    def step(self, name, w, g, t, is_kernel):
        v = self.velocity.setdefault(name, torch.zeros_like(w))
        v.copy_(self.momentum * v - self.lr * g)
        if self.nesterov:
            w += self.momentum * v - self.lr * g
        else:
            w += v


class KerasAdam:
    """m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2); w -= alpha m / (sqrt(v) + eps)."""

    def __init__(self, lr, beta_1=0.9, beta_2=0.999, eps=1e-7, weight_decay=0.0,
                 kernels_only=False):
        self.lr, self.b1, self.b2, self.eps, self.wd = lr, beta_1, beta_2, eps, weight_decay
        self.kernels_only = kernels_only
        self.m, self.v = {}, {}

    def step(self, name, w, g, t, is_kernel):
        # AdamW: decoupled decay before the step, on every weight (Keras 3), or on the
        # kernels only after exclude_from_weight_decay(var_names=["bias"])
        if self.wd and (is_kernel or not self.kernels_only):
            w -= w * self.wd * self.lr
        m = self.m.setdefault(name, torch.zeros_like(w))
        v = self.v.setdefault(name, torch.zeros_like(w))
        m += (g - m) * (1 - self.b1)
        v += (g * g - v) * (1 - self.b2)
        alpha = self.lr * math.sqrt(1 - self.b2**t) / (1 - self.b1**t)
        w -= alpha * m / (torch.sqrt(v) + self.eps)


class KerasRMSprop:
    """v = rho v + (1 - rho) g^2; w -= lr g / sqrt(v + eps)."""

    def __init__(self, lr, rho=0.9, eps=1e-7):
        self.lr, self.rho, self.eps = lr, rho, eps
        self.v = {}

    def step(self, name, w, g, t, is_kernel):
        v = self.v.setdefault(name, torch.zeros_like(w))
        v.copy_(self.rho * v + (1 - self.rho) * g * g)
        w -= self.lr * g / torch.sqrt(v + self.eps)


def make_optimizers(kind: str, member: dict):
    """(reglab optimizer, reference optimizer) for one member."""
    lr = OPTIMIZERS[kind] * member["lr_scale"]
    aux = member["aux"]
    if kind == "sgd":
        return SGD(lr), KerasSGD(lr)
    if kind == "sgd_momentum":
        return SGD(lr, momentum=MOMENTA[aux]), KerasSGD(lr, MOMENTA[aux])
    if kind == "sgd_nesterov":
        return (SGD(lr, momentum=MOMENTA[aux], nesterov=True),
                KerasSGD(lr, MOMENTA[aux], nesterov=True))
    if kind == "adam":
        return Adam(lr, beta_1=BETA_1[aux]), KerasAdam(lr, beta_1=BETA_1[aux])
    if kind == "rmsprop":
        return RMSprop(lr, rho=RHO[aux]), KerasRMSprop(lr, rho=RHO[aux])
    if kind == "adamw":
        wd = (0.004, 0.1, 0.5)[aux]
        return AdamW(lr, weight_decay=wd), KerasAdam(lr, weight_decay=wd)
    if kind == "adamw_kernels":
        wd = (0.004, 0.1, 0.5)[aux]
        optimizer = AdamW(lr, weight_decay=wd)
        optimizer.exclude_from_weight_decay(var_names=["bias"])
        return optimizer, KerasAdam(lr, weight_decay=wd, kernels_only=True)
    raise AssertionError(kind)




class Reference:
    """Dense(8, relu) -> Dense(4, softmax) with Keras's penalties, as plain PyTorch."""

    def __init__(self, weights: dict, member: dict, dtype):
        self.dense0 = nn.Linear(N_FEATURES, N_HIDDEN, dtype=dtype)
        self.dense1 = nn.Linear(N_HIDDEN, N_CLASSES, dtype=dtype)
        with torch.no_grad():  # Keras layout (in, out) -> torch layout (out, in)
            self.dense0.weight.copy_(weights[(0, "kernel")].T)
            self.dense0.bias.copy_(weights[(0, "bias")])
            self.dense1.weight.copy_(weights[(1, "kernel")].T)
            self.dense1.bias.copy_(weights[(1, "bias")])
        self.member = member
        self.params = {"k0": self.dense0.weight, "b0": self.dense0.bias,
                       "k1": self.dense1.weight, "b1": self.dense1.bias}

    def forward(self, x):
        return torch.softmax(self.dense1(torch.relu(self.dense0(x))), dim=-1)

    def penalty(self):
        total = 0.0
        for name in ("k0", "k1", "b0"):
            l1, l2 = self.member[name]
            w = self.params[name]
            total = total + l1 * w.abs().sum() + l2 * w.square().sum()
        return total

    def keras_weights(self):
        return {(0, "kernel"): self.dense0.weight.detach().T, (0, "bias"): self.dense0.bias.detach(),
                (1, "kernel"): self.dense1.weight.detach().T, (1, "bias"): self.dense1.bias.detach()}


def train_reference(weights, member, optimizer, x, y, batch_size, epochs, dtype):
    """Trains one member alone, batches in order; returns (weights, history)."""
    model = Reference(weights, member, dtype)
    history = {"loss": [], "data_loss": [], "penalty": [], "accuracy": []}
    t = 0
    n = x.shape[0]
    for _ in range(epochs):
        sums = dict.fromkeys(history, 0.0)
        for lo in range(0, n, batch_size):
            xb, yb = x[lo:lo + batch_size], y[lo:lo + batch_size]
            probs = model.forward(xb)
            data_loss = keras_sparse_crossentropy(probs, yb).mean()
            penalty = model.penalty()
            loss = data_loss + penalty
            for p in model.params.values():
                p.grad = None
            loss.backward()
            b = xb.shape[0]
            sums["loss"] += float(loss.detach()) * b
            sums["data_loss"] += float(data_loss.detach()) * b
            sums["penalty"] += float(penalty.detach()) * b
            sums["accuracy"] += float((probs.argmax(-1) == yb).sum())
            t += 1
            with torch.no_grad():
                for name, p in model.params.items():
                    optimizer.step(name, p, p.grad, t, is_kernel=name.startswith("k"))
        for key in history:
            history[key].append(sums[key] / n)
    return model.keras_weights(), history


# -- the population -----------------------------------------------------------------------
def make_population(kind: str, seeds, dtype):
    members, references = [], []
    for member, seed in zip(MEMBERS, seeds):
        opt, ref_opt = make_optimizers(kind, member)
        layers = [
            Dense(N_HIDDEN, activation="relu", input_shape=(N_FEATURES,),
                  bias_initializer="he_uniform",  # non-zero biases make bias updates visible
                  kernel_regularizer=l1_l2(*member["k0"]), bias_regularizer=l1_l2(*member["b0"])),
            Dense(N_CLASSES, activation="softmax", bias_initializer="he_uniform",
                  kernel_regularizer=l1_l2(*member["k1"])),
        ]
        members.append(Member(layers, optimizer=opt, seed=seed))
        references.append(ref_opt)
    pop = Population(members, loss="sparse_categorical_crossentropy", dtype=dtype)
    return pop, references


def synthetic(n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, N_FEATURES))
    w = rng.normal(size=(N_FEATURES, N_CLASSES))
    y = np.argmax(x @ w + rng.normal(scale=0.5, size=(n, N_CLASSES)), axis=1)
    return torch.tensor(x, dtype=dtype), torch.tensor(y, dtype=torch.long)


SEEDINGS = {"distinct_seeds": (0, 1, 2), "shared_seed": (5, 5, 5)}


@pytest.mark.parametrize("seeds", SEEDINGS.values(), ids=SEEDINGS.keys())
@pytest.mark.parametrize("kind", OPTIMIZERS)
def test_one_step_matches_reference_float32(kind, seeds):
    x, y = synthetic(16, F32)
    pop, ref_opts = make_population(kind, seeds, F32)
    initial = [pop.member_weights(i) for i in range(len(MEMBERS))]
    result = pop.fit(x, y, batch_size=16, epochs=1, shuffle=False)
    assert [r.status for r in result.members] == ["done"] * len(MEMBERS)
    for i, member in enumerate(MEMBERS):
        expected, _ = train_reference(initial[i], member, ref_opts[i], x, y, 16, 1, F32)
        actual = pop.member_weights(i)
        assert set(actual) == set(expected)
        for key in expected:
            assert not torch.equal(actual[key], initial[i][key]), f"{key} did not move"
            np.testing.assert_allclose(actual[key].numpy(), expected[key].numpy(),
                                       rtol=1e-5, atol=1e-6, err_msg=f"member {i} {key}")


@pytest.mark.parametrize("kind", OPTIMIZERS)
def test_two_epochs_match_reference_float64(kind):
    """250 samples in batches of 32 (the last one partial), two epochs, member by member."""
    x, y = synthetic(250, F64, seed=1)
    pop, ref_opts = make_population(kind, (0, 1, 2), F64)
    initial = [pop.member_weights(i) for i in range(len(MEMBERS))]
    result = pop.fit(x, y, batch_size=32, epochs=2, shuffle=False)
    for i, member in enumerate(MEMBERS):
        expected, history = train_reference(initial[i], member, ref_opts[i], x, y, 32, 2, F64)
        actual = pop.member_weights(i)
        for key in expected:
            np.testing.assert_allclose(actual[key].numpy(), expected[key].numpy(),
                                       rtol=1e-8, atol=1e-10, err_msg=f"member {i} {key}")
        for name, values in history.items():
            np.testing.assert_allclose(result.members[i].history[name], values,
                                       rtol=1e-8, atol=1e-12, err_msg=f"member {i} {name}")


def test_members_differ_from_each_other():
    """Guards the parity tests against a vacuous pass: the members' values matter."""
    x, y = synthetic(64, F64)
    pop, _ = make_population("sgd", (3, 3, 3), F64)
    initial = pop.member_weights(0)
    for i in range(1, len(MEMBERS)):
        for key, value in pop.member_weights(i).items():
            assert torch.equal(value, initial[key])  # same seed, same initial weights
    pop.fit(x, y, batch_size=32, epochs=1, shuffle=False)
    final = [pop.member_weights(i)[(0, "kernel")] for i in range(len(MEMBERS))]
    assert not torch.allclose(final[0], final[1])
    assert not torch.allclose(final[1], final[2])
