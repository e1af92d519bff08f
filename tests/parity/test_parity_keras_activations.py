"""Every activation reglab takes by name gives Keras 3's values and gradients (torch
backend), and a Dense layer that uses it trains as Keras's does."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import reglab  # noqa: E402
from reglab import activations  # noqa: E402

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
if keras.backend.backend() != "torch":  # pragma: no cover - another backend chosen outside
    pytest.skip("these comparisons run Keras on its torch backend", allow_module_level=True)

NAMES = sorted(activations._BY_NAME)


@pytest.mark.parametrize("name", NAMES)
def test_values_and_gradients_are_keras_s(name):
    x = torch.linspace(-7.0, 7.0, 141, dtype=torch.float32).reshape(3, 47)
    ours_in = x.clone().requires_grad_(True)
    theirs_in = x.clone().requires_grad_(True)
    ours = activations.get(name)(ours_in)
    theirs = keras.activations.get(name)(theirs_in)
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=1e-6,
                               atol=1e-7)
    weights = torch.linspace(0.5, 1.5, 47)
    (ours * weights).sum().backward()
    (theirs * weights).sum().backward()
    np.testing.assert_allclose(ours_in.grad.numpy(), theirs_in.grad.numpy(), rtol=1e-6,
                               atol=1e-7)


@pytest.mark.parametrize("name", ["relu6", "leaky_relu", "hard_sigmoid", "mish"])
def test_a_dense_layer_with_it_trains_as_keras_s(name):
    rng = np.random.default_rng(0)
    x = rng.normal(scale=3.0, size=(32, 5)).astype("float32")
    y = rng.integers(0, 3, 32)
    models = []
    for api in (keras, reglab):
        model = api.Sequential([api.Input((5,)), api.layers.Dense(6, activation=name),
                                api.layers.Dense(3, activation="softmax")])
        model.compile(optimizer=api.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
        models.append(model)
    models[1].set_weights(models[0].get_weights())
    for model in models:
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    assert models[1].get_config()["layers"][0]["config"]["activation"] == name
    for a, b in zip(models[1].get_weights(), models[0].get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", [n for n in NAMES if hasattr(keras.activations, n)])
def test_the_function_by_keras_s_module_name_is_the_named_activation(name):
    """``activations.relu`` as Keras code passes it (``Dense(64, activation=keras.activations.
    relu)``): the callable the name stands for, so a layer given it is the layer given the
    name (its config, its fast paths); its values are Keras's function's."""
    ours = getattr(activations, name)
    assert ours is activations.get(name)
    assert reglab.activations is activations
    x = torch.linspace(-7.0, 7.0, 141, dtype=torch.float32).reshape(3, 47)
    np.testing.assert_allclose(ours(x).numpy(), getattr(keras.activations, name)(x).numpy(),
                               rtol=1e-6, atol=1e-7)
    layer = reglab.layers.Dense(4, activation=ours, input_shape=(3,))
    saved = layer.get_config()["activation"]  # a name, which reads back as the same function
    assert isinstance(saved, str) and activations.get(saved) is ours


@pytest.mark.parametrize("name", ["silu", "swish", "hard_silu", "hard_swish", "relu"])
def test_a_layer_saves_the_activation_under_keras_s_name(name):
    """Keras 3 saves swish as 'silu' and hard_swish as 'hard_silu' (one function each)."""
    theirs = keras.layers.Dense(2, activation=name).get_config()["activation"]
    assert reglab.layers.Dense(2, activation=name).get_config()["activation"] == theirs
