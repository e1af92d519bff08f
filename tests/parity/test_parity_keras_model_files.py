"""Keras 3's own ``.keras`` model files read by ``reglab.models.load_model``: the layers,
their settings (regularizers, initializers' classes, constraints), the compile settings
(optimizer with its schedule and clipping, loss, metrics) and the weights, side by side with
Keras loading the same file (torch backend)."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import reglab  # noqa: E402
from reglab.errors import ConfigError  # noqa: E402

keras = pytest.importorskip("keras")
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:load_weights.*optimizer's state.*skipped")]
if keras.backend.backend() != "torch":  # pragma: no cover - another backend chosen outside
    pytest.skip("these comparisons run Keras on its torch backend", allow_module_level=True)


def tutorial():
    k = keras
    model = k.Sequential([
        k.Input((20,)),
        k.layers.Dense(16, activation="relu", kernel_regularizer=k.regularizers.L1L2(1e-4, 1e-3),
                       kernel_constraint=k.constraints.MaxNorm(3.0),
                       kernel_initializer="he_normal"),
        k.layers.Dropout(0.3),
        k.layers.BatchNormalization(momentum=0.9),
        k.layers.GaussianNoise(0.1),
        k.layers.Dense(3, activation="softmax", bias_regularizer=k.regularizers.L2(0.01)),
    ], name="tutorial")
    schedule = k.optimizers.schedules.ExponentialDecay(0.01, 10, 0.9)
    model.compile(optimizer=k.optimizers.Adam(schedule, clipnorm=1.0),
                  loss="categorical_crossentropy",
                  metrics=["accuracy", k.metrics.AUC(name="auc")])
    x = np.random.default_rng(0).normal(size=(64, 20)).astype("float32")
    return model, x, np.eye(3, dtype="float32")[(x[:, 0] > 0).astype(int) + (x[:, 1] > 1)]


def convolutional():
    k = keras
    model = k.Sequential([
        k.Input((8, 8, 1)), k.layers.Conv2D(4, 3, activation="relu", padding="same"),
        k.layers.MaxPooling2D(), k.layers.Flatten(), k.layers.Dropout(0.2),
        k.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=k.optimizers.SGD(0.05, momentum=0.9), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    x = np.random.default_rng(1).random((32, 8, 8, 1)).astype("float32")
    return model, x, np.eye(2, dtype="float32")[(x.mean(axis=(1, 2, 3)) > 0.5).astype(int)]


@pytest.mark.parametrize("make", [tutorial, convolutional])
def test_a_keras_file_loads_with_its_layers_compile_settings_and_weights(make, tmp_path):
    theirs, x, y = make()
    theirs.fit(x, y, epochs=2, batch_size=16, verbose=0)
    theirs.save(tmp_path / "model.keras")
    ours = reglab.models.load_model(tmp_path / "model.keras")
    again = keras.models.load_model(tmp_path / "model.keras")
    assert [type(layer).__name__ for layer in ours.layers] == \
        [type(layer).__name__ for layer in again.layers]
    assert [layer.name for layer in ours.layers] == [layer.name for layer in again.layers]
    for a, b in zip(ours.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(ours.predict(x, verbose=0), again.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    got = ours.evaluate(x, y, verbose=0, return_dict=True)
    expected = again.evaluate(x, y, verbose=0, return_dict=True)
    assert got == pytest.approx(expected, rel=1e-5)
    assert type(ours.optimizer).__name__ == type(again.optimizer).__name__
    ours.fit(x, y, epochs=1, verbose=0)  # it trains (test_parity_keras_training_state.py)


def test_the_tutorial_file_keeps_its_settings(tmp_path):
    theirs, x, y = tutorial()
    theirs.save(tmp_path / "model.keras")
    ours = reglab.models.load_model(tmp_path / "model.keras")
    dense = ours.layers[0]
    assert (dense.kernel_regularizer.l1, dense.kernel_regularizer.l2) == \
        pytest.approx((1e-4, 1e-3))
    assert dense.kernel_constraint.max_value == 3.0
    assert type(dense.kernel_initializer).__name__ == "HeNormal"
    assert ours.layers[1].rate == 0.3 and ours.layers[2].momentum == 0.9
    assert ours.optimizer.clipnorm == 1.0
    assert ours.optimizer.schedule.get_config()["decay_rate"] == pytest.approx(0.9)
    assert ours.logged_metric_names == ["accuracy", "auc"]
    assert ours.metrics_names == theirs.metrics_names == ["loss", "compile_metrics"]


def test_an_unknown_setting_is_refused_naming_the_layer(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization(renorm=True)])
    model.save(tmp_path / "renorm.keras")
    with pytest.raises(ConfigError, match=r"layers\[0\] \(BatchNormalization\): "
                                          r"BatchNormalization: unexpected keyword argument "
                                          r"'renorm'"):
        reglab.models.load_model(tmp_path / "renorm.keras")


def functional():
    """Two inputs, a layer shared by two calls, a residual Add, two outputs."""
    k = keras
    a, b = k.Input((6,), name="a"), k.Input((3,), name="b")
    shared = k.layers.Dense(6, activation="tanh", name="shared",
                            kernel_regularizer=k.regularizers.L2(0.01))
    h = k.layers.Add(name="residual")([shared(a), a])
    h = shared(h)
    joined = k.layers.Concatenate(name="joined")([h, b])
    cls = k.layers.Dense(3, activation="softmax", name="cls")(joined)
    reg = k.layers.Dense(1, name="reg")(k.layers.Dropout(0.2, name="drop")(joined))
    model = k.Model([a, b], [cls, reg], name="heads")
    model.compile(optimizer=k.optimizers.RMSprop(0.01),
                  loss=["sparse_categorical_crossentropy", "mse"], loss_weights=[1.0, 0.5],
                  metrics={"cls": ["accuracy"], "reg": ["mae"]})
    rng = np.random.default_rng(3)
    x = [rng.normal(size=(40, 6)).astype("float32"), rng.normal(size=(40, 3)).astype("float32")]
    return model, x, [rng.integers(0, 3, 40), rng.normal(size=(40, 1)).astype("float32")]


def test_a_keras_functional_file_loads_as_a_reglab_model(tmp_path):
    theirs, x, y = functional()
    theirs.fit(x, y, epochs=2, batch_size=8, verbose=0)
    theirs.save(tmp_path / "heads.keras")
    ours = reglab.models.load_model(tmp_path / "heads.keras")
    again = keras.models.load_model(tmp_path / "heads.keras")
    assert [layer.name for layer in ours.layers] == [layer.name for layer in again.layers]
    for a, b in zip(ours.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    for got, expected in zip(ours.predict(x, verbose=0), again.predict(x, verbose=0),
                             strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert ours.evaluate(x, y, verbose=0, return_dict=True) == pytest.approx(
        again.evaluate(x, y, verbose=0, return_dict=True), rel=1e-5)
    rebuilt = reglab.models.model_from_json(theirs.to_json())
    assert [layer.name for layer in rebuilt.layers] == [layer.name for layer in theirs.layers]


def test_keras_s_json_gives_the_same_architecture():
    theirs, x, _ = tutorial()
    ours = reglab.models.model_from_json(theirs.to_json())
    assert [type(layer).__name__ for layer in ours.layers] == \
        [type(layer).__name__ for layer in theirs.layers]
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in theirs.get_weights()]
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_a_keras_file_whose_metrics_are_objects_and_loss_functions_loads(tmp_path):
    # metric objects (named or not), a loss function and a loss object as metrics, beside
    # names: each read as Keras reads it back, and evaluated alike
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 4)).astype("float32"), rng.integers(0, 2, (16, 1))
    y = y.astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss=keras.losses.BinaryFocalCrossentropy(gamma=1.5),
                  metrics=[keras.metrics.CosineSimilarity(name="cos"), keras.metrics.Hinge(),
                           keras.losses.cosine_similarity, keras.losses.huber,
                           keras.losses.BinaryFocalCrossentropy(gamma=1.0),
                           keras.metrics.BinaryAccuracy(), keras.metrics.AUC(), "mae"])
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "metrics.keras"
    model.save(path)
    theirs = keras.models.load_model(path).evaluate(x, y, verbose=0, return_dict=True)
    ours = reglab.models.load_model(path).evaluate(x, y, verbose=0, return_dict=True)
    assert list(ours) == list(theirs)
    for key, value in theirs.items():
        np.testing.assert_allclose(ours[key], value, rtol=1e-5, atol=1e-7, err_msg=key)


@pytest.mark.parametrize("functional", [False, True])
def test_an_uncompiled_keras_file_loads_uncompiled_and_predicts_as_keras(functional, tmp_path):
    # Keras writes "compile_config": {} for a model never compiled (an export for inference)
    k = keras
    if functional:
        inputs = k.Input((6,))
        hidden = k.layers.Dense(5, activation="relu")(inputs)
        theirs = k.Model(inputs, k.layers.Dense(2, activation="softmax")(hidden))
    else:
        theirs = k.Sequential([k.Input((6,)), k.layers.Dense(5, activation="relu"),
                               k.layers.Dense(2, activation="softmax")])
    theirs.save(tmp_path / "plain.keras")
    ours = reglab.models.load_model(tmp_path / "plain.keras")
    again = keras.models.load_model(tmp_path / "plain.keras")
    assert again.compiled is False and ours.compiled is False and ours.optimizer is None
    x = np.random.default_rng(3).normal(size=(7, 6)).astype("float32")
    np.testing.assert_allclose(ours.predict(x, verbose=0), again.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    ours.compile(optimizer="adam", loss="categorical_crossentropy")  # and it can be compiled
    assert ours.compiled is True
    ours.fit(x, np.eye(2, dtype="float32")[[0, 1, 0, 1, 0, 1, 0]], epochs=1, verbose=0)


def test_save_takes_keras_s_arguments(tmp_path):
    ours = reglab.Sequential([reglab.Input((3,)), reglab.layers.Dense(2)], seed=0)
    theirs = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    for model, name in ((ours, "ours.keras"), (theirs, "theirs.keras")):
        model.save(tmp_path / name, overwrite=True, zipped=True, include_optimizer=True)
        model.save(tmp_path / name, overwrite=True)  # replaced
        with pytest.raises(ValueError, match="not supported"):
            model.save(tmp_path / name, save_traces=True)
    with pytest.raises(FileExistsError, match="ours.keras exists and overwrite=False"):
        ours.save(tmp_path / "ours.keras", overwrite=False)  # Keras asks on the terminal
    ours.save(tmp_path / "fresh.keras", overwrite=False)
    with pytest.raises(ConfigError, match="'zipped' must be None or True"):
        ours.save(tmp_path / "dir.keras", zipped=False)
    reglab.saving.save_model(ours, tmp_path / "third.keras", overwrite=True)
    ours.save(tmp_path / "third.keras", overwrite=1)  # truthy, as Keras reads it
    with pytest.raises(FileExistsError):
        ours.save(tmp_path / "third.keras", overwrite=np.False_)
    for model, name in ((ours, "ours.keras"), (theirs, "theirs.keras")):
        model.save(tmp_path / name, save_format="keras")  # deprecated in Keras 3: a warning
        with pytest.raises(ValueError, match="save_format"):
            model.save(tmp_path / "model.other", save_format="keras")
    x = np.ones((2, 3), dtype="float32")
    for name in ("fresh.keras", "third.keras"):
        np.testing.assert_array_equal(reglab.models.load_model(tmp_path / name).predict(x),
                                      ours.predict(x))


def test_a_keras_file_under_another_name_loads(tmp_path):
    theirs, x, _ = convolutional()
    theirs.save(tmp_path / "model.keras")
    (tmp_path / "model.keras").rename(tmp_path / "copy")
    ours = reglab.models.load_model(tmp_path / "copy")
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_a_keras_archive_missing_its_weights_names_keras_s_member(tmp_path):
    import zipfile

    theirs, _, _ = tutorial()
    theirs.save(tmp_path / "model.keras")
    with zipfile.ZipFile(tmp_path / "model.keras") as full, \
            zipfile.ZipFile(tmp_path / "bad.keras", "w") as damaged:
        damaged.writestr("config.json", full.read("config.json"))
    with pytest.raises(reglab.errors.DataError,
                       match=r"bad.keras: .*missing model\.weights\.h5"):
        reglab.models.load_model(tmp_path / "bad.keras")


def test_a_keras_file_of_an_unbuilt_sequential_loads_unbuilt_as_in_keras(tmp_path):
    keras.Sequential([keras.layers.Dense(4, activation="relu"), keras.layers.Dense(2)],
                     name="later").save(tmp_path / "unbuilt.keras")
    again = keras.models.load_model(tmp_path / "unbuilt.keras")
    ours = reglab.models.load_model(tmp_path / "unbuilt.keras")
    assert again.built is False and ours.built is False and ours.name == "later"
    with pytest.raises(ValueError):
        ours.count_params()
    x = np.random.default_rng(0).normal(size=(8, 5)).astype("float32")
    ours.compile(optimizer="sgd", loss="mse")
    ours.fit(x, x[:, :2], epochs=1, verbose=0)  # built by its data, as Keras's
    assert [w.shape for w in ours.get_weights()] == [(5, 4), (4,), (4, 2), (2,)]
