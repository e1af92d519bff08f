"""LambdaCallback: the given functions are the hooks, in fit and when called directly."""

from __future__ import annotations

import numpy as np
import pytest

from reglab.callbacks.lambda_callback import LambdaCallback
from reglab.errors import ConfigError
from reglab.layers import Dense
from reglab.models import Sequential


def test_hooks_call_the_functions_with_keras_arguments():
    calls = []
    callback = LambdaCallback(
        on_epoch_begin=lambda epoch, logs: calls.append(("epoch_begin", epoch)),
        on_train_end=lambda logs: calls.append(("train_end", logs)),
        on_test_begin=lambda logs: calls.append(("test_begin", logs)))
    callback.on_epoch_begin(2, {})
    callback.on_train_end({"loss": 1.0})
    callback.on_test_begin({})
    callback.on_epoch_end(2, {})  # not given: the base class's no-op
    assert calls == [("epoch_begin", 2), ("train_end", {"loss": 1.0}), ("test_begin", {})]


def test_batch_aliases_forward_as_in_keras():
    batches = []
    callback = LambdaCallback(on_batch_end=lambda batch, logs: batches.append(batch))
    callback.on_train_batch_end(4, {})
    callback.on_train_batch_begin(4, {})
    assert batches == [4]


def test_unknown_hook_or_non_function_is_an_error():
    with pytest.raises(ConfigError, match="Got 'on_epoch_ends'. Did you mean 'on_epoch_end'?"):
        LambdaCallback(on_epoch_ends=print)
    with pytest.raises(ConfigError, match="LambdaCallback: 'on_train_end' must be a function. "
                                          "Got 3."):
        LambdaCallback(on_train_end=3)


def test_fit_calls_every_given_hook():
    model = Sequential([Dense(4, activation="relu", input_shape=(3,)),
                        Dense(2, activation="softmax")], seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    x = np.random.default_rng(0).random((16, 3)).astype("float32")
    calls = []
    callback = LambdaCallback(
        on_train_begin=lambda logs: calls.append("train_begin"),
        on_epoch_end=lambda epoch, logs: calls.append(("epoch_end", epoch, sorted(logs))),
        on_train_batch_end=lambda batch, logs: calls.append(("batch_end", batch, "loss" in logs)),
        on_train_end=lambda logs: calls.append("train_end"))
    model.fit(x, np.arange(16) % 2, epochs=2, batch_size=8, verbose=0, callbacks=[callback])
    batches = [("batch_end", 0, True), ("batch_end", 1, True)]
    assert calls == ["train_begin", *batches, ("epoch_end", 0, ["accuracy", "loss"]),
                     *batches, ("epoch_end", 1, ["accuracy", "loss"]), "train_end"]
