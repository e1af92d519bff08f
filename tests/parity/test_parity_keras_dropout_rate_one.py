"""``Dropout(1.0)``, which Keras 3 accepts: every unit dropped, the output zeros and no
gradient through it; side by side with Keras (torch backend), and in a population beside
members of other rates, each as it trains alone."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import reglab  # noqa: E402
from reglab.engine import Member, Population  # noqa: E402
from reglab.errors import ConfigError  # noqa: E402

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning",
                                        "ignore:Gradients do not exist:UserWarning")
if keras.backend.backend() != "torch":  # pragma: no cover - another backend chosen outside
    pytest.skip("these comparisons run Keras on its torch backend", allow_module_level=True)

X = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
Y = np.arange(16) % 3


@pytest.mark.parametrize("layer", ["Dropout", "SpatialDropout1D"])
def test_rate_one_trains_as_keras(layer):
    x = X.reshape(16, 2, 2) if layer == "SpatialDropout1D" else X
    shape = x.shape[1:]
    results, start = [], None
    for api in (keras, reglab):
        model = api.Sequential([api.Input(shape), api.layers.Dense(5, activation="relu"),
                                getattr(api.layers, layer)(1.0), api.layers.Flatten(),
                                api.layers.Dense(3, activation="softmax")])
        start = model.get_weights() if start is None else start
        model.set_weights(start)
        model.compile(optimizer=api.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
        history = model.fit(x, Y, batch_size=4, epochs=2, shuffle=False, verbose=0).history
        results.append((model.get_weights(), history["loss"]))
    (theirs, their_loss), (ours, our_loss) = results
    np.testing.assert_allclose(our_loss, their_loss, rtol=1e-6)
    for got, expected in zip(ours, theirs):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(ours[0], start[0])  # nothing reaches the first layer


def test_a_member_of_rate_one_trains_beside_others_as_it_would_alone():
    def member(rate, seed):
        return Member([reglab.layers.Dense(5, activation="relu", input_shape=(4,)),
                       reglab.layers.Dropout(rate), reglab.layers.Dense(3, activation="softmax")],
                      optimizer="adam", seed=seed)

    settings = [(1.0, 1), (0.3, 1), (0.0, 2)]
    alone = [Population([member(r, s)]).fit(X, Y, batch_size=4, epochs=2).members[0].history
             for r, s in settings]
    among = Population([member(r, s) for r, s in settings]).fit(X, Y, batch_size=4, epochs=2)
    assert [m.history for m in among.members] == alone
    assert all(np.isfinite(alone[0]["loss"]))


def test_rates_above_one_are_still_refused():
    with pytest.raises(ConfigError, match=r"Dropout: 'rate' must be a float in \[0, 1\]"):
        reglab.layers.Dropout(1.5)
