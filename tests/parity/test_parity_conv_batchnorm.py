"""Parity: Conv2D / MaxPooling2D / Flatten / Dense and BatchNormalization against plain PyTorch.

References are written here: ``nn.Conv2d`` on NCHW tensors with TensorFlow's 'same'
padding done by hand (the extra row or column at the bottom/right), Flatten in
channels-last order, Keras's crossentropy and penalty, SGD ``w -= lr * g``; and batch
normalization written out (biased batch variance, ``moving = moving * momentum + batch *
(1 - momentum)``, epsilon 1e-3, moving statistics at inference).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from references import keras_sparse_crossentropy
from reglab.engine import Member, Population
from reglab.engine.step import forward
from reglab.layers import Activation, BatchNormalization, Conv2D, Dense, Flatten, MaxPooling2D
from reglab.optimizers.optimizers import SGD
from reglab.regularizers import l1_l2

F64 = torch.float64
KERAS_EPSILON = 1e-7
H, W, C = 10, 9, 2
CLASSES = 5






def tf_same_padding(length, kernel, stride):
    """TensorFlow's 'same': out = ceil(length / stride); the odd pixel goes after."""
    out = -(-length // stride)
    total = max((out - 1) * stride + kernel - length, 0)
    return total // 2, total - total // 2


# -- convolutions ---------------------------------------------------------------------------
CONV_MEMBERS = [  # (lr, kernel l1, kernel l2)
    (0.05, 0.0, 0.01),
    (0.2, 0.002, 0.0),
]


def conv_population(seeds):
    members = []
    for (lr, a, b), seed in zip(CONV_MEMBERS, seeds):
        members.append(Member([
            Conv2D(4, 3, padding="valid", activation="relu", input_shape=(H, W, C),
                   bias_initializer="he_uniform", kernel_regularizer=l1_l2(a, b)),
            Conv2D(3, (3, 3), strides=2, padding="same", activation="relu",
                   bias_initializer="he_uniform", kernel_regularizer=l1_l2(b, a)),
            MaxPooling2D(2),
            Flatten(),
            Dense(CLASSES, activation="softmax", bias_initializer="he_uniform"),
        ], optimizer=SGD(lr), seed=seed))
    return Population(members, dtype=F64)


class ConvReference:
    def __init__(self, weights, l1_l2_values):
        self.conv0 = nn.Conv2d(C, 4, 3, dtype=F64)
        self.conv1 = nn.Conv2d(4, 3, 3, stride=2, dtype=F64)
        self.dense = nn.Linear(12, CLASSES, dtype=F64)
        with torch.no_grad():  # Keras (kh, kw, in, out) -> torch (out, in, kh, kw)
            self.conv0.weight.copy_(weights[(0, "kernel")].permute(3, 2, 0, 1))
            self.conv0.bias.copy_(weights[(0, "bias")])
            self.conv1.weight.copy_(weights[(1, "kernel")].permute(3, 2, 0, 1))
            self.conv1.bias.copy_(weights[(1, "bias")])
            self.dense.weight.copy_(weights[(4, "kernel")].T)
            self.dense.bias.copy_(weights[(4, "bias")])
        self.l1_l2 = l1_l2_values

    def forward(self, x_nhwc):
        z = x_nhwc.permute(0, 3, 1, 2)
        z = torch.relu(self.conv0(z))  # 'valid': (8, 7)
        top, bottom = tf_same_padding(z.shape[2], 3, 2)
        left, right = tf_same_padding(z.shape[3], 3, 2)
        assert (top, bottom, left, right) == (0, 1, 1, 1)  # one asymmetric axis, one not
        z = torch.relu(self.conv1(F.pad(z, (left, right, top, bottom))))  # (4, 4)
        z = F.max_pool2d(z, 2)  # (2, 2)
        z = z.permute(0, 2, 3, 1).reshape(z.shape[0], -1)  # Keras flattens channels last
        return torch.softmax(self.dense(z), dim=-1)

    def penalty(self):
        a, b = self.l1_l2
        k0, k1 = self.conv0.weight, self.conv1.weight
        return (a * k0.abs().sum() + b * k0.square().sum()
                + b * k1.abs().sum() + a * k1.square().sum())

    def params(self):
        return {(0, "kernel"): self.conv0.weight, (0, "bias"): self.conv0.bias,
                (1, "kernel"): self.conv1.weight, (1, "bias"): self.conv1.bias,
                (4, "kernel"): self.dense.weight, (4, "bias"): self.dense.bias}

    def keras_weights(self):
        to_keras = {0: lambda t: t.permute(2, 3, 1, 0), 1: lambda t: t.permute(2, 3, 1, 0),
                    4: lambda t: t.T}
        return {k: (to_keras[k[0]](p.detach()) if k[1] == "kernel" else p.detach())
                for k, p in self.params().items()}


def images(n, seed=0):
    rng = np.random.default_rng(seed)
    x = torch.tensor(rng.normal(size=(n, H, W, C)), dtype=F64)
    y = torch.tensor(rng.integers(0, CLASSES, size=n), dtype=torch.long)
    return x, y


SEEDINGS = {"distinct_seeds": (0, 1), "shared_seed": (4, 4)}


@pytest.mark.parametrize("seeds", SEEDINGS.values(), ids=SEEDINGS.keys())
def test_conv_forward_matches_reference(seeds):
    x, _ = images(6)
    pop = conv_population(seeds)
    assert pop.plan.layers[1].output_shape == (4, 4, 3)
    predicted = pop.predict(x)  # (P, N, classes)
    assert predicted.shape == (2, 6, CLASSES)
    for i, (_, a, b) in enumerate(CONV_MEMBERS):
        ref = ConvReference(pop.member_weights(i), (a, b))
        with torch.no_grad():
            expected = ref.forward(x)
        np.testing.assert_allclose(predicted[i], expected.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("seeds", SEEDINGS.values(), ids=SEEDINGS.keys())
def test_conv_one_sgd_step_matches_reference(seeds):
    x, y = images(8, seed=1)
    pop = conv_population(seeds)
    initial = [pop.member_weights(i) for i in range(2)]
    result = pop.fit(x, y, batch_size=8, epochs=1, shuffle=False)
    for i, (lr, a, b) in enumerate(CONV_MEMBERS):
        ref = ConvReference(initial[i], (a, b))
        probs = ref.forward(x)
        data_loss = keras_sparse_crossentropy(probs, y).mean()
        loss = data_loss + ref.penalty()
        loss.backward()
        np.testing.assert_allclose(result.members[i].history["loss"], [float(loss.detach())],
                                   rtol=1e-12)
        with torch.no_grad():
            for p in ref.params().values():
                p -= lr * p.grad
        actual = pop.member_weights(i)
        for key, value in ref.keras_weights().items():
            assert not torch.equal(actual[key], initial[i][key]), key
            np.testing.assert_allclose(actual[key].numpy(), value.numpy(), rtol=1e-10,
                                       atol=1e-13, err_msg=f"member {i} {key}")


def test_max_pooling_same_padding_matches_reference():
    """MaxPooling2D(3, strides=2, 'same') on a 7x6 map: TF pads with -inf, odd pixel after."""
    pop = Population([Member([MaxPooling2D(3, strides=2, padding="same", input_shape=(7, 6, 2)),
                              Flatten(), Dense(2)], optimizer=SGD(0.1), seed=0)],
                     loss="mse", metrics=(), dtype=F64)
    x = -torch.rand(3, 7, 6, 2, dtype=F64) - 1.0  # all negative: zero padding would show
    layer = pop.plan.layers[0].layer
    got = layer.forward(x, {}, {}, None, (7, 6, 2))
    top, bottom = tf_same_padding(7, 3, 2)
    left, right = tf_same_padding(6, 3, 2)
    z = F.pad(x.permute(0, 3, 1, 2), (left, right, top, bottom), value=-float("inf"))
    expected = F.max_pool2d(z, 3, 2).permute(0, 2, 3, 1)
    assert got.shape == (3, 4, 3, 2) == expected.shape
    assert pop.plan.layers[0].output_shape == (4, 3, 2)
    np.testing.assert_array_equal(got.numpy(), expected.numpy())


# -- batch normalization --------------------------------------------------------------------
BN_MEMBERS = [(0.99, 0.1), (0.9, 0.3)]  # (Keras momentum, SGD learning rate)
BN_EPS = 1e-3


def bn_population(epsilons=(BN_EPS, BN_EPS)):
    members = [Member([
        Dense(6, input_shape=(5,), bias_initializer="he_uniform"),
        BatchNormalization(momentum=momentum, epsilon=eps),
        Activation("relu"),
        Dense(3, activation="softmax"),
    ], optimizer=SGD(lr), seed=i) for i, ((momentum, lr), eps) in enumerate(zip(BN_MEMBERS,
                                                                                epsilons))]
    return Population(members, dtype=F64)


def bn_reference(weights, x, training, eps=BN_EPS):
    """Returns (probs, batch mean, biased batch variance); ``weights`` holds torch tensors."""
    h = x @ weights[(0, "kernel")] + weights[(0, "bias")]
    if training:
        mean = h.mean(dim=0)
        var = ((h - mean) ** 2).mean(dim=0)  # biased
    else:
        mean, var = weights[(1, "moving_mean")], weights[(1, "moving_variance")]
    hn = (h - mean) / torch.sqrt(var + eps) * weights[(1, "gamma")] + weights[(1, "beta")]
    logits = torch.relu(hn) @ weights[(3, "kernel")] + weights[(3, "bias")]
    return torch.softmax(logits, dim=-1), mean, var


def test_batchnorm_training_forward_and_moving_statistics():
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(loc=2.0, scale=3.0, size=(16, 5)), dtype=F64)
    pop = bn_population()
    initial = [pop.member_weights(i) for i in range(2)]
    probs, _ = forward(pop.state, x, True)
    for i, (momentum, _) in enumerate(BN_MEMBERS):
        expected, mean, var = bn_reference(initial[i], x, training=True)
        np.testing.assert_allclose(probs[i].detach().numpy(), expected.numpy(), rtol=1e-12)
        after = pop.member_weights(i)
        # moving = moving * momentum + batch * (1 - momentum), from zeros and ones.
        np.testing.assert_allclose(after[(1, "moving_mean")].numpy(),
                                   (0.0 * momentum + mean * (1 - momentum)).numpy(), rtol=1e-12)
        np.testing.assert_allclose(after[(1, "moving_variance")].numpy(),
                                   (1.0 * momentum + var * (1 - momentum)).numpy(), rtol=1e-12)


def test_batchnorm_one_sgd_step_and_inference_match_reference():
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.normal(loc=-1.0, scale=2.0, size=(12, 5)), dtype=F64)
    y = torch.tensor(rng.integers(0, 3, size=12), dtype=torch.long)
    x_test = torch.tensor(rng.normal(size=(7, 5)), dtype=F64)
    pop = bn_population()
    initial = [pop.member_weights(i) for i in range(2)]
    pop.fit(x, y, batch_size=12, epochs=1, shuffle=False)
    predicted = pop.predict(x_test)
    for i, (momentum, lr) in enumerate(BN_MEMBERS):
        w = {k: v.clone().requires_grad_(k[1] not in ("moving_mean", "moving_variance"))
             for k, v in initial[i].items()}
        probs, mean, var = bn_reference(w, x, training=True)
        keras_sparse_crossentropy(probs, y).mean().backward()
        expected = {}
        with torch.no_grad():
            for key, value in w.items():
                expected[key] = value - lr * value.grad if value.requires_grad else value
            expected[(1, "moving_mean")] = w[(1, "moving_mean")] * momentum + mean * (1 - momentum)
            expected[(1, "moving_variance")] = (w[(1, "moving_variance")] * momentum
                                                + var * (1 - momentum))
        actual = pop.member_weights(i)
        assert set(actual) == set(expected)
        for key, value in expected.items():
            if key != (0, "bias"):  # a bias before batch norm has zero gradient
                assert not torch.equal(actual[key], initial[i][key]), key
            np.testing.assert_allclose(actual[key].numpy(), value.numpy(), rtol=1e-11,
                                       atol=1e-13, err_msg=f"member {i} {key}")
        # Inference normalizes with the moving statistics, not the batch's.
        inference, _, _ = bn_reference(expected, x_test, training=False)
        np.testing.assert_allclose(predicted[i], inference.numpy(), rtol=1e-11, atol=1e-13)
        batch_stats, _, _ = bn_reference(expected, x_test, training=True)
        assert not np.allclose(predicted[i], batch_stats.numpy(), rtol=1e-3)


def test_batchnorm_first_layer_on_shared_input():
    """BatchNormalization as the first layer normalizes the shared batch for every member."""
    rng = np.random.default_rng(3)
    x = torch.tensor(rng.normal(loc=1.0, scale=2.0, size=(10, 4)), dtype=F64)
    members = [Member([BatchNormalization(momentum=m, input_shape=(4,)), Dense(2)],
                      optimizer=SGD(0.1), seed=0) for m in (0.99, 0.5)]
    pop = Population(members, loss="mse", metrics=(), dtype=F64)
    initial = [pop.member_weights(i) for i in range(2)]
    out, _ = forward(pop.state, x, True)
    mean, var = x.mean(dim=0), ((x - x.mean(dim=0)) ** 2).mean(dim=0)
    for i, m in enumerate((0.99, 0.5)):
        normalized = (x - mean) / torch.sqrt(var + BN_EPS)  # gamma 1, beta 0 initially
        expected = normalized @ initial[i][(1, "kernel")] + initial[i][(1, "bias")]
        np.testing.assert_allclose(out[i].detach().numpy(), expected.numpy(), rtol=1e-12)
        after = pop.member_weights(i)
        np.testing.assert_allclose(after[(0, "moving_mean")].numpy(), (mean * (1 - m)).numpy(),
                                   rtol=1e-12)
        np.testing.assert_allclose(after[(0, "moving_variance")].numpy(),
                                   (m + var * (1 - m)).numpy(), rtol=1e-12)
    inference, _ = forward(pop.state, x, False)
    after = pop.member_weights(1)
    expected = ((x - after[(0, "moving_mean")]) / torch.sqrt(after[(0, "moving_variance")] + BN_EPS)
                @ after[(1, "kernel")] + after[(1, "bias")])
    np.testing.assert_allclose(inference[1].detach().numpy(), expected.numpy(), rtol=1e-12)


def test_batchnorm_members_with_different_epsilons():
    """Per-member epsilons broadcast along the member axis (at commit ee124a3 the (P,) epsilon
    was viewed as (P, 1, ..., C) and raised a RuntimeError)."""
    rng = np.random.default_rng(2)
    x = torch.tensor(rng.normal(scale=0.01, size=(16, 5)), dtype=F64)
    pop = bn_population(epsilons=(1e-3, 1e-1))
    initial = [pop.member_weights(i) for i in range(2)]
    probs, _ = forward(pop.state, x, True)
    for i, eps in enumerate((1e-3, 1e-1)):
        expected, _, _ = bn_reference(initial[i], x, training=True, eps=eps)
        np.testing.assert_allclose(probs[i].detach().numpy(), expected.numpy(), rtol=1e-12)
