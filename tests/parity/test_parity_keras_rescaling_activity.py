"""Keras 3's ``Rescaling`` and ``ActivityRegularization`` layers side by side with Keras
itself (torch backend): training a pixel-input network through them from Keras's weights."""

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

PIXELS = np.random.default_rng(0).integers(0, 256, (48, 4, 4, 2)).astype("float32")
LABELS = np.random.default_rng(1).integers(0, 3, 48)


@pytest.mark.parametrize(("scale", "offset", "l1", "l2"), [
    (1 / 255, 0.0, 0.01, 0.0), (1 / 127.5, -1.0, 0.0, 0.02), ([1 / 255, 2 / 255], [0.0, -0.5], 0.01, 0.01)])
def test_a_network_through_them_trains_as_keras_s(scale, offset, l1, l2):
    results = []
    for api in (keras, reglab):
        keras.utils.set_random_seed(5)
        model = api.Sequential([
            api.Input((4, 4, 2)), api.layers.Rescaling(scale, offset=offset), api.layers.Flatten(),
            api.layers.Dense(8, activation="relu"), api.layers.ActivityRegularization(l1=l1, l2=l2),
            api.layers.Dense(3, activation="softmax")])
        if results:
            model.set_weights(results[0][0])
        start = model.get_weights()
        model.compile(optimizer=api.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        history = model.fit(PIXELS, LABELS, batch_size=16, epochs=3, shuffle=False, verbose=0,
                            validation_data=(PIXELS[:8], LABELS[:8])).history
        results.append((start, history, model.get_weights(),
                        model.evaluate(PIXELS, LABELS, verbose=0),
                        [layer.get_config() for layer in model.layers]))
    (_, theirs, their_weights, their_eval, their_configs), (_, ours, our_weights, our_eval,
                                                            our_configs) = results
    for key in theirs:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=2e-5, err_msg=key)
    np.testing.assert_allclose(our_eval, their_eval, rtol=2e-5)
    for a, b in zip(our_weights, their_weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    for index in (0, 3):  # Rescaling, ActivityRegularization
        for key in ("scale", "offset", "l1", "l2"):
            if key in their_configs[index]:
                np.testing.assert_allclose(our_configs[index][key], their_configs[index][key])


def test_rescaling_refuses_a_bad_scale_and_too_many_channel_values():
    with pytest.raises(ConfigError, match="Rescaling: 'scale' must be a finite number"):
        reglab.layers.Rescaling(float("inf"))
    model = reglab.Sequential([reglab.Input((4, 4, 2)), reglab.layers.Rescaling([1.0, 2.0, 3.0])])
    with pytest.raises(ConfigError, match="Rescaling: 'scale' has 3 values for inputs with 2"):
        model.summary()
    with pytest.raises(ConfigError, match="ActivityRegularization|L1L2"):
        reglab.layers.ActivityRegularization(l1=-1.0)


@pytest.mark.parametrize("axis", [-1, [1, 2], 3])
def test_unit_normalization_trains_as_keras_s(axis):
    results = []
    for api in (keras, reglab):
        keras.utils.set_random_seed(6)
        model = api.Sequential([
            api.Input((4, 4, 2)), api.layers.Rescaling(1 / 255),
            api.layers.Conv2D(3, 2, activation="relu"), api.layers.UnitNormalization(axis=axis),
            api.layers.Flatten(), api.layers.Dense(3, activation="softmax")])
        if results:
            model.set_weights(results[0][0])
        start = model.get_weights()
        model.compile(optimizer=api.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
        history = model.fit(PIXELS, LABELS, batch_size=16, epochs=2, shuffle=False,
                            verbose=0).history
        results.append((start, history, model.get_weights(), model.predict(PIXELS, verbose=0)))
    (_, theirs, their_weights, their_out), (_, ours, our_weights, our_out) = results
    np.testing.assert_allclose(ours["loss"], theirs["loss"], rtol=2e-5)
    np.testing.assert_allclose(our_out, their_out, rtol=1e-4, atol=1e-6)
    for a, b in zip(our_weights, their_weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_alpha_dropout_and_spatial_dropout_1d_pass_inputs_on_outside_training_as_keras():
    x = np.random.default_rng(7).normal(size=(6, 5, 4)).astype("float32")
    for name in ("AlphaDropout", "SpatialDropout1D"):
        outputs = []
        for api in (keras, reglab):
            model = api.Sequential([api.Input((5, 4)), getattr(api.layers, name)(0.4)])
            outputs.append(np.asarray(model.predict(x, verbose=0)))
            assert model.layers[0].get_config()["rate"] == 0.4
        np.testing.assert_array_equal(outputs[1], outputs[0])
        np.testing.assert_array_equal(outputs[1], x)


def test_model_and_layer_losses_after_a_call_are_keras_s():
    x = PIXELS.reshape(48, -1)[:16] / 255
    models = []
    for api in (keras, reglab):
        keras.utils.set_random_seed(8)
        model = api.Sequential([
            api.Input((32,)),
            api.layers.Dense(6, activation="relu",
                             kernel_regularizer=api.regularizers.l2(0.05),
                             bias_regularizer=api.regularizers.l1(0.1),
                             activity_regularizer=api.regularizers.l1(0.01)),
            api.layers.ActivityRegularization(l2=0.02),
            api.layers.Dense(3, activation="softmax")])
        # Keras's initial weights, shifted so that the biases are not zero
        model.set_weights(models[0].get_weights() if models else
                          [w + 0.1 for w in model.get_weights()])
        model(x)
        models.append(model)
    theirs, ours = models

    def values(losses):
        return [float(keras.ops.convert_to_numpy(v)) if not hasattr(v, "detach")
                else float(v.detach()) for v in losses]
    np.testing.assert_allclose(values(ours.losses), values(theirs.losses), rtol=1e-5)
    assert len(ours.losses) == 4  # both activity penalties, then the kernel's and bias's
    for our_layer, their_layer in zip(ours.layers, theirs.layers, strict=True):
        np.testing.assert_allclose(values(our_layer.losses), values(their_layer.losses),
                                   rtol=1e-5)
    ours.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    ours.evaluate(x, LABELS[:16], verbose=0)  # a later evaluate forgets the call's activity
    assert len(ours.losses) == 2
