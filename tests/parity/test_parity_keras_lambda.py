"""Keras's Lambda layer: the same function (torch operations, which Keras's torch backend
hands the layer too) trains as in Keras; in a population each member's batch goes through
the function alone; a model with one is not saved, by name."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import reglab  # noqa: E402
from reglab.errors import ConfigError  # noqa: E402

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
if keras.backend.backend() != "torch":  # pragma: no cover - another backend chosen outside
    pytest.skip("these comparisons run Keras on its torch backend", allow_module_level=True)

X = np.random.default_rng(0).normal(size=(32, 6)).astype("float32")
Y = np.random.default_rng(1).integers(0, 3, 32)

FUNCTIONS = {
    "centered over the batch": (lambda x: x - x.mean(dim=0, keepdim=True), None),
    "widened": (lambda x: torch.cat([x, x * x], dim=-1), None),
    "scaled, with arguments": (lambda x, k: x * k, {"k": 0.5}),
}


def build(api, name):
    function, arguments = FUNCTIONS[name]
    return api.Sequential([api.Input((6,)), api.layers.Dense(5, activation="tanh"),
                           api.layers.Lambda(function, arguments=arguments),
                           api.layers.Dense(3, activation="softmax")])


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_a_lambda_trains_as_keras_s(name):
    keras.utils.set_random_seed(5)
    theirs, ours = build(keras, name), build(reglab, name)
    assert ours.output_shape == theirs.output_shape
    assert ours.layers[1].output.shape == tuple(theirs.layers[1].output.shape)
    ours.set_weights(theirs.get_weights())
    for model in (theirs, ours):
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    expected = theirs.fit(X, Y, epochs=3, batch_size=8, shuffle=False, verbose=0).history
    got = ours.fit(X, Y, epochs=3, batch_size=8, shuffle=False, verbose=0).history
    np.testing.assert_allclose(got["loss"], expected["loss"], rtol=1e-5)
    np.testing.assert_allclose(ours.predict(X, verbose=0), theirs.predict(X, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_each_member_s_batch_goes_through_the_function_alone():
    """A function over the batch (its mean) sees one member's batch: a member trains in a
    population of three as alone, bit for bit."""
    from reglab.engine import Member, Population
    from reglab.layers import Dense, Lambda

    center = Lambda(lambda x: x - x.mean(dim=0, keepdim=True))  # one function object

    def member(lr, seed):
        layers = [Dense(5, activation="tanh", input_shape=(6,)),
                  Lambda(center.function), Dense(3, activation="softmax")]
        return Member(layers, optimizer=reglab.optimizers.SGD(lr), seed=seed)
    together = Population([member(0.1, 0), member(0.3, 1), member(0.05, 2)])
    together.fit(X, Y, batch_size=8, epochs=2, shuffle=False)
    alone = Population([member(0.3, 1)])
    alone.fit(X, Y, batch_size=8, epochs=2, shuffle=False)
    for key, value in alone.member_weights(0).items():
        assert torch.equal(together.member_weights(1)[key], value), key


def test_a_model_with_a_lambda_is_not_saved_and_bad_arguments_are_named(tmp_path):
    model = build(reglab, "widened")
    for save in (lambda: model.save(tmp_path / "model.keras"), model.to_json):
        with pytest.raises(ConfigError, match=r"'lambda': a Lambda layer's function cannot be "
                                              r"saved: a file holds no code\. Save the weights"):
            save()
    model.save_weights(tmp_path / "model.weights.h5")  # the weights alone are saved
    again = build(reglab, "widened")
    again.load_weights(tmp_path / "model.weights.h5")
    np.testing.assert_array_equal(again.predict(X, verbose=0), model.predict(X, verbose=0))
    assert not (tmp_path / "model.keras").exists()
    with pytest.raises(ConfigError, match="Lambda: 'function' must be a function"):
        reglab.layers.Lambda(3)
    with pytest.raises(ConfigError, match="Lambda: 'mask' is not supported"):
        reglab.layers.Lambda(abs, mask=lambda x: x)
    with pytest.raises(ConfigError, match=r"calling the function on a zero batch of shape "
                                          r"\(1, 6\) .* pass output_shape"):
        reglab.Sequential([reglab.Input((6,)),
                           reglab.layers.Lambda(lambda x: x.no_such_method())]).summary()
    given = reglab.Sequential([reglab.Input((6,)),
                               reglab.layers.Lambda(lambda x: x[:, :2], output_shape=(2,))])
    assert given.output_shape == (None, 2)
