"""reglab.engine: a member that diverges leaves the population without disturbing the others."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine_observers import EndEpochAt
from reglab.engine import Member, Population
from reglab.layers import Dense, Dropout
from reglab.optimizers.optimizers import SGD
from reglab.regularizers import l2

HUGE_LR = 1e3  # squared error with this step size grows geometrically until it overflows


def member(lr, seed, strength=0.0):
    return Member([Dense(6, activation="relu", input_shape=(5,), kernel_regularizer=l2(strength)),
                   Dropout(0.2),
                   Dense(1)], optimizer=SGD(lr, momentum=0.5), seed=seed)


def dataset(n=64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 5))
    return x, x @ rng.normal(size=(5, 1)) + 0.1 * rng.normal(size=(n, 1))


def train(members, dtype):
    pop = Population(members, loss="mse", metrics=(), dtype=dtype)
    x, y = dataset()
    result = pop.fit(x, y, batch_size=8, epochs=3, shuffle=True)
    return pop, result


def a_b_c(b_seed):
    return [member(0.01, seed=0, strength=0.01), member(HUGE_LR, seed=b_seed),
            member(0.02, seed=2)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("b_seed", [1, 0], ids=["own_seed", "seed_shared_with_a"])
def test_diverged_member_is_frozen_with_finite_weights(dtype, b_seed):
    pop, result = train(a_b_c(b_seed), dtype)
    a, b, c = result.members
    assert (a.status, b.status, c.status) == ("done", "diverged", "done")
    epoch, step = b.diverged_at
    assert (epoch, step) > (0, 0)  # B trained a while before its loss overflowed
    assert len(b.history.get("loss", [])) == epoch  # only complete epochs are logged
    assert all(np.isfinite(b.history.get("loss", [])))
    assert len(a.history["loss"]) == len(c.history["loss"]) == 3
    assert b.weights is not None and set(b.weights) == set(pop.member_weights(1))
    for key, value in b.weights.items():
        assert bool(torch.isfinite(value).all()), key
        assert torch.equal(pop.member_weights(1)[key], value)
    initial = Population(a_b_c(b_seed), loss="mse", dtype=dtype).member_weights(1)
    assert not torch.equal(b.weights[(0, "kernel")], initial[(0, "kernel")])
    # The frozen weights are those whose loss overflowed: the objective is not finite there.
    x, y = dataset()
    w = b.weights
    pred = torch.relu(torch.as_tensor(x, dtype=dtype) @ w[(0, "kernel")] + w[(0, "bias")])
    pred = pred @ w[(2, "kernel")] + w[(2, "bias")]
    assert not bool(torch.isfinite(((pred - torch.as_tensor(y, dtype=dtype)) ** 2).mean()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("b_seed", [1, 0], ids=["own_seed", "seed_shared_with_a"])
def test_divergence_does_not_disturb_the_other_members(dtype, b_seed):
    """A and C train as in the population without B (at commit ee124a3 they skipped the update
    of the step where B diverged: PopulationState.keep dropped the survivors' gradients)."""
    with_b, result = train(a_b_c(b_seed), dtype)
    without_b, reference = train([member(0.01, seed=0, strength=0.01), member(0.02, seed=2)],
                                 dtype)
    assert result.members[1].status == "diverged"
    for mine, theirs in [(0, 0), (2, 1)]:  # bit for bit, as README promises
        assert result.members[mine].history == reference.members[theirs].history, mine
        expected = without_b.member_weights(theirs)
        actual = with_b.member_weights(mine)
        for key in expected:
            assert torch.equal(actual[key], expected[key]), (mine, key)


@pytest.mark.parametrize("every", [3, 1000])
@pytest.mark.parametrize("b_seed", [1, 0], ids=["own_seed", "seed_shared_with_a"])
def test_deferred_checks_find_the_same_step_and_leave_the_others_alone(monkeypatch, every,
                                                                       b_seed):
    """Off the CPU the losses are checked every few steps (and at the end of an epoch): the
    diverged member is found at the step its loss went bad, the others train as without it."""
    _, per_step = train(a_b_c(b_seed), torch.float64)
    from reglab.engine import epoch as epoch_module
    monkeypatch.setattr(epoch_module, "divergence_check_steps", lambda device: every)
    deferred_pop, deferred = train(a_b_c(b_seed), torch.float64)
    without_b, reference = train([member(0.01, seed=0, strength=0.01), member(0.02, seed=2)],
                                 torch.float64)
    b = deferred.members[1]
    assert b.status == "diverged" and b.diverged_at == per_step.members[1].diverged_at
    assert b.history == per_step.members[1].history
    # frozen with the weights of the check before, finite (its loss was, up to there)
    assert all(bool(torch.isfinite(value).all()) for value in b.weights.values())
    assert all(bool(torch.isfinite(value).all())
               for value in deferred_pop.member_weights(1).values())
    for mine, theirs in [(0, 0), (2, 1)]:
        assert deferred.members[mine].history == reference.members[theirs].history, mine
        expected, actual = without_b.member_weights(theirs), deferred_pop.member_weights(mine)
        for key in expected:
            assert torch.equal(actual[key], expected[key]), (mine, key)


def test_members_that_joined_later_record_their_own_epoch_when_diverging_together():
    """Two members added after an epoch that diverge at one step both count the epoch from
    their own start (diverge once reused the loop's epoch variable)."""
    x, y = dataset()
    pop = Population([member(0.01, seed=0)], loss="mse", metrics=(), dtype=torch.float64)
    pop.fit(x, y, batch_size=8, epochs=1)
    pop.add_members([member(HUGE_LR, seed=1), member(HUGE_LR, seed=1)])
    result = pop.fit(x, y, batch_size=8, epochs=3, initial_epoch=1)
    late = result.members[1:]
    assert [m.status for m in late] == ["diverged", "diverged"]
    assert late[0].diverged_at == late[1].diverged_at and late[0].diverged_at[0] >= 0


@pytest.mark.parametrize("after", [0, 1, 2])
def test_an_epoch_ended_early_with_deferred_checks_finds_the_diverged_member(monkeypatch,
                                                                             after):
    """An epoch ended after a batch between two deferred checks checks the steps since the
    last one, as its last step would: the member that went bad is found at its step and
    frozen (its weights put back in place, outside autograd), the others train on."""
    from reglab.engine import epoch as epoch_module

    def run(members, every):
        monkeypatch.setattr(epoch_module, "divergence_check_steps", lambda device: every)
        pop = Population(members, loss="mse", metrics=(), dtype=torch.float64)
        x, y = dataset()
        return pop, pop.fit(x, y, batch_size=8, epochs=3, shuffle=True,
                            observers=[EndEpochAt(*at)])

    at = (-1, -1)
    _, free = run(a_b_c(1), 1)
    epoch, step = free.members[1].diverged_at
    at = (epoch, step + after)
    _, per_step = run(a_b_c(1), 1)
    deferred_pop, deferred = run(a_b_c(1), 1000)
    without_b, reference = run([member(0.01, seed=0, strength=0.01), member(0.02, seed=2)], 1)
    b = deferred.members[1]
    assert b.status == "diverged" and b.diverged_at == per_step.members[1].diverged_at
    assert all(bool(torch.isfinite(v).all()) for v in deferred_pop.member_weights(1).values())
    for mine, theirs in [(0, 0), (2, 1)]:
        assert deferred.members[mine].history == reference.members[theirs].history, mine
        expected, actual = without_b.member_weights(theirs), deferred_pop.member_weights(mine)
        for key in expected:
            assert torch.equal(actual[key], expected[key]), (mine, key)


@pytest.mark.parametrize("loss", ["binary_crossentropy", "binary_focal_crossentropy"])
def test_a_sigmoid_member_whose_logits_overflow_diverges_alone(loss):
    """Overflowed logits give the sigmoid NaN; torch's binary crossentropy kernel refuses a
    NaN probability for the whole batch, which had ended every member's fit with a
    RuntimeError. The member is marked diverged and the others train as without it."""
    from reglab.optimizers import Adam

    rng = np.random.default_rng(0)
    x, y = rng.random((64, 5), dtype=np.float32), rng.integers(0, 2, 64)

    def sigmoid_member(lr):
        return Member([Dense(7, activation="relu", input_shape=(5,)),
                       Dense(1, activation="sigmoid")], optimizer=Adam(lr), seed=3)

    def fit(members):
        population = Population(members, loss=loss)
        return population, population.fit(x, y, batch_size=8, epochs=3)

    with_b, result = fit([sigmoid_member(1e-3), sigmoid_member(1e25)])
    alone, reference = fit([sigmoid_member(1e-3)])
    assert result.members[1].status == "diverged"
    assert result.members[0].status == "done"
    assert result.members[0].history == reference.members[0].history
    for key, value in alone.member_weights(0).items():
        assert torch.equal(with_b.member_weights(0)[key], value), key


def test_binary_crossentropy_is_nan_where_the_prediction_is_and_torch_s_elsewhere():
    from reglab.losses import clipped_binary_crossentropy

    p = torch.tensor([0.2, float("nan"), 0.0, 1.0, 0.7])
    y = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0])
    got = clipped_binary_crossentropy(p, y)
    assert bool(got[1].isnan()) and bool(got[[0, 2, 3, 4]].isfinite().all())
    expected = torch.nn.functional.binary_cross_entropy(
        torch.clamp(p[[0, 2, 3, 4]], 1e-7, 1 - 1e-7), y[[0, 2, 3, 4]], reduction="none")
    assert torch.equal(got[[0, 2, 3, 4]], expected)
