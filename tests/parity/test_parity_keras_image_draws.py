"""ImageDataGenerator's seeded single-image API side by side with Keras's legacy generator:
``get_random_transform(shape, seed)`` draws Keras's numbers (NumPy's legacy generator, in
Keras's order, each only where its range is set), ``random_transform(x, seed)`` gives
Keras's image, and without a seed both read NumPy's global generator as Keras does."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from reglab.preprocessing.image import ImageDataGenerator  # noqa: E402

legacy = pytest.importorskip("keras.src.legacy.preprocessing.image")
pytest.importorskip("scipy")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ARGUMENTS = [
    {},  # nothing random: no warp either, the image as it is
    {"rotation_range": 30},
    {"width_shift_range": 0.2, "height_shift_range": 0.1},
    {"width_shift_range": 3, "height_shift_range": [1, 2, 3]},  # pixels, chosen
    {"shear_range": 10, "zoom_range": [0.5, 1.5]},
    {"zoom_range": 0.2, "horizontal_flip": True, "vertical_flip": True},
    {"rotation_range": 30, "width_shift_range": 0.2, "height_shift_range": 0.1,
     "shear_range": 10, "zoom_range": 0.2, "channel_shift_range": 5.0,
     "horizontal_flip": True, "vertical_flip": True, "brightness_range": (0.8, 1.2)},
]


@pytest.mark.filterwarnings("ignore:.*brightness_range.*:UserWarning")
@pytest.mark.parametrize("arguments", ARGUMENTS)
@pytest.mark.parametrize("seed", [0, 3, 12345])
def test_a_seed_draws_keras_s_transform_and_image(arguments, seed):
    x = (np.random.default_rng(seed).random((12, 10, 3)) * 255).astype("float32")
    keras_generator = legacy.ImageDataGenerator(**arguments)
    ours = ImageDataGenerator(**arguments)
    expected = keras_generator.get_random_transform(x.shape, seed=seed)
    drawn = ours.get_random_transform(x.shape, seed=seed)
    assert drawn.keys() == expected.keys()
    for key, value in expected.items():
        assert (drawn[key] is None) if value is None else float(drawn[key]) == float(value), key
    # the same image to float32's rounding of the warp (scipy's and torch's)
    np.testing.assert_allclose(ours.random_transform(x, seed=seed),
                               keras_generator.random_transform(x, seed=seed), atol=5e-4)


def test_without_a_seed_the_global_generator_is_read_as_keras_reads_it():
    x = (np.random.default_rng(1).random((12, 10, 3)) * 255).astype("float32")
    arguments = {"rotation_range": 30, "zoom_range": 0.2, "horizontal_flip": True}
    np.random.seed(5)
    expected = legacy.ImageDataGenerator(**arguments).random_transform(x)
    np.random.seed(5)
    np.testing.assert_allclose(ImageDataGenerator(**arguments).random_transform(x), expected,
                               atol=5e-4)
    # a seed draws from its own generator: the global one is left where it was
    np.random.seed(9)
    ImageDataGenerator(**arguments).get_random_transform(x.shape, seed=2)
    after = np.random.random()
    np.random.seed(9)
    assert np.random.random() == after
