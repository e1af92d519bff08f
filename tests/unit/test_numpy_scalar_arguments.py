"""Hyperparameters given as NumPy scalars (``np.arange``'s int64, a float32 grid) are taken as
the Python numbers they hold, as Keras takes them: the same object as with Python numbers,
a config that JSON writes (a saved model's), and training that runs."""

from __future__ import annotations

import json
import numbers
import re

import numpy as np
import pytest

import reglab
from reglab import callbacks, constraints, layers, losses, metrics, regularizers
from reglab.errors import ConfigError

# (name, build(number)) where number(x) gives x as a Python or NumPy number
BUILDERS = [
    ("EarlyStopping", lambda n: callbacks.EarlyStopping(
        patience=n(2), min_delta=n(0.1), start_from_epoch=n(1), baseline=n(0.5))),
    ("ReduceLROnPlateau", lambda n: callbacks.ReduceLROnPlateau(
        factor=n(0.5), patience=n(1), cooldown=n(2), min_lr=n(1e-4), min_delta=n(0.01))),
    ("Dense", lambda n: layers.Dense(n(8))),
    ("Dropout", lambda n: layers.Dropout(n(0.5))),
    ("GaussianNoise", lambda n: layers.GaussianNoise(n(0.25))),
    ("BatchNormalization", lambda n: layers.BatchNormalization(
        axis=n(-1), momentum=n(0.9), epsilon=n(0.002))),
    ("LayerNormalization", lambda n: layers.LayerNormalization(epsilon=n(0.002))),
    ("Concatenate", lambda n: layers.Concatenate(axis=n(-1))),
    ("Embedding", lambda n: layers.Embedding(n(10), n(4))),
    ("ZeroPadding2D", lambda n: layers.ZeroPadding2D(n(2))),
    ("L1L2", lambda n: regularizers.L1L2(l1=n(0.01), l2=n(0.02))),
    ("MaxNorm", lambda n: constraints.MaxNorm(n(2.0))),
    ("Huber", lambda n: losses.Huber(delta=n(0.5))),
    ("CategoricalCrossentropy", lambda n: losses.CategoricalCrossentropy(
        label_smoothing=n(0.25))),
    ("AUC", lambda n: metrics.AUC(num_thresholds=n(50))),
]


def _python(x):
    return x


def _numpy(x):
    return np.int64(x) if isinstance(x, int) else np.float32(x)


def _config(obj):
    """A layer's, loss's... config; a callback's (no config in Keras) numbers and names."""
    if hasattr(obj, "get_config"):
        return obj.get_config()
    return {k: v for k, v in vars(obj).items() if not k.startswith("_")
            and isinstance(v, (numbers.Number, str, type(None)))}


@pytest.mark.parametrize(("name", "build"), BUILDERS, ids=[b[0] for b in BUILDERS])
def test_numpy_scalars_build_what_python_numbers_build(name, build):
    ours, plain = build(_numpy), build(_python)
    config = _config(ours)
    json.dumps(config, default=lambda o: pytest.fail(f"{name}: {o!r} ({type(o)}) in its config"))
    expected = _config(plain)
    assert config.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, float):  # a float32 grid's 0.1 is float32's nearest
            assert config[key] == pytest.approx(value, rel=1e-6), key
        elif isinstance(value, (int, str, bool, type(None))):
            assert config[key] == value and type(config[key]) is type(value), key


def test_a_model_trains_with_numpy_hyperparameters_everywhere():
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    rates = np.arange(0.1, 0.4, 0.1, dtype=np.float32)
    model = reglab.models.Sequential([
        layers.Dense(np.int64(8), activation="relu", input_shape=(4,),
                     kernel_regularizer=regularizers.l2(np.float32(0.01))),
        layers.Dropout(rates[1]),
        layers.BatchNormalization(momentum=np.float32(0.9)),
        layers.Dense(2, activation="softmax")])
    model.compile(optimizer=reglab.optimizers.Adam(np.float32(0.01)),
                  loss="sparse_categorical_crossentropy")
    history = model.fit(x, y, epochs=np.int64(3), batch_size=np.int64(8), verbose=0,
                        callbacks=[callbacks.EarlyStopping("loss", patience=np.int64(5)),
                                   callbacks.ReduceLROnPlateau("loss", factor=np.float32(0.5),
                                                               patience=np.int64(0))])
    assert len(history.history["loss"]) == 3
    assert all(type(v) is float for v in history.history["learning_rate"])


@pytest.mark.parametrize("bad", [np.bool_(True), np.str_("2"), np.float32(1.5)])
def test_numpy_values_that_are_not_ints_are_still_refused(bad):
    with pytest.raises(ConfigError, match="EarlyStopping: 'patience' must be an int"):
        callbacks.EarlyStopping(patience=bad)


@pytest.mark.parametrize("axis", [1, np.int64(1), -1, [1], [-1]])
def test_normalization_takes_the_last_axis_by_its_positive_number(axis):
    # Keras counts the batch as axis 0: after a Dense the last axis is 1, on images 3
    x = np.random.default_rng(1).normal(size=(8, 3)).astype("float32")
    norm = (layers.LayerNormalization(axis=axis) if isinstance(axis, list)
            else layers.BatchNormalization(axis=axis))
    model = reglab.models.Sequential([layers.Dense(3, input_shape=(3,)), norm])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, x, epochs=1, verbose=0)
    assert norm.get_config()["axis"] == axis


@pytest.mark.parametrize(("cls", "axis"), [("BatchNormalization", 1),
                                           ("BatchNormalization", -2),
                                           ("LayerNormalization", [1]),
                                           ("BatchNormalization", 0)])
def test_normalization_over_another_axis_is_refused_at_build_naming_it(cls, axis):
    norm = getattr(layers, cls)(axis=axis)
    model = reglab.models.Sequential([layers.Reshape((2, 3), input_shape=(6,)), norm])
    with pytest.raises(ConfigError, match=rf"{cls}: .*axis.*Got axis={re.escape(repr(axis))}"):
        model.build((None, 6))


@pytest.mark.parametrize("axis", ["-1", 1.0, True, None])
def test_normalization_axis_of_another_type_is_refused_at_once(axis):
    with pytest.raises(ConfigError, match="BatchNormalization: 'axis' must be an int"):
        layers.BatchNormalization(axis=axis)
