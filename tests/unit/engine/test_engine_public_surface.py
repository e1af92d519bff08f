"""Population's public surface: hyperparameters by name, members added and removed between
epochs, weight averages finalized once; each checked against the same member trained alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reglab.engine import EarlyStoppingRule, Member, Population
from reglab.errors import ConfigError
from reglab.layers import BatchNormalization, Dense, Dropout, LabelSmoothing, MixUp
from reglab.models import Sequential
from reglab.optimizers import SGD, Adam


def data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype("float32")
    return x, (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1)


def member(seed=0, **optimizer):
    return Member([Dense(4, activation="relu", input_shape=(5,)), Dropout(0.1),
                   Dense(3, activation="softmax")], Adam(0.01, **optimizer), seed=seed,
                  early_stopping=optimizer.pop("stop", None))


class AddAfter:
    def __init__(self, epoch, members):
        self.epoch, self.members, self.ids = epoch, members, None

    def on_train_begin(self, population):
        self.population = population

    def on_epoch_end(self, epoch, logs):
        if epoch == self.epoch:
            self.ids = self.population.add_members(self.members)


def test_set_hyperparameter_checks_values_as_their_owner_does():
    population = Population([member()])
    for name, value, message in [("learning_rate", -0.5, "Adam: 'learning_rate'"),
                                 ("dropout.rate", 1.7, "Dropout: 'rate'"),
                                 ("beta_2", 1.0, "Adam: 'beta_2'"),
                                 ("swa_start", 2.5, "'swa_start' must be None or an int"),
                                 ("dense.kernel.l9", 1.0, "unknown hyperparameter")]:
        with pytest.raises(ConfigError, match=rf"set_hyperparameter: .*{message}"):
            population.set_hyperparameter(0, name, value)
    assert population.hyperparameter(0, "learning_rate") == 0.01  # nothing changed
    population.set_hyperparameter(0, "dropout.rate", 0.4)
    assert population.hyperparameter(0, "dropout.rate") == pytest.approx(0.4)


@pytest.mark.parametrize("optimizer", [{}, {"swa_start": 1}, {"use_ema": True}])
def test_a_member_added_mid_fit_trains_as_it_would_alone(optimizer):
    x, y = data()
    structural = {"use_ema": True} if "use_ema" in optimizer else {}  # EMA is structure
    population = Population([member(0, **structural)])
    adder = AddAfter(1, [member(3, **optimizer)])
    result = population.fit(x, y, batch_size=16, epochs=5, observers=[adder],
                            validation_data=(x, y))
    alone = Population([member(3, **optimizer)])
    expected = alone.fit(x, y, batch_size=16, epochs=3, validation_data=(x, y))
    added, = adder.ids
    assert result.members[added].history == expected.members[0].history
    for key, value in alone.member_weights(0).items():
        assert torch.equal(population.member_weights(added)[key], value), key


def test_swa_given_later_by_set_hyperparameter_takes_effect():
    x, y = data()
    later = Population([member(0)])
    later.set_hyperparameter(0, "swa_start", 1)
    later.fit(x, y, batch_size=16, epochs=3)
    from_start = Population([member(0, swa_start=1)])
    from_start.fit(x, y, batch_size=16, epochs=3)
    for key, value in from_start.member_weights(0).items():
        assert torch.equal(later.member_weights(0)[key], value), key


def test_early_stopping_of_an_added_member_counts_its_own_epochs():
    x, y = data()
    rule = EarlyStoppingRule(monitor="val_loss", patience=1, start_from_epoch=3)
    population = Population([member(0)])
    adder = AddAfter(3, [Member(member(5).layers, Adam(0.01), seed=5, early_stopping=rule)])
    result = population.fit(x, y, batch_size=16, epochs=12, observers=[adder],
                            validation_data=(x, y))
    alone = Population([Member(member(5).layers, Adam(0.01), seed=5, early_stopping=rule)])
    expected = alone.fit(x, y, batch_size=16, epochs=8, validation_data=(x, y))
    added, = adder.ids
    assert result.members[added].epochs_run == expected.members[0].epochs_run
    assert result.members[added].history == expected.members[0].history


@pytest.mark.parametrize("optimizer", [{"use_ema": True}, {"swa_start": 1}])
def test_a_generator_finalizes_the_averages_once_as_arrays_do(optimizer):
    x, y = data(64)

    def model():
        m = Sequential([Dense(4, activation="relu", input_shape=(5,)),
                        Dense(3, activation="softmax")], seed=1)
        m.compile(optimizer=Adam(0.05, **optimizer), loss="sparse_categorical_crossentropy")
        return m

    def batches():
        while True:
            for lo in range(0, 64, 16):
                yield x[lo:lo + 16], y[lo:lo + 16]

    arrays, generator = model(), model()
    arrays.fit(x, y, batch_size=16, epochs=4, shuffle=False, verbose=0)
    generator.fit(batches(), steps_per_epoch=4, epochs=4, verbose=0)
    for a, b in zip(arrays.get_weights(), generator.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_swa_leaves_a_frozen_batch_normalization_alone():
    x, y = data()
    norm = BatchNormalization(trainable=False)
    population = Population([Member([Dense(4, input_shape=(5,)), norm,
                                     Dense(3, activation="softmax")], SGD(0.05, swa_start=0),
                                    seed=0)])
    stats = {(1, "moving_mean"): np.full(4, 5.0), (1, "moving_variance"): np.full(4, 2.0)}
    population.set_member_weights(0, stats)
    population.fit(x, y, batch_size=16, epochs=2)
    weights = population.member_weights(0)
    for key, value in stats.items():
        np.testing.assert_array_equal(weights[key].numpy(), value.astype("float32"))


@pytest.mark.parametrize("transform", [MixUp(0.4), LabelSmoothing(0.2)])
def test_batch_transforms_with_one_sigmoid_unit_and_integer_labels(transform):
    x, y = data()
    y = (y > 0).astype(np.int64)
    model = Sequential([type(transform).from_config(transform.get_config()),
                        Dense(1, activation="sigmoid")], seed=0)
    model.build((None, 5))
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0).history
    assert all(np.isfinite(history["loss"]))
    assert min(history["accuracy"]) > 0.2  # accuracy against the targets' side of 1/2
