"""Weights move between Keras 3 and reglab through Keras's ``.weights.h5`` files: saved by
one, loaded by the other, the two models predict the same."""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import reglab  # noqa: E402

keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":  # pragma: no cover
    pytest.skip("these comparisons run Keras on its torch backend", allow_module_level=True)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning",
                                        "ignore:Skipping variable loading for optimizer")


def build(api, compiled=True):
    model = api.Sequential([
        api.Input((6, 6, 1)),
        api.layers.Conv2D(3, 3, activation="relu"),
        api.layers.BatchNormalization(),
        api.layers.MaxPooling2D(),
        api.layers.Flatten(),
        api.layers.Dense(5, activation="relu", name="hidden"),
        api.layers.Dropout(0.3),
        api.layers.Dense(2, activation="softmax"),
    ])
    if compiled:
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(20, 6, 6, 1)).astype("float32"), rng.integers(0, 2, 20)


def test_keras_weights_load_into_reglab_and_predict_the_same(tmp_path):
    keras.utils.set_random_seed(0)
    theirs = build(keras)
    x, y = data()
    theirs.fit(x, y, epochs=2, verbose=0)  # moving statistics away from their start
    path = tmp_path / "model.weights.h5"
    theirs.save_weights(path)
    ours = build(reglab)
    with pytest.warns(UserWarning, match=r"not taken a step yet .*the optimizer's state in "
                                         r"the file \(18 variables\) was skipped"):
        ours.load_weights(path)  # as Keras: an optimizer that has not stepped keeps its own
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    archive = tmp_path / "model.keras"
    theirs.save(archive)
    again = build(reglab, compiled=False)
    with pytest.warns(UserWarning, match=r"not compiled .*state in the file .* skipped"):
        again.load_weights(archive)
    for a, b in zip(again.get_weights(), theirs.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_reglab_weights_load_into_keras_and_predict_the_same(tmp_path):
    ours = build(reglab)
    x, y = data()
    ours.fit(x, y, epochs=2, verbose=0)
    path = tmp_path / "ours.weights.h5"
    ours.save_weights(path)
    theirs = build(keras)
    theirs.load_weights(path)
    np.testing.assert_allclose(theirs.predict(x, verbose=0), ours.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    back = build(reglab)
    back.load_weights(path)  # and back again, exactly
    for a, b in zip(back.get_weights(), ours.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_file_that_does_not_fit_is_refused_and_nothing_changes(tmp_path):
    ours = build(reglab)
    before = ours.get_weights()
    other = reglab.Sequential([reglab.Input((6, 6, 1)), reglab.layers.Conv2D(4, 3),
                               reglab.layers.Flatten(), reglab.layers.Dense(2)])
    other.compile(optimizer="sgd", loss="mse")
    path = tmp_path / "other.weights.h5"
    other.save_weights(path)
    with pytest.raises(reglab.errors.ConfigError) as error:
        ours.load_weights(path)
    message = str(error.value)
    assert "layer 'conv2d' (layers/conv2d/vars/0): expected shape (3, 3, 1, 3). Got " \
           "(3, 3, 1, 4)" in message and "no group layers/batch_normalization" in message
    assert all(np.array_equal(a, b) for a, b in zip(ours.get_weights(), before))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours.load_weights(path, skip_mismatch=True)  # every layer skipped: none fits
    assert any("skipping layer 'conv2d'" in str(w.message) for w in caught)
    assert all(np.array_equal(a, b) for a, b in zip(ours.get_weights(), before))
    with pytest.raises(ValueError, match="must end in `.weights.h5`"):
        ours.save_weights(tmp_path / "model.h5")
    (tmp_path / "bad.weights.h5").write_bytes(b"not hdf5")
    with pytest.raises(reglab.errors.DataError, match="not an HDF5 weights file"):
        ours.load_weights(tmp_path / "bad.weights.h5")
    with pytest.raises(FileExistsError):
        ours.save_weights(path, overwrite=False)
    for missing in ("gone.weights.h5", "gone.keras"):
        with pytest.raises(FileNotFoundError):
            ours.load_weights(tmp_path / missing)
    import h5py

    with h5py.File(tmp_path / "odd.weights.h5", "w") as odd:
        odd.create_group("layers").create_group("conv2d").create_group("vars")
        odd["layers/conv2d/vars"].create_dataset("kernel", data=np.zeros(3))
    with pytest.raises(reglab.errors.DataError, match="not Keras 3's weights layout"):
        ours.load_weights(tmp_path / "odd.weights.h5")
