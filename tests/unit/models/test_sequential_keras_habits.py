"""Things Keras users write: recovering from divergence, iterators in evaluate/predict,
plain-function losses, learning-rate schedules, re-compiling, popping layers."""

from __future__ import annotations

import numpy as np
import pytest

import reglab as keras
from model_factories import small_classifier
from reglab.callbacks import Callback
from reglab.errors import ConfigError, DataError
from reglab.layers import Dense, Flatten
from reglab.models import Sequential
from reglab.preprocessing.image import ImageDataGenerator

RNG = np.random.default_rng(2)
X = RNG.random((48, 6)).astype("float32")
Y = RNG.integers(0, 3, 48)


small = small_classifier


def test_a_diverged_model_warns_and_trains_again():
    model = Sequential([Dense(3, input_shape=(6,))], seed=0)
    model.compile(optimizer=keras.optimizers.SGD(1e6), loss="mse")
    ends = []
    watch = Callback()
    watch.on_epoch_end = lambda epoch, logs=None: ends.append((epoch, sorted(logs)))
    with pytest.warns(UserWarning, match=r"NaN or infinite at epoch \d+, batch \d+"):
        diverged = model.fit(X * 1e3, np.ones((48, 3)) * 1e3, epochs=3, verbose=0,
                             validation_split=0.25, callbacks=[watch])
    # as in Keras (with TerminateOnNaN), the epoch in which the loss went bad is logged with
    # its running loss to the bad batch (here the squares overflow: inf); reglab does not
    # validate the weights it dropped, so val_loss is NaN
    epoch = diverged.epoch[-1]
    assert ends[-1] == (epoch, ["loss", "val_loss"])
    assert diverged.history["loss"][-1] == np.inf and np.isnan(diverged.history["val_loss"][-1])
    assert len(diverged.history["loss"]) == len(diverged.epoch) == epoch + 1
    model.set_weights([np.zeros((6, 3)), np.zeros(3)])
    model.optimizer.learning_rate = 0.01
    history = model.fit(X, np.ones((48, 3)), epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    assert np.abs(model.get_weights()[0]).sum() > 0


def test_evaluate_and_predict_accept_iterators():
    images = RNG.random((32, 4, 4, 1)).astype("float32")
    labels = RNG.integers(0, 3, 32)
    model = Sequential([Flatten(input_shape=(4, 4, 1)), Dense(3, activation="softmax")], seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    generator = ImageDataGenerator(rescale=0.5)
    flow = generator.flow(images, labels, batch_size=8, shuffle=False)
    assert model.evaluate(flow, verbose=0) == pytest.approx(
        model.evaluate(images * 0.5, labels, verbose=0))
    np.testing.assert_allclose(model.predict(flow), model.predict(images * 0.5), rtol=1e-6)
    model.fit(flow, epochs=1, validation_data=flow, verbose=0)

    def batches():
        while True:
            yield images[:16], labels[:16]
    assert model.evaluate(batches(), steps=2, verbose=0) == pytest.approx(
        model.evaluate(np.concatenate([images[:16]] * 2), np.concatenate([labels[:16]] * 2),
                       verbose=0))

    def finite(with_y=True):
        for start in (0, 8, 16):
            yield (images[start:start + 8], labels[start:start + 8]) if with_y else \
                (images[start:start + 8],)
    # without steps a generator is read to its end, as Keras's evaluate and predict read it
    assert model.evaluate(finite(), verbose=0) == pytest.approx(
        model.evaluate(images[:24], labels[:24], verbose=0))
    np.testing.assert_allclose(model.predict(finite(with_y=False), verbose=0),
                               model.predict(images[:24], verbose=0), rtol=1e-6)
    np.testing.assert_allclose(model.predict(finite(), verbose=0),
                               model.predict(images[:24], verbose=0), rtol=1e-6)
    with pytest.raises(DataError, match="the generator has no batches"):
        model.evaluate(iter(()), verbose=0)


def test_a_failed_compile_leaves_the_trained_model_alone():
    model = small()
    model.fit(X, Y, epochs=2, verbose=0)
    trained = model.get_weights()
    with pytest.raises(ConfigError, match="unknown metric 'acuracy'"):
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                      metrics=["acuracy"])
    assert model.logged_metric_names == ["accuracy"]
    for a, b in zip(trained, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["Accuracy"])
    for a, b in zip(trained, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # recompiling keeps the weights, as Keras


def test_plain_function_losses_and_metric_functions():
    def my_mse(y_true, y_pred):
        return ((y_true - y_pred) ** 2).mean(dim=-1)

    model = Sequential([Dense(2, input_shape=(6,))], seed=0)
    model.compile(optimizer="sgd", loss=my_mse, metrics=[keras.metrics.binary_accuracy])
    target = RNG.random((48, 2)).astype("float32")
    model.fit(X, target, epochs=1, verbose=0)
    expected = ((model.predict(X) - target) ** 2).mean()
    loss, _ = model.evaluate(X, target, verbose=0)
    assert loss == pytest.approx(expected, rel=1e-5)


def test_a_learning_rate_set_in_on_epoch_begin_applies_to_that_epoch():
    class Freeze(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.model.optimizer.learning_rate = 1e-30

    model = small(optimizer=keras.optimizers.SGD(0.5))
    before = model.get_weights()
    model.fit(X, Y, epochs=1, callbacks=Freeze(), verbose=0)  # a single callback, no list
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-20)


def test_batch_logs_are_plain_dicts_of_that_batch():
    class Keep(Callback):
        def __init__(self):
            super().__init__()
            self.seen = []

        def on_train_batch_end(self, batch, logs=None):
            self.seen.append(logs)

    keep = Keep()
    small().fit(X, Y, batch_size=16, epochs=1, callbacks=[keep], verbose=0)
    assert all(type(logs) is dict for logs in keep.seen)
    assert len({logs["loss"] for logs in keep.seen}) == 3  # running means differ per batch


def test_pop_keeps_the_remaining_weights_and_layers_are_not_shared():
    model = small()
    model.fit(X, Y, epochs=1, verbose=0)
    first = model.get_weights()[:2]
    model.pop()
    for a, b in zip(first, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ConfigError, match="cannot be shared between models"):
        Sequential(model.layers + [Dense(2)])


def test_on_batch_end_is_keras_alias_of_on_train_batch_end():
    class Old(Callback):
        calls = 0

        def on_batch_end(self, batch, logs=None):
            Old.calls += 1
            assert "loss" in logs

    small().fit(X, Y, batch_size=16, epochs=1, callbacks=[Old()], verbose=0)
    assert Old.calls == 3


def test_evaluate_and_predict_name_themselves_when_a_callback_is_not_one():
    model = Sequential([Dense(2, activation="softmax", input_shape=(3,))])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x, y = np.zeros((4, 3), "float32"), np.zeros(4, "int64")
    with pytest.raises(ConfigError, match="evaluate: 'callbacks' must be reglab.callbacks"):
        model.evaluate(x, y, callbacks=[print], verbose=0)
    with pytest.raises(ConfigError, match="predict: 'callbacks' must be reglab.callbacks"):
        model.predict(x, callbacks=[print], verbose=0)


def test_a_subclassed_model_is_refused_by_name_with_the_ways_that_work():
    """Keras's third way to build a model (a subclass whose call() computes the outputs)
    is named, where a bare TypeError about missing arguments had been raised."""
    class Classifier(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = Dense(2)

        def call(self, x):
            return self.dense(x)

    with pytest.raises(ConfigError, match=r"Classifier: .*Model\(inputs, outputs\).* "
                                          r"Sequential\(\[...\]\); a subclass of Model whose "
                                          r"own call\(\) .* not supported"):
        Classifier()
    inputs = keras.Input((3,))
    with pytest.raises(ConfigError, match=r"outputs=None \(not given\)"):
        keras.Model(inputs)
    assert keras.Model(inputs, Dense(2)(inputs)).output_shape == (None, 2)
