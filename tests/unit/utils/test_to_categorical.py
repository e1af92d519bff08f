"""to_categorical matches keras.utils.to_categorical (Keras 3) and names bad labels."""

from __future__ import annotations

import numpy as np
import pytest

from reglab.errors import ConfigError, DataError
from reglab.utils import to_categorical


def keras_reference(x, num_classes=None):
    """Keras 3's numpy path of to_categorical, transcribed (keras/src/utils/numerical_utils.py)."""
    x = np.array(x, dtype="int64")
    input_shape = x.shape
    if input_shape and input_shape[-1] == 1 and len(input_shape) > 1:
        input_shape = tuple(input_shape[:-1])
    x = x.reshape(-1)
    if not num_classes:
        num_classes = np.max(x) + 1
    batch_size = x.shape[0]
    categorical = np.zeros((batch_size, num_classes))
    categorical[np.arange(batch_size), x] = 1
    output_shape = input_shape + (num_classes,)
    return np.reshape(categorical, output_shape)


def test_docstring_example():
    np.testing.assert_array_equal(to_categorical([0, 1, 2, 3], num_classes=4), np.eye(4))


@pytest.mark.parametrize(
    ("x", "num_classes"),
    [
        ([0, 1, 2, 3], 4),
        ([2, 0, 1], None),
        ([[1], [0], [2]], None),  # trailing 1 dropped: (3, 1) -> (3, 3)
        ([[1, 0], [2, 2]], 5),  # (2, 2) -> (2, 2, 5)
        ([[[1]], [[0]]], None),  # (2, 1, 1) -> (2, 1, 2)
        (3, None),  # scalar -> (4,)
        ([1], 3),  # (1,) keeps its axis: (1, 3)
        (np.array([0, 1], dtype=np.uint8), None),
        ([1.0, 0.0], None),
        ([True, False], None),
        (np.zeros((0,), dtype=int), 3),
    ],
)
def test_matches_keras(x, num_classes):
    got = to_categorical(x, num_classes)
    expected = keras_reference(x, num_classes)
    assert got.dtype == expected.dtype == np.float64
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_negative_label_names_value():
    with pytest.raises(DataError, match="to_categorical: labels must be >= 0. Got -1."):
        to_categorical([0, -1, 2])


def test_label_too_large_names_value():
    with pytest.raises(DataError, match="to_categorical: labels must be < num_classes=3. Got 7."):
        to_categorical([0, 7, 2], num_classes=3)


def test_non_whole_float_label():
    with pytest.raises(DataError, match=r"'x' must hold whole numbers. Got 1.5 at index \(1,\)"):
        to_categorical([0.0, 1.5])


def test_non_numeric_labels():
    with pytest.raises(DataError, match="'x' must hold integer class indices. Got dtype <U3"):
        to_categorical(["cat", "dog"])


def test_empty_without_num_classes():
    with pytest.raises(DataError, match="cannot infer 'num_classes' from an empty 'x'"):
        to_categorical([])


@pytest.mark.parametrize("num_classes", [0, -2, 2.5, True])
def test_bad_num_classes(num_classes):
    with pytest.raises(ConfigError, match=r"'num_classes' must be a positive int or None. Got"):
        to_categorical([0, 1], num_classes)


def test_normalize_gives_keras_s_values_for_arrays_and_tensors():
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    import torch

    import reglab

    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    x[2] = 0.0  # a zero row stays zero
    for order in (1, 2):
        ours = reglab.utils.normalize(x, order=order)
        assert isinstance(ours, np.ndarray)
        np.testing.assert_allclose(ours, keras.utils.normalize(x, order=order), rtol=1e-6)
        tensor = reglab.utils.normalize(torch.tensor(x), order=order)
        theirs = keras.ops.convert_to_numpy(keras.utils.normalize(torch.tensor(x), order=order))
        np.testing.assert_allclose(tensor.numpy(), theirs, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.linalg.norm(reglab.utils.normalize(x, axis=0), axis=0), 1.0,
                               rtol=1e-6)
    with pytest.raises(reglab.errors.ConfigError, match="normalize: 'order'"):
        reglab.utils.normalize(x, order=0)
