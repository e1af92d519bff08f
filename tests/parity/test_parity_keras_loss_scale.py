"""Mixed precision side by side with Keras 3 (torch backend). mixed_float16 with dynamic loss
scaling: compile wraps the optimizer alike, and from the same weights a few steps that start
with overflows (a huge initial scale) skip the same steps, reach the same scales and weights;
a Keras file loads with its scale. Both policies: a layer's bias added after the product's
rounding (``x @ kernel + bias``, two roundings, as Keras), so that models with non-zero
biases predict and train as Keras's; a half-precision softmax rounded as Keras's."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import reglab  # noqa: E402
from keras_side_by_side import float32_policies_afterwards  # noqa: E402, F401, I001
from reglab.layers import products  # noqa: E402

keras = pytest.importorskip("keras")
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.usefixtures("float32_policies_afterwards")]
if keras.backend.backend() != "torch":  # pragma: no cover - another backend chosen outside
    pytest.skip("these comparisons run Keras on its torch backend", allow_module_level=True)


def build(api):
    """Keras's guide: the model under mixed_float16, its output layer in float32."""
    api.mixed_precision.set_global_policy("mixed_float16")
    model = api.Sequential([api.Input((5,)), api.layers.Dense(8, activation="relu"),
                            api.layers.Dense(16, activation="tanh"),
                            api.layers.Dense(3, activation="softmax", dtype="float32")])
    api.mixed_precision.set_global_policy("float32")
    return model


def test_compile_wraps_the_optimizer_as_keras_does():
    for api in (keras, reglab):
        model = build(api)
        model.compile(optimizer=api.optimizers.Adam(0.01), loss="mse")
        assert type(model.optimizer).__name__ == "LossScaleOptimizer"
        assert type(model.optimizer.inner_optimizer).__name__ == "Adam"
        assert model.optimizer.name == "loss_scale_optimizer"
        assert model.optimizer.initial_scale == 2.0**15
        assert model.optimizer.dynamic_growth_steps == 2000
        config = model.optimizer.get_config()
        assert set(config) == {"name", "inner_optimizer", "initial_scale",
                               "dynamic_growth_steps"}
        assert config["inner_optimizer"]["class_name"] == "Adam"


@pytest.mark.parametrize("inner", ["sgd", "adam"])
def test_steps_scales_and_weights_match_keras(inner):
    keras.utils.set_random_seed(0)
    theirs, ours = build(keras), build(reglab)
    for model, api in ((theirs, keras), (ours, reglab)):
        optimizer = {"sgd": api.optimizers.SGD(0.1, momentum=0.5),
                     "adam": api.optimizers.Adam(0.01)}[inner]
        model.compile(optimizer=api.optimizers.LossScaleOptimizer(
            optimizer, initial_scale=2.0**26, dynamic_growth_steps=2),
            loss="sparse_categorical_crossentropy")
    ours.build()
    ours.set_weights(theirs.get_weights())
    rng = np.random.default_rng(0)
    scales = {"theirs": [], "ours": []}
    for _ in range(14):
        x = rng.normal(size=(16, 5)).astype("float32")
        y = rng.integers(0, 3, 16)
        theirs.train_on_batch(x, y)
        ours.train_on_batch(x, y)
        scales["theirs"].append(float(keras.ops.convert_to_numpy(
            theirs.optimizer.dynamic_scale)))
        scales["ours"].append(ours.optimizer.dynamic_scale)
    assert scales["ours"] == scales["theirs"]
    assert scales["ours"][0] == 2.0**25  # the first steps overflow
    assert any(b > a for a, b in zip(scales["ours"], scales["ours"][1:]))  # then it grows
    assert ours._population.state.members.scalars["steps"] == [
        int(keras.ops.convert_to_numpy(theirs.optimizer.iterations))]
    for got, want in zip(ours.get_weights(), theirs.get_weights()):
        # float16 products and sums, rounded alike but in other orders
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-4)


def test_a_keras_mixed_float16_file_loads_with_its_loss_scale_as_in_keras(tmp_path):
    """Keras writes the inner optimizer of a model its compile wrapped; loading under
    mixed_float16 wraps it again and reads the scale and the step count back."""
    keras.utils.set_random_seed(1)
    theirs = build(keras)
    theirs.compile(optimizer="adam", loss="categorical_crossentropy")
    x = np.random.default_rng(2).normal(size=(48, 5)).astype("float32")
    y = np.eye(3, dtype="float32")[np.arange(48) % 3]
    theirs.fit(x, y, batch_size=16, epochs=1, verbose=0)
    theirs.save(tmp_path / "f16.keras")
    loaded = {}
    for api in (keras, reglab):
        api.mixed_precision.set_global_policy("mixed_float16")
        loaded[api.__name__] = api.models.load_model(tmp_path / "f16.keras")
        api.mixed_precision.set_global_policy("float32")
    for model in loaded.values():
        assert type(model.optimizer).__name__ == "LossScaleOptimizer"
        assert int(model.optimizer.iterations) == 3
        assert float(model.optimizer.dynamic_scale) == float(theirs.optimizer.dynamic_scale)
    for model in loaded.values():
        model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    for ours, want in zip(loaded["reglab"].get_weights(), loaded["keras"].get_weights(),
                          strict=True):
        np.testing.assert_allclose(ours, want, rtol=1e-3, atol=1e-5)


def dense_stack(api):
    return api.Sequential([api.Input((12,)), api.layers.Dense(16, activation="relu"),
                           api.layers.Dense(8, activation="tanh"),
                           api.layers.Dense(3, activation="softmax", dtype="float32")])


def conv_stack(api):
    return api.Sequential([api.Input((6, 6, 2)), api.layers.Conv2D(4, 3, activation="relu"),
                           api.layers.Flatten(),
                           api.layers.Dense(3, activation="softmax", dtype="float32")])


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
@pytest.mark.parametrize("build, shape", [(dense_stack, (12,)), (conv_stack, (6, 6, 2))])
def test_layers_with_biases_predict_and_train_as_keras(policy, build, shape):
    keras.utils.set_random_seed(0)  # Keras's initial weights, which both start from
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, *shape)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, 40)]
    models = {}
    for api in (keras, reglab):
        api.mixed_precision.set_global_policy(policy)
        models[api.__name__] = build(api)
        api.mixed_precision.set_global_policy("float32")
    theirs, ours = models["keras"], models["reglab"]
    weights = [w if w.ndim > 1 else rng.uniform(-0.3, 0.3, w.shape).astype("float32")
               for w in theirs.get_weights()]  # biases away from zero
    theirs.set_weights(weights)
    ours.set_weights(weights)
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=0, atol=1e-6)
    for model, api in ((theirs, keras), (ours, reglab)):
        model.compile(optimizer=api.optimizers.SGD(0.1), loss="categorical_crossentropy",
                      auto_scale_loss=False)
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    # a half-precision convolution's kernel gradient is summed in another order than
    # Keras's torch sums it (float16: in float32 here, this CPU having no float16 products,
    # layers/products.py): a gradient element rounded to its neighbour moves a weight by
    # about lr times a half-precision unit, now and then
    atol = 2e-4 if build is conv_stack else 1e-5
    if build is conv_stack and policy == "mixed_bfloat16" and \
            not products.native_half_products("bfloat16"):
        # on a CPU without bfloat16 instructions (a Zen 3) Keras's torch convolves bfloat16
        # with its fallback kernels, whose sums round otherwise: both then stand about as
        # far from a float32 training (4e-3 at most, measured), and from each other by
        # bfloat16 noise
        atol = 1e-2
    for got, want in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=atol)


@pytest.mark.parametrize("batch", [24, 64, 5])
def test_a_softmax_in_bfloat16_rounds_as_keras_s_whatever_the_batch(batch):
    x = np.random.default_rng(batch).normal(size=(batch, 10)).astype("float32")
    models = [api.Sequential([api.Input((10,)), api.layers.Dense(
        3, use_bias=False, activation="softmax", dtype="mixed_bfloat16")])
        for api in (keras, reglab)]
    models[1].set_weights(models[0].get_weights())
    theirs, ours = (m.predict(x, verbose=0).astype("float32") for m in models)
    np.testing.assert_array_equal(ours, theirs)
