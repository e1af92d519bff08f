"""Keras 3's activation layers (``ReLU``, ``LeakyReLU``, ``ELU``, ``Softmax``) side by side
with Keras itself (torch backend): two epochs of training from Keras's weights, their
configs, a Keras file holding them, and their arguments' checks."""

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

X = np.random.default_rng(0).normal(size=(32, 6)).astype("float32") * 3
Y = np.random.default_rng(1).integers(0, 3, 32)
LAYERS = [
    ("ReLU", {}), ("ReLU", {"max_value": 6.0}), ("ReLU", {"max_value": 1.5, "negative_slope": 0.1}),
    ("ReLU", {"threshold": 0.5}),
    ("ReLU", {"threshold": 0.5, "negative_slope": 0.2, "max_value": 2.0}),
    ("ReLU", {"negative_slope": 0.3}), ("LeakyReLU", {}), ("LeakyReLU", {"negative_slope": 0.05}),
    ("ELU", {}), ("ELU", {"alpha": 0.4}), ("Softmax", {}), ("Softmax", {"axis": 1}),
]


def _trained(api, hidden, start=None):
    keras.utils.set_random_seed(1)
    model = api.Sequential([api.Input((6,)), api.layers.Dense(6), *hidden(api),
                            api.layers.Flatten(), api.layers.Dense(3, activation="softmax")])
    if start is not None:
        model.set_weights(start)
    first = model.get_weights()
    model.compile(optimizer=api.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    history = model.fit(X, Y, batch_size=8, epochs=2, shuffle=False, verbose=0).history
    return model, first, history


def _side_by_side(hidden):
    theirs, start, expected = _trained(keras, hidden)
    ours, _, got = _trained(reglab, hidden, start)
    np.testing.assert_allclose(got["loss"], expected["loss"], rtol=1e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.predict(X, verbose=0), theirs.predict(X, verbose=0),
                               rtol=1e-5, atol=1e-7)
    return ours, theirs


@pytest.mark.parametrize(("name", "arguments"), LAYERS,
                         ids=[f"{n}{sorted(a.items())}" for n, a in LAYERS])
def test_training_through_the_layer_gives_keras_s_weights_and_config(name, arguments):
    ours, theirs = _side_by_side(lambda api: [getattr(api.layers, name)(**arguments)])
    config, expected = ours.layers[1].get_config(), theirs.layers[1].get_config()
    for key in set(expected) - {"name", "dtype"}:
        assert config[key] == expected[key], key


def test_a_softmax_over_two_axes_trains_as_keras_s():
    _side_by_side(lambda api: [api.layers.Reshape((2, 3)), api.layers.Softmax(axis=(1, 2))])


def test_a_keras_file_with_the_layers_loads_and_predicts_as_keras(tmp_path):
    theirs = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5), keras.layers.LeakyReLU(0.1),
                               keras.layers.Dense(5), keras.layers.ReLU(max_value=2.0),
                               keras.layers.Dense(4), keras.layers.ELU(0.5),
                               keras.layers.Dense(3), keras.layers.Softmax()])
    theirs.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    theirs.save(tmp_path / "model.keras")
    ours = reglab.models.load_model(tmp_path / "model.keras")
    assert [type(layer).__name__ for layer in ours.layers] == \
        [type(layer).__name__ for layer in theirs.layers]
    np.testing.assert_allclose(ours.predict(X, verbose=0), theirs.predict(X, verbose=0),
                               rtol=1e-5, atol=1e-7)


def test_leaky_relu_takes_keras_2_s_alpha_with_a_warning():
    with pytest.warns(UserWarning, match="'alpha' is deprecated"):
        layer = reglab.layers.LeakyReLU(alpha=0.2)
    assert layer.negative_slope == 0.2


@pytest.mark.parametrize(("make", "message"), [
    (lambda: reglab.layers.ReLU(max_value=-1.0), "ReLU: 'max_value' must be a finite number >= 0"),
    (lambda: reglab.layers.ReLU(negative_slope=None), "ReLU: 'negative_slope'"),
    (lambda: reglab.layers.ReLU(threshold=float("nan")), "ReLU: 'threshold'"),
    (lambda: reglab.layers.ReLU(threshold=-0.5), "ReLU: 'threshold' must be a finite number >= 0"),
    (lambda: reglab.layers.LeakyReLU(-0.1), "LeakyReLU: 'negative_slope'"),
    (lambda: reglab.layers.ELU("big"), "ELU: 'alpha'"),
    (lambda: reglab.layers.Softmax(axis=0), "Softmax: 'axis' must be a non-zero int"),
    (lambda: reglab.Sequential([reglab.Input((4,)), reglab.layers.Softmax(axis=2)]).summary(),
     "Softmax: 'axis' 2 is outside the sample axes of an input of 2 axes"),
])
def test_bad_arguments_are_refused_naming_the_layer_and_argument(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


@pytest.mark.parametrize("name, kwargs", [*[c for c in LAYERS if c != ("Softmax", {"axis": 1})],
                                          ("Activation", {"activation": "tanh"})])
def test_an_activation_layer_as_another_layer_s_activation_trains_as_keras(name, kwargs):
    """``Dense(activation=layers.LeakyReLU(0.1))``: Keras calls the layer as the function."""
    models, start = [], None
    for api in (keras, reglab):
        model = api.Sequential([api.Input((6,)),
                                api.layers.Dense(5, activation=getattr(api.layers, name)(**kwargs)),
                                api.layers.Dense(3, activation="softmax")])
        if start is None:
            start = model.get_weights()
        model.set_weights(start)
        model.compile(optimizer=api.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
        model.fit(X, Y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        models.append(model)
    for got, expected in zip(models[1].get_weights(), models[0].get_weights()):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(models[1].predict(X, verbose=0), models[0].predict(X, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_a_softmax_layer_over_another_axis_as_an_activation_is_refused_by_name():
    with pytest.raises(ConfigError, match=r"Dense: 'activation': a Softmax layer as an "
                                          r"activation normalizes over the last axis"):
        reglab.layers.Dense(3, activation=reglab.layers.Softmax(axis=(1, 2)))


def test_members_with_an_activation_layer_as_activation_train_as_they_would_alone():
    """ELU's exp is not position-exact: applied member by member in a population."""
    from reglab.engine import Member, Population

    def member(seed):
        return Member([reglab.layers.Dense(7, activation=reglab.layers.ELU(0.5),
                                           input_shape=(6,)),
                       reglab.layers.Dense(3, activation="softmax")],
                      optimizer="adam", seed=seed)

    alone = Population([member(4)]).fit(X, Y, batch_size=8, epochs=2, shuffle=True)
    among = Population([member(1), member(4), member(9)]).fit(X, Y, batch_size=8, epochs=2,
                                                                shuffle=True)
    assert among.members[1].history == alone.members[0].history
