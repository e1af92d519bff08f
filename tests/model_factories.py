"""Small models the facade tests share."""

from __future__ import annotations

from reglab.layers import Dense
from reglab.models import Sequential


def small_classifier(**compile_args) -> Sequential:
    """6 features -> 5 relu -> 3 softmax, seed 0, compiled with adam and accuracy."""
    model = Sequential([Dense(5, activation="relu", input_shape=(6,)),
                        Dense(3, activation="softmax")], seed=0)
    model.compile(**{"optimizer": "adam", "loss": "sparse_categorical_crossentropy",
                     "metrics": ["accuracy"], **compile_args})
    return model
