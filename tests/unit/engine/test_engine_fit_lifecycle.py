"""Targets of every layout, per-member settings, reads during fit, and fit called twice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine_observers import EndEpochAt
from reglab.augment import AffineSpec
from reglab.engine import EarlyStoppingRule, Member, Population
from reglab.errors import ConfigError
from reglab.layers import Conv2D, Dense, Flatten, RandomFlip
from reglab.regularizers import Regularizer

F64 = torch.float64
RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 5))
Y_CLASS = (X[:, 0] > 0).astype(np.int64)
Y_REAL = X[:, :1].sum(axis=1) * 0.5


def regression(seed, **dense):
    return Member([Dense(4, activation="tanh", input_shape=(5,), **dense), Dense(1)],
                  optimizer="sgd", seed=seed)


@pytest.mark.parametrize("seeds", [(0,), (0, 0), (0, 1)])
@pytest.mark.parametrize("shape", [(40,), (40, 1)])
def test_mse_targets_of_either_layout_give_the_true_mean_squared_error(seeds, shape):
    pop = Population([regression(s) for s in seeds], loss="mse", metrics=(), dtype=F64)
    pop.fit(X, Y_REAL.reshape(shape), batch_size=8, epochs=2)
    predictions = pop.predict(X)[..., 0]  # (P, N)
    expected = ((predictions - Y_REAL) ** 2).mean(axis=1)
    got = [logs["loss"] for logs in pop.evaluate(X, Y_REAL.reshape(shape))]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize("seeds", [(0,), (0, 1)])
def test_binary_crossentropy_and_sparse_labels_of_shape_n_by_1(seeds):
    binary = Population([Member([Dense(3, activation="relu", input_shape=(5,)),
                                 Dense(1, activation="sigmoid")], seed=s) for s in seeds],
                        loss="binary_crossentropy", dtype=F64)
    binary.fit(X, Y_CLASS, batch_size=8, epochs=1, validation_data=(X, Y_CLASS))
    p = binary.predict(X)[..., 0]
    accuracy = ((p > 0.5) == Y_CLASS).mean(axis=1)
    np.testing.assert_allclose([r["accuracy"] for r in binary.evaluate(X, Y_CLASS)], accuracy)
    sparse = Population([Member([Dense(2, activation="softmax", input_shape=(5,))], seed=s)
                         for s in seeds], dtype=F64)
    sparse.fit(X, Y_CLASS.reshape(-1, 1), batch_size=8, epochs=1)
    np.testing.assert_allclose([r["loss"] for r in sparse.evaluate(X, Y_CLASS.reshape(-1, 1))],
                               [r["loss"] for r in sparse.evaluate(X, Y_CLASS)])


def test_sample_weights_weight_the_loss_but_not_the_metrics():
    """Keras 3: sample weights enter the loss; compiled 'metrics' stay unweighted."""
    pop = Population([Member([Dense(2, activation="softmax", input_shape=(5,))], seed=0)],
                     dtype=F64)
    weights = RNG.random(40)
    probs = pop.predict(X)[0]
    got = pop.evaluate(X, Y_CLASS, sample_weight=weights)[0]
    np.testing.assert_allclose(got["accuracy"], (probs.argmax(axis=1) == Y_CLASS).mean())
    per_sample = -np.log(np.clip(probs[np.arange(40), Y_CLASS], 1e-7, 1 - 1e-7))
    np.testing.assert_allclose(got["loss"], (weights * per_sample).sum() / 40, rtol=1e-12)


def test_each_member_gets_its_own_initializers_and_a_frozen_layer_stays_frozen():
    members = [regression(0), regression(0, kernel_initializer="zeros", bias_initializer="ones"),
               Member([Dense(4, activation="tanh", input_shape=(5,), trainable=False), Dense(1)],
                      optimizer="sgd", seed=0)]
    with pytest.raises(ConfigError, match="trainable=False vs trainable=True"):
        Population(members, loss="mse")
    pop = Population(members[:2], loss="mse", dtype=F64)
    weights = pop.member_weights(1)
    assert torch.equal(weights[(0, "kernel")], torch.zeros(5, 4, dtype=F64))
    assert torch.equal(weights[(0, "bias")], torch.ones(4, dtype=F64))
    frozen = Population([members[2]], loss="mse", dtype=F64)
    before = frozen.member_weights(0)
    frozen.fit(X, Y_REAL, batch_size=8, epochs=1)
    after = frozen.member_weights(0)
    assert torch.equal(before[(0, "kernel")], after[(0, "kernel")])
    assert not torch.equal(before[(1, "kernel")], after[(1, "kernel")])


class SumOfCubes(Regularizer):
    """A user's regularizer that happens to have an attribute called l1."""

    def __init__(self, l1):
        self.l1 = l1

    def __call__(self, w):
        return self.l1 * (w**3).abs().sum()

    def get_config(self):
        return {"l1": self.l1}


def test_a_custom_regularizer_is_called_even_with_an_l1_attribute():
    pop = Population([regression(0, kernel_regularizer=SumOfCubes(2.0))], loss="mse", dtype=F64)
    kernel = pop.member_weights(0)[(0, "kernel")]
    got = pop.evaluate(X, Y_REAL)[0]["penalty"]
    np.testing.assert_allclose(got, 2.0 * float((kernel**3).abs().sum()), rtol=1e-12)


class Reader:
    """An observer that reads weights and evaluates at every epoch's end."""

    def on_train_begin(self, population):
        self.population = population

    def on_epoch_end(self, epoch, logs):
        for member_id in range(self.population.size):
            self.population.member_weights(member_id)
        self.population.evaluate(X, Y_CLASS)
        self.population.predict(X)


def classifiers():
    stop = EarlyStoppingRule(monitor="loss", patience=0, min_delta=10.0, restore_best_weights=True)
    return [Member([Dense(4, activation="relu", input_shape=(5,)),
                    Dense(2, activation="softmax")], seed=s, early_stopping=rule)
            for s, rule in ((0, stop), (0, None), (1, None))]


def test_reading_during_fit_changes_nothing():
    results = []
    for observers in ((), (Reader(),)):
        pop = Population(classifiers(), dtype=F64)
        result = pop.fit(X, Y_CLASS, batch_size=8, epochs=4, observers=observers)
        results.append(([(r.status, r.epochs_run) for r in result.members],
                        [pop.member_weights(i) for i in range(3)]))
    assert results[0][0] == results[1][0] == [("stopped_early", 2), ("done", 4), ("done", 4)]
    for a, b in zip(results[0][1], results[1][1], strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_member_resumed_in_a_second_fit_trains_as_it_would_alone():
    """Member 0 stops in the first fit while member 1 (same seed) goes on; in the second
    fit member 0 must draw its own batches and take its own Adam steps."""
    def run(members, index):
        pop = Population(members, dtype=F64)
        pop.fit(X, Y_CLASS, batch_size=8, epochs=4)
        second = pop.fit(X, Y_CLASS, batch_size=8, epochs=2)
        return pop.member_weights(index), second.members[index]
    alone, alone_result = run(classifiers()[:1], 0)
    together, together_result = run(classifiers(), 0)
    assert alone_result.history == together_result.history
    for key in alone:
        np.testing.assert_allclose(alone[key].numpy(), together[key].numpy(), rtol=1e-12,
                                   atol=1e-15)


def test_each_fit_returns_new_results_and_a_diverged_member_stays_frozen():
    members = [Member([Dense(4, activation="relu", input_shape=(5,)), Dense(1)],
                      optimizer=opt, seed=0) for opt in ("sgd", __import__("reglab").optimizers.SGD(1e6))]
    pop = Population(members, loss="mse", metrics=(), dtype=F64)
    first = pop.fit(X, Y_REAL, batch_size=8, epochs=2)
    frozen = pop.member_weights(1)
    second = pop.fit(X, Y_REAL, batch_size=8, epochs=1)
    assert first.members[0] is not second.members[0]
    assert len(first.members[0].history["loss"]) == 2
    assert len(second.members[0].history["loss"]) == 1
    assert first.members[1].status == second.members[1].status == "diverged"
    assert second.members[1].diverged_at == first.members[1].diverged_at
    assert all(torch.equal(frozen[k], pop.member_weights(1)[k]) for k in frozen)


def test_augmentation_layers_combine_with_an_affine_spec():
    x = RNG.random((16, 6, 6, 1))
    pop = Population([Member([RandomFlip("horizontal", input_shape=(6, 6, 1)), Flatten(),
                              Dense(2, activation="softmax")], seed=0)], dtype=F64)
    result = pop.fit(x, Y_CLASS[:16], batch_size=8, epochs=1,
                     augment=AffineSpec(rotation_range=10, fill_mode="reflect"))
    assert np.isfinite(result.members[0].history["loss"]).all()


def test_bad_arguments_name_their_place():
    with pytest.raises(ConfigError, match=r"layer 0 \(conv2d\) .* empty output"):
        Population([Member([Conv2D(2, 5, input_shape=(3, 3, 1))])])
    pop = Population([regression(0)], loss="mse", metrics=())
    with pytest.raises(ConfigError, match="'validation_data' must be a tuple"):
        pop.fit(X, Y_REAL, validation_data=X)
    with pytest.raises(ConfigError, match="evaluate: 'batch_size' must be an int >= 1. Got 0"):
        pop.evaluate(X, Y_REAL, batch_size=0)
    with pytest.raises(ConfigError, match="Population: 'metrics'"):
        Population([regression(0)], loss="mse", metrics=("acuracy",))


def step_function(x):
    """A non-differentiable activation: no gradient reaches the layers before it."""
    return (x > 0).to(x.dtype)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "rmsprop"])
def test_weights_without_a_gradient_are_left_alone(optimizer):
    members = [Member([Dense(4, activation=step_function, input_shape=(5,)),
                       Dense(2, activation="softmax")], optimizer=optimizer, seed=0)]
    pop = Population(members, dtype=F64)
    before = pop.member_weights(0)
    pop.fit(X, Y_CLASS, batch_size=8, epochs=1)
    after = pop.member_weights(0)
    assert torch.equal(before[(0, "kernel")], after[(0, "kernel")])  # no gradient, no decay
    assert not torch.equal(before[(1, "kernel")], after[(1, "kernel")])


@pytest.mark.parametrize("check_every", [1, 2])
def test_an_epoch_ended_after_a_batch_is_training_on_the_batches_before_it(
        monkeypatch, check_every):
    """``end_epoch_requested`` (Keras's stop_training within an epoch) ends the epoch after
    the batch: its logs, validation and weights are those of an epoch over those batches
    alone, and the next epoch runs whole; with the divergence checks deferred too."""
    from reglab.engine import epoch as epoch_module

    monkeypatch.setattr(epoch_module, "divergence_check_steps", lambda device: check_every)

    def population():
        return Population([regression(s) for s in (0, 1)], loss="mse", metrics=("mae",),
                          dtype=F64)

    cut = population()
    observer = EndEpochAt(0, 2)  # after 3 batches of 8
    first = cut.fit(X, Y_REAL, batch_size=8, epochs=1, shuffle=False,
                    validation_data=(X, Y_REAL), observers=[observer])
    alone = population()
    expected = alone.fit(X[:24], Y_REAL[:24], batch_size=8, epochs=1, shuffle=False,
                         validation_data=(X, Y_REAL))
    assert observer.ends == [0]
    for m in (0, 1):
        assert first.members[m].history == expected.members[m].history
        for key, value in cut.member_weights(m).items():
            torch.testing.assert_close(value, alone.member_weights(m)[key], rtol=0, atol=0)
    # the next call's epoch is whole again
    again = cut.fit(X, Y_REAL, batch_size=8, epochs=2, initial_epoch=1, shuffle=False)
    assert all(len(r.history["loss"]) == 1 for r in again.members)
    assert cut.end_epoch_requested is False
