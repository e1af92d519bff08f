"""ImageDataGenerator's pixel-value arguments side by side with Keras's legacy generator:
channel shifts and brightness shifts (bit for bit, image by image, through Keras's PIL
path), ZCA whitening (its matrix and ``standardize``), ``preprocessing_function`` in a
flow's batches, and ``Model.fit`` on a flow that uses them."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import reglab  # noqa: E402
from reglab.errors import ConfigError, DataError  # noqa: E402
from reglab.preprocessing import intensity  # noqa: E402
from reglab.preprocessing.image import ImageDataGenerator  # noqa: E402

keras = pytest.importorskip("keras")
legacy = pytest.importorskip("keras.src.legacy.preprocessing.image")
pytest.importorskip("PIL")
pytestmark = pytest.mark.filterwarnings("ignore:.*scipy.ndimage.interpolation.*:DeprecationWarning")

RNG = np.random.default_rng(7)

# (low, high) of the pixel values: 8-bit range, out of it (Keras stretches to 0-255 and
# back), a narrow band inside it, and [0, 1] (the 8-bit truncation leaves 0s and 1s)
RANGES = [(0, 255), (-3, 400), (10, 200), (0, 1)]


def _images(n, channels, low, high, rounded=False):
    x = RNG.uniform(low, high, size=(n, 5, 6, channels)).astype("float32")
    return np.round(x) if rounded else x


@pytest.mark.filterwarnings("ignore:.*brightness_range.*:UserWarning")
@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("low, high", RANGES)
@pytest.mark.parametrize("rounded", [False, True])
def test_brightness_shift_is_keras_s_bit_for_bit(channels, low, high, rounded):
    x = _images(6, channels, low, high, rounded)
    factors = np.array([0.0, 1.0, 0.37, 1.9, 2.6, RNG.uniform(0.5, 1.5)])
    ours = intensity.brightness_shift(x, factors, "test")
    for image, factor, got in zip(x, factors, ours):
        expected = legacy.apply_brightness_shift(image, float(factor), False)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, expected)


def test_brightness_shift_of_a_constant_out_of_range_image_and_of_float64():
    flat = np.full((1, 3, 3, 1), -7.0, dtype="float32")  # stretched, all one value
    np.testing.assert_array_equal(intensity.brightness_shift(flat, np.array([1.5]), "t")[0],
                                  legacy.apply_brightness_shift(flat[0], 1.5, False))
    wide = _images(2, 3, -20, 300).astype("float64")
    ours = intensity.brightness_shift(wide, np.array([0.8, 1.2]), "t")
    assert ours.dtype == np.float64
    for image, factor, got in zip(wide, (0.8, 1.2), ours):
        np.testing.assert_allclose(got, legacy.apply_brightness_shift(image, factor, False),
                                   rtol=1e-6)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("low, high", RANGES)
def test_channel_shift_is_keras_s_bit_for_bit(channels, low, high):
    x = _images(5, channels, low, high)
    shifts = RNG.uniform(-0.6 * high, 0.6 * high, size=5)
    ours = intensity.channel_shift(x, shifts)
    for image, shift, got in zip(x, shifts, ours):
        # Keras's get_random_transform draws a Python float (NumPy keeps float32 with it)
        expected = legacy.apply_channel_shift(image, float(shift), 2)
        assert got.dtype == expected.dtype == np.float32
        np.testing.assert_array_equal(got, expected)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_apply_transform_with_keras_s_parameters_matches_keras():
    params = {"theta": 0, "channel_shift_intensity": 23.5, "brightness": 0.7,
              "flip_horizontal": True}
    x = _images(1, 3, 0, 255)[0]
    ours = ImageDataGenerator(channel_shift_range=30, brightness_range=(0.5, 1.5))
    theirs = legacy.ImageDataGenerator(channel_shift_range=30, brightness_range=(0.5, 1.5))
    np.testing.assert_allclose(ours.apply_transform(x, params),
                               theirs.apply_transform(x.copy(), params), atol=1e-4)


def test_drawn_parameters_replay_through_apply_transform():
    datagen = ImageDataGenerator(rotation_range=15, channel_shift_range=40.0,
                                 brightness_range=[0.6, 1.4], horizontal_flip=True)
    x = _images(1, 1, 0, 255)[0]
    params = datagen.get_random_transform(x.shape, seed=11)
    assert -40 <= params["channel_shift_intensity"] <= 40
    assert 0.6 <= params["brightness"] <= 1.4
    np.testing.assert_array_equal(datagen.apply_transform(x, params),
                                  datagen.random_transform(x, seed=11))
    other = datagen.get_random_transform(x.shape, seed=12)
    assert other["brightness"] != params["brightness"]


def test_random_shifts_span_their_ranges_per_image():
    datagen = ImageDataGenerator(channel_shift_range=50.0)
    x = np.repeat(_images(1, 3, 60, 190), 400, axis=0)  # one image, many draws
    out = next(datagen.flow(x, batch_size=400, shuffle=False, seed=3))
    inside = (out > x.min(axis=(1, 2, 3), keepdims=True)) & (
        out < x.max(axis=(1, 2, 3), keepdims=True))
    shifts = np.array([(o - i)[m].mean() if m.any() else np.nan
                       for o, i, m in zip(out, x, inside)])
    assert np.nanmax(np.abs(shifts)) <= 50 + 1e-3
    assert np.nanmin(shifts) < -35 and np.nanmax(shifts) > 35  # uniform over (-50, 50)
    assert len(np.unique(np.round(shifts[~np.isnan(shifts)], 3))) > 300  # per image


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_zca_whitening_fits_and_standardizes_as_keras():
    x = _images(40, 1, 0, 255)
    kwargs = {"zca_whitening": True, "zca_epsilon": 1e-3, "rescale": 1 / 255,
              "featurewise_std_normalization": True}
    with pytest.warns(UserWarning, match="zca_whitening") as ours_warned:
        ours = ImageDataGenerator(**kwargs)
    theirs = legacy.ImageDataGenerator(**kwargs)
    assert len(ours_warned) == 2  # featurewise_center on, featurewise_std off, as Keras
    assert (ours.featurewise_center, ours.featurewise_std_normalization) == (
        theirs.featurewise_center, theirs.featurewise_std_normalization) == (True, False)
    ours.fit(x)
    theirs.fit(x)
    np.testing.assert_allclose(ours.mean, theirs.mean, rtol=1e-6)
    np.testing.assert_allclose(ours.zca_whitening_matrix, theirs.zca_whitening_matrix,
                               rtol=1e-4, atol=1e-4)
    batch = _images(3, 1, 0, 255)
    np.testing.assert_allclose(ours.standardize(batch.copy()),
                               theirs.standardize(batch.copy()), rtol=1e-4, atol=1e-3)
    whitened = ours.standardize_array(x).reshape(40, -1)
    # whitened training images: decorrelated, unit variance (where not cut by epsilon)
    assert abs(np.cov(whitened.T)[0, 1]) < 0.05


@pytest.mark.filterwarnings("ignore:.*featurewise_center.*:UserWarning")
def test_zca_before_fit_warns_and_leaves_the_images():
    datagen = ImageDataGenerator(zca_whitening=True, featurewise_center=True)
    x = _images(1, 1, 0, 255)
    with pytest.warns(UserWarning, match="specifies `zca_whitening`, but it hasn't been fit"):
        out = datagen.standardize(x.copy())
    np.testing.assert_array_equal(out, x)


def _flip_rows(image):
    return image[::-1] * 2.0


def test_preprocessing_function_runs_per_image_before_rescale_as_keras():
    x = _images(7, 1, 0, 255)
    kept = x.copy()
    ours = ImageDataGenerator(preprocessing_function=_flip_rows, rescale=0.5,
                              samplewise_center=True)
    theirs = legacy.ImageDataGenerator(preprocessing_function=_flip_rows, rescale=0.5,
                                       samplewise_center=True)
    got = next(ours.flow(x, batch_size=7, shuffle=False))
    expected = next(theirs.flow(x, batch_size=7, shuffle=False))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-4)
    np.testing.assert_array_equal(x, kept)  # the caller's images untouched


def test_fit_on_a_flow_with_a_preprocessing_function_reads_its_batches():
    x = _images(48, 1, 0, 255)
    y = RNG.integers(0, 3, 48)
    calls = []

    def doubled(image):
        calls.append(1)
        return image * 2.0

    datagen = ImageDataGenerator(preprocessing_function=doubled, rescale=1 / 255)
    models = []
    for _ in range(2):
        reglab.utils.set_random_seed(5)
        model = reglab.Sequential([reglab.Input((5, 6, 1)), reglab.layers.Flatten(),
                                   reglab.layers.Dense(3, activation="softmax")])
        model.compile(optimizer=reglab.optimizers.SGD(0.1),
                      loss="sparse_categorical_crossentropy")
        models.append(model)
    models[1].set_weights(models[0].get_weights())
    models[0].fit(datagen.flow(x, y, batch_size=16, shuffle=False), epochs=2, verbose=0)
    assert len(calls) == 2 * 48  # each image of each epoch's batches, one call each
    models[1].fit(x * 2.0 / 255, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    for got, expected in zip(models[0].get_weights(), models[1].get_weights()):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kwargs, pattern", [
    ({"brightness_range": 0.5}, "'brightness_range' must be None or a tuple or list of two"),
    ({"brightness_range": (0.5,)}, "'brightness_range' must be None or a tuple or list of two"),
    ({"brightness_range": (0.5, float("nan"))}, "'brightness_range'"),
    ({"channel_shift_range": "10"}, "'channel_shift_range' must be a finite float"),
    ({"channel_shift_range": float("inf")}, "'channel_shift_range' must be a finite float"),
    ({"preprocessing_function": 3}, "'preprocessing_function' must be None or a function"),
    ({"zca_epsilon": -1.0}, "'zca_epsilon' must be a finite float >= 0"),
])
def test_bad_pixel_arguments_name_the_argument(kwargs, pattern):
    with pytest.raises(ConfigError, match=rf"^ImageDataGenerator: {pattern}"):
        ImageDataGenerator(**kwargs)


@pytest.mark.filterwarnings("ignore:.*channels.*:UserWarning")
def test_bad_images_for_pixel_changes_say_what_is_wrong():
    two_channels = _images(2, 2, 0, 255)
    with pytest.raises(DataError, match=r"'brightness_range' needs images of 1, 3 or 4 "
                                        r"channels .* Got 2 channels"):
        next(ImageDataGenerator(brightness_range=(0.5, 1.5)).flow(two_channels, batch_size=2))
    nan = _images(1, 1, 0, 255)
    nan[0, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match="'brightness_range' needs finite pixel values"):
        next(ImageDataGenerator(brightness_range=(0.5, 1.5)).flow(nan, batch_size=1))
    shrinking = ImageDataGenerator(preprocessing_function=lambda image: image[:2])
    with pytest.raises(DataError, match=r"'preprocessing_function' must return an array of "
                                        r"its input's shape \(5, 6, 1\)\. Got shape \(2, 6, 1\)"):
        next(shrinking.flow(_images(3, 1, 0, 255), batch_size=3))


def test_brightness_on_unit_range_images_warns_as_they_lose_their_values():
    x = _images(2, 1, 0, 1)
    with pytest.warns(UserWarning, match=r"'brightness_range' on images of values in \[0, 1\]"):
        out = next(ImageDataGenerator(brightness_range=(0.9, 1.1)).flow(x, batch_size=2))
    assert set(np.unique(out)) <= {0.0, 1.0}


def test_backup_and_restore_refuses_a_flow_read_batch_by_batch_up_front(tmp_path):
    model = reglab.Sequential([reglab.Input((5, 6, 1)), reglab.layers.Flatten(),
                               reglab.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    flow = ImageDataGenerator(channel_shift_range=5.0).flow(_images(8, 1, 0, 255),
                                                            RNG.integers(0, 2, 8), batch_size=4)
    backup = reglab.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(ConfigError, match="channel_shift_range, brightness_range"):
        model.fit(flow, epochs=1, callbacks=[backup], verbose=0)
    assert not (tmp_path / "backup").exists() or not any((tmp_path / "backup").iterdir())


def _in_place(image):
    image /= 127.5  # the in-place style of keras.applications' preprocess_input
    image -= 1.0
    return image


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_an_in_place_preprocessing_function_never_reaches_the_flow_s_images():
    x = _images(12, 1, 0, 255)
    kept = x.copy()
    model = reglab.Sequential([reglab.Input((5, 6, 1)), reglab.layers.Flatten(),
                               reglab.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    flow = ImageDataGenerator(preprocessing_function=_in_place).flow(
        x, RNG.integers(0, 2, 12), batch_size=4, shuffle=False)
    scores = [model.evaluate(flow, verbose=0) for _ in range(3)]
    model.fit(flow, epochs=2, validation_data=flow, verbose=0)
    model.predict(flow, verbose=0)
    np.testing.assert_array_equal(flow.x, kept)
    np.testing.assert_array_equal(x, kept)
    assert scores[0] == scores[1] == scores[2]


def test_each_fit_call_on_a_flow_read_batch_by_batch_draws_new_batches():
    x = _images(24, 3, 0, 255)
    model = reglab.Sequential([reglab.Input((5, 6, 3)), reglab.layers.Flatten(),
                               reglab.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=reglab.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy")
    flow = ImageDataGenerator(channel_shift_range=100.0, rescale=1 / 255).flow(
        x, np.arange(24) % 2, batch_size=8, seed=1)
    losses = [model.fit(flow, epochs=1, verbose=0).history["loss"][0] for _ in range(3)]
    assert len(set(losses)) == 3 and flow.epoch == 3  # learning rate 0: the data differ


@pytest.mark.parametrize("size", [(28, 28), (30, 30), (150, 150)])
def test_brightness_after_a_flip_or_whole_pixel_shift_is_keras_s_bit_for_bit(size):
    kwargs = {"horizontal_flip": True, "brightness_range": (0.6, 1.4),
              "width_shift_range": 3}
    ours, theirs = ImageDataGenerator(**kwargs), legacy.ImageDataGenerator(**kwargs)
    x = RNG.integers(0, 256, (*size, 3)).astype("float32")
    for seed in range(4):
        params = ours.get_random_transform(x.shape, seed=seed)
        expected = theirs.apply_transform(x.copy(), params)
        np.testing.assert_array_equal(ours.apply_transform(x, params), expected)
        np.testing.assert_array_equal(ours.random_transform(x, seed=seed), expected)


@pytest.mark.parametrize("moved", [{"flip_horizontal": True}, {"tx": 0.5}, {"ty": 3.0}])
def test_a_brightness_given_to_apply_transform_is_keras_s_bit_for_bit(moved):
    """A generator without brightness_range given a 'brightness' parameter: its warp in
    float64 as the generator with one does (a float32 warp had landed 1e-5 below an integer,
    a level apart after the truncation)."""
    ours, theirs = ImageDataGenerator(), legacy.ImageDataGenerator()
    for seed in range(6):
        x = np.random.default_rng(seed).integers(0, 256, (28, 28, 1)).astype("float32")
        params = {**moved, "brightness": 1.1 + seed / 20}
        np.testing.assert_array_equal(ours.apply_transform(x, params),
                                      theirs.apply_transform(x.copy(), params))


def test_whitened_flow_batches_keep_the_generator_s_dtype():
    datagen = ImageDataGenerator(zca_whitening=True, featurewise_center=True)
    x = _images(20, 1, 0, 255)
    datagen.fit(x)
    assert next(datagen.flow(x, batch_size=5)).dtype == np.float32
    assert datagen.standardize_array(x).dtype == np.float32


def test_a_preprocessing_function_that_returns_none_is_named():
    with pytest.raises(DataError, match=r"must return an array of its input's shape "
                                        r"\(5, 6, 1\)\. Got None for image 0"):
        next(ImageDataGenerator(preprocessing_function=lambda image: None).flow(
            _images(2, 1, 0, 255), batch_size=2))
