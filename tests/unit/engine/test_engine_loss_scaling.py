"""Dynamic loss scaling in a population: each member has its own scale and growth counter,
skips its own steps, and trains bit for bit as it would alone; the scales follow the
members through checkpoints, parking and copies."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from reglab.engine import EarlyStoppingRule, Member, Population, loss_scale
from reglab.layers import BatchNormalization, Dense, Dropout, Flatten, shared_input
from reglab.optimizers import SGD, Adam, LossScaleOptimizer
from reglab.regularizers import l2

F16 = "mixed_float16"


def data(n=80, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 13)).astype("float32")
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype("int64") + (x[:, 2] > 1.0)
    return x, y


def layers(variant):
    """A first Dense of 32 units behind a Flatten (the width at which float32 members of a
    seed group share one GEMM; float16 takes the per-member product), batch normalization
    (float32 inside), dropout (float32 draws), a float32 output layer."""
    return [Flatten(input_shape=(13,), dtype=F16),
            Dense(32, activation="relu", kernel_regularizer=l2(variant.get("l2", 0.0)),
                  dtype=F16),
            BatchNormalization(dtype=F16), Dropout(variant.get("dropout", 0.0), dtype=F16),
            Dense(3, activation="softmax")]


def optimizer(variant):
    inner = Adam(variant.get("lr", 0.01), use_ema=True, ema_momentum=0.9)
    return LossScaleOptimizer(inner, initial_scale=variant["scale"],
                              dynamic_growth_steps=variant["growth"])


# different scales and growth steps: some members overflow at first, some grow
VARIANTS = [{"scale": 2.0**22, "growth": 2}, {"scale": 2.0**3, "growth": 3, "dropout": 0.3},
            {"scale": 1.0, "growth": 1, "l2": 1e-2, "lr": 0.02},
            {"scale": 2.0**40, "growth": 4, "stop": True}]


def members(pairs):
    return [Member(layers(VARIANTS[v]), optimizer(VARIANTS[v]), seed=seed,
                   early_stopping=EarlyStoppingRule(monitor="val_loss", patience=0,
                                                    restore_best_weights=True)
                   if VARIANTS[v].get("stop") else None) for v, seed in pairs]


def train(pairs):
    x, y = data()
    population = Population(members(pairs), dtype=torch.float32)
    result = population.fit(x, y, batch_size=16, epochs=4, validation_data=data(40, 7))
    return {pair: (population.member_weights(i), result.members[i].history,
                   result.members[i].status, loss_scale.member_state(population, i))
            for i, pair in enumerate(pairs)}


def test_members_with_their_own_scales_train_as_alone_bit_for_bit():
    everyone = [(v, seed) for seed in (0, 1) for v in range(len(VARIANTS))]
    full = train(everyone)
    scales = {pair: state["scale"] for pair, (_, _, _, state) in full.items()}
    assert scales[(0, 0)] < 2.0**22 and scales[(2, 0)] > 1.0  # halved, grown
    assert len(set(scales.values())) > 2
    for group in [[pair] for pair in everyone] + [everyone[::-1], everyone[1::3]]:
        for pair, (weights, history, status, state) in train(group).items():
            want_weights, want_history, want_status, want_state = full[pair]
            assert (status, state) == (want_status, want_state), (group, pair)
            assert history == want_history, (group, pair)
            for key, tensor in weights.items():
                assert torch.equal(tensor, want_weights[key]), (group, pair, key)


def test_float16_takes_the_per_member_product_not_the_shared_gemm():
    x = torch.zeros(2, 4, 13, dtype=torch.float16)
    assert not shared_input.applies(32, x)
    assert shared_input.applies(32, x.float())


def test_a_member_whose_gradients_are_never_finite_skips_every_step_and_has_not_diverged():
    """Keras's rule at scale 1 and below: the step is skipped and the scale halves, with a
    finite loss; the member's neighbour trains as alone."""
    x, y = data()
    alone = Population(members([(1, 0)]))
    alone.fit(x, y, batch_size=16, epochs=2, shuffle=False)
    pair = [Member(layers({}), optimizer({"scale": 1.0, "growth": 2000}), seed=0),
            *members([(1, 0)])]
    population = Population(pair)
    start = population.member_weights(0)
    kernel = population.state.weights[(1, "kernel")]

    def poison(grad):  # member 0's gradient is not finite, whatever its scale
        grad = grad.clone()
        grad[0, 0, 0] = float("inf")
        return grad

    kernel.register_hook(poison)
    result = population.fit(x, y, batch_size=16, epochs=2, shuffle=False)
    steps = 2 * 5
    assert result.members[0].status == "done"
    assert all(np.isfinite(result.members[0].history["loss"]))
    assert loss_scale.member_state(population, 0) == {"scale": 2.0**-steps, "counter": 0}
    assert population.state.members.scalars["steps"] == [0, steps]
    for key, value in population.member_weights(0).items():
        if key[1] not in ("moving_mean", "moving_variance"):  # the forward pass updates these
            assert torch.equal(value, start[key]), key
    assert result.members[1].history == alone.results[0].history
    for key, value in alone.member_weights(0).items():
        assert torch.equal(population.member_weights(1)[key], value), key


def test_growth_doubles_after_n_finite_steps_and_an_overflow_halves():
    x, y = data()
    member = Member([Dense(4, input_shape=(13,), dtype=F16), Dense(3, activation="softmax")],
                    LossScaleOptimizer(SGD(0.01), initial_scale=2.0, dynamic_growth_steps=3),
                    seed=0)
    population = Population([member])
    seen = []
    population.fit(x, y, batch_size=16, epochs=2, shuffle=False,
                   observers=[type("Watch", (), {"on_train_batch_end": lambda self, step:
                                                 seen.append(loss_scale.member_state(
                                                     population, 0))})()])
    assert [s["scale"] for s in seen] == [2.0, 2.0, 4.0, 4.0, 4.0, 8.0, 8.0, 8.0, 16.0, 16.0]
    assert [s["counter"] for s in seen] == [1, 2, 0, 1, 2, 0, 1, 2, 0, 1]
    # an overflow: the scale halves, the counter restarts
    population.state.members.scalars[loss_scale.SCALE][0] = 2.0**60
    population.fit(x[:16], y[:16], batch_size=16, epochs=1, shuffle=False)
    assert loss_scale.member_state(population, 0) == {"scale": 2.0**59, "counter": 0}


def test_scales_survive_a_checkpoint_and_resume():
    x, y = data()

    class Saver:
        def __init__(self, population):
            self.population, self.saved = population, None

        def on_epoch_complete(self, epoch):
            if epoch == 1:
                buffer = io.BytesIO()
                torch.save(self.population.checkpoint(), buffer)
                self.saved = buffer.getvalue()

    pairs = [(0, 0), (2, 1), (3, 0)]
    reference = Population(members(pairs))
    expected = reference.fit(x, y, batch_size=16, epochs=4, validation_data=data(40, 7))
    first = Population(members(pairs))
    saver = Saver(first)
    first.fit(x, y, batch_size=16, epochs=2, validation_data=data(40, 7), observers=[saver])
    resumed = Population(members(pairs))
    state = torch.load(io.BytesIO(saver.saved), weights_only=False)
    got = resumed.fit(x, y, batch_size=16, epochs=4, validation_data=data(40, 7), resume=state)
    for m in range(len(pairs)):
        assert got.members[m].history == expected.members[m].history
        assert loss_scale.member_state(resumed, m) == loss_scale.member_state(reference, m)
        for key, value in reference.member_weights(m).items():
            assert torch.equal(resumed.member_weights(m)[key], value)


def test_a_copied_member_takes_the_scale_and_set_hyperparameter_reaches_the_inner_optimizer():
    x, y = data()
    population = Population(members([(0, 0), (1, 1)]))
    population.fit(x, y, batch_size=16, epochs=1)
    population.set_hyperparameter(1, "learning_rate", 0.005)
    assert population.hyperparameter(1, "learning_rate") == 0.005
    with pytest.raises(Exception, match="learning_rate"):
        population.set_hyperparameter(1, "learning_rate", -1.0)
    population.copy_member(0, 1)
    assert loss_scale.member_state(population, 1) == loss_scale.member_state(population, 0)


def test_members_without_loss_scaling_keep_no_scale():
    population = Population([Member([Dense(3, input_shape=(13,), dtype=F16)], "adam", seed=0)])
    assert loss_scale.SCALE not in population.state.members.scalars
    assert loss_scale.member_state(population, 0) is None


@pytest.mark.parametrize("every", [1, 3])
def test_a_diverging_member_is_found_and_the_others_train_as_alone(monkeypatch, every):
    """A non-finite loss is a divergence, with loss scaling as without, checked every step
    (CPU) or every few (CUDA's deferred checks); its neighbours are not disturbed."""
    from reglab.engine import epoch as epoch_module

    monkeypatch.setattr(epoch_module, "divergence_check_steps", lambda device: every)
    x, y = data()

    def member(lr, seed):
        return Member([Dense(8, activation="relu", input_shape=(13,), dtype=F16),
                       Dense(3, activation="softmax")],
                      LossScaleOptimizer(SGD(lr), initial_scale=2.0**8, dynamic_growth_steps=2),
                      seed=seed)

    together = Population([member(0.05, 0), member(1e6, 1), member(0.1, 2)])
    result = together.fit(x, y, batch_size=16, epochs=2)
    assert [m.status for m in result.members] == ["done", "diverged", "done"]
    assert all(bool(torch.isfinite(w).all()) for w in together.member_weights(1).values())
    for position, (lr, seed) in [(0, (0.05, 0)), (2, (0.1, 2))]:
        alone = Population([member(lr, seed)])
        expected = alone.fit(x, y, batch_size=16, epochs=2)
        assert result.members[position].history == expected.members[0].history
        assert loss_scale.member_state(together, position) == loss_scale.member_state(alone, 0)
        for key, value in alone.member_weights(0).items():
            assert torch.equal(together.member_weights(position)[key], value)


@pytest.mark.parametrize("lr", [1e6, 3000.0])
def test_a_deferred_check_freezes_a_diverged_member_whole_at_the_check_before(monkeypatch, lr):
    """With checks every few steps (CUDA), a diverged member is frozen as it was at the check
    before its bad step: weights, optimizer slots, step count, loss scale and counter all as
    after that many steps of training alone (not a later scale with earlier weights)."""
    from reglab.engine import epoch as epoch_module

    every, batch = 3, 8
    monkeypatch.setattr(epoch_module, "divergence_check_steps", lambda device: every)
    x, y = data()

    def member(rate=lr):
        return Member([Dense(8, activation="relu", input_shape=(13,), dtype=F16),
                       Dense(3, activation="softmax")],
                      LossScaleOptimizer(Adam(rate), initial_scale=2.0**8, dynamic_growth_steps=2),
                      seed=1)

    together = Population([member(), member(1e-3)])
    result = together.fit(x, y, batch_size=batch, epochs=1, shuffle=False)
    assert result.members[0].status == "diverged"
    bad = result.members[0].diverged_at[1]
    checked = max([c for c in range(bad) if (c + 1) % every == 0], default=-1)
    alone = Population([member()])
    if checked >= 0:
        alone.fit(x[:(checked + 1) * batch], y[:(checked + 1) * batch], batch_size=batch,
                  epochs=1, shuffle=False)
    assert loss_scale.member_state(together, 0) == loss_scale.member_state(alone, 0)
    assert together.state.members.scalars["steps"][0] == checked + 1
    for key, value in alone.member_weights(0).items():
        assert torch.equal(together.member_weights(0)[key], value), key
