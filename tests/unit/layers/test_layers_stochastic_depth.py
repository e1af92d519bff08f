"""StochasticDepth: a residual branch dropped whole, per sample, with probability `rate`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import reglab
from reglab.engine import Member, Population
from reglab.errors import ConfigError
from reglab.layers import StochasticDepth
from reglab.layers.layer import ForwardContext


def test_the_branch_is_kept_or_dropped_whole_per_sample_and_scaled():
    shortcut = torch.arange(12.0).reshape(1, 4, 3)  # (members, batch, units)
    residual = torch.ones(1, 4, 3)
    draws = torch.tensor([0.1, 0.7, 0.4, 0.9]).reshape(1, 4, 1)
    ctx = ForwardContext(True, 1, lambda kind, shape: draws)
    out = StochasticDepth(0.5).forward([shortcut, residual], {}, {"rate": 0.5}, ctx,
                                       [(3,), (3,)])
    kept = torch.tensor([1.0, 0.0, 1.0, 0.0]).reshape(1, 4, 1)  # uniform < 1 - rate keeps
    np.testing.assert_array_equal(out.numpy(), (shortcut + residual * kept / 0.5).numpy())
    inference = ForwardContext(False, 1, None)
    np.testing.assert_array_equal(
        StochasticDepth(0.5).forward([shortcut, residual], {}, {"rate": 0.5}, inference,
                                     [(3,), (3,)]).numpy(), (shortcut + residual).numpy())


def block(rate, seed=0):
    inputs = reglab.Input(shape=(6,))
    h = reglab.layers.Dense(8, activation="relu")(inputs)
    branch = reglab.layers.Dense(8, activation="relu")(h)
    merged = StochasticDepth(rate)([h, branch]) if rate is not None else \
        reglab.layers.Add()([h, branch])
    model = reglab.Model(inputs, reglab.layers.Dense(3, activation="softmax")(merged),
                         seed=seed)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(64, 6)).astype("float32"), rng.integers(0, 3, 64)


def test_inference_and_rate_zero_are_a_plain_residual_sum():
    x, y = data()
    deep, plain = block(0.7), block(None)
    plain.set_weights(deep.get_weights())
    np.testing.assert_array_equal(deep.predict(x, verbose=0), plain.predict(x, verbose=0))
    zero, plain = block(0.0, seed=3), block(None, seed=3)
    zero.fit(x, y, epochs=2, batch_size=16, verbose=0)
    plain.fit(x, y, epochs=2, batch_size=16, verbose=0)
    for a, b in zip(zero.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_about_rate_of_the_samples_lose_their_branch():
    layer = StochasticDepth(0.3)
    shortcut, residual = torch.zeros(1, 20_000, 2), torch.ones(1, 20_000, 2)
    generator = torch.Generator().manual_seed(0)
    ctx = ForwardContext(True, 1, lambda kind, shape: torch.rand(1, *shape,
                                                                 generator=generator))
    out = layer.forward([shortcut, residual], {}, {"rate": 0.3}, ctx, [(2,), (2,)])
    dropped = (out[0, :, 0] == 0).float().mean().item()
    assert abs(dropped - 0.3) < 4 * np.sqrt(0.3 * 0.7 / 20_000)
    assert torch.all(out[0, :, 0] == out[0, :, 1])  # one draw per sample
    np.testing.assert_allclose(out[out > 0].numpy(), 1 / 0.7, rtol=1e-6)


def test_members_with_other_rates_train_as_alone():
    x, y = data()

    def member(rate, seed):
        model = block(rate)
        return Member(model.layers, "adam", seed, input_shape=(6,), graph=model._graph)
    together = Population([member(0.2, 0), member(0.8, 5)]).fit(x, y, batch_size=16, epochs=3)
    for i, (rate, seed) in enumerate(((0.2, 0), (0.8, 5))):
        alone = Population([member(rate, seed)]).fit(x, y, batch_size=16, epochs=3)
        np.testing.assert_array_equal(together.members[i].history["loss"],
                                      alone.members[0].history["loss"])
    population = Population([member(0.2, 0)])
    names = [n for n in population.hyperparameter_names() if n.endswith(".rate")]
    assert names == ["stochastic_depth.rate"]
    population.set_hyperparameter(0, names[0], 0.5)
    with pytest.raises(ConfigError):
        population.set_hyperparameter(0, names[0], 1.5)


def test_it_takes_a_shortcut_and_a_branch_of_one_shape():
    inputs = reglab.Input(shape=(4,))
    with pytest.raises(ConfigError, match="expected a list of inputs"):
        StochasticDepth(0.1)(inputs)
    with pytest.raises(ConfigError, match="two inputs of one shape"):
        StochasticDepth(0.1)([inputs, reglab.layers.Dense(3)(inputs)])
