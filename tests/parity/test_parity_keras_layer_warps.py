"""Keras 3's augmentation layers warp the images one layer after another, each resampling
anew; the engine does the same (a flip, which moves pixels onto pixels, is composed into its
neighbour's warp, and a flip alone moves the pixels exactly). Side by side with Keras's
layers called in training mode, with fixed factors (one transform each)."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import reglab  # noqa: E402
from engine_observers import record_augmented_batches  # noqa: E402

keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":  # pragma: no cover - another backend chosen outside
    pytest.skip("these comparisons run Keras on its torch backend", allow_module_level=True)

X = np.random.default_rng(0).integers(0, 256, (8, 12, 12, 1)).astype("float32")


def stack(api):
    L = api.layers
    return [L.RandomRotation((0.05, 0.05)), L.RandomTranslation((0.1, 0.1), (0.1, 0.1)),
            L.RandomZoom((0.1, 0.1))]


def trained_on(layers, monkeypatch) -> np.ndarray:
    """The batch the engine hands the model after ``layers`` augment it."""
    seen = record_augmented_batches(monkeypatch)
    model = reglab.Sequential([reglab.Input(X.shape[1:]), *layers, reglab.layers.Flatten(),
                               reglab.layers.Dense(2, activation="softmax")], seed=1)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.fit(X, np.arange(8) % 2, batch_size=8, epochs=1, shuffle=False, verbose=0)
    return seen[0].reshape(X.shape).numpy()


def keras_s(layers) -> np.ndarray:
    images = X
    for layer in layers:
        images = layer(images, training=True)
    return np.asarray(images.cpu() if hasattr(images, "cpu") else images)


def test_a_stack_of_layers_resamples_once_per_layer_as_keras(monkeypatch):
    got, expected = trained_on(stack(reglab), monkeypatch), keras_s(stack(keras))
    np.testing.assert_allclose(got, expected, atol=2e-3)  # float32 round-off of 3 warps

    def sharpness(images):
        return np.abs(np.diff(images, axis=2)).mean()
    assert sharpness(got) == pytest.approx(sharpness(expected), rel=1e-4)


def test_flips_are_exact_alone_and_composed_into_a_neighbour(monkeypatch):
    flipped = trained_on([reglab.layers.RandomFlip("horizontal_and_vertical", seed=3)],
                         monkeypatch)
    turned = X[:, ::-1, ::-1]
    assert all(np.array_equal(f, x) or np.array_equal(f, t)
               for f, x, t in zip(flipped, X, turned))  # moved pixels, not resampled
    with_flip = trained_on([reglab.layers.RandomFlip("horizontal", seed=3), *stack(reglab)],
                           monkeypatch)
    assert torch.isfinite(torch.from_numpy(with_flip)).all()


@pytest.mark.parametrize("fill_mode", ["constant", "reflect", "nearest"])
def test_a_rescaling_before_the_layers_is_taken_as_keras_computes_it(monkeypatch, fill_mode):
    """Rescaling(1/255, offset) ahead of augmentation (Keras's tutorials rescale first) had
    been refused: a warp commutes with it, so the engine warps the raw batch, its constant
    fill mapped back, and the model rescales after; the same images as Keras's."""
    def layers(api):
        L = api.layers
        return [L.Rescaling(1 / 255, offset=-0.25),
                L.RandomRotation((0.1, 0.1), fill_mode=fill_mode, fill_value=0.5),
                L.RandomZoom((0.2, 0.2), fill_mode=fill_mode, fill_value=0.5)]
    raw = trained_on(layers(reglab), monkeypatch)  # the batch before the model's Rescaling
    got = raw * np.float32(1 / 255) - np.float32(0.25)
    np.testing.assert_allclose(got, keras_s(layers(keras)), atol=2e-5)
    with pytest.raises(reglab.errors.ConfigError, match="RandomFlip after a Rescaling with a "
                                                        "scale or offset per channel"):
        two_channels = reglab.Sequential([reglab.Input((12, 12, 2)),
                                          reglab.layers.Rescaling([0.5, 2.0]),  # no one fill
                                          reglab.layers.RandomFlip(), reglab.layers.Flatten(),
                                          reglab.layers.Dense(2)])
        two_channels.compile(optimizer="sgd", loss="mse")
        two_channels.fit(np.zeros((4, 12, 12, 2), "float32"), np.zeros((4, 2), "float32"),
                         verbose=0)
    # one number in a list is one scale (Keras broadcasts it); a scale of 0 maps every image,
    # fill and all, to the offset
    assert np.isfinite(trained_on([reglab.layers.Rescaling([0.5]),
                                   reglab.layers.RandomRotation(0.1, fill_mode="constant")],
                                  monkeypatch)).all()
    assert np.isfinite(trained_on([reglab.layers.Rescaling(0.0, offset=1.0),
                                   reglab.layers.RandomZoom(0.2, fill_mode="constant")],
                                  monkeypatch)).all()
