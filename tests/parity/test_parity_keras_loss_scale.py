"""mixed_float16 with dynamic loss scaling, side by side with Keras 3 (torch backend): compile
wraps the optimizer alike, and from the same weights a few steps that start with
overflows (a huge initial scale) skip the same steps, reach the same scales and weights."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import reglab  # noqa: E402

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
if keras.backend.backend() != "torch":  # pragma: no cover - another backend chosen outside
    pytest.skip("these comparisons run Keras on its torch backend", allow_module_level=True)


@pytest.fixture(autouse=True)
def float32_afterwards():
    yield
    keras.mixed_precision.set_global_policy("float32")
    reglab.mixed_precision.set_global_policy("float32")


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
