"""Cropping2D, UpSampling2D, GlobalMaxPooling2D and Identity, and Keras's other names for
the pooling and convolution layers (MaxPool2D, AvgPool2D, GlobalAvgPool2D, GlobalMaxPool2D,
Convolution2D), side by side with Keras 3 (torch backend): shapes, training, files both
ways, and the refusals naming the layer and argument."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import reglab  # noqa: E402
from reglab.errors import ConfigError  # noqa: E402

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
if keras.backend.backend() != "torch":  # pragma: no cover - another backend chosen outside
    pytest.skip("these comparisons run Keras on its torch backend", allow_module_level=True)

RNG = np.random.default_rng(0)
X = RNG.normal(size=(32, 10, 10, 2)).astype("float32")
Y = RNG.integers(0, 3, 32)

STACKS = {
    "crop-upsample-globalmax": lambda L: [
        L.Cropping2D(((1, 0), (2, 1))), L.Conv2D(4, 3, activation="relu"),
        L.UpSampling2D((2, 1)), L.Identity(), L.MaxPool2D(), L.GlobalMaxPooling2D()],
    "aliases": lambda L: [
        L.Cropping2D(1), L.Convolution2D(3, 2, padding="same"), L.AvgPool2D(2, padding="same"),
        L.UpSampling2D(3), L.GlobalMaxPool2D(keepdims=True), L.Flatten()],
    "global-average": lambda L: [L.Cropping2D((2, 3)), L.Conv2D(5, 3), L.GlobalAvgPool2D()],
}


def build(api, stack):
    model = api.Sequential([api.Input((10, 10, 2)), *STACKS[stack](api.layers),
                            api.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=api.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    return model


@pytest.mark.parametrize("stack", sorted(STACKS))
def test_the_layers_train_as_keras_s_and_their_files_load_both_ways(stack, tmp_path):
    keras.utils.set_random_seed(0)
    theirs, ours = build(keras, stack), build(reglab, stack)
    assert [type(layer).__name__ for layer in ours.layers] == \
        [type(layer).__name__ for layer in theirs.layers]
    assert ours.output_shape == theirs.output_shape
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(ours.predict(X, verbose=0), theirs.predict(X, verbose=0),
                               rtol=1e-5, atol=1e-6)
    expected = theirs.fit(X, Y, epochs=3, batch_size=8, shuffle=False, verbose=0).history
    got = ours.fit(X, Y, epochs=3, batch_size=8, shuffle=False, verbose=0).history
    np.testing.assert_allclose(got["loss"], expected["loss"], rtol=1e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    ours.save(tmp_path / "ours.keras")
    loaded = keras.models.load_model(tmp_path / "ours.keras")
    assert [type(layer).__name__ for layer in loaded.layers] == \
        [type(layer).__name__ for layer in theirs.layers]
    np.testing.assert_allclose(loaded.predict(X, verbose=0), ours.predict(X, verbose=0),
                               rtol=1e-5, atol=1e-6)
    theirs.save(tmp_path / "theirs.keras")
    again = reglab.models.load_model(tmp_path / "theirs.keras")
    np.testing.assert_allclose(again.predict(X, verbose=0), theirs.predict(X, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_the_other_names_are_the_same_classes_as_in_keras():
    L = reglab.layers
    assert L.MaxPool2D is L.MaxPooling2D and L.AvgPool2D is L.AveragePooling2D
    assert L.GlobalAvgPool2D is L.GlobalAveragePooling2D
    assert L.GlobalMaxPool2D is L.GlobalMaxPooling2D and L.Convolution2D is L.Conv2D


@pytest.mark.parametrize(("make", "message"), [
    (lambda L: L.Cropping2D(-1), r"Cropping2D: 'cropping' must be ints >= 0. Got -1."),
    (lambda L: L.Cropping2D((1, 2, 3)), r"Cropping2D: 'cropping' must be an int, \(h, w\)"),
    (lambda L: L.UpSampling2D(interpolation="bilinear"),
     r"UpSampling2D: 'interpolation' must be 'nearest'"),
    (lambda L: L.UpSampling2D(0), r"UpSampling2D: 'size'"),
    (lambda L: L.GlobalMaxPooling2D(keepdims="yes"), r"GlobalMaxPooling2D: 'keepdims'"),
    (lambda L: L.Cropping2D(data_format="channels_first"), r"Cropping2D: 'data_format'"),
])
def test_bad_arguments_are_refused_naming_the_layer_and_argument(make, message):
    with pytest.raises(ConfigError, match=message):
        make(reglab.layers)


def test_a_crop_that_leaves_nothing_and_a_wrong_rank_are_named():
    with pytest.raises(ConfigError, match=r"Cropping2D: 'cropping' \(\(5, 5\), \(0, 0\)\) "
                                          r"leaves nothing of an input of height 10"):
        reglab.Sequential([reglab.Input((10, 10, 2)),
                           reglab.layers.Cropping2D((5, 0))]).summary()
    with pytest.raises(ConfigError, match=r"UpSampling2D: expects inputs of rank 4"):
        reglab.Sequential([reglab.Input((10,)), reglab.layers.UpSampling2D()]).summary()
