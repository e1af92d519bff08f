"""mixed_float16 and Keras 3's LossScaleOptimizer: the policy, the optimizer's arguments and
config, compile's wrapping, saving, and a model trained against a plain-PyTorch reference
with float16 casts and a dynamic loss scaler written here."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

import reglab as keras
from references import keras_sparse_crossentropy
from reglab import mixed_precision
from reglab.errors import ConfigError
from reglab.layers import Dense
from reglab.models import Sequential, load_model
from reglab.optimizers import SGD, Adam, LossScaleOptimizer


@pytest.fixture(autouse=True)
def reset_global_policy():
    yield
    mixed_precision.set_global_policy("float32")


# -- the policy ------------------------------------------------------------------------
def test_mixed_float16_computes_in_float16_and_keeps_float32_variables():
    policy = mixed_precision.DTypePolicy("mixed_float16")
    assert (policy.compute_dtype, policy.variable_dtype) == ("float16", "float32")
    assert policy.torch_compute_dtype == torch.float16
    mixed_precision.set_global_policy("mixed_float16")
    layer = Dense(4)
    assert (layer.compute_dtype, layer.dtype) == ("float16", "float32")
    assert Dense.from_config(layer.get_config()).dtype_policy == policy
    assert mixed_precision.LossScaleOptimizer is LossScaleOptimizer  # Keras exports it there


# -- the optimizer's arguments and config ------------------------------------------------
def test_keras_defaults_and_attributes():
    inner = Adam(0.01)
    optimizer = LossScaleOptimizer(inner)
    assert (optimizer.initial_scale, optimizer.dynamic_growth_steps) == (2.0**15, 2000)
    assert optimizer.inner_optimizer is inner
    assert optimizer.dynamic_scale == 2.0**15 and optimizer.step_counter == 0
    assert float(optimizer.scale_loss(torch.tensor(0.5))) == 2.0**14
    assert optimizer.learning_rate == 0.01
    optimizer.learning_rate = 0.02  # the inner optimizer's, as in Keras
    assert inner.learning_rate == 0.02
    assert optimizer.hyperparameters() == inner.hyperparameters()
    assert optimizer.structure()[0] == "LossScaleOptimizer"
    assert optimizer.slots() == ("m", "v")


def test_get_config_round_trips_with_the_inner_optimizer_serialized():
    optimizer = LossScaleOptimizer(SGD(0.1, momentum=0.9), initial_scale=64.0,
                                   dynamic_growth_steps=7, name="scaled")
    config = optimizer.get_config()
    assert config["inner_optimizer"]["class_name"] == "SGD"
    assert config["inner_optimizer"]["config"]["momentum"] == 0.9
    assert (config["name"], config["initial_scale"], config["dynamic_growth_steps"]) == \
        ("scaled", 64.0, 7)
    again = LossScaleOptimizer.from_config(config)
    assert again.get_config() == config
    assert isinstance(again.inner_optimizer, SGD)
    assert keras.optimizers.get(again) is again


def test_pickling_drops_the_link_to_a_model():
    optimizer = LossScaleOptimizer(Adam())
    optimizer._state_reader = lambda: {"scale": 1.0, "counter": 3}
    assert optimizer.dynamic_scale == 1.0
    copy = pickle.loads(pickle.dumps(optimizer))
    assert copy.dynamic_scale == 2.0**15 and copy.get_config() == optimizer.get_config()


@pytest.mark.parametrize("kwargs,words", [
    ({"inner_optimizer": "adam"}, "'inner_optimizer' must be a reglab optimizer"),
    ({"inner_optimizer": LossScaleOptimizer(Adam())}, "'inner_optimizer' must be"),
    ({"inner_optimizer": {"class_name": "Muon", "config": {}}}, "must be a built-in"),
    ({"inner_optimizer": {"class_name": "Adam", "config": {"clip_norm": 1.0}}},
     "the arguments do not fit Adam"),
    ({"initial_scale": 0.0}, "'initial_scale' must be a finite float > 0. Got 0.0."),
    ({"initial_scale": float("inf")}, "'initial_scale' must be a finite float > 0"),
    ({"dynamic_growth_steps": 0}, "'dynamic_growth_steps' must be an int >= 1. Got 0."),
    ({"dynamic_growth_steps": 2.5}, "'dynamic_growth_steps' must be an int >= 1"),
    ({"dynamic": False}, "'dynamic' must be True"),
    ({"weight_decay": 0.1}, "'weight_decay' is the inner optimizer's argument"),
    ({"clipnorm": 1.0}, "'clipnorm' is the inner optimizer's argument"),
    ({"momentum": 0.9}, "unexpected keyword arguments 'momentum'"),
])
def test_invalid_arguments_are_named(kwargs, words):
    kwargs = {"inner_optimizer": SGD(), **kwargs}
    with pytest.raises(ConfigError, match="LossScaleOptimizer: ") as e:
        LossScaleOptimizer(**kwargs)
    assert words in str(e.value)


def test_keras_s_base_arguments_at_their_defaults_are_accepted():
    optimizer = LossScaleOptimizer(SGD(), weight_decay=None, use_ema=False, ema_momentum=0.99)
    assert optimizer.dynamic_growth_steps == 2000


# -- compile ---------------------------------------------------------------------------
def model(seed=0, first=None, last="float32"):
    return Sequential([Dense(8, activation="relu", input_shape=(5,), dtype=first),
                       Dense(3, activation="softmax", dtype=last)], seed=seed)


def test_compile_wraps_the_optimizer_of_a_mixed_float16_model_as_keras():
    mixed_precision.set_global_policy("mixed_float16")
    m = model()
    mixed_precision.set_global_policy("float32")
    assert m.dtype_policy.name == "mixed_float16"
    inner = Adam(0.01)
    m.compile(optimizer=inner, loss="sparse_categorical_crossentropy")
    assert isinstance(m.optimizer, LossScaleOptimizer) and m.optimizer.inner_optimizer is inner
    assert m.optimizer.name == "loss_scale_optimizer"
    m.compile(optimizer="sgd", loss="mse")
    assert isinstance(m.optimizer.inner_optimizer, SGD)
    given = LossScaleOptimizer(SGD(), initial_scale=8.0)
    m.compile(optimizer=given, loss="mse")
    assert m.optimizer is given  # not wrapped twice
    m.compile(optimizer="sgd", loss="mse", auto_scale_loss=False)
    assert isinstance(m.optimizer, SGD)


def test_compile_wraps_by_the_models_policy_only_as_keras():
    """Keras 3's compile looks at the model's dtype policy (the global one when the model
    was made), not at its layers': one mixed_float16 layer in a float32 model is not
    wrapped."""
    for first in ("mixed_float16", None, "mixed_bfloat16"):
        m = model(first=first)
        m.compile(optimizer="adam", loss="mse")
        assert isinstance(m.optimizer, Adam), first


def test_a_copied_or_unpickled_model_reads_its_own_loss_scale():
    import copy
    import pickle

    x, y = data()
    m = model(first="mixed_float16")
    m.compile(optimizer=LossScaleOptimizer(Adam(0.01), dynamic_growth_steps=3),
              loss="sparse_categorical_crossentropy")
    m.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert m.optimizer.step_counter == 4 % 3
    for twin in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert twin.optimizer.step_counter == m.optimizer.step_counter
        assert twin.optimizer.dynamic_scale == m.optimizer.dynamic_scale
        twin.fit(x, y, batch_size=16, epochs=1, verbose=0)
        assert twin.optimizer.step_counter == 8 % 3
    assert m.optimizer.step_counter == 4 % 3


def data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0.5)
    return x, y


def test_a_compiled_float16_model_trains_saves_and_loads(tmp_path):
    x, y = data()
    m = model(first="mixed_float16")
    m.compile(optimizer=LossScaleOptimizer(Adam(0.01), initial_scale=2.0**20),
              loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = m.fit(x, y, batch_size=16, epochs=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert m.optimizer.dynamic_scale < 2.0**20  # an overflow halved it
    assert all(w.dtype == np.float32 for w in m.get_weights())
    path = os.path.join(tmp_path, "model.keras")
    m.save(path)
    loaded = load_model(path)
    assert isinstance(loaded.optimizer, LossScaleOptimizer)
    assert loaded.optimizer.get_config() == {**m.optimizer.get_config()}
    assert loaded.layers[0].compute_dtype == "float16"
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), m.predict(x, verbose=0))
    m.optimizer.learning_rate = 0.001  # a callback's change reaches the population
    m.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert m._population.hyperparameter(0, "learning_rate") == 0.001


# -- against a plain-PyTorch reference ----------------------------------------------------
class Scaler:
    """Keras's dynamic loss scaling, written out: halve and skip on a non-finite gradient,
    double after ``growth`` finite steps in a row."""

    def __init__(self, scale, growth):
        self.scale, self.growth, self.counter = scale, growth, 0

    def step(self, grads) -> bool:
        finite = all(bool(torch.isfinite(g).all()) for g in grads)
        if not finite:
            self.scale, self.counter = self.scale / 2, 0
        elif self.counter == self.growth - 1:
            self.scale, self.counter = self.scale * 2, 0
        else:
            self.counter += 1
        return finite


def reference_steps(weights, batches, lr, scale, growth):
    """Dense(8, relu) in float16 (input and weights cast, as Keras's autocast), then
    Dense(3, softmax) in float32; SGD; the loss scaled, the gradients unscaled."""
    k0, b0, k1, b1 = (torch.tensor(w, requires_grad=True) for w in weights)
    scaler, scales, applied = Scaler(scale, growth), [], []
    for x, y in batches:
        h = torch.relu(torch.from_numpy(x).half() @ k0.half() + b0.half())
        probs = torch.softmax(h.float() @ k1 + b1, dim=-1)
        loss = keras_sparse_crossentropy(probs, torch.from_numpy(y)).mean()
        (loss * scaler.scale).backward()
        grads = [w.grad for w in (k0, b0, k1, b1)]
        unscaled = [g / scaler.scale for g in grads]  # with the scale of this step
        applied.append(scaler.step(grads))
        if applied[-1]:
            with torch.no_grad():
                for w, g in zip((k0, b0, k1, b1), unscaled):
                    w -= lr * g
        for w in (k0, b0, k1, b1):
            w.grad = None
        scales.append(scaler.scale)
    return [w.detach().numpy() for w in (k0, b0, k1, b1)], scales, applied


def test_training_matches_a_float16_reference_with_a_dynamic_scaler():
    x, y = data(96)
    batches = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 96, 16)] * 2
    m = model(first="mixed_float16")
    m.compile(optimizer=LossScaleOptimizer(SGD(0.1), initial_scale=2.0**24,
                                           dynamic_growth_steps=2),
              loss="sparse_categorical_crossentropy")
    m.build()
    start = m.get_weights()
    expected_weights, expected_scales, applied = reference_steps(start, batches, 0.1,
                                                                 2.0**24, 2)
    assert not all(applied) and any(b > a for a, b in zip(expected_scales,
                                                          expected_scales[1:]))  # both ways
    scales, before, steps = [], start, 0
    for (xb, yb), step_applied in zip(batches, applied):
        m.train_on_batch(xb, yb)
        scales.append(m.optimizer.dynamic_scale)
        after = m.get_weights()
        steps += step_applied
        assert m._population.state.members.scalars["steps"] == [steps]
        if not step_applied:  # skipped: nothing moved
            assert all(np.array_equal(a, b) for a, b in zip(before, after))
        before = after
    assert scales == expected_scales
    for got, want in zip(m.get_weights(), expected_weights):
        # float16 sums (the bias gradient) in another order differ by its rounding
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=1e-4)


def test_load_model_keeps_a_bare_optimizer_bare(tmp_path):
    """A mixed_float16 model compiled with auto_scale_loss=False loads with its bare
    optimizer (the saved optimizer says whether the loss is scaled), as Keras's does."""
    mixed_precision.set_global_policy("mixed_float16")
    try:
        m = model()
    finally:
        mixed_precision.set_global_policy("float32")
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", auto_scale_loss=False)
    m.save(tmp_path / "bare.keras")
    assert isinstance(load_model(tmp_path / "bare.keras").optimizer, Adam)
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    m.save(tmp_path / "scaled.keras")
    assert isinstance(load_model(tmp_path / "scaled.keras").optimizer, LossScaleOptimizer)
