"""Keras 3's helpers around training side by side with Keras itself (torch backend):
``fit(validation_freq=...)``, ``keras.backend`` (``clear_session``, ``epsilon``...),
``load_model(compile=False)`` and ``clone_model``."""

from __future__ import annotations

import os
import random

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import reglab  # noqa: E402
from reglab.errors import ConfigError  # noqa: E402

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
if keras.backend.backend() != "torch":  # pragma: no cover - another backend chosen outside
    pytest.skip("these comparisons run Keras on its torch backend", allow_module_level=True)

X = np.random.default_rng(0).normal(size=(40, 4)).astype("float32")
Y = np.random.default_rng(1).integers(0, 3, 40)


def _model(api, start=None):
    model = api.Sequential([api.Input((4,)), api.layers.Dense(5, activation="relu"),
                            api.layers.Dense(3, activation="softmax")])
    if start is not None:
        model.set_weights(start)
    return model


@pytest.mark.parametrize("freq", [2, 3, [1, 3], [4]], ids=str)
def test_validation_freq_validates_the_epochs_keras_validates(freq):
    results = []
    for api in (keras, reglab):
        keras.utils.set_random_seed(2)
        model = _model(api, results[0][0] if results else None)
        start = model.get_weights()
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        seen = []
        hook = api.callbacks.LambdaCallback(
            on_epoch_end=lambda e, logs, seen=seen: seen.append(sorted(logs)))
        history = model.fit(X, Y, epochs=4, batch_size=16, shuffle=False, verbose=0,
                            validation_data=(X[:8], Y[:8]), validation_freq=freq,
                            callbacks=[hook]).history
        results.append((start, history, seen))
    (_, theirs, their_keys), (_, ours, our_keys) = results
    assert our_keys == their_keys
    assert sorted(ours) == sorted(theirs)
    for key in theirs:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=2e-5, err_msg=key)


@pytest.mark.parametrize("freq", [0, -1, 1.5, True, [0, 2], [], "2", None])
def test_a_bad_validation_freq_is_refused_naming_it(freq):
    model = _model(reglab)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(ConfigError, match="fit: 'validation_freq' must be an int >= 1"):
        model.fit(X, Y, epochs=1, verbose=0, validation_data=(X, Y), validation_freq=freq)
    from reglab.engine import Member, Population

    population = Population([Member([reglab.layers.Dense(3, input_shape=(4,))], "sgd")])
    with pytest.raises(ConfigError, match="Population.fit: 'validation_freq' must be"):
        population.fit(X, Y, epochs=1, validation_data=(X, Y), validation_freq=freq)


def test_the_backend_s_values_are_keras_s():
    for name in ("epsilon", "floatx", "image_data_format"):
        assert getattr(reglab.backend, name)() == getattr(keras.backend, name)()
    assert reglab.backend.backend() == keras.backend.backend() == "torch"
    with pytest.raises(ConfigError, match="set_floatx: .* Got 'float64'"):
        reglab.backend.set_floatx("float64")


def test_clear_session_forgets_the_global_seed_as_keras_s_does():
    def weights():
        return _model(reglab).get_weights()[0]
    reglab.utils.set_random_seed(3)
    seeded = weights()
    reglab.backend.clear_session()
    random.seed(11)
    first = weights()
    random.seed(11)
    np.testing.assert_array_equal(weights(), first)  # drawn from Python's random again
    assert not np.array_equal(first, seeded)
    reglab.utils.set_random_seed(3)
    np.testing.assert_array_equal(weights(), seeded)


@pytest.mark.parametrize("maker", ["reglab", "keras"])
def test_load_model_without_compiling_gives_the_weights_uncompiled(maker, tmp_path):
    api = reglab if maker == "reglab" else keras
    model = _model(api)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(X, Y, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = reglab.models.load_model(tmp_path / "m.keras", compile=False)
    theirs = keras.models.load_model(tmp_path / "m.keras", compile=False) \
        if maker == "keras" else None
    assert loaded.optimizer is None
    if theirs is not None:
        assert not theirs.compiled
    np.testing.assert_allclose(loaded.predict(X, verbose=0), model.predict(X, verbose=0),
                               rtol=1e-6, atol=1e-7)
    loaded.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    loaded.fit(X, Y, epochs=1, verbose=0)
    with pytest.raises(ConfigError, match=r"load_model: 'custom_objects'\['f'\]: only "
                                          "Regularizer subclasses"):
        reglab.models.load_model(tmp_path / "m.keras", custom_objects={"f": len})


def test_clone_model_copies_the_layers_with_new_weights_compiled_alike_as_keras():
    for api in (keras, reglab):
        model = api.Sequential([
            api.Input((4,)), api.layers.Dense(5, activation="relu",
                                              kernel_regularizer=api.regularizers.l2(0.01)),
            api.layers.Dropout(0.3), api.layers.Dense(3, activation="softmax")])
        model.compile(optimizer=api.optimizers.Adam(0.005), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        model.fit(X, Y, epochs=1, verbose=0)
        clone = api.models.clone_model(model)
        assert [type(layer).__name__ for layer in clone.layers] == ["Dense", "Dropout", "Dense"]
        assert clone.layers[0].kernel_regularizer.get_config()["l2"] == pytest.approx(0.01)
        assert clone.layers[1].rate == 0.3
        assert not np.array_equal(clone.get_weights()[0], model.get_weights()[0])
        # compiled alike, with a new optimizer that has taken no step
        assert clone.optimizer is not model.optimizer
        assert float(clone.optimizer.learning_rate) == pytest.approx(0.005)
        assert int(clone.optimizer.iterations) == 0 and int(model.optimizer.iterations) > 0
        history = clone.fit(X, Y, epochs=1, verbose=0).history
        assert sorted(history) == ["accuracy", "loss"]
        uncompiled = api.models.clone_model(api.Sequential([api.Input((4,)),
                                                            api.layers.Dense(2)]))
        assert getattr(uncompiled, "optimizer", None) is None
    with pytest.raises(ConfigError, match="clone_model: 'clone_function' is not supported"):
        reglab.models.clone_model(model, clone_function=lambda layer: layer)


def test_a_callback_that_assigns_the_learning_rate_trains_as_keras_s():
    class Halve:
        def __init__(self, api):
            base = api.callbacks.Callback

            class _Halve(base):
                def on_epoch_end(self, epoch, logs=None):
                    rate = self.model.optimizer.learning_rate
                    rate.assign(float(rate.numpy()) * 0.5)
            self.callback = _Halve()

    results = []
    for api in (keras, reglab):
        keras.utils.set_random_seed(4)
        model = _model(api, results[0][0] if results else None)
        start = model.get_weights()
        model.compile(optimizer=api.optimizers.SGD(0.2), loss="sparse_categorical_crossentropy")
        history = model.fit(X, Y, epochs=3, batch_size=8, shuffle=False, verbose=0,
                            callbacks=[Halve(api).callback]).history
        results.append((start, history, model.get_weights(),
                        float(model.optimizer.learning_rate.numpy())))
    (_, theirs, their_weights, their_rate), (_, ours, our_weights, our_rate) = results
    assert our_rate == pytest.approx(their_rate) == pytest.approx(0.2 / 8)
    np.testing.assert_allclose(ours["loss"], theirs["loss"], rtol=2e-5)
    for a, b in zip(our_weights, their_weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="'learning_rate' must be a finite float >= 0"):
        reglab.optimizers.SGD(0.1).learning_rate.assign(-1.0)


def _scaled_l2(api):
    ops = api.ops

    class ScaledL2(api.regularizers.Regularizer):
        def __init__(self, strength=0.1):
            self.strength = strength

        def __call__(self, w):
            return self.strength * ops.sum(ops.square(w))

        def get_config(self):
            return {"strength": self.strength}
    return ScaledL2


def test_a_registered_custom_regularizer_saves_and_loads_as_in_keras(tmp_path):
    results = []
    for api in (keras, reglab):
        cls = api.saving.register_keras_serializable(package="tests")(_scaled_l2(api))
        keras.utils.set_random_seed(6)
        model = api.Sequential([api.Input((4,)),
                                api.layers.Dense(5, activation="relu",
                                                 kernel_regularizer=cls(0.05)),
                                api.layers.Dense(3, activation="softmax")])
        if results:
            model.set_weights(results[0][0])
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        path = tmp_path / f"{api.__name__}.keras"
        model.save(path)
        loaded = api.models.load_model(path, custom_objects={"ScaledL2": cls})
        assert type(loaded.layers[0].kernel_regularizer) is cls
        assert loaded.layers[0].kernel_regularizer.get_config() == {"strength": 0.05}
        results.append((model.get_weights(), loaded.evaluate(X, Y, verbose=0)))
    assert results[1][1] == pytest.approx(results[0][1], rel=1e-5)


def test_an_unregistered_custom_regularizer_is_refused_at_save_and_loads_with_custom_objects(
        tmp_path, monkeypatch):
    from reglab.regularizers import regularizers as registry

    cls = _scaled_l2(reglab)
    model = reglab.Sequential([reglab.Input((4,)),
                               reglab.layers.Dense(3, kernel_regularizer=cls(0.05))])
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ConfigError, match="regularizer"):
        model.save(tmp_path / "refused.keras")
    assert not (tmp_path / "refused.keras").exists()
    reglab.saving.register_keras_serializable(package="tests")(cls)
    model.save(tmp_path / "m.keras")
    monkeypatch.setattr(registry, "_CLASS_NAMES", {k: v for k, v in registry._CLASS_NAMES.items()
                                                    if v is not cls})  # a new process
    with pytest.raises(ConfigError, match="ScaledL2"):
        reglab.models.load_model(tmp_path / "m.keras")
    loaded = reglab.models.load_model(tmp_path / "m.keras", custom_objects={"ScaledL2": cls})
    np.testing.assert_array_equal(loaded.get_weights()[0], model.get_weights()[0])
    assert "ScaledL2" not in registry._CLASS_NAMES  # the scope ended with the call


def test_a_history_among_the_callbacks_is_the_one_fit_returns_as_keras():
    for api in (keras, reglab):
        model = _model(api)
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        history = api.callbacks.History()
        returned = model.fit(X, Y, epochs=2, verbose=0, callbacks=[history])
        assert returned is history and model.history is history
        again = model.fit(X, Y, epochs=1, verbose=0, callbacks=[history])
        assert again is history and len(history.history["loss"]) == 3 and history.epoch == [0]
        assert model.fit(X, Y, epochs=1, verbose=0) is not history


@pytest.mark.parametrize("hook", ["on_train_batch_begin", "on_train_batch_end",
                                  "on_epoch_begin"])
def test_a_rate_assigned_in_any_training_hook_trains_the_next_batch_as_keras(hook):
    results = []
    for api in (keras, reglab):
        def shrink(self, *args, **kwargs):
            rate = self.model.optimizer.learning_rate
            rate.assign(float(np.asarray(rate.numpy())) * 0.9)
        callback = type("Shrink", (api.callbacks.Callback,), {hook: shrink})()
        keras.utils.set_random_seed(5)
        model = _model(api, results[0][0] if results else None)
        start = model.get_weights()
        model.compile(optimizer=api.optimizers.SGD(0.3), loss="sparse_categorical_crossentropy")
        model.fit(X, Y, epochs=2, batch_size=8, shuffle=False, verbose=0, callbacks=[callback])
        results.append((start, model.get_weights()))
    for a, b in zip(results[1][1], results[0][1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
