"""Keras 3's variables and calls on a model, side by side with Keras itself (torch backend):
``model.weights`` / ``trainable_weights`` / ``non_trainable_weights``, ``layer.kernel`` and
its kin, ``Variable.numpy`` / ``assign``, ``layer.count_params`` and ``model(x)``."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import copy  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import reglab  # noqa: E402
from reglab.errors import ConfigError  # noqa: E402

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
if keras.backend.backend() != "torch":  # pragma: no cover - another backend chosen outside
    pytest.skip("these comparisons run Keras on its torch backend", allow_module_level=True)


def pair(frozen: int | None = None):
    def build(api):
        model = api.Sequential([
            api.Input((5,)),
            api.layers.Dense(6, activation="relu", name="hidden"),
            api.layers.BatchNormalization(name="norm"),
            api.layers.Dropout(0.3),
            api.layers.Dense(3, activation="softmax", use_bias=False, name="out"),
        ], name="net")
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        if frozen is not None:
            model.layers[frozen].trainable = False
        return model
    keras.utils.set_random_seed(6)
    theirs, ours = build(keras), build(reglab)
    ours.set_weights(theirs.get_weights())
    return theirs, ours


def described(variables):
    return [(v.name, v.path, tuple(v.shape), v.trainable) for v in variables]


@pytest.mark.parametrize("frozen", [None, 0, 1])
def test_the_model_s_variables_are_keras_s(frozen):
    theirs, ours = pair(frozen)
    for attribute in ("weights", "trainable_weights", "non_trainable_weights",
                      "trainable_variables"):
        assert described(getattr(ours, attribute)) == described(getattr(theirs, attribute))
    # Keras's variables add its Dropout's seed generator state; reglab keeps none
    for attribute in ("variables", "non_trainable_variables"):
        assert described(getattr(ours, attribute)) == described(
            [v for v in getattr(theirs, attribute) if "seed_generator" not in v.path])
    for a, b in zip(ours.weights, theirs.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        assert a.dtype == b.dtype == "float32"
    for index in range(4):
        mine, reference = ours.layers[index], theirs.layers[index]
        assert described(mine.weights) == described(reference.weights)
        assert described(mine.trainable_weights) == described(reference.trainable_weights)
        assert described(mine.trainable_variables) == described(
            reference.trainable_variables)
        if index != 2:  # (the Dropout: Keras's seed generator)
            assert described(mine.variables) == described(reference.variables)
            assert described(mine.non_trainable_variables) == described(
                reference.non_trainable_variables)
        assert mine.count_params() == reference.count_params()
    assert ours.layers[0].kernel.path == theirs.layers[0].kernel.path == "net/hidden/kernel"
    assert ours.layers[1].moving_variance.shape == (6,) and ours.layers[1].beta is not None
    assert ours.layers[3].bias is None and theirs.layers[3].bias is None
    assert not hasattr(ours.layers[2], "kernel") and not hasattr(theirs.layers[2], "kernel")


def test_a_frozen_model_has_no_trainable_variables_as_in_keras():
    theirs, ours = pair()
    theirs.trainable = ours.trainable = False
    assert described(ours.trainable_weights) == described(theirs.trainable_weights) == []
    assert described(ours.non_trainable_weights) == described(theirs.non_trainable_weights)


def test_assign_writes_the_member_s_weight_and_is_checked():
    theirs, ours = pair()
    value = np.arange(6, dtype="float32")
    ours.layers[0].bias.assign(value)
    theirs.layers[0].bias.assign(value)
    ours.layers[1].gamma.assign_add(np.ones(6))
    theirs.layers[1].gamma.assign_add(np.ones(6))
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.asarray(ours.weights[1]), value)
    np.testing.assert_array_equal(ours.weights[1].value.numpy(), value)
    with pytest.raises(ConfigError, match=r"Variable net/hidden/kernel.assign: expected a value "
                                          r"of shape \(5, 6\). Got \(6, 5\)"):
        ours.layers[0].kernel.assign(np.zeros((6, 5)))


def test_calling_the_model_gives_keras_s_outputs_as_a_tensor():
    theirs, ours = pair()
    x = np.random.default_rng(0).normal(size=(7, 5)).astype("float32")
    got, expected = ours(x), theirs(x)
    assert isinstance(got, torch.Tensor) and got.shape == expected.shape == (7, 3)
    np.testing.assert_allclose(got.numpy(), expected.detach().numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(ours(x, training=False).numpy(), got.numpy())
    with pytest.raises(ConfigError, match=r"a model called on a symbolic input"):
        ours(reglab.Input((5,)))


def test_an_unbuilt_layer_or_model_has_no_variables_and_copies_keep_theirs():
    assert reglab.layers.Dense(3).weights == []
    assert reglab.Sequential([reglab.layers.Dense(3)]).weights == []
    assert not hasattr(reglab.layers.Dense(3), "kernel")
    _, ours = pair()
    clone = copy.deepcopy(ours)
    clone.layers[0].bias.assign(np.ones(6, dtype="float32"))
    assert not np.array_equal(ours.layers[0].bias.numpy(), clone.layers[0].bias.numpy())


def test_views_are_kept_objects_with_keras_s_arithmetic_and_functional_paths():
    theirs, ours = pair()
    assert ours.layers[0].kernel in ours.trainable_weights
    assert theirs.layers[0].kernel in theirs.trainable_weights
    assert ours.weights[0] is ours.weights[0] and ours.layers[0].kernel.ndim == 2
    for expression in (lambda m: m.layers[0].bias + 1, lambda m: 2 * m.layers[0].kernel,
                       lambda m: m.layers[0].kernel[1], lambda m: -m.layers[1].gamma):
        np.testing.assert_allclose(np.asarray(expression(ours)),
                                   keras.ops.convert_to_numpy(expression(theirs)), rtol=1e-6)
    with pytest.raises(ConfigError, match=r"Variable net/hidden/bias.assign: expected numbers"):
        ours.layers[0].bias.assign("abc")

    def functional(api):
        x = api.Input((4,))
        return api.Model(x, api.layers.Dense(2, name="h")(api.layers.Dense(3, name="g")(x)),
                         name="fn")
    assert [v.path for v in functional(reglab).weights] == \
        [v.path for v in functional(keras).weights] == ["g/kernel", "g/bias", "h/kernel",
                                                         "h/bias"]


def test_a_model_without_its_input_shape_has_no_weights_yet_as_in_keras():
    for api in (keras, reglab):
        model = api.Sequential([api.layers.Dense(3)])
        assert model.get_weights() == [] and model.weights == [], api.__name__
        assert api.Sequential().get_weights() == []
    built = reglab.Sequential([reglab.layers.Dense(3)])
    built.build((None, 4))
    assert [w.shape for w in built.get_weights()] == [(4, 3), (3,)]


def test_calling_the_model_in_training_mode_computes_as_keras_s_call():
    """model(x, training=True): BatchNormalization on the batch's statistics, its moving
    statistics updated once; dropout on (each unit dropped or scaled by 1 / (1 - rate));
    inference afterwards on the updated moving statistics."""
    theirs, ours = pair()
    x = np.random.default_rng(1).normal(size=(40, 5)).astype("float32")
    expected = keras.ops.convert_to_numpy(theirs(x, training=True))
    got = ours(x, training=True)
    assert isinstance(got, torch.Tensor) and got.shape == expected.shape == (40, 3)
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)  # the moving statistics
    np.testing.assert_allclose(ours(x).numpy(), keras.ops.convert_to_numpy(theirs(x)),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.numpy().sum(axis=1), 1.0, rtol=1e-5)  # a softmax still
    assert not np.array_equal(got.numpy(), ours(x, training=True).numpy())  # new masks


def test_model_losses_after_a_training_call_hold_its_activity_penalties_as_keras():
    def build(api):
        r = api.regularizers
        return api.Sequential([api.Input((5,)),
                               api.layers.Dense(4, activity_regularizer=r.L2(0.1)),
                               api.layers.Dense(2, kernel_regularizer=r.L1(0.01))])
    theirs, ours = build(keras), build(reglab)
    ours.set_weights(theirs.get_weights())
    x = np.random.default_rng(4).normal(size=(6, 5)).astype("float32")
    theirs(x, training=True)
    ours(x, training=True)
    got = [float(v) for v in ours.losses]
    expected = [float(keras.ops.convert_to_numpy(v)) for v in theirs.losses]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.mark.parametrize("make", [lambda api: api.layers.Dense(2),
                                  lambda api: api.layers.LayerNormalization(center=False,
                                                                            scale=False)])
def test_a_layer_outside_a_model_has_no_weights_as_keras_s_unbuilt_layer(make):
    for api in (keras, reglab):
        layer = make(api)
        assert layer.get_weights() == [] and list(layer.weights) == []
        layer.set_weights([])  # nothing to set, nothing refused
    with pytest.raises(ValueError, match="expected 0 arrays. Got 1"):
        make(reglab).set_weights([np.zeros((3, 2))])
