"""Augmentation layers after a Reshape of flat images (``Input((784,)) -> Reshape((28, 28,
1)) -> RandomRotation``, Keras's way of augmenting a flat MNIST network): the batch is warped
in the Reshape's shape, so the model trains exactly as the same model fed images."""

from __future__ import annotations

import numpy as np
import pytest

import reglab
from reglab.errors import ConfigError

L = reglab.layers
IMAGES = np.random.default_rng(0).random((48, 6, 6, 1)).astype("float32")
LABELS = np.random.default_rng(1).integers(0, 3, 48)


def _trained(flat: bool, augmentation, head=None):
    head = head or ([L.Input((36,)), L.Reshape((6, 6, 1))] if flat else [L.Input((6, 6, 1))])
    model = reglab.Sequential([*head, *augmentation(), L.Flatten(),
                               L.Dense(5, activation="relu"), L.Dense(3, activation="softmax")],
                              seed=3)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = IMAGES.reshape(48, *head[0].shape[1:])
    history = model.fit(x, LABELS, batch_size=16, epochs=3, verbose=0).history
    return model.get_weights(), history["loss"]


@pytest.mark.parametrize("augmentation", [
    lambda: [L.RandomFlip("horizontal")],
    lambda: [L.RandomRotation(0.2), L.RandomZoom(0.1)],
    lambda: [L.RandomTranslation(0.1, 0.1, fill_mode="constant")],
], ids=["flip", "rotation+zoom", "translation"])
def test_flat_images_reshaped_then_augmented_train_as_images_do(augmentation):
    flat_weights, flat_losses = _trained(True, augmentation)
    image_weights, image_losses = _trained(False, augmentation)
    assert flat_losses == image_losses
    for a, b in zip(flat_weights, image_weights, strict=True):
        np.testing.assert_array_equal(a, b)
    # and the augmentation did something: without it the run differs
    plain_weights, _ = _trained(True, lambda: [])
    assert not np.array_equal(plain_weights[0], flat_weights[0])


def test_a_batch_transform_after_a_reshape_is_still_refused():
    model = reglab.Sequential([L.Input((36,)), L.Reshape((6, 6, 1)), L.CutMix(0.5),
                               L.Flatten(), L.Dense(3, activation="softmax")])
    with pytest.raises(ConfigError, match="CutMix must come before every other layer"):
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")


def test_augmentation_after_a_dense_layer_is_still_refused():
    model = reglab.Sequential([L.Input((36,)), L.Dense(36), L.Reshape((6, 6, 1)),
                               L.RandomFlip(), L.Flatten(), L.Dense(3, activation="softmax")])
    with pytest.raises(ConfigError, match="RandomFlip must come before every other layer"):
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")


def test_images_reshaped_to_other_images_are_warped_in_the_reshape_s_shape():
    # (6, 6, 1) images read as (3, 12, 1) ones, as Keras warps them: the same run as the
    # model fed (3, 12, 1) images
    def augmentation():
        return [L.RandomFlip("horizontal"), L.RandomTranslation(0.2, 0.1)]
    reshaped = _trained(False, augmentation, [L.Input((6, 6, 1)), L.Reshape((3, 12, 1))])
    direct = _trained(False, augmentation, [L.Input((3, 12, 1))])
    assert reshaped[1] == direct[1]
    for a, b in zip(reshaped[0], direct[0], strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("middle", [
    lambda: [L.Reshape((6, 6, 1)), L.RandomFlip(), L.Reshape((3, 12, 1)),
             L.RandomRotation(0.1)],
    lambda: [L.Reshape((6, 6, 1)), L.RandomFlip(), L.Reshape((36, 1, 1)),
             L.RandomRotation(0.1)],
], ids=["to-another-image", "to-a-column"])
def test_a_reshape_between_augmentation_layers_is_refused(middle):
    model = reglab.Sequential([L.Input((36,)), *middle(), L.Flatten(),
                               L.Dense(3, activation="softmax")])
    with pytest.raises(ConfigError, match="RandomRotation must come before every other layer"):
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
