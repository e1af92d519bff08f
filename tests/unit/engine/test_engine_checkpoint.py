"""A population stopped after any epoch and resumed from its checkpoint ends exactly as one
that never stopped: weights, histories, statuses, early stopping, averages, bit for bit."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from reglab.engine import EarlyStoppingRule, Member, Population
from reglab.errors import ConfigError
from reglab.layers import Dense, Dropout
from reglab.optimizers import Adam
from reglab.regularizers import l1, l2


def members():
    def model(rate, reg):
        return [Dense(16, activation="relu", input_shape=(5,), kernel_regularizer=reg),
                Dropout(rate), Dense(3, activation="softmax")]
    stop = EarlyStoppingRule(monitor="val_loss", patience=0, min_delta=0.05,
                             restore_best_weights=True)

    def adam(lr=0.01, momentum=0.99, **kwargs):  # EMA is structure: every member keeps one
        return Adam(lr, use_ema=True, ema_momentum=momentum, **kwargs)
    return [
        Member(model(0.0, None), adam(), seed=0),
        Member(model(0.3, l2(1e-3)), adam(), seed=0, early_stopping=stop),
        Member(model(0.0, l1(1e-3)), adam(momentum=0.9), seed=1),
        Member(model(0.2, None), adam(swa_start=2), seed=1),
        Member(model(0.0, None), adam(1e30), seed=2),  # diverges in its first epoch
    ]


def data(seed=0, n=96):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0.5)
    return x, y


class Stop(Exception):
    pass


class Checkpointer:
    """Saves a checkpoint after each epoch (through torch.save, as a study does) and stops
    the fit when asked, as a kill would, before the next epoch's end."""

    def __init__(self, population, stop_after=None):
        self.population, self.stop_after, self.saved = population, stop_after, None

    def on_epoch_complete(self, epoch):
        buffer = io.BytesIO()
        torch.save(self.population.checkpoint(), buffer)
        self.saved = buffer.getvalue()
        if epoch == self.stop_after:
            raise Stop()


def fit(population, observers=(), resume=None):
    x, y = data()
    return population.fit(x, y, batch_size=16, epochs=6, validation_data=data(1, 48),
                          observers=observers, resume=resume)


@pytest.mark.parametrize("stop_after", [0, 2, 4])
def test_a_resumed_fit_ends_as_an_uninterrupted_one(stop_after):
    reference = Population(members())
    expected = fit(reference)
    first = Population(members())
    saver = Checkpointer(first, stop_after)
    with pytest.raises(Stop):
        fit(first, [saver])
    resumed = Population(members())  # a new process would build it again from the study
    state = torch.load(io.BytesIO(saver.saved), weights_only=False)
    assert state["epoch"] == stop_after
    result = fit(resumed, resume=state)
    for got, want in zip(result.members, expected.members):
        assert (got.status, got.epochs_run, got.best_epoch, got.stopped_epoch) == \
            (want.status, want.epochs_run, want.best_epoch, want.stopped_epoch)
        assert got.history == want.history
    for member in range(len(expected.members)):
        for key, value in reference.member_weights(member).items():
            assert torch.equal(resumed.member_weights(member)[key], value), (member, key)


def test_a_checkpoint_of_other_members_is_refused():
    population = Population(members())
    saver = Checkpointer(population, stop_after=0)
    with pytest.raises(Stop):
        fit(population, [saver])
    others = Population(members()[:3])
    with pytest.raises(ConfigError, match="checkpoint of another population"):
        fit(others, resume=torch.load(io.BytesIO(saver.saved), weights_only=False))
    with pytest.raises(ConfigError, match="'resume' must be a Population.checkpoint"):
        fit(Population(members()), resume={"format": 0})


def test_checkpoint_outside_a_fit_is_an_error():
    with pytest.raises(ConfigError, match="only between the epochs of a fit"):
        Population(members()).checkpoint()
