"""reglab.preprocessing.image: ImageDataGenerator.flow and the NumpyArrayIterator it returns."""

from __future__ import annotations

import numpy as np
import pytest

from reglab.errors import ConfigError, DataError
from reglab.preprocessing.image import ImageDataGenerator, NumpyArrayIterator

RNG = np.random.default_rng(1)
N = 10
X = RNG.uniform(size=(N, 6, 6, 1))
Y = np.arange(N)
W = np.linspace(0.1, 1.0, N)


def epoch_labels(iterator) -> list[np.ndarray]:
    return [next(iterator)[1] for _ in range(len(iterator))]


def test_flow_returns_a_sequence_of_keras_shaped_batches():
    it = ImageDataGenerator().flow(X, Y, batch_size=4)
    assert isinstance(it, NumpyArrayIterator)
    assert (len(it), it.n, it.batch_size, it.shuffle, it.seed) == (3, N, 4, True, None)
    assert it.x.dtype == np.float32 and it.sample_weight is None
    np.testing.assert_array_equal(it.y, Y)
    sizes = [it[i][0].shape for i in range(len(it))]
    assert sizes == [(4, 6, 6, 1), (4, 6, 6, 1), (2, 6, 6, 1)]
    x_batch, y_batch = it[0]
    assert x_batch.dtype == np.float32 and y_batch.shape == (4,)
    with pytest.raises(IndexError, match=r"batch index must be an int in \[0, 3\). Got 3"):
        it[3]


def test_dtype_follows_the_generator():
    it = ImageDataGenerator(dtype="float64").flow(X, batch_size=3)
    assert it.x.dtype == np.float64 and it[0].dtype == np.float64


def test_without_augmentation_batches_are_the_samples_in_order():
    it = ImageDataGenerator().flow(X, Y, batch_size=4, shuffle=False)
    x_batch, y_batch = it[1]
    np.testing.assert_array_equal(x_batch, X[4:8].astype(np.float32))
    np.testing.assert_array_equal(y_batch, Y[4:8])


def test_next_cycles_through_epochs_forever_with_a_partial_last_batch():
    it = ImageDataGenerator().flow(X, Y, batch_size=4, shuffle=False)
    assert iter(it) is it
    sizes = [len(next(it)[1]) for _ in range(7)]
    assert sizes == [4, 4, 2, 4, 4, 2, 4]
    assert it.epoch == 2 and it.batch_index == 1


def test_shuffle_visits_every_sample_once_per_epoch_in_a_new_order():
    it = ImageDataGenerator().flow(X, Y, batch_size=3, seed=5)
    first, second = np.concatenate(epoch_labels(it)), np.concatenate(epoch_labels(it))
    np.testing.assert_array_equal(np.sort(first), Y)
    np.testing.assert_array_equal(np.sort(second), Y)
    assert not np.array_equal(first, second)
    x_batch, y_batch = it[0]  # images travel with their labels
    np.testing.assert_array_equal(x_batch, X[y_batch].astype(np.float32))


def test_a_seed_makes_batches_reproducible_and_getitem_stable_within_an_epoch():
    datagen = ImageDataGenerator(rotation_range=30, width_shift_range=0.1, horizontal_flip=True)
    a, b = datagen.flow(X, Y, batch_size=4, seed=7), datagen.flow(X, Y, batch_size=4, seed=7)
    for i in (0, 2):
        np.testing.assert_array_equal(a[i][0], b[i][0])
        np.testing.assert_array_equal(a[i][1], b[i][1])
    np.testing.assert_array_equal(a[1][0], a[1][0])
    other = datagen.flow(X, Y, batch_size=4, seed=8)
    assert not np.array_equal(a[0][0], other[0][0])
    before = a[0][0]
    a.on_epoch_end()
    assert a.epoch == 1 and not np.array_equal(a[0][0], before)
    # shuffle=False: same order every epoch, new augmentations each epoch.
    c = datagen.flow(X, Y, batch_size=4, shuffle=False, seed=7)
    first = c[0]
    c.on_epoch_end()
    np.testing.assert_array_equal(c[0][1], first[1])
    assert not np.array_equal(c[0][0], first[0])


def test_rotation_changes_images():
    x_batch, _ = ImageDataGenerator(rotation_range=40).flow(X, Y, shuffle=False, seed=0)[0]
    changed = ~np.isclose(x_batch, X.astype(np.float32), atol=1e-4).all(axis=(1, 2, 3))
    assert changed.sum() >= N - 1


def test_horizontal_flip_alone_mirrors_about_half_of_the_images():
    x = RNG.uniform(size=(64, 5, 7, 3))
    x_batch = ImageDataGenerator(horizontal_flip=True, dtype="float64").flow(
        x, batch_size=64, shuffle=False, seed=0
    )[0]
    same = np.isclose(x_batch, x, atol=1e-9).all(axis=(1, 2, 3))
    flipped = np.isclose(x_batch, np.flip(x, axis=2), atol=1e-9).all(axis=(1, 2, 3))
    assert (same ^ flipped).all()  # each image is itself or its mirror, nothing else
    assert 20 <= flipped.sum() <= 44


def test_y_none_yields_images_only_and_sample_weights_yield_triples():
    it = ImageDataGenerator().flow(X, batch_size=4, shuffle=False)
    assert isinstance(it[0], np.ndarray) and it.y is None
    it = ImageDataGenerator().flow(X, Y, batch_size=4, sample_weight=W, seed=2)
    x_batch, y_batch, w_batch = it[1]
    np.testing.assert_array_equal(w_batch, W[y_batch])
    np.testing.assert_array_equal(it.sample_weight, W)
    with pytest.raises(ConfigError, match=r"'sample_weight' needs labels y"):
        ImageDataGenerator().flow(X, sample_weight=W)


def test_batches_are_standardized_after_the_transform():
    datagen = ImageDataGenerator(featurewise_center=True, rescale=0.5, dtype="float64").fit(X)
    x_batch = datagen.flow(X, batch_size=N, shuffle=False)[0]
    np.testing.assert_allclose(x_batch, X * 0.5 - (X * 0.5).mean(), atol=1e-12)


@pytest.mark.parametrize("subset, rows", [("validation", slice(0, 3)), ("training", slice(3, N))])
def test_subset_splits_like_keras_validation_first(subset, rows):
    y = np.arange(N) % 2
    datagen = ImageDataGenerator(validation_split=0.3)
    it = datagen.flow(X, y, batch_size=4, shuffle=False, sample_weight=W, subset=subset)
    np.testing.assert_array_equal(it.x, X[rows].astype(np.float32))
    np.testing.assert_array_equal(it.y, y[rows])
    np.testing.assert_array_equal(it.sample_weight, W[rows])
    assert it.n == len(range(N)[rows]) and it.subset == subset


def test_subset_errors():
    datagen = ImageDataGenerator(validation_split=0.3)
    with pytest.raises(DataError, match="different classes after the split at sample 3"):
        datagen.flow(X, Y, subset="training")  # sorted labels
    assert datagen.flow(X, Y, subset="training", ignore_class_split=True).n == 7
    with pytest.raises(ConfigError, match=r"unknown 'subset' 'train'.*Did you mean 'training'"):
        datagen.flow(X, subset="train")
    with pytest.raises(DataError, match=r"at least one sample.*for subset 'validation'"):
        ImageDataGenerator().flow(X, subset="validation")


def test_a_flat_array_gets_the_reshape_to_do():
    flat = np.broadcast_to(np.uint8(0), (60000, 784))  # MNIST's shape, no memory
    message = (
        r"^ImageDataGenerator.flow: x must be images of shape \(N, height, width, "
        r"channels\). Got shape \(60000, 784\). Reshape with x.reshape\(-1, 28, 28, 1\) "
        r"and start the model with Flatten\(\) \(or input_shape=\(28, 28, 1\)\).$"
    )
    with pytest.raises(DataError, match=message):
        ImageDataGenerator().flow(flat, np.zeros(60000))
    with pytest.raises(DataError, match=r"x.reshape\(-1, 32, 32, 3\)"):
        ImageDataGenerator().flow(np.zeros((2, 3072)))
    with pytest.raises(DataError, match=r"Got shape \(2, 28, 28\). Add a channels axis"):
        ImageDataGenerator().flow(np.zeros((2, 28, 28)))


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        (
            {"y": Y[:-1]},
            DataError,
            r"same number of samples. Got x.shape = \(10, 6, 6, 1\) "
            r"and y.shape = \(9,\)",
        ),
        ({"y": Y, "sample_weight": W[:3]}, DataError, r"x and sample_weight must hold"),
        ({"batch_size": 0}, ConfigError, r"'batch_size' must be a positive int. Got 0"),
        ({"seed": -1}, ConfigError, r"'seed' must be a non-negative int or None. Got -1"),
        ({"save_to_dir": "/tmp"}, ConfigError, r"'save_to_dir' is not supported yet"),
    ],
)
def test_bad_flow_arguments(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        ImageDataGenerator().flow(X, **kwargs)


def test_tuple_inputs_and_odd_channel_counts():
    with pytest.raises(ConfigError, match=r"\(images, extra_inputs\) form is not supported yet"):
        ImageDataGenerator().flow((X, Y))
    with pytest.warns(UserWarning, match=r"expected 1, 3 or 4 channels.*\(5 channels\)"):
        ImageDataGenerator().flow(np.zeros((2, 4, 4, 5)))
