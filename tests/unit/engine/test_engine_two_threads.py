"""With two intra-op threads a member still trains in a population as alone, on the shapes
where torch would split one member's work between the threads (a tiny model whose softmax
runs along the batch axis: alone, its batch of 16 was cut in two; in a pair, not)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reglab.engine import Member, Population
from reglab.layers import Dense, Dropout
from reglab.regularizers import L2


def member(optimizer, regularizer=None, rate=0.0):
    return Member([Dense(16, activation="relu", input_shape=(6,), kernel_regularizer=regularizer),
                   Dropout(rate), Dense(4, activation="softmax")], optimizer, seed=0)


@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy", "categorical_crossentropy"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_member_trains_as_alone_with_two_threads(two_threads, optimizer, loss):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = rng.integers(0, 4, 64)
    if loss == "categorical_crossentropy":  # the unfused softmax path
        y = np.eye(4, dtype="float32")[y]
    variants = [{}, {"regularizer": L2(1e-2)}, {"rate": 0.3}]
    together = Population([member(optimizer, **v) for v in variants], loss=loss)
    both = together.fit(x, y, batch_size=16, epochs=2)
    for position, variant in enumerate(variants):
        alone = Population([member(optimizer, **variant)], loss=loss)
        expected = alone.fit(x, y, batch_size=16, epochs=2)
        assert both.members[position].history == expected.members[0].history
        for key, value in alone.member_weights(0).items():
            assert torch.equal(together.member_weights(position)[key], value), (position, key)


@pytest.mark.parametrize("hidden, classes", [(32, 10), (64, 10), (32, 16)])
def test_batched_member_products_with_two_threads(two_threads, hidden, classes):
    """Layers after the first take one batched product for every member (MKL's batched GEMM,
    which splits its work between threads by the whole batch's size): a member's bits alone
    and beside others are the same (the output layer narrower than a vector tile computes
    transposed, a 16-unit one not)."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(75, 16)).astype("float32")
    y = rng.integers(0, classes, 75)

    def one(seed, rate, regularizer):
        return Member([Dense(hidden, activation="relu", input_shape=(16,),
                             kernel_regularizer=regularizer),
                       Dropout(rate), Dense(hidden, activation="relu"),
                       Dense(classes, activation="softmax")], "adam", seed=seed)
    variants = [(0, 0.0, None), (1, 0.3, L2(1e-3)), (0, 0.2, None)]
    together = Population([one(*v) for v in variants])
    both = together.fit(x, y, batch_size=16, epochs=2)
    for position, variant in enumerate(variants):
        alone = Population([one(*variant)])
        expected = alone.fit(x, y, batch_size=16, epochs=2)
        assert both.members[position].history == expected.members[0].history
        for key, value in alone.member_weights(0).items():
            assert torch.equal(together.member_weights(position)[key], value), (position, key)
