"""Custom regularizers and constraints: configs keep them in memory, files refuse them
unless registered."""

from __future__ import annotations

import pytest
import torch

from reglab.constraints import Constraint
from reglab.errors import ConfigError
from reglab.layers import Dense
from reglab.models import Sequential, load_model
from reglab.regularizers import Regularizer, register


class Cube(Regularizer):
    def __init__(self, strength=0.1):
        self.strength = strength

    def __call__(self, w):
        return self.strength * w.abs().pow(3).sum()

    def get_config(self):
        return {"strength": self.strength}


class Clip(Constraint):
    def apply(self, w, values, to_dims):
        return w.clamp(-1, 1)


def test_custom_objects_round_trip_in_memory_and_are_refused_by_files(tmp_path):
    layer = Dense(3, kernel_regularizer=Cube(0.2), kernel_constraint=Clip(), input_shape=(2,))
    clone = Dense.from_config(layer.get_config())
    assert clone.kernel_regularizer is layer.kernel_regularizer
    assert clone.kernel_constraint is layer.kernel_constraint
    with pytest.raises(ConfigError, match="'kernel_regularizer': must be a built-in regularizer"):
        Sequential([layer], seed=0).save(tmp_path / "model.keras")


def test_a_registered_regularizer_saves_and_loads(tmp_path):
    class Quartic(Cube):
        def __call__(self, w):
            return self.strength * w.pow(4).sum()

    register(Quartic, "quartic")
    model = Sequential([Dense(3, kernel_regularizer=Quartic(0.3), input_shape=(2,))], seed=0)
    model.save(tmp_path / "model.keras")
    loaded = load_model(tmp_path / "model.keras")
    assert type(loaded.layers[0].kernel_regularizer) is Quartic
    assert loaded.layers[0].kernel_regularizer.strength == 0.3
    assert float(loaded.layers[0].kernel_regularizer(torch.ones(2))) == pytest.approx(0.6)
