"""reglab.engine: early stopping per member inside ``Population.fit``.

With ``min_delta`` far larger than any change of the loss, only epoch 0 counts as an
improvement (it improves on +inf), so by Keras's rule a member with patience p stops at
epoch max(p, 1) whatever the data, and its best epoch is 0.
"""

from __future__ import annotations

import numpy as np
import torch

from reglab.engine import EarlyStoppingRule, Member, Population
from reglab.layers import Dense
from reglab.optimizers.optimizers import SGD

NEVER_IMPROVES = 1e9  # min_delta
EPOCHS = 6




def member(seed, patience=None, restore=False, lr=0.05, monitor="loss"):
    rule = None if patience is None else EarlyStoppingRule(
        monitor=monitor, min_delta=NEVER_IMPROVES, patience=patience, restore_best_weights=restore)
    return Member([Dense(6, activation="relu", input_shape=(4,)), Dense(3, activation="softmax")],
                  optimizer=SGD(lr, momentum=0.9), seed=seed, early_stopping=rule)


class WeightRecorder:
    """Records every training member's weights at each epoch end (before stopped ones leave)."""

    def on_train_begin(self, population):
        self.population = population
        self.weights = {}

    def on_epoch_end(self, epoch, logs):
        state = self.population.state
        self.weights[epoch] = {m: state.member_weights(m) for m in state.member_ids}


def dataset(seed=0):
    """Noisy labels of one fixed linear rule: learnable, and easy to overfit."""
    rng = np.random.default_rng(seed)
    rule = np.random.default_rng(99).normal(size=(4, 3))
    x = rng.normal(size=(40, 4))
    return x, np.argmax(x @ rule + rng.normal(size=(40, 3)), axis=1)


def fit(members, **kwargs):
    pop = Population(members, dtype=torch.float64)
    recorder = WeightRecorder()
    x, y = dataset()
    result = pop.fit(x, y, batch_size=10, epochs=EPOCHS, observers=[recorder], **kwargs)
    return pop, result, recorder


def equal_weights(a, b):
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_members_with_different_patience_stop_at_different_epochs():
    pop, result, recorder = fit([member(0, patience=1), member(1, patience=3), member(2),
                                 member(3, patience=0)])
    expected = [("stopped_early", 1), ("stopped_early", 3), ("done", None),
                ("stopped_early", 1)]  # patience 0 cannot stop at epoch 0
    for r, (status, stopped) in zip(result.members, expected):
        assert (r.status, r.stopped_epoch) == (status, stopped), r.index
        runs = EPOCHS if stopped is None else stopped + 1
        assert r.epochs_run == runs
        for name in ("loss", "data_loss", "penalty", "accuracy"):
            assert len(r.history[name]) == runs, (r.index, name)
    assert [r.best_epoch for r in result.members] == [0, 0, None, 0]
    # The members left the population at the end of their stopping epoch.
    assert sorted(recorder.weights[1]) == [0, 1, 2, 3]
    assert sorted(recorder.weights[2]) == [1, 2]
    assert sorted(recorder.weights[4]) == [2]
    # Without restore_best_weights, a stopped member keeps its last weights.
    assert equal_weights(result.members[0].weights, recorder.weights[1][0])
    assert equal_weights(pop.member_weights(1), recorder.weights[3][1])


def test_stopping_members_do_not_disturb_the_others():
    _, with_stops, _ = fit([member(0, patience=1), member(1), member(2, patience=2)])
    pop_plain, plain, _ = fit([member(0), member(1), member(2)])
    assert with_stops.members[1].history == plain.members[1].history
    assert equal_weights(with_stops.members[1].weights, pop_plain.member_weights(1))
    # The stopped member's history is the prefix of its uninterrupted history.
    assert with_stops.members[0].history["loss"] == plain.members[0].history["loss"][:2]


def test_restore_best_weights_returns_the_snapshot():
    pop, result, recorder = fit([member(0, patience=2, restore=True), member(1, patience=2)])
    restored, plain = result.members
    assert (restored.status, restored.stopped_epoch, restored.best_epoch) == ("stopped_early", 2, 0)
    assert equal_weights(restored.weights, recorder.weights[0][0])  # the epoch-0 snapshot
    assert not equal_weights(restored.weights, recorder.weights[2][0])
    assert equal_weights(pop.member_weights(0), recorder.weights[0][0])
    assert equal_weights(plain.weights, recorder.weights[2][1])  # no restore: last weights


def test_restore_best_weights_applies_even_without_stopping():
    """Keras 3 restores the best weights at the end of training whenever it holds a snapshot."""
    pop, result, recorder = fit([member(0, patience=100, restore=True)])
    r = result.members[0]
    assert (r.status, r.best_epoch, r.stopped_epoch) == ("done", 0, None)
    assert equal_weights(r.weights, recorder.weights[0][0])
    assert equal_weights(pop.member_weights(0), recorder.weights[0][0])
    assert not equal_weights(recorder.weights[EPOCHS - 1][0], recorder.weights[0][0])


def test_restore_best_weights_snapshots_the_best_validation_epoch():
    """A natural run: the snapshot is the weights at the epoch of the lowest val_loss."""
    x_val, y_val = dataset(seed=1)
    rule = EarlyStoppingRule(monitor="val_loss", patience=EPOCHS, restore_best_weights=True)
    members = [Member([Dense(6, activation="relu", input_shape=(4,)),
                       Dense(3, activation="softmax")], optimizer=SGD(0.05, momentum=0.9),
                      seed=0, early_stopping=rule)]
    pop, result, recorder = fit(members, validation_data=(x_val, y_val))
    r = result.members[0]
    val_loss = r.history["val_loss"]
    assert len(val_loss) == EPOCHS
    best = int(np.argmin(val_loss))
    assert 0 < best < EPOCHS - 1  # neither the first eligible epoch nor the final weights
    assert r.best_epoch == best
    assert equal_weights(r.weights, recorder.weights[best][0])
    assert equal_weights(pop.member_weights(0), recorder.weights[best][0])
