"""Population.copy_member: population-based training's exploit step."""

from __future__ import annotations

import numpy as np
import pytest

from reglab.engine import Member, Population
from reglab.errors import ConfigError
from reglab.layers import Dense, Dropout
from reglab.optimizers import Adam
from reglab.regularizers import L2


def member(lr: float, l2: float, seed: int = 0) -> Member:
    return Member([Dense(16, activation="relu", input_shape=(8,), kernel_regularizer=L2(l2)),
                   Dropout(0.2), Dense(3, activation="softmax")],
                  Adam(learning_rate=lr), seed=seed)


def data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 1)
    return x, y


class CopyAfterFirstEpoch:
    """After epoch 0, member 1 takes member 0's state and hyperparameters."""

    def on_train_begin(self, population):
        self.population = population

    def on_epoch_end(self, epoch, logs):
        if epoch == 0:
            population = self.population
            population.copy_member(0, 1)
            for name in ("learning_rate", "dense.kernel.l2"):
                population.set_hyperparameter(1, name, population.hyperparameter(0, name))


def test_a_member_that_copies_another_then_trains_as_that_member_would():
    x, y = data()
    population = Population([member(0.01, 1e-3), member(0.001, 1e-1)])
    result = population.fit(x, y, batch_size=16, epochs=4, validation_data=(x[:40], y[:40]),
                            observers=[CopyAfterFirstEpoch()])
    first, second = result.members[0].history, result.members[1].history
    assert second["loss"][0] != pytest.approx(first["loss"][0])  # different before the copy
    for key in ("loss", "val_loss", "accuracy"):
        np.testing.assert_array_equal(second[key][1:], first[key][1:], err_msg=key)
    for key, value in population.member_weights(0).items():
        np.testing.assert_array_equal(population.member_weights(1)[key].numpy(),
                                      value.numpy())


def test_copy_keeps_the_target_s_own_seed_streams():
    """With another seed, the copied member's batches and dropout masks stay its own."""
    x, y = data()
    population = Population([member(0.01, 1e-3, seed=0), member(0.01, 1e-3, seed=5)])
    result = population.fit(x, y, batch_size=16, epochs=3, observers=[CopyAfterFirstEpoch()])
    assert result.members[1].history["loss"][1] != result.members[0].history["loss"][1]


def test_copy_refuses_members_that_are_not_training():
    population = Population([member(0.01, 1e-3), member(0.01, 1e-3)])
    with pytest.raises(ConfigError, match="member_id"):
        population.copy_member(0, 7)
    population.remove_members([1])
    x, y = data()
    population.fit(x, y, batch_size=16, epochs=1)
    with pytest.raises(ConfigError, match="member 1 is not training"):
        population.copy_member(0, 1)


class StopAndDiscard:
    """Stops member 0 after its first epoch and frees it once it is parked."""

    def on_train_begin(self, population):
        self.population = population

    def on_epoch_end(self, epoch, logs):
        if epoch == 0:
            self.population.stop_requested.add(0)
            with pytest.raises(ConfigError, match="still training"):
                self.population.discard_members([0])

    def on_epoch_complete(self, epoch):
        if epoch == 0:
            self.population.discard_members([0])


def test_a_discarded_member_is_freed_and_the_others_train_on_unchanged():
    x, y = data()
    alone = Population([member(0.001, 1e-1)]).fit(x, y, batch_size=16, epochs=3)
    population = Population([member(0.01, 1e-3), member(0.001, 1e-1)])
    result = population.fit(x, y, batch_size=16, epochs=3, observers=[StopAndDiscard()])
    assert result.members[0].epochs_run == 1 and result.members[0].weights is None
    np.testing.assert_array_equal(result.members[1].history["loss"],
                                  alone.members[0].history["loss"])
    with pytest.raises(ConfigError, match="discarded"):
        population.member_weights(0)
    with pytest.raises(ConfigError, match="not training"):
        population.copy_member(1, 0)
    assert population.member_weights(1)  # the other one is still there
