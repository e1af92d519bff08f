"""Keras 3's ``OrthogonalRegularizer`` side by side with Keras itself (torch backend): its
value on kernels (rows and columns, a zero row), training with it (weights, losses,
``model.losses``), its config; and in a population, each member (its own factor) training
bit for bit as alone."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import reglab  # noqa: E402
from reglab.engine import Member, Population  # noqa: E402
from reglab.errors import ConfigError  # noqa: E402

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
if keras.backend.backend() != "torch":  # pragma: no cover - another backend chosen outside
    pytest.skip("these comparisons run Keras on its torch backend", allow_module_level=True)

KERNEL = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
KERNEL[2] = 0.0  # a unit that is all zeros: Keras's normalize floors its norm
X = np.random.default_rng(1).normal(size=(40, 6)).astype("float32")
Y = np.random.default_rng(2).integers(0, 3, 40)


@pytest.mark.parametrize("mode", ["rows", "columns"])
@pytest.mark.parametrize("factor", [0.3, 0.0, 2.0])
def test_the_penalty_of_a_kernel_is_keras_s(mode, factor):
    ours = reglab.regularizers.OrthogonalRegularizer(factor, mode)(KERNEL)
    theirs = keras.regularizers.OrthogonalRegularizer(factor, mode)(torch.tensor(KERNEL))
    assert float(ours) == pytest.approx(float(theirs), rel=1e-6, abs=1e-9)
    ours, theirs = (api.regularizers.get("orthogonal_regularizer").get_config()
                    for api in (reglab, keras))
    assert ours["mode"] == theirs["mode"] == "rows"
    assert ours["factor"] == pytest.approx(theirs["factor"])  # Keras's is float32's 0.01


def test_training_with_it_gives_keras_s_weights_losses_and_model_losses():
    results = []
    for api in (keras, reglab):
        keras.utils.set_random_seed(1)
        model = api.Sequential([
            api.Input((6,)),
            api.layers.Dense(5, activation="tanh",
                             kernel_regularizer=api.regularizers.OrthogonalRegularizer(
                                 0.1, "columns")),
            api.layers.Dense(3, activation="softmax",
                             kernel_regularizer=api.regularizers.OrthogonalRegularizer(0.2))])
        if results:
            model.set_weights(results[0][0])
        start = model.get_weights()
        model.compile(optimizer=api.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
        history = model.fit(X, Y, batch_size=8, epochs=3, shuffle=False, verbose=0).history
        results.append((start, history, model.get_weights(),
                        [float(loss.detach()) for loss in model.losses]))
    (_, theirs, their_weights, their_losses), (_, ours, our_weights, our_losses) = results
    np.testing.assert_allclose(ours["loss"], theirs["loss"], rtol=1e-5)
    for a, b in zip(our_weights, their_weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(our_losses, their_losses, rtol=1e-5)


def _member(factor, seed=0):
    layers = reglab.layers
    return Member([layers.Dense(5, activation="tanh", input_shape=(6,),
                                kernel_regularizer=reglab.regularizers.OrthogonalRegularizer(
                                    factor)),
                   layers.Dense(3, activation="softmax")], optimizer="adam", seed=seed)


def test_each_member_of_a_population_trains_as_alone():
    factors = [0.05, 0.0, 0.3]
    together = Population([_member(f) for f in factors])
    together.fit(X, Y, batch_size=8, epochs=2)
    for p, factor in enumerate(factors):
        alone = Population([_member(factor)])
        alone.fit(X, Y, batch_size=8, epochs=2)
        ours, reference = together.member_weights(p), alone.member_weights(0)
        for key in reference:
            torch.testing.assert_close(ours[key], reference[key], rtol=0, atol=0)


def test_bad_arguments_and_a_kernel_of_another_rank_are_refused():
    with pytest.raises(ConfigError, match="OrthogonalRegularizer: 'mode' must be 'rows' or"):
        reglab.regularizers.OrthogonalRegularizer(0.1, mode="diagonal")
    with pytest.raises(ConfigError, match="OrthogonalRegularizer: 'factor'"):
        reglab.regularizers.OrthogonalRegularizer(-1.0)
    with pytest.raises(ConfigError, match="rank 2"):
        reglab.regularizers.OrthogonalRegularizer(0.1)(np.ones((2, 2, 3), "float32"))
