"""One optimizer object given to two models, side by side with Keras (torch backend): an
optimizer that has stepped for one model is refused when another trains with it (Keras's
'Unknown variable'), the first model's step count untouched; one that has not stepped
trains whichever model trains first."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import reglab  # noqa: E402

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
if keras.backend.backend() != "torch":  # pragma: no cover - another backend chosen outside
    pytest.skip("these comparisons run Keras on its torch backend", allow_module_level=True)

X = np.random.default_rng(0).standard_normal((64, 8)).astype("float32")
Y = np.arange(64) % 3


def _model(api):
    model = api.Sequential([api.Input((8,)), api.layers.Dense(3, activation="softmax")])
    return model


def _trained_then_shared(api, train):
    optimizer = api.optimizers.Adam(0.01)
    first = _model(api)
    first.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    first.fit(X, Y, batch_size=32, epochs=2, verbose=0)
    second = _model(api)
    second.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError) as error:
        train(second)
    return first, second, optimizer, str(error.value)


@pytest.mark.parametrize("train", [
    lambda model: model.fit(X, Y, batch_size=32, epochs=1, verbose=0),
    lambda model: model.train_on_batch(X[:32], Y[:32])], ids=["fit", "train_on_batch"])
def test_an_optimizer_that_stepped_for_one_model_is_refused_by_another(train):
    results = {}
    for api in (keras, reglab):
        first, second, optimizer, message = _trained_then_shared(api, train)
        results[api.__name__] = int(np.asarray(optimizer.iterations))
        if api is reglab:
            assert "already trained another model" in message and "Adam" in message
            assert first.optimizer.iterations == 4  # still the first model's steps
            first.fit(X, Y, batch_size=32, epochs=1, verbose=0)  # which still trains on
            assert first.optimizer.iterations == 6
            second.compile(optimizer=reglab.optimizers.Adam.from_config(
                optimizer.get_config()), loss="sparse_categorical_crossentropy")
            second.fit(X, Y, batch_size=32, epochs=1, verbose=0)  # a new one trains it
            assert second.optimizer.iterations == 2
    assert results["reglab"] == results["keras"] == 4


def test_an_optimizer_that_has_not_stepped_trains_the_model_that_trains_first():
    for api in (keras, reglab):
        optimizer = api.optimizers.Adam(0.01)
        first, second = _model(api), _model(api)
        for model in (first, second):
            model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
        second.fit(X, Y, batch_size=32, epochs=1, verbose=0)
        assert int(np.asarray(optimizer.iterations)) == 2


def test_a_model_compiled_again_with_its_own_earlier_optimizer_trains_on():
    """The optimizer a model trained with, given back to it after another, is its own (Keras
    built it on this model's variables): taken, not refused."""
    for api in (keras, reglab):
        first = api.optimizers.Adam(0.01)
        model = _model(api)
        model.compile(optimizer=first, loss="sparse_categorical_crossentropy")
        model.fit(X, Y, batch_size=32, epochs=1, verbose=0)
        model.compile(optimizer=api.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
        model.compile(optimizer=first, loss="sparse_categorical_crossentropy")
        model.fit(X, Y, batch_size=32, epochs=1, verbose=0)
