"""Keras 3's own configs taken by reglab's ``from_config`` (a Sequential's, a layer's) and
Keras 3's ``InputLayer`` arguments, side by side with Keras itself (torch backend)."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import reglab  # noqa: E402
from reglab.errors import ConfigError  # noqa: E402

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
if keras.backend.backend() != "torch":  # pragma: no cover - another backend chosen outside
    pytest.skip("these comparisons run Keras on its torch backend", allow_module_level=True)


def keras_model():
    return keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(5, activation="relu", kernel_regularizer=keras.regularizers.L2(0.01),
                           bias_regularizer=keras.regularizers.L1(0.02)),
        keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-2),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(3, activation="softmax"),
    ])


def test_a_keras_sequential_config_builds_the_same_model_that_computes_the_same():
    theirs = keras_model()
    ours = reglab.models.Sequential.from_config(theirs.get_config())
    assert [type(layer).__name__ for layer in ours.layers] == \
        [type(layer).__name__ for layer in theirs.layers]
    ours.set_weights(theirs.get_weights())
    x = np.random.default_rng(0).normal(size=(7, 6)).astype("float32")
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    bn = ours.layers[1].get_config()
    assert bn["momentum"] == 0.9 and bn["epsilon"] == 1e-2
    assert ours.layers[0].get_config()["kernel_regularizer"] == \
        {"class_name": "L2", "config": {"l2": 0.01}}


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_a_keras_layer_config_builds_the_same_layer(index):
    layer = keras_model().layers[index]
    ours = getattr(reglab.layers, type(layer).__name__).from_config(layer.get_config())
    config = ours.get_config()
    for key, value in layer.get_config().items():
        if key in config and not isinstance(value, dict):
            assert config[key] == value, key


def test_a_feature_reglab_lacks_is_refused_when_it_is_on():
    config = {**keras.layers.BatchNormalization().get_config(), "synchronized": True}
    with pytest.raises(ConfigError, match="synchronized"):
        reglab.layers.BatchNormalization.from_config(config)


@pytest.mark.parametrize("kwargs", [{"shape": (6,)}, {"input_shape": (6,)},
                                    {"batch_shape": (None, 6)}, {"batch_shape": (16, 6)},
                                    {"shape": (6,), "batch_size": 16}])
def test_input_layer_takes_keras_3_s_arguments(kwargs):
    with pytest.warns(UserWarning) if "input_shape" in kwargs else _nothing():
        theirs = keras.Sequential([keras.layers.InputLayer(**kwargs), keras.layers.Dense(2)])
    ours = reglab.models.Sequential([reglab.layers.InputLayer(**kwargs), reglab.layers.Dense(2)])
    ours.build()
    assert tuple(ours.input_shape[1:]) == tuple(theirs.input_shape[1:]) == (6,)


@pytest.mark.parametrize("kwargs", [{"sparse": True}, {"ragged": True}, {"optional": True},
                                    {"batch_shape": (6,)}])
def test_input_layer_refuses_what_reglab_cannot_take_by_name(kwargs):
    with pytest.raises(ConfigError, match=f"InputLayer: '{next(iter(kwargs))}'"):
        reglab.layers.InputLayer(**{"shape": None if "batch_shape" in kwargs else (6,),
                                    **kwargs})


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _pair(api, **compile_args):
    model = api.Sequential([api.Input((6,)),
                            api.layers.Dense(4, activation="relu",
                                             kernel_regularizer=api.regularizers.L2(0.05)),
                            api.layers.Dense(3, activation="softmax", name="out")])
    model.compile(optimizer=api.optimizers.SGD(0.1), **compile_args)
    return model


PLAIN = {"loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]}


@pytest.mark.parametrize("compile_args, keras_args", [
    ({"loss": ["sparse_categorical_crossentropy"], "metrics": ["accuracy"]}, None),
    ({"loss": "sparse_categorical_crossentropy", "metrics": {"out": "accuracy"}}, None),
    # Keras 3.15's Sequential fails on a loss dict (its torch backend reads no output names
    # there): compared with the plain form it stands for
    ({"loss": {"out": "sparse_categorical_crossentropy"}, "metrics": {"out": ["accuracy"]}},
     PLAIN),
    # Keras scales the data loss by a one-output model's loss_weights, not the penalties
    ({**PLAIN, "loss_weights": 0.5}, None),
    ({**PLAIN, "loss_weights": [2.0]}, None),
    ({**PLAIN, "loss_weights": {"out": 0.25}}, {**PLAIN, "loss_weights": 0.25}),
])
def test_a_one_output_model_takes_keras_s_list_and_dict_forms(compile_args, keras_args):
    theirs, ours = _pair(keras, **(keras_args or compile_args)), _pair(reglab, **compile_args)
    ours.set_weights(theirs.get_weights())
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(32, 6)).astype("float32"), rng.integers(0, 3, 32)
    h_theirs = theirs.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0).history
    h_ours = ours.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0).history
    assert sorted(h_ours) == sorted(h_theirs)
    for key in h_theirs:
        np.testing.assert_allclose(h_ours[key], h_theirs[key], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("compile_args, message", [
    ({"loss": ["mse", "mse"]}, "one entry per output; this model has one. Got 2"),
    ({"loss": {"dense": "mse"}}, "this model's one output is 'out'. Got keys \\['dense'\\]"),
    ({"loss": "mse", "metrics": {"other": ["mae"]}}, "'metrics' as a dict is keyed by"),
    ({"loss": "mse", "loss_weights": -1.0}, "'loss_weights' must be a number >= 0"),
    ({"loss": "mse", "loss_weights": [1.0, 2.0]}, "'loss_weights' as a list takes one entry"),
])
def test_a_one_output_model_names_a_list_or_dict_that_does_not_fit(compile_args, message):
    with pytest.raises(ConfigError, match=message):
        _pair(reglab, **compile_args)


def test_a_one_output_loss_weight_is_saved_and_loaded(tmp_path):
    model = _pair(reglab, **PLAIN, loss_weights=0.5)
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(16, 6)).astype("float32"), rng.integers(0, 3, 16)
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = reglab.models.load_model(tmp_path / "m.keras")
    assert loaded.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)
    unweighted = _pair(reglab, **PLAIN)
    unweighted.set_weights(model.get_weights())
    assert loaded.evaluate(x, y, verbose=0)[0] < unweighted.evaluate(x, y, verbose=0)[0]
