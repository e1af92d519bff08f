"""A ``.keras`` file reglab saved opens in Keras 3 (``keras.models.load_model``, torch
backend): the same layers, settings and weights, compiled with the same optimizer, loss and
metrics, the optimizer's variables where reglab's are, so that Keras trains on from them; and
what Keras lacks (``ProximalL1``) is named by Keras's loader while reglab reads its own file
whole."""

from __future__ import annotations

import inspect
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import reglab  # noqa: E402
from reglab import constraints, initializers, layers, regularizers  # noqa: E402
from reglab.models import keras_export, saving  # noqa: E402

keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":  # pragma: no cover - another backend chosen outside
    pytest.skip("these comparisons run Keras on its torch backend", allow_module_level=True)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


def tutorial(optimizer="adam", dropout=0.5):
    """The slides' network (a smaller input), L2 on both kernels, compiled as the slides."""
    stack = [layers.Dense(16, activation="relu", input_shape=(20,),
                          kernel_regularizer=regularizers.l2(0.01),
                          kernel_constraint=constraints.MaxNorm(3.0),
                          bias_regularizer=regularizers.L1L2(1e-4, 1e-3))]
    if dropout:
        stack.append(layers.Dropout(dropout))
    stack.append(layers.Dense(3, activation="softmax", kernel_regularizer=regularizers.l2(0.01)))
    model = reglab.models.Sequential(stack, seed=3)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def data(n=48, features=20):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, features)).astype("float32")
    return x, (x[:, 0] > 0).astype("int64") + (x[:, 1] > 1)


def test_keras_loads_a_trained_reglab_model_with_its_settings_weights_and_optimizer(tmp_path):
    ours = tutorial()
    x, y = data()
    ours.fit(x, y, epochs=2, batch_size=16, verbose=0)
    path = tmp_path / "model.keras"
    ours.save(path)
    theirs = keras.models.load_model(path)
    assert [type(layer).__name__ for layer in theirs.layers] == ["Dense", "Dropout", "Dense"]
    assert [layer.name for layer in theirs.layers] == [layer.name for layer in ours.layers]
    dense = theirs.layers[0]
    assert isinstance(dense.kernel_regularizer, keras.regularizers.L2)
    assert dense.kernel_regularizer.l2 == pytest.approx(0.01)
    assert isinstance(dense.bias_regularizer, keras.regularizers.L1L2)
    assert isinstance(dense.kernel_constraint, keras.constraints.MaxNorm)
    assert theirs.layers[1].rate == 0.5
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(theirs.predict(x, verbose=0), ours.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    got = theirs.evaluate(x, y, verbose=0, return_dict=True)
    assert got == pytest.approx(ours.evaluate(x, y, verbose=0, return_dict=True), rel=1e-5)
    assert isinstance(theirs.optimizer, keras.optimizers.Adam)
    assert int(theirs.optimizer.iterations.numpy()) == 6 == int(ours.optimizer.iterations)
    assert theirs.optimizer.learning_rate.numpy() == pytest.approx(1e-3)


def test_a_loss_scaled_nadam_s_variables_travel_both_ways(tmp_path):
    """Keras 3.15 tracks Nadam's running product only outside a LossScaleOptimizer: the
    variables are the step count, the scale and the slots, each way. (Keras itself then
    trains on from its product's start, not its own saved run: not compared.)"""
    ours = tutorial(reglab.optimizers.LossScaleOptimizer(reglab.optimizers.Nadam(0.01)))
    x, y = data()
    ours.fit(x, y, epochs=2, batch_size=16, verbose=0)
    ours.save(tmp_path / "ours.keras")
    theirs = keras.models.load_model(tmp_path / "ours.keras")
    assert int(theirs.optimizer.iterations.numpy()) == int(ours.optimizer.iterations) == 6
    from reglab.models import training_state

    written = training_state.keras_variables(ours)
    assert len(theirs.optimizer.variables) == len(written)
    for variable, value in zip(theirs.optimizer.variables, written, strict=True):
        np.testing.assert_array_equal(np.asarray(variable.numpy()), value)
    theirs.save(tmp_path / "theirs.keras")
    again = reglab.models.load_model(tmp_path / "theirs.keras")
    assert int(again.optimizer.iterations) == 6
    for a, b in zip(training_state.keras_variables(again), written, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "rmsprop", "nadam", "adamw", "adagrad", "adamax",
                                       "adadelta", "lion", "ftrl", "lamb", "adafactor"])
def test_keras_trains_on_from_the_optimizer_state_reglab_saved(optimizer, tmp_path):
    """One more epoch in Keras from the file and in reglab from the model: the same weights
    to round-off (no dropout: the two draw other masks), and not those of a fresh optimizer."""
    model = tutorial({"sgd": reglab.optimizers.SGD(0.05, momentum=0.9)}.get(optimizer, optimizer),
                     dropout=0)
    x, y = data()
    model.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0)
    model.save(tmp_path / "model.keras")
    theirs = keras.models.load_model(tmp_path / "model.keras")
    fresh = keras.models.load_model(tmp_path / "model.keras", compile=False)
    fresh.compile(optimizer=type(theirs.optimizer).from_config(theirs.optimizer.get_config()),
                  loss="sparse_categorical_crossentropy")
    assert int(theirs.optimizer.iterations.numpy()) == int(model.optimizer.iterations)
    for continuing in (theirs, fresh):
        continuing.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    model.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    for ours, keras_on in zip(model.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(keras_on, ours, rtol=1e-4, atol=1e-6)
    assert any(not np.allclose(a, b, rtol=1e-4, atol=1e-6)
               for a, b in zip(model.get_weights(), fresh.get_weights()))


#: every layer class Keras has too, each in a model Keras loads from reglab's file
LAYER_CASES = {
    "dense": ((20,), lambda: [
        layers.Dense(8, activation="tanh", kernel_initializer="he_normal",
                     kernel_constraint=constraints.UnitNorm(), use_bias=False),
        layers.BatchNormalization(momentum=0.9, epsilon=1e-3), layers.Activation("relu"),
        layers.GaussianNoise(0.1), layers.GaussianDropout(0.2), layers.AlphaDropout(0.1),
        layers.ActivityRegularization(l1=0.01), layers.Dense(3, activation="softmax")]),
    "images": ((8, 8, 1), lambda: [
        layers.RandomFlip("horizontal"), layers.RandomRotation(0.1),
        layers.RandomTranslation(0.1, 0.1), layers.RandomZoom(0.1), layers.Rescaling(1 / 255.0),
        layers.Conv2D(4, 3, padding="same", activation="relu",
                      kernel_regularizer=regularizers.L1(1e-4)),
        layers.SpatialDropout2D(0.1), layers.MaxPooling2D(), layers.ZeroPadding2D(1),
        layers.AveragePooling2D(), layers.GlobalAveragePooling2D(),
        layers.Dense(3, activation="softmax")]),
    "shapes": ((12,), lambda: [
        layers.Reshape((3, 4)), layers.Permute((2, 1)), layers.SpatialDropout1D(0.1),
        layers.Flatten(), layers.LayerNormalization(), layers.UnitNormalization(),
        layers.LeakyReLU(), layers.ReLU(), layers.ELU(),
        layers.Dense(3, kernel_initializer=initializers.RandomNormal(0.0, 0.1)),
        layers.Softmax()]),
    "embedding": ((5,), lambda: [layers.Embedding(50, 4), layers.Flatten(),
                                 layers.Dense(3, activation="softmax")]),
}


@pytest.mark.parametrize("case", sorted(LAYER_CASES))
def test_each_layer_class_keras_has_loads_in_keras(case, tmp_path):
    shape, make = LAYER_CASES[case]
    ours = reglab.models.Sequential([layers.InputLayer(shape=shape), *make()], seed=1)
    ours.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy",
                 metrics=["accuracy"])
    rng = np.random.default_rng(1)
    x = rng.integers(0, 50, (16, *shape)) if case == "embedding" else \
        rng.random((16, *shape)).astype("float32")
    ours.fit(x, rng.integers(0, 3, 16), epochs=1, batch_size=8, verbose=0)
    ours.save(tmp_path / "model.keras")
    theirs = keras.models.load_model(tmp_path / "model.keras")
    assert [type(layer).__name__ for layer in theirs.layers] == \
        [type(layer).__name__ for layer in ours.layers]
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(theirs.predict(x, verbose=0), ours.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


def exported_arguments():
    """(kind, class name, its arguments as written to Keras's config.json) for every
    reglab class of each kind that Keras has, built at its defaults."""
    needed = {"units": 2, "rate": 0.5, "stddev": 0.1, "target_shape": (2,), "dims": (1,),
              "input_dim": 5, "output_dim": 2, "filters": 2, "kernel_size": 3, "factor": 0.1,
              "height_factor": 0.1, "width_factor": 0.1, "scale": 1.0, "padding": 1,
              "activation": "relu"}
    for name, cls in sorted(saving._LAYERS.items()):
        # (a Lambda's function is no file's: its models are not saved)
        if name in ("Layer", "InputLayer", "Lambda") or not hasattr(keras.layers, name):
            continue
        signature = inspect.signature(cls.__init__).parameters.values()
        layer = cls(**{p.name: needed[p.name] for p in signature
                       if p.default is p.empty and p.name in needed})
        entry = saving.layer_to_config(layer)
        yield "layer", name, keras_export._arguments(name, entry["config"])
    for name, cls in sorted(saving._OPTIMIZERS.items()):
        if name != "LossScaleOptimizer":
            yield "optimizer", name, keras_export._arguments(
                name, saving._constructor_config(cls(), name))
    for name, cls in sorted(saving._LOSSES.items()):
        if hasattr(keras.losses, name):
            yield "loss", name, keras_export._arguments(name, cls().get_config())
    for kind, known in (("regularizer", regularizers.registered()),
                        ("constraint", saving._CONSTRAINTS),
                        ("initializer", initializers._CLASSES)):
        for name, cls in sorted(known.items()):
            if hasattr(getattr(keras, kind + "s"), name):
                config = cls().get_config() if kind != "regularizer" else \
                    cls(**{arg: 0.01 for arg in ("l1", "l2", "factor")
                           if arg in inspect.signature(cls).parameters}).get_config()
                yield kind, name, keras_export._arguments(name, config)


def test_every_object_written_for_keras_is_one_keras_builds():
    """Checks reglab's table of its own arguments against Keras itself: an argument reglab
    adds to a class Keras has must be left out at its off value (or Keras refuses the whole
    file). Each class at its defaults, deserialized by Keras as its loader does."""
    checked = 0
    for kind, name, arguments in exported_arguments():
        entry = keras_export._serialized(kind, name, arguments)
        built = keras.saving.deserialize_keras_object(entry)
        assert type(built).__name__ == name
        checked += 1
    assert checked > 60


def test_keras_takes_reglab_s_loss_and_metric_names(tmp_path):
    ours = reglab.models.Sequential([layers.Dense(1, activation="sigmoid", input_shape=(4,))])
    ours.compile(optimizer=reglab.optimizers.Adam(0.01, clipnorm=1.0),
                 loss=reglab.losses.BinaryCrossentropy(label_smoothing=0.1),
                 metrics=["AUC", "Accuracy", "mse"])
    x = np.random.default_rng(2).random((16, 4)).astype("float32")
    y = (x[:, 0] > 0.5).astype("float32")
    ours.fit(x, y, epochs=1, verbose=0)
    ours.save(tmp_path / "model.keras")
    theirs = keras.models.load_model(tmp_path / "model.keras")
    assert isinstance(theirs.loss, keras.losses.BinaryCrossentropy)
    assert theirs.loss.label_smoothing == pytest.approx(0.1)
    assert theirs.optimizer.clipnorm == pytest.approx(1.0)
    logs = theirs.evaluate(x, y, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "AUC", "Accuracy", "mse"}
    assert logs == pytest.approx(ours.evaluate(x, y, verbose=0, return_dict=True), rel=1e-4)


def test_a_keras_file_through_reglab_opens_in_keras_again(tmp_path):
    k = keras
    first = k.Sequential([k.Input((20,)), k.layers.Dense(8, activation="relu"),
                          k.layers.Dropout(0.2), k.layers.Dense(3, activation="softmax")])
    first.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = data()
    first.fit(x, y, epochs=1, verbose=0)
    first.save(tmp_path / "keras.keras")
    reglab.models.load_model(tmp_path / "keras.keras").save(tmp_path / "reglab.keras")
    again = k.models.load_model(tmp_path / "reglab.keras")
    for a, b in zip(first.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert int(again.optimizer.iterations.numpy()) == int(first.optimizer.iterations.numpy())


def test_what_keras_lacks_is_named_by_keras_and_read_whole_by_reglab(tmp_path):
    ours = reglab.models.Sequential([layers.Dense(
        3, activation="softmax", input_shape=(20,),
        kernel_regularizer=regularizers.ProximalL1(0.01))], seed=0)
    ours.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x, y = data()
    ours.fit(x, y, epochs=1, verbose=0)
    ours.save(tmp_path / "model.keras")
    with pytest.raises(Exception, match="ProximalL1"):
        keras.models.load_model(tmp_path / "model.keras")
    again = reglab.models.load_model(tmp_path / "model.keras")
    assert isinstance(again.layers[0].kernel_regularizer, regularizers.ProximalL1)
    for a, b in zip(ours.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def small(policy=None, frozen=False):
    model = reglab.models.Sequential([
        layers.Dense(4, activation="relu", input_shape=(20,), dtype=policy),
        layers.Dense(3, activation="softmax", dtype="float32" if policy else None)])
    model.layers[0].trainable = not frozen
    return model


@pytest.mark.parametrize("make, optimizer, keras_class", [
    (small, lambda: reglab.optimizers.Adam(
        reglab.optimizers.schedules.ExponentialDecay(0.01, 10, 0.9)), "Adam"),
    (small, lambda: reglab.optimizers.LossScaleOptimizer(reglab.optimizers.Adam()),
     "LossScaleOptimizer"),
    (lambda: small(policy="mixed_bfloat16"), lambda: "adam", "Adam"),
    (lambda: small(frozen=True), lambda: "adam", "Adam"),
    (small, lambda: None, None),  # compiled but never trained, then not compiled
], ids=["schedule", "loss-scale", "mixed-bfloat16", "frozen-layer", "never-trained"])
def test_keras_loads_each_setting(make, optimizer, keras_class, tmp_path):
    ours = make()
    x, y = data()
    if keras_class is not None:
        ours.compile(optimizer=optimizer(), loss="sparse_categorical_crossentropy")
        ours.fit(x, y, epochs=1, batch_size=16, verbose=0)
    else:
        ours.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    ours.save(tmp_path / "model.keras")
    theirs = keras.models.load_model(tmp_path / "model.keras")
    assert type(theirs.optimizer).__name__ == (keras_class or "Adam")
    assert int(theirs.optimizer.iterations.numpy()) == int(ours.optimizer.iterations)
    assert [layer.dtype_policy.name for layer in theirs.layers] == \
        [layer.dtype_policy.name for layer in ours.layers]
    assert [layer.trainable for layer in theirs.layers] == \
        [layer.trainable for layer in ours.layers]
    tolerance = 2e-2 if "bfloat16" in ours.layers[0].dtype_policy.name else 1e-5
    np.testing.assert_allclose(theirs.predict(x, verbose=0), ours.predict(x, verbose=0),
                               rtol=tolerance, atol=tolerance)


def test_an_unbuilt_model_opens_in_keras_unbuilt(tmp_path):
    ours = reglab.models.Sequential([layers.Dense(4), layers.Dense(2)])
    ours.save(tmp_path / "model.keras")
    theirs = keras.models.load_model(tmp_path / "model.keras")
    assert [layer.units for layer in theirs.layers] == [4, 2] and not theirs.built


def two_inputs_two_outputs():
    """Two inputs through one shared Dense, merged, two heads (one behind a Dropout)."""
    a, b = layers.Input((4,), name="a"), layers.Input((4,), name="b")
    shared = layers.Dense(3, activation="relu", name="shared",
                          kernel_regularizer=regularizers.l2(0.01))
    merged = layers.Add()([shared(a), shared(b)])
    classes = layers.Dense(2, activation="softmax", name="classes")(merged)
    value = layers.Dense(1, name="value")(layers.Dropout(0.2)(merged))
    model = reglab.models.Model([a, b], [classes, value])
    model.compile(optimizer="adam", loss=["sparse_categorical_crossentropy", "mse"],
                  metrics=[["accuracy"], ["mae"]])
    rng = np.random.default_rng(3)
    x = [rng.random((16, 4)).astype("float32") for _ in range(2)]
    return model, x, [rng.integers(0, 2, 16), rng.random((16, 1)).astype("float32")]


def one_chain():
    inputs = layers.Input((20,))
    hidden = layers.Dropout(0.5)(layers.Dense(8, activation="relu")(inputs))
    model = reglab.models.Model(inputs, layers.Dense(3, activation="softmax")(hidden))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return (model, *data())


@pytest.mark.parametrize("make", [one_chain, two_inputs_two_outputs])
def test_keras_loads_a_reglab_functional_model(make, tmp_path):
    ours, x, y = make()
    ours.fit(x, y, epochs=1, batch_size=8, verbose=0)
    ours.save(tmp_path / "model.keras")
    theirs = keras.models.load_model(tmp_path / "model.keras")
    assert type(theirs).__name__ == "Functional"
    assert [layer.name for layer in theirs.layers] == [layer.name for layer in ours.layers]
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    got, want = theirs.predict(x, verbose=0), ours.predict(x, verbose=0)
    for a, b in zip(got if isinstance(got, list) else [got],
                    want if isinstance(want, list) else [want], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert int(theirs.optimizer.iterations.numpy()) == int(ours.optimizer.iterations)
    again = reglab.models.load_model(tmp_path / "model.keras")  # reglab's own, whole
    for a, b in zip(ours.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_frozen_model_with_spatial_dropout_opens_in_keras(tmp_path):
    """Keras's SpatialDropout takes no trainable argument (its own file leaves it out)."""
    ours = reglab.models.Sequential([layers.InputLayer(shape=(6, 6, 2)),
                                     layers.SpatialDropout2D(0.2), layers.Flatten(),
                                     layers.Dense(2)])
    ours.trainable = False
    ours.save(tmp_path / "model.keras")
    theirs = keras.models.load_model(tmp_path / "model.keras")
    # as Keras's own file of the same frozen model loads: its layers frozen
    assert not theirs.trainable_weights and theirs.layers[0].rate == 0.2
    assert [layer.trainable for layer in theirs.layers] == [True, False, False]


@pytest.mark.parametrize("name", ["input_layer", "block/dense"])
def test_layer_names_keras_would_refuse_are_written_as_it_takes_them(name, tmp_path):
    """A layer named as Keras names the InputLayer, or with the '/' Keras refuses."""
    ours = reglab.models.Sequential([layers.Dense(4, input_shape=(3,), name=name),
                                     layers.Dense(2, name="block_dense")])
    ours.save(tmp_path / "model.keras")
    theirs = keras.models.load_model(tmp_path / "model.keras")
    names = [layer.name for layer in theirs.layers]
    assert len(set(names)) == 2 and "/" not in "".join(names)
    x = np.ones((2, 3), "float32")
    np.testing.assert_allclose(theirs.predict(x, verbose=0), ours.predict(x, verbose=0),
                               rtol=1e-6)
    assert [layer.name for layer in reglab.models.load_model(tmp_path / "model.keras").layers] \
        == [name, "block_dense"]  # reglab's own names, from reglab.json


def test_a_compiled_model_never_trained_opens_without_keras_s_warning(tmp_path):
    import warnings

    ours = tutorial()
    ours.save(tmp_path / "model.keras")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        theirs = keras.models.load_model(tmp_path / "model.keras")
    assert not [w for w in caught if "optimizer" in str(w.message)]
    assert int(theirs.optimizer.iterations.numpy()) == 0


def test_the_file_holds_the_weights_and_the_optimizer_s_state_once(tmp_path):
    """About the size of Keras's own file for the same model: reglab's members beside
    Keras's hold no second copy of the weights or slots."""
    ours = tutorial()
    x, y = data()
    ours.fit(x, y, epochs=1, verbose=0)
    ours.save(tmp_path / "ours.keras")
    keras.models.load_model(tmp_path / "ours.keras").save(tmp_path / "theirs.keras")
    size = os.path.getsize(tmp_path / "ours.keras")
    assert size < os.path.getsize(tmp_path / "theirs.keras") + 8 * 1024
