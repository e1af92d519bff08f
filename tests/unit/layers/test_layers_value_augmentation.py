"""The value-changing augmentation layers in a population: settings written otherwise but
equal are one structure, and each member trains as it would alone."""

from __future__ import annotations

import numpy as np
import pytest

from reglab.engine import Member, Population
from reglab.errors import StructureError
from reglab.layers import Dense, Flatten, RandomBrightness, RandomContrast, RandomRotation

X = np.random.default_rng(0).uniform(0, 255, (32, 6, 6, 1)).astype("float32")
Y = np.arange(32) % 2


def member(seed, *augmentation):
    return Member([*augmentation, Flatten(), Dense(2, activation="softmax")],
                  input_shape=(6, 6, 1), optimizer="sgd", seed=seed)


def fit(members):
    population = Population(members, loss="sparse_categorical_crossentropy")
    result = population.fit(X, Y, batch_size=8, epochs=2)
    return [m.history["loss"] for m in result.members]


def test_equal_settings_written_otherwise_are_one_structure_and_train_as_alone():
    first = (RandomContrast(0.2), RandomBrightness(0.1, value_range=(0, 255)),
             RandomRotation(0.1))
    second = (RandomContrast((0, 0.2), value_range=[0.0, 255.0]),
              RandomBrightness([-0.1, 0.1], value_range=[0, 255.0]), RandomRotation(0.1))
    together = fit([member(1, *first), member(2, *second)])
    alone = fit([member(1, *first)]) + fit([member(2, *second)])
    assert together == alone


def test_other_settings_are_another_structure():
    with pytest.raises(StructureError):
        Population([member(1, RandomContrast(0.2)), member(2, RandomContrast(0.3))],
                   loss="sparse_categorical_crossentropy")
