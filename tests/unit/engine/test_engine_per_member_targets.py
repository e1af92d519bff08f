"""reglab.engine.PerMember: members that see the same inputs with targets of their own
(a study's label-noise regimes of one subset) train in one population exactly as each
would alone on its own targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reglab.engine import Member, PerMember, Population
from reglab.errors import DataError
from reglab.layers import Dense, Dropout
from reglab.regularizers import l2


def member(seed, strength=0.0, rate=0.0):
    return Member([Dense(8, activation="relu", input_shape=(5,), kernel_regularizer=l2(strength)),
                   Dropout(rate), Dense(3, activation="softmax")], "adam", seed=seed)


SETTINGS = [(0, 0.0, 0.0), (0, 0.01, 0.3), (1, 0.0, 0.0), (1, 0.0, 0.5), (0, 0.0, 0.2)]


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 5))
    clean = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)
    labels = []
    for m in range(len(SETTINGS)):  # each member its own noisy copy
        y = clean.copy()
        flip = np.random.default_rng(m).random(len(y)) < 0.1 * m
        y[flip] = (y[flip] + 1) % 3
        labels.append(y)
    return x, np.stack(labels)


def test_each_member_trains_as_alone_on_its_own_targets():
    x, labels = data()
    pop = Population([member(*s) for s in SETTINGS], dtype=torch.float64)
    result = pop.fit(x, PerMember(labels), batch_size=16, epochs=3,
                     validation_data=(x[:30], PerMember(labels[:, :30])))
    logs = pop.evaluate(x, PerMember(labels))
    for m, settings in enumerate(SETTINGS):
        alone = Population([member(*settings)], dtype=torch.float64)
        expected = alone.fit(x, labels[m], batch_size=16, epochs=3,
                             validation_data=(x[:30], labels[m][:30]))
        assert result.members[m].history == expected.members[0].history, m
        for key, value in alone.member_weights(0).items():
            assert torch.equal(pop.member_weights(m)[key], value), (m, key)
        assert logs[m] == alone.evaluate(x, labels[m])[0]
    assert len({tuple(h["loss"]) for h in (r.history for r in result.members)}) == 5


def test_per_member_targets_are_checked_row_by_row():
    x, labels = data()
    pop = Population([member(*s) for s in SETTINGS])
    with pytest.raises(DataError, match=r"one row per member \(5\)"):
        pop.fit(x, PerMember(labels[:3]), epochs=1)
    bad = labels.copy()
    bad[2, 4] = 7
    with pytest.raises(DataError, match=r"labels must lie in \[0, 2\]"):
        pop.fit(x, PerMember(bad), epochs=1)
    with pytest.raises(DataError, match="same number of samples"):
        pop.fit(x, PerMember(labels[:, :50]), epochs=1)


def test_unsigned_labels_beyond_int64_are_named_as_they_are():
    # a cast to int64 would wrap 2**63 + 5 to a negative label the file does not hold
    x, labels = data()
    y = labels[0].astype(np.uint64)
    y[3] = 2**63 + 5
    pop = Population([member(*SETTINGS[0])])
    with pytest.raises(DataError, match=r"fit a 64-bit signed integer.*up to "
                                        r"9223372036854775813 \(uint64\)"):
        pop.fit(x, y, epochs=1)
    y[3] = 1  # unsigned labels that fit train as any integer labels
    pop.fit(x, y, epochs=1)
