"""Under mixed_bfloat16 (and mixed_float16) Keras adds a layer's bias to its product after the
product is rounded to the compute dtype (``x @ kernel + bias``, two roundings); reglab's
layers add it the same way, so that models with non-zero biases predict and train as Keras's
(torch backend), side by side."""

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


def dense(api):
    return api.Sequential([api.Input((12,)), api.layers.Dense(16, activation="relu"),
                           api.layers.Dense(8, activation="tanh"),
                           api.layers.Dense(3, activation="softmax", dtype="float32")])


def conv(api):
    return api.Sequential([api.Input((6, 6, 2)), api.layers.Conv2D(4, 3, activation="relu"),
                           api.layers.Flatten(),
                           api.layers.Dense(3, activation="softmax", dtype="float32")])


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
@pytest.mark.parametrize("build, shape", [(dense, (12,)), (conv, (6, 6, 2))])
def test_layers_with_biases_predict_and_train_as_keras(policy, build, shape):
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
    # a float16 convolution's kernel gradient is summed in float32 here (this CPU has no
    # float16 products, layers/products.py) where Keras's torch rounds its partial sums
    atol = 1e-4 if build is conv and policy == "mixed_float16" else 1e-5
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
