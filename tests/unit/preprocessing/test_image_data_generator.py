"""reglab.preprocessing.image.ImageDataGenerator: Keras 2's arguments, standardize, transforms."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from reglab.augment import AffineSpec
from reglab.errors import ConfigError, DataError
from reglab.preprocessing import image
from reglab.preprocessing.image import ImageDataGenerator

RNG = np.random.default_rng(0)
X = RNG.uniform(0, 255, size=(6, 5, 4, 3))  # non-square, three channels
EPS = 1e-6

# keras.preprocessing.image.ImageDataGenerator (tf.keras 2.x), argument by argument, in order.
KERAS_DEFAULTS = {
    "featurewise_center": False,
    "samplewise_center": False,
    "featurewise_std_normalization": False,
    "samplewise_std_normalization": False,
    "zca_whitening": False,
    "zca_epsilon": 1e-6,
    "rotation_range": 0,
    "width_shift_range": 0.0,
    "height_shift_range": 0.0,
    "brightness_range": None,
    "shear_range": 0.0,
    "zoom_range": 0.0,
    "channel_shift_range": 0.0,
    "fill_mode": "nearest",
    "cval": 0.0,
    "horizontal_flip": False,
    "vertical_flip": False,
    "rescale": None,
    "preprocessing_function": None,
    "data_format": None,
    "validation_split": 0.0,
    "interpolation_order": 1,
    "dtype": None,
}


def test_arguments_and_defaults_are_keras_s_in_keras_s_order():
    parameters = inspect.signature(ImageDataGenerator).parameters
    assert {name: p.default for name, p in parameters.items()} == KERAS_DEFAULTS
    assert list(parameters) == list(KERAS_DEFAULTS)
    datagen = ImageDataGenerator()
    # kept as Keras keeps them: zoom_range as the range it draws from, [1 - z, 1 + z]
    assert {name: getattr(datagen, name) for name in KERAS_DEFAULTS} == \
        {**KERAS_DEFAULTS, "zoom_range": [1.0, 1.0]}
    assert datagen.mean is None and datagen.std is None


def test_arguments_are_stored_unchanged_and_become_an_affine_spec():
    datagen = ImageDataGenerator(
        rotation_range=20,
        width_shift_range=np.array([-2, 0, 2]),
        height_shift_range=0.2,
        shear_range=5,
        zoom_range=[0.9, 1.2],
        horizontal_flip=True,
        fill_mode="constant",
        cval=1.0,
    )
    assert datagen.zoom_range == [0.9, 1.2] and isinstance(datagen.width_shift_range, np.ndarray)
    assert datagen.affine_spec == AffineSpec(
        rotation_range=20,
        width_shift_range=(-2, 0, 2),
        height_shift_range=0.2,
        shear_range=5,
        zoom_range=(0.9, 1.2),
        horizontal_flip=True,
        fill_mode="constant",
        cval=1.0,
    )
    assert ImageDataGenerator().affine_spec.is_identity
    assert ImageDataGenerator().interpolation == "bilinear"
    assert ImageDataGenerator(interpolation_order=0).interpolation == "nearest"
    assert image.NumpyArrayIterator is not None


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"rotation_range": -1}, r"^ImageDataGenerator: 'rotation_range' must be a non-negative"),
        ({"zoom_range": 1.5}, r"^ImageDataGenerator: 'zoom_range' must be a float in \[0, 1\]"),
        ({"width_shift_range": "a"}, r"^ImageDataGenerator: 'width_shift_range' must be"),
        (
            {"fill_mode": "mirror"},
            r"^ImageDataGenerator: unknown 'fill_mode' 'mirror'. Expected one of: .*nearest",
        ),
        ({"horizontal_flip": 1}, r"^ImageDataGenerator: 'horizontal_flip' must be a bool"),
        ({"validation_split": 1.0}, r"'validation_split' must be a float in \[0, 1\).*Got 1.0"),
        ({"interpolation_order": 3}, r"'interpolation_order' must be 0 \(nearest\) or 1"),
        ({"dtype": "int32"}, r"'dtype' must be a floating-point dtype.*Got 'int32'"),
        ({"dtype": "nonsense"}, r"'dtype' must be a floating-point dtype"),
        ({"rescale": "1/255"}, r"'rescale' must be a finite number or None. Got '1/255'"),
        ({"data_format": "channels_middle"}, r"unknown 'data_format' 'channels_middle'"),
    ],
)
def test_bad_arguments_raise_config_error_naming_the_argument(kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        ImageDataGenerator(**kwargs)


def test_channels_first_is_refused_instead_of_being_ignored():
    with pytest.raises(ConfigError, match=r"^ImageDataGenerator: 'data_format' is not supported"):
        ImageDataGenerator(data_format="channels_first")


@pytest.mark.parametrize(
    "flag, implied",
    [
        ("featurewise_std_normalization", "featurewise_center"),
        ("samplewise_std_normalization", "samplewise_center"),
    ],
)
def test_std_normalization_implies_centering_with_keras_s_warning(flag, implied):
    with pytest.warns(UserWarning, match=rf"specifies `{flag}`, which overrides .*`{implied}`"):
        datagen = ImageDataGenerator(**{flag: True})
    assert getattr(datagen, implied) is False  # stored unchanged, implied in behaviour


# ---- standardize ------------------------------------------------------------------------------


def test_rescale_multiplies_and_zero_or_none_leaves_x_alone():
    close = np.testing.assert_allclose
    close(ImageDataGenerator(rescale=1 / 255, dtype="float64").standardize_array(X), X / 255)
    for rescale in (None, 0):
        datagen = ImageDataGenerator(rescale=rescale, dtype="float64")
        np.testing.assert_array_equal(datagen.standardize_array(X), X)


def test_samplewise_normalization_is_per_image_with_keras_s_epsilon():
    datagen = ImageDataGenerator(
        samplewise_center=True, samplewise_std_normalization=True, rescale=0.5, dtype="float64"
    )
    z = X * 0.5
    mean = z.mean(axis=(1, 2, 3), keepdims=True)
    std = z.std(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(datagen.standardize_array(X), (z - mean) / (std + EPS), rtol=1e-12)
    centred = ImageDataGenerator(samplewise_center=True, dtype="float64").standardize_array(X)
    np.testing.assert_allclose(centred, X - X.mean(axis=(1, 2, 3), keepdims=True), atol=1e-12)


def test_featurewise_statistics_are_per_channel_over_the_rescaled_data():
    datagen = ImageDataGenerator(
        featurewise_center=True,
        featurewise_std_normalization=True,
        rescale=1 / 255,
        dtype="float64",
    )
    assert datagen.fit(X) is datagen
    z = X / 255
    mean = z.mean(axis=(0, 1, 2)).reshape(1, 1, 3)
    std = z.std(axis=(0, 1, 2)).reshape(1, 1, 3)
    np.testing.assert_allclose(datagen.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(datagen.std, std, rtol=1e-12)
    np.testing.assert_allclose(datagen.standardize_array(X), (z - mean) / (std + EPS), rtol=1e-9)


def test_standardize_order_is_rescale_then_samplewise_then_featurewise():
    datagen = ImageDataGenerator(
        featurewise_center=True,
        featurewise_std_normalization=True,
        samplewise_center=True,
        samplewise_std_normalization=True,
        rescale=2.0,
        dtype="float64",
    ).fit(X)
    z = X * 2.0
    s = (z - z.mean(axis=(1, 2, 3), keepdims=True)) / (z.std(axis=(1, 2, 3), keepdims=True) + EPS)
    # fit sees rescaled data only (as Keras): the featurewise mean is of z, not of s.
    mean, std = z.mean(axis=(0, 1, 2)), z.std(axis=(0, 1, 2))
    np.testing.assert_allclose(datagen.standardize_array(X), (s - mean) / (std + EPS), rtol=1e-9)


def test_standardize_works_per_image_and_in_place_like_keras():
    datagen = ImageDataGenerator(samplewise_center=True, rescale=0.5, dtype="float64")
    whole = datagen.standardize_array(X)
    batch = X.copy()
    assert datagen.standardize(batch) is batch  # float numpy input: changed in place
    np.testing.assert_allclose(batch, whole, atol=1e-12)
    single = X[2].copy()
    np.testing.assert_allclose(datagen.standardize(single), whole[2], atol=1e-12)
    ints = X.astype(np.uint8)
    assert datagen.standardize(ints).dtype == np.float64 and ints.dtype == np.uint8


def test_standardize_array_copies_and_casts_to_dtype():
    x = X.copy()
    out = ImageDataGenerator(rescale=0.5).standardize_array(x)
    assert out.dtype == np.float32 and out is not x
    np.testing.assert_array_equal(x, X)


def test_featurewise_options_without_fit_warn_like_keras_and_leave_x_alone():
    datagen = ImageDataGenerator(featurewise_center=True, dtype="float64")
    with pytest.warns(
        UserWarning,
        match=r"specifies `featurewise_center`, but it hasn't been "
        r"fit on any training data. Fit it first by calling "
        r"`.fit\(numpy_data\)`",
    ):
        out = datagen.standardize_array(X)
    np.testing.assert_array_equal(out, X)


def test_fit_with_augment_fits_on_transformed_copies():
    datagen = ImageDataGenerator(featurewise_center=True, horizontal_flip=True, dtype="float64")
    datagen.fit(X, augment=True, rounds=2, seed=0)
    # Flips keep every channel's values, so the mean is unchanged.
    np.testing.assert_allclose(datagen.mean.ravel(), X.mean(axis=(0, 1, 2)), rtol=1e-9)
    with pytest.raises(ConfigError, match=r"^ImageDataGenerator.fit: 'rounds' must be a positive"):
        datagen.fit(X, augment=True, rounds=0)


def test_fit_and_standardize_explain_a_flat_array():
    pattern = (
        r"^ImageDataGenerator.fit: x must be images of shape \(N, height, width, "
        r"channels\). Got shape \(3, 784\). Reshape with x.reshape\(-1, 28, 28, 1\)"
    )
    with pytest.raises(DataError, match=pattern):
        ImageDataGenerator(featurewise_center=True).fit(np.zeros((3, 784)))
    with pytest.raises(DataError, match=r"standardize: x must be images"):
        ImageDataGenerator().standardize(np.zeros(5))


# ---- random transforms -------------------------------------------------------------------------


def test_no_geometric_argument_leaves_the_image_exactly_as_it_was():
    datagen = ImageDataGenerator(dtype="float64")
    np.testing.assert_array_equal(datagen.random_transform(X[0], seed=1), X[0])
    np.testing.assert_array_equal(datagen.random_transform_array(X), X)


def test_random_transform_equals_apply_transform_of_get_random_transform():
    datagen = ImageDataGenerator(
        rotation_range=30,
        width_shift_range=0.2,
        height_shift_range=2,
        shear_range=10,
        zoom_range=0.2,
        horizontal_flip=True,
        vertical_flip=True,
        fill_mode="reflect",
        dtype="float64",
    )
    params = datagen.get_random_transform(X[0].shape, seed=3)
    assert set(params) == {
        "theta",
        "tx",
        "ty",
        "shear",
        "zx",
        "zy",
        "flip_horizontal",
        "flip_vertical",
        "channel_shift_intensity",
        "brightness",
    }
    assert -30 <= params["theta"] <= 30 and params["tx"] in (-1.0, 0.0, 1.0)
    assert params["brightness"] is None and params["flip_vertical"] in (0, 1)  # Keras's ints
    np.testing.assert_allclose(
        datagen.apply_transform(X[0], params), datagen.random_transform(X[0], seed=3), atol=1e-9
    )
    assert not np.allclose(datagen.random_transform(X[0], seed=3), X[0])


def test_apply_transform_flips_and_turns_like_numpy():
    datagen = ImageDataGenerator(dtype="float64")
    square = RNG.uniform(size=(5, 5, 2))
    close = np.testing.assert_allclose
    close(datagen.apply_transform(square, {"flip_horizontal": True}), square[:, ::-1], atol=1e-9)
    close(datagen.apply_transform(square, {"flip_vertical": True}), square[::-1], atol=1e-9)
    # A positive angle turns the content counter-clockwise (Keras), as np.rot90 does.
    close(datagen.apply_transform(square, {"theta": 90}), np.rot90(square), atol=1e-9)


def test_interpolation_order_zero_takes_nearest_pixels():
    datagen = ImageDataGenerator(rotation_range=45, interpolation_order=0, dtype="float64")
    out = datagen.random_transform(X[0], seed=0)
    assert np.isin(out, X[0]).all()  # no blended values


def keras_apply_transform(x: np.ndarray, p: dict, fill_mode: str, cval: float) -> np.ndarray:
    """Keras's apply_transform on one channels-last image, from its source (scipy, order 1)."""
    from scipy import ndimage

    theta, shear = np.deg2rad(p["theta"]), np.deg2rad(p["shear"])
    m = (
        np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
        @ np.array([[1, 0, p["tx"]], [0, 1, p["ty"]], [0, 0, 1]])
        @ np.array([[1, -np.sin(shear), 0], [0, np.cos(shear), 0], [0, 0, 1]])
        @ np.diag([p["zx"], p["zy"], 1.0])
    )
    o = np.array([x.shape[0] / 2 - 0.5, x.shape[1] / 2 - 0.5])
    to, back = np.eye(3), np.eye(3)
    to[:2, 2], back[:2, 2] = o, -o
    m = to @ m @ back
    m[:, [0, 1]] = m[:, [1, 0]]  # Keras swaps x and y (col_axis > row_axis)
    m[[0, 1]] = m[[1, 0]]
    channels = [
        ndimage.affine_transform(x[..., c], m[:2, :2], m[:2, 2], order=1, mode=fill_mode, cval=cval)
        for c in range(x.shape[-1])
    ]
    out = np.stack(channels, axis=-1)
    return out[:, ::-1] if p["flip_horizontal"] else out


@pytest.mark.parametrize("fill_mode", ["nearest", "constant", "reflect"])
def test_apply_transform_matches_keras_s_scipy_code_on_a_non_square_image(fill_mode):
    datagen = ImageDataGenerator(fill_mode=fill_mode, cval=0.5, dtype="float64")
    params = {
        "theta": 17.0,
        "tx": 1.3,
        "ty": -0.7,
        "shear": 5.0,
        "zx": 0.9,
        "zy": 1.1,
        "flip_horizontal": True,
        "flip_vertical": False,
    }
    expected = keras_apply_transform(X[0], params, fill_mode, 0.5)
    np.testing.assert_allclose(datagen.apply_transform(X[0], params), expected, atol=1e-6)


def test_read_only_memory_maps_transform_without_warnings_and_stay_unchanged(tmp_path):
    import warnings

    images = np.random.default_rng(4).random((4, 5, 5, 1)).astype("float32")
    np.save(tmp_path / "images.npy", images)
    mapped = np.load(tmp_path / "images.npy", mmap_mode="r")
    generator = ImageDataGenerator(rotation_range=20, featurewise_center=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns on tensors made from read-only arrays
        generator.fit(mapped, augment=True, seed=0)
        one = generator.random_transform(mapped[0], seed=1)
        many = generator.random_transform_array(mapped)
        batch, _ = generator.flow(mapped, np.arange(4), batch_size=2, seed=0)[0]
    np.testing.assert_allclose(one, generator.random_transform(images[0], seed=1))
    assert many.shape == images.shape and batch.shape == (2, 5, 5, 1)
    np.testing.assert_array_equal(mapped, images)


def test_ragged_lists_raise_a_data_error_saying_so():
    with pytest.raises(DataError, match=r"standardize_array: 'x'.*not one rectangular array"):
        ImageDataGenerator().standardize_array([[[[1.0]]], [[[1.0], [2.0]]]])
