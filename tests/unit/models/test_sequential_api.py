"""Sequential's Keras API: layouts, the callback protocol, EarlyStopping, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import reglab as keras
from model_factories import small_classifier
from reglab.callbacks import Callback, EarlyStopping
from reglab.errors import ConfigError, DataError
from reglab.layers import BatchNormalization, Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from reglab.models import Sequential

RNG = np.random.default_rng(1)
X = RNG.random((64, 6)).astype("float32")
Y = RNG.integers(0, 3, 64)


small = small_classifier


def test_weight_layouts_are_keras_and_set_weights_drives_predict():
    model = Sequential([Conv2D(4, 3, input_shape=(8, 8, 2)), MaxPooling2D(), Flatten(),
                        Dense(5), BatchNormalization(), Dense(3, activation="softmax")])
    shapes = [w.shape for w in model.get_weights()]
    assert shapes == [(3, 3, 2, 4), (4,), (36, 5), (5,), (5,), (5,), (5,), (5,), (5, 3), (3,)]
    dense = Sequential([Dense(3, input_shape=(6,))])
    kernel, bias = RNG.normal(size=(6, 3)), RNG.normal(size=3)
    dense.set_weights([kernel, bias])
    np.testing.assert_allclose(dense.predict(X, verbose=0), X @ kernel + bias, rtol=1e-5,
                               atol=1e-6)
    with pytest.raises(ConfigError, match="expected a list of 2 arrays"):
        dense.set_weights([kernel])


class Recorder(Callback):
    def __init__(self, stop_at=None):
        super().__init__()
        self.calls, self.stop_at = [], stop_at

    def on_train_begin(self, logs=None):
        self.calls.append(("train_begin", self.params["epochs"], self.params["steps"]))

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("epoch_begin", epoch))

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append(("batch_end", batch, sorted(logs)))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch, sorted(logs)))
        if epoch == self.stop_at:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        self.calls.append(("train_end",))


def test_a_user_callback_sees_keras_protocol_and_can_stop_training():
    model = small()
    recorder = Recorder(stop_at=1)
    history = model.fit(X, Y, batch_size=32, epochs=5, callbacks=[recorder], verbose=0,
                        validation_data=(X, Y))
    assert recorder.model is model
    assert recorder.calls[0] == ("train_begin", 5, 2)
    assert recorder.calls[1] == ("epoch_begin", 0)
    assert recorder.calls[2] == ("batch_end", 0, ["accuracy", "loss"])
    assert recorder.calls[4] == ("epoch_end", 0, ["accuracy", "loss", "val_accuracy", "val_loss"])
    assert recorder.calls[-1] == ("train_end",)
    assert len(history.history["loss"]) == 2  # stopped after epoch 1


def test_batch_logs_are_running_means_of_the_epoch():
    class Last(Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.last = dict(logs)

    model, last = small(), Last()
    history = model.fit(X, Y, batch_size=16, epochs=1, callbacks=[last], verbose=0)
    assert last.last["loss"] == pytest.approx(history.history["loss"][0], rel=1e-6)


def fake_model(weights):
    class Model:
        stop_training = False
        metrics_names = ["accuracy"]

        def __init__(self):
            self.current = weights[0]

        def get_weights(self):
            return [self.current]

        def set_weights(self, w):
            self.current = w[0]
    return Model()


def run_early_stopping(sequence, monitor="val_loss", **kwargs):
    """Feeds a scripted sequence; returns (epochs run, callback, model)."""
    callback, model = EarlyStopping(monitor=monitor, **kwargs), fake_model([0])
    callback.set_model(model)
    callback.on_train_begin()
    epochs = 0
    for epoch, value in enumerate(sequence):
        model.current = epoch  # the "weights" after this epoch
        callback.on_epoch_end(epoch, {monitor: value})
        epochs += 1
        if model.stop_training:
            break
    callback.on_train_end()
    return epochs, callback, model


def test_early_stopping_callback_follows_keras_rule():
    # patience 2: best at epoch 1, no improvement at 2 and 3 -> stops at epoch 3.
    epochs, cb, _ = run_early_stopping([1.0, 0.5, 0.6, 0.7, 0.1], patience=2)
    assert (epochs, cb.stopped_epoch, cb.best_epoch) == (4, 3, 1)
    # min_delta: 0.5 -> 0.45 is not an improvement beyond 0.1.
    epochs, cb, _ = run_early_stopping([1.0, 0.5, 0.45, 0.44], patience=1, min_delta=0.1)
    assert (epochs, cb.stopped_epoch) == (3, 2)
    # mode auto: accuracy is maximized.
    epochs, cb, _ = run_early_stopping([0.5, 0.6, 0.55], monitor="val_accuracy", patience=0)
    assert (epochs, cb.stopped_epoch) == (3, 2)
    # baseline: improvements that do not beat it do not reset the wait (Keras only checks
    # patience on epochs without an improvement).
    sequence = [1.0, 0.9, 0.95, 0.97, 0.99]
    epochs, cb, _ = run_early_stopping(sequence, patience=2, baseline=0.5)
    assert (epochs, cb.stopped_epoch) == (3, 2)
    epochs, cb, _ = run_early_stopping(sequence, patience=2)
    assert (epochs, cb.stopped_epoch) == (4, 3)
    # start_from_epoch: the first epochs are ignored.
    epochs, cb, _ = run_early_stopping([1.0, 2.0, 3.0, 4.0], patience=0, start_from_epoch=2)
    assert (epochs, cb.stopped_epoch) == (4, 3)
    # restore_best_weights restores at the end whenever a snapshot exists (Keras 3).
    _, cb, model = run_early_stopping([1.0, 0.2, 0.5, 0.9], patience=5, restore_best_weights=True)
    assert cb.stopped_epoch == 0 and model.current == 1
    with pytest.raises(ConfigError, match="'patience' must be an int >= 0. Got -1"):
        EarlyStopping(patience=-1)


def test_early_stopping_restores_the_best_weights_of_a_real_run():
    model = small()
    best = {}

    class Keep(Callback):
        def on_epoch_end(self, epoch, logs=None):
            best[epoch] = (logs["val_loss"], self.model.get_weights())

    stopper = EarlyStopping(patience=1, restore_best_weights=True)
    model.fit(X, Y, epochs=8, batch_size=8, validation_data=(X[:8], Y[:8]),
              callbacks=[Keep(), stopper], verbose=0)
    epoch = min(best, key=lambda e: best[e][0])
    assert stopper.best_epoch == epoch
    for got, expected in zip(model.get_weights(), best[epoch][1], strict=True):
        np.testing.assert_array_equal(got, expected)


def test_early_stopping_warns_once_when_the_monitor_is_missing():
    model = small()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # a compiled metric, so 'auto' knows its direction, but no validation data to log it
        model.fit(X, Y, epochs=3, callbacks=[EarlyStopping(monitor="val_accuracy")],
                  verbose=0)
    messages = [str(w.message) for w in caught if "val_accuracy" in str(w.message)]
    # the logs in Keras's order (sorted), as its message lists them
    assert len(messages) == 1 and "Available metrics are: accuracy,loss" in messages[0]


def test_verbose_modes(capsys):
    small().fit(X, Y, batch_size=32, epochs=2, verbose=2)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out and "2/2 - " in out and "loss: " in out
    small().fit(X, Y, epochs=1, verbose=0)
    assert capsys.readouterr().out == ""


def test_validation_split_takes_the_last_samples_before_shuffling():
    model = small()
    seen = {}

    class Spy(Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.update(logs)

    model.fit(X, Y, epochs=1, validation_split=0.25, callbacks=[Spy()], verbose=0)
    expected = model.evaluate(X[48:], Y[48:], verbose=0, return_dict=True)
    assert seen["val_loss"] == pytest.approx(expected["loss"], rel=1e-6)


def test_class_weight_equals_sample_weight():
    a, b = small(), small()
    a.fit(X, Y, epochs=1, class_weight={0: 1.0, 1: 2.0, 2: 0.5}, verbose=0, shuffle=False)
    b.fit(X, Y, epochs=1, sample_weight=np.array([1.0, 2.0, 0.5])[Y], verbose=0, shuffle=False)
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)


def test_fit_generator_warns_and_trains_on_a_python_generator(monkeypatch):
    monkeypatch.setattr(Sequential, "_warned_fit_generator", False)
    def batches():
        while True:
            for lo in range(0, 64, 16):
                yield X[lo:lo + 16], Y[lo:lo + 16]

    model = small()
    with pytest.warns(DeprecationWarning, match="fit_generator"):
        history = model.fit_generator(batches(), steps_per_epoch=4, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        model.fit_generator(batches(), steps_per_epoch=4, epochs=1, verbose=0)
    assert not [w for w in again if "fit_generator" in str(w.message)]  # once
    with pytest.raises(ConfigError, match="steps_per_epoch"):
        model.fit(batches(), epochs=1, verbose=0)


def test_learning_rate_changes_by_callbacks_reach_the_engine():
    class Zero(Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.optimizer.learning_rate = 1e-30

    model = small(optimizer=keras.optimizers.SGD(0.1))
    model.fit(X, Y, epochs=1, callbacks=[Zero()], verbose=0)
    before = model.get_weights()
    model.fit(X, Y, epochs=1, verbose=0)
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-20)


def test_bad_input_errors_name_the_place():
    model = small()
    with pytest.raises(DataError, match=r"first layer expects samples of shape \(6,\). Got x with "
                                        r"shape \(64, 5\)"):
        model.fit(X[:, :5], Y, verbose=0)
    images = Sequential([keras.Input((2, 2, 5)), keras.layers.Flatten(), Dense(3)])
    images.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(DataError, match=r"x.reshape\(-1, 2, 2, 5\), or declare "
                                        r"input_shape=\(20,\)"):  # the data's own width
        images.fit(np.zeros((10, 20), "float32"), np.zeros(10, int), verbose=0)
    with pytest.raises(DataError, match="Use loss='sparse_categorical_crossentropy'"):
        small(loss="categorical_crossentropy").fit(X, Y, verbose=0)
    with pytest.raises(DataError, match="to_categorical"):
        small(loss="categorical_crossentropy").fit(X, Y, verbose=0)
    with pytest.raises(DataError, match="Use loss='categorical_crossentropy'"):
        model.fit(X, np.eye(3)[Y], verbose=0)
    with pytest.raises(ConfigError, match="unknown optimizer 'adamm'.*Did you mean 'adam'"):
        small(optimizer="adamm")
    with pytest.raises(ConfigError, match="unknown loss 'mse2'"):
        small(loss="mse2")
    with pytest.raises(ConfigError, match="unknown metric 'acuracy'"):
        small(metrics=["acuracy"])
    with pytest.raises(ConfigError, match="unknown regularizer 'l3'.*Did you mean 'l[12]'"):
        Dense(3, kernel_regularizer="l3")
    with pytest.raises(ConfigError, match="unknown activation 'rellu'.*Did you mean 'relu'"):
        Dense(3, activation="rellu")
    with pytest.raises(ConfigError, match=r"Dropout: 'rate' must be a float in \[0, 1\]. Got 1.5"):
        Dropout(1.5)
    with pytest.raises(ConfigError, match="'l1' must be a non-negative float. Got -0.1"):
        keras.regularizers.l1(-0.1)
    with pytest.raises(ConfigError, match="call model.compile"):
        Sequential([Dense(2, input_shape=(6,))]).fit(X, Y, verbose=0)


def test_evaluate_returns_keras_shapes():
    model = small()
    loss, accuracy = model.evaluate(X, Y, verbose=0)
    assert 0 <= accuracy <= 1 and loss > 0
    bare = small(metrics=None)
    assert isinstance(bare.evaluate(X, Y, verbose=0), float)
    assert torch.is_tensor(torch.as_tensor(model.predict(X, verbose=0)))


def test_set_random_seed_makes_models_reproducible():
    def build():
        return Sequential([Dense(4, input_shape=(6,)), Dropout(0.5), Dense(2)])
    keras.utils.set_random_seed(7)
    a = build().get_weights()
    keras.utils.set_random_seed(7)
    b = build().get_weights()
    c = build().get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])


def test_class_weight_follows_keras_rule_for_missing_classes_and_soft_labels():
    from reglab.models.fit_data import class_weights_to_sample_weights as weights

    # a class without a weight gets 1 (Keras 3); labels are rounded, not truncated
    np.testing.assert_array_equal(weights(np.array([0, 1, 2, 1]), {1: 5.0}), [1, 5, 1, 5])
    soft = np.array([0.9, 0.1, 0.6, 0.4], dtype=np.float32)
    np.testing.assert_array_equal(weights(soft, {0: 1.0, 1: 5.0}), [5, 1, 5, 1])
    np.testing.assert_array_equal(weights(soft[:, None], {0: 2.0}), [1, 2, 1, 2])
    one_hot = np.eye(3)[[2, 0, 1]]
    np.testing.assert_array_equal(weights(one_hot, {2: 3.0}), [3, 1, 1])
    a, b = small(), small()
    a.fit(X, Y, epochs=1, class_weight={1: 2.0}, verbose=0, shuffle=False)
    b.fit(X, Y, epochs=1, sample_weight=np.array([1.0, 2.0, 1.0])[Y], verbose=0, shuffle=False)
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)


def _torch_twin(model):
    """The 6-8-3 model's layers as torch.nn.Linear, with its weights."""
    (k0, b0, k1, b1) = (torch.tensor(w, dtype=torch.float64) for w in model.get_weights())
    first, second = torch.nn.Linear(6, 8).double(), torch.nn.Linear(8, 3).double()
    with torch.no_grad():
        first.weight.copy_(k0.T), first.bias.copy_(b0), second.weight.copy_(k1.T)
        second.bias.copy_(b1)
    return first, second


def test_freezing_after_compile_takes_effect_and_keeps_adams_state_as_keras_3():
    # Keras 3 reads `trainable` at every step: a layer frozen after compile (and after some
    # training) stops training, the others go on with their Adam moments and step count.
    # Reference: plain PyTorch Adam (float64) on full batches, the first layer's parameters
    # leaving the optimizer's step after two steps.
    model = Sequential([Dense(8, activation="tanh", input_shape=(6,)), Dense(3)])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    target = np.eye(3, dtype="float32")[Y]
    start = Sequential([Dense(8, activation="tanh", input_shape=(6,)), Dense(3)])
    start.set_weights(model.get_weights())
    model.fit(X, target, epochs=2, batch_size=64, shuffle=False, verbose=0)
    model.layers[0].trainable = False
    frozen = model.get_weights()[:2]
    model.fit(X, target, epochs=2, batch_size=64, shuffle=False, verbose=0)
    x, t = torch.tensor(X, dtype=torch.float64), torch.tensor(target, dtype=torch.float64)

    def reference(carried: bool):
        first, second = _torch_twin(start)
        params = [*first.parameters(), *second.parameters()]
        moments = {id(p): [torch.zeros_like(p), torch.zeros_like(p), 0] for p in params}
        for step in range(4):
            if step == 2:
                first.requires_grad_(False)
                if not carried:  # what a rebuilt optimizer would do: fresh moments, step 1
                    moments = {id(p): [torch.zeros_like(p), torch.zeros_like(p), 0]
                               for p in second.parameters()}
            for p in params:
                p.grad = None
            ((second(torch.tanh(first(x))) - t) ** 2).mean().backward()
            with torch.no_grad():  # Keras's Adam: epsilon added after the square root
                for p in params:
                    if p.grad is None or id(p) not in moments:
                        continue
                    m, v, count = moments[id(p)]
                    count += 1
                    moments[id(p)][2] = count
                    m.mul_(0.9).add_(p.grad, alpha=0.1)
                    v.mul_(0.999).add_(p.grad ** 2, alpha=0.001)
                    rate = 0.05 * (1 - 0.999 ** count) ** 0.5 / (1 - 0.9 ** count)
                    p.sub_(rate * m / (v.sqrt() + 1e-7))
        return np.concatenate([second.weight.detach().T.numpy().ravel(),
                               second.bias.detach().numpy()])

    weights = model.get_weights()
    for ours, theirs in zip(weights[:2], frozen):
        np.testing.assert_array_equal(ours, theirs)
    ours = np.concatenate([weights[2].ravel(), weights[3]])
    # float32 against Keras's Adam in float64: round-off
    np.testing.assert_allclose(ours, reference(carried=True), atol=1e-6)
    assert np.abs(ours - reference(carried=False)).max() > 1e-2


def test_a_frozen_model_trains_nothing_and_logs_its_loss_and_unfrozen_trains_again():
    model = small()
    model.trainable = False
    assert not any(layer.trainable for layer in model.layers)
    before = model.get_weights()
    history = model.fit(X, Y, epochs=2, batch_size=16, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()
    for ours, theirs in zip(model.get_weights(), before):
        np.testing.assert_array_equal(ours, theirs)
    model.trainable = True
    model.fit(X, Y, epochs=1, batch_size=16, verbose=0)
    assert all(not np.array_equal(a, b) for a, b in zip(model.get_weights(), before))
    # Keras's gate: a model made frozen keeps its layers' flags (True) and trains nothing;
    # unfreezing one layer inside a frozen model trains nothing either
    gated = Sequential([Dense(4, input_shape=(6,))], trainable=False)
    gated.add(Dense(3, activation="softmax"))
    assert [layer.trainable for layer in gated.layers] == [True, True]
    gated.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.trainable = False
    model.layers[0].trainable = True
    for frozen in (gated, model):
        before = frozen.get_weights()
        with pytest.warns(UserWarning, match="no trainable weights"):
            frozen.fit(X, Y, epochs=1, batch_size=16, verbose=0)
        for ours, theirs in zip(frozen.get_weights(), before):
            np.testing.assert_array_equal(ours, theirs)


def test_a_layer_frozen_during_fit_takes_effect_at_the_next_fit_and_loses_nothing():
    model = small()
    weights_seen = []

    class FreezeAtSecondEpoch(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                model.layers[0].trainable = False
                weights_seen.append(model.get_weights())  # must not rebuild under the fit

    with pytest.warns(UserWarning, match="takes effect at the next fit"):
        history = model.fit(X, Y, epochs=3, batch_size=16, verbose=0, shuffle=False,
                            callbacks=[FreezeAtSecondEpoch()])
    trained = model.get_weights()
    assert not np.array_equal(trained[0], weights_seen[0][0])  # the fit trained on
    loss = model.evaluate(X, Y, verbose=0, return_dict=True)["loss"]
    assert abs(loss - history.history["loss"][-1]) < 0.2  # the model holds the fit's end
    model.fit(X, Y, epochs=1, batch_size=16, verbose=0)
    np.testing.assert_array_equal(model.get_weights()[0], trained[0])  # now frozen


def test_a_loss_without_a_gradient_is_an_error_as_in_keras():
    model = Sequential([Dense(3, activation="softmax", input_shape=(6,))])

    def detached(y_true, y_pred):
        return keras.losses.sparse_categorical_crossentropy(y_true, y_pred.detach())

    model.compile(optimizer="sgd", loss=detached)
    with pytest.raises(RuntimeError, match="does not require grad"):
        model.fit(X, Y, epochs=1, verbose=0)


def test_a_model_with_every_weight_frozen_takes_no_step():
    model = small()
    model.trainable = False
    with pytest.warns(UserWarning, match="no trainable weights"):
        model.fit(X, Y, epochs=2, batch_size=16, verbose=0)
    assert model._population.state.members.scalars["steps"] == [0]


def test_a_functional_model_made_frozen_trains_nothing():
    inputs = keras.Input((6,))
    outputs = Dense(3, activation="softmax")(Dense(4)(inputs))
    model = keras.Model(inputs, outputs, trainable=False)
    assert not model.trainable
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    before = model.get_weights()
    with pytest.warns(UserWarning, match="no trainable weights"):
        model.fit(X, Y, epochs=1, verbose=0)
    for ours, theirs in zip(model.get_weights(), before):
        np.testing.assert_array_equal(ours, theirs)


def test_exclude_from_weight_decay_between_compile_and_fit_takes_effect_as_in_keras():
    # one AdamW step from bias 1 (kernel 0, mse to 0): Adam moves it by lr (0.9); decay
    # would first make it 1 - lr * wd (0.95 x ...); Keras takes the exclusion until its
    # optimizer is built at the first step
    x, y = np.ones((4, 2), "float32"), np.zeros((4, 1), "float32")
    model = Sequential([Dense(1, input_shape=(2,))])
    model.set_weights([np.zeros((2, 1), "float32"), np.ones(1, "float32")])
    optimizer = keras.optimizers.AdamW(learning_rate=0.1, weight_decay=0.5)
    model.compile(optimizer=optimizer, loss="mse")
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    model.train_on_batch(x, y)
    assert model.get_weights()[1][0] == pytest.approx(0.9, abs=1e-6)


def test_a_callable_object_that_cannot_be_hashed_is_a_loss():
    from dataclasses import dataclass

    @dataclass
    class Scaled:
        scale: float

        def __call__(self, y_true, y_pred):
            return self.scale * keras.losses.mean_squared_error(y_true, y_pred)

    model = Sequential([Dense(3, input_shape=(6,))])
    model.compile(optimizer="sgd", loss=Scaled(2.0))
    history = model.fit(X, np.eye(3, dtype="float32")[Y], epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_layer_names_are_unique_and_stay_as_given():
    model = Sequential([Dense(4, input_shape=(6,)), Dense(3)])
    assert [layer.name for layer in model.layers] == ["dense", "dense_1"]
    with pytest.raises(ConfigError, match="unique names.*'dense'"):
        model.add(Dense(2, name="dense"))
    model.add(Dense(2))
    assert [layer.name for layer in model.layers] == ["dense", "dense_1", "dense_2"]


def test_a_regularizer_set_on_a_built_layer_counts_from_the_next_compile_everywhere():
    # training and model.losses agree: before the next compile neither has it, after it both
    x = np.random.default_rng(0).normal(size=(16, 8)).astype("float32")
    y = np.arange(16) % 3
    model = Sequential([keras.Input((8,)), Dense(5), Dense(3, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    before = model.evaluate(x, y, verbose=0)
    model.layers[0].kernel_regularizer = keras.regularizers.l2(0.5)
    assert model.evaluate(x, y, verbose=0) == before and model.losses == []
    model.compile("sgd", "sparse_categorical_crossentropy")
    (penalty,) = model.losses
    expected = 0.5 * float((model.layers[0].get_weights()[0] ** 2).sum())
    assert float(penalty) == pytest.approx(expected, rel=1e-5)
    assert model.evaluate(x, y, verbose=0) == pytest.approx(before + expected, rel=1e-5)
