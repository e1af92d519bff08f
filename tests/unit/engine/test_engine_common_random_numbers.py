"""reglab.engine: common random numbers by seed, and bitwise determinism on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reglab.engine import Member, Population
from reglab.engine import data as data_module
from reglab.layers import Dense, Dropout
from reglab.optimizers.optimizers import SGD, Adam
from reglab.regularizers import l2

F64 = torch.float64




def member(seed, strength=0.01, rate=0.3, lr=0.05, optimizer=None):
    return Member([Dense(8, activation="relu", input_shape=(6,), kernel_regularizer=l2(strength)),
                   Dropout(rate),
                   Dense(3, activation="softmax")],
                  optimizer=optimizer or SGD(lr, momentum=0.9), seed=seed)


def dataset(n=48, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6)), rng.integers(0, 3, size=n)


def fit(members, dtype=F64, epochs=2, **kwargs):
    pop = Population(members, dtype=dtype)
    x, y = dataset()
    result = pop.fit(x, y, batch_size=8, epochs=epochs, **kwargs)
    return pop, result


def equal_weights(a, b):
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_initial_weights_different_seed_different():
    pop = Population([member(7), member(7, strength=0.5, rate=0.1), member(8)])
    w = [pop.member_weights(i) for i in range(3)]
    assert equal_weights(w[0], w[1])
    for key in w[0]:
        if key[1] == "kernel":
            assert not torch.equal(w[0][key], w[2][key]), key


def test_initial_weights_do_not_depend_on_the_rest_of_the_population():
    alone = Population([member(11)]).member_weights(0)
    among = Population([member(3), member(11), member(4)]).member_weights(1)
    assert equal_weights(alone, among)


def test_same_seed_same_values_end_bitwise_identical():
    members = [member(7), member(8, strength=0.1), member(7), member(7, strength=0.05)]
    pop, result = fit(members)
    w = [pop.member_weights(i) for i in range(4)]
    assert equal_weights(w[0], w[2])
    assert result.members[0].history == result.members[2].history
    assert not equal_weights(w[0], w[3])  # the same seed, another strength
    assert not equal_weights(w[0], w[1])


def record_batches(monkeypatch):
    """Wraps the engine's batch gatherer; records (seeds, index rows) of each batch."""
    seen = []
    original = data_module.batch

    def spy(population, data, index, layout, augment):
        seen.append(([seed for seed, _ in layout.groups], index.clone()))
        return original(population, data, index, layout, augment)

    monkeypatch.setattr(data_module, "batch", spy)
    return seen


def order_by_seed(seen):
    """{seed: [epoch's sample order...]} from the recorded batches (6 batches per epoch)."""
    orders = {}
    for seeds, index in seen:
        for row, seed in enumerate(seeds):
            orders.setdefault(seed, []).append(index[row])
    return {s: torch.cat(rows) for s, rows in orders.items()}


def test_different_seeds_see_different_batch_orders(monkeypatch):
    seen = record_batches(monkeypatch)
    fit([member(1), member(2), member(1, strength=0.2)], epochs=2, shuffle=True)
    assert all(seeds == [1, 2] for seeds, _ in seen)  # one gather per distinct seed
    orders = order_by_seed(seen)
    for seed in (1, 2):
        first, second = orders[seed][:48], orders[seed][48:]
        assert sorted(first.tolist()) == list(range(48)) == sorted(second.tolist())
        assert not torch.equal(first, second)  # a new shuffle each epoch
    assert not torch.equal(orders[1], orders[2])


def test_a_seed_sees_the_same_batch_order_alone_and_in_a_population(monkeypatch):
    seen = record_batches(monkeypatch)
    fit([member(2)], epochs=2, shuffle=True)
    alone = order_by_seed(seen)[2]
    seen.clear()
    fit([member(5), member(2), member(9)], epochs=2, shuffle=True)
    assert torch.equal(order_by_seed(seen)[2], alone)


def test_shuffle_false_keeps_the_data_order(monkeypatch):
    seen = record_batches(monkeypatch)
    fit([member(1), member(2)], epochs=1, shuffle=False)
    orders = order_by_seed(seen)
    assert orders[1].tolist() == orders[2].tolist() == list(range(48))


def test_a_member_trains_as_it_would_alone():
    """Same seed, same batches, same masks: a member's run does not depend on its neighbours."""
    pop_alone, alone = fit([member(4, strength=0.02, rate=0.4)], shuffle=True)
    pop_among, among = fit([member(1), member(4, strength=0.02, rate=0.4), member(6, rate=0.1)],
                           shuffle=True)
    a, b = pop_alone.member_weights(0), pop_among.member_weights(1)
    for key in a:
        np.testing.assert_allclose(b[key].numpy(), a[key].numpy(), rtol=1e-12, atol=1e-14)
    for name, values in alone.members[0].history.items():
        np.testing.assert_allclose(among.members[1].history[name], values, rtol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_training_twice_is_bitwise_identical(dtype, optimizer):
    def make():
        opt = (lambda lr: SGD(lr, momentum=0.9)) if optimizer == "sgd" else Adam
        return [member(s, strength=v, rate=r, optimizer=opt(lr))
                for s, v, r, lr in [(0, 0.01, 0.3, 0.05), (1, 0.0, 0.5, 0.01), (0, 0.1, 0.2, 0.1)]]

    pop1, first = fit(make(), dtype=dtype, shuffle=True)
    pop2, second = fit(make(), dtype=dtype, shuffle=True)
    for i in range(3):
        assert equal_weights(pop1.member_weights(i), pop2.member_weights(i))
        assert first.members[i].history == second.members[i].history
        assert first.members[i].history["loss"][0] != first.members[i].history["loss"][1]
