"""Keras 3's Adagrad, Adadelta, Adafactor, Adamax, Nadam, Lamb, Lion and Ftrl side by side with Keras itself (torch
backend): the same weights step after step, with regularizers, weight decay, clipping and a
schedule; names, configs and saving. (Each member trains as alone with them:
tests/unit/engine/test_engine_member_independence.py.)"""

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

CASES = [
    ("Adagrad", dict(learning_rate=0.05)),
    ("Adagrad", dict(learning_rate=0.05, initial_accumulator_value=0.5, epsilon=1e-3,
                     weight_decay=0.01)),
    ("Adadelta", dict(learning_rate=1.0)),
    ("Adadelta", dict(learning_rate=0.5, rho=0.8, clipnorm=0.1)),
    ("Adafactor", dict(learning_rate=0.01)),
    ("Adafactor", dict(learning_rate=0.5, beta_2_decay=-0.5, epsilon_1=1e-20, epsilon_2=1e-2,
                       clip_threshold=0.5, relative_step=False, weight_decay=0.01)),
    ("Adamax", dict(learning_rate=0.01)),
    ("Adamax", dict(learning_rate=0.01, beta_1=0.8, beta_2=0.95, global_clipnorm=0.1)),
    ("Nadam", dict(learning_rate=0.01)),
    ("Nadam", dict(learning_rate=0.01, beta_1=0.85, beta_2=0.99, weight_decay=0.02)),
    ("Lamb", dict(learning_rate=0.01)),
    ("Lamb", dict(learning_rate=0.01, beta_1=0.8, beta_2=0.95, epsilon=1e-4, weight_decay=0.02,
                  clipnorm=0.5)),
    ("Lion", dict(learning_rate=0.003)),
    ("Lion", dict(learning_rate=0.003, beta_1=0.8, beta_2=0.9, clipvalue=0.01)),
    ("Ftrl", dict(learning_rate=0.05)),
    ("Ftrl", dict(learning_rate=0.05, learning_rate_power=-0.7, initial_accumulator_value=0.3,
                  l1_regularization_strength=0.01, l2_regularization_strength=0.02,
                  l2_shrinkage_regularization_strength=0.03, beta=0.1)),
]


def pair(name, arguments, schedule=False):
    def build(api):
        r = api.regularizers
        model = api.Sequential([
            api.Input((5,)),
            api.layers.Dense(6, activation="tanh", kernel_regularizer=r.L2(0.02),
                             bias_regularizer=r.L1(0.01)),
            api.layers.Dense(3, activation="softmax"),
        ])
        given = dict(arguments)
        if schedule:
            given["learning_rate"] = api.optimizers.schedules.ExponentialDecay(
                given["learning_rate"], 4, 0.7)
        model.compile(optimizer=getattr(api.optimizers, name)(**given),
                      loss="sparse_categorical_crossentropy")
        return model
    keras.utils.set_random_seed(8)
    theirs, ours = build(keras), build(reglab)
    ours.set_weights(theirs.get_weights())
    return theirs, ours


def data(n=96):
    rng = np.random.default_rng(5)
    return rng.normal(size=(n, 5)).astype("float32"), rng.integers(0, 3, n)


@pytest.mark.parametrize(("name", "arguments"), CASES,
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_training_is_keras_s_step_after_step(name, arguments):
    theirs, ours = pair(name, arguments)
    x, y = data()
    for lo in range(0, 96, 16):
        np.testing.assert_allclose(ours.train_on_batch(x[lo:lo + 16], y[lo:lo + 16]),
                                   theirs.train_on_batch(x[lo:lo + 16], y[lo:lo + 16]),
                                   rtol=2e-5)
    # Lion's sign() turns a near-zero sum's round-off into a whole step, rarely
    tolerance = 2e-4 if name == "Lion" else 2e-5
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("name", ["Adagrad", "Adafactor", "Adamax", "Nadam", "Lamb", "Ftrl"])
def test_fit_with_a_schedule_is_keras_s(name):
    theirs, ours = pair(name, dict(learning_rate=0.02), schedule=True)
    x, y = data()
    expected = theirs.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history
    got = ours.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history
    np.testing.assert_allclose(got["loss"], expected["loss"], rtol=2e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("name", ["adagrad", "adadelta", "adafactor", "adamax", "nadam", "lamb", "lion",
                                  "ftrl"])
def test_names_configs_and_saving(name, tmp_path):
    ours = reglab.optimizers.get(name)
    # Keras 3.15's get() leaves Lamb out of its names (its class exists); reglab's takes it
    theirs = keras.optimizers.Lamb() if name == "lamb" else keras.optimizers.get(name)
    assert type(ours).__name__ == type(theirs).__name__
    mine = {k: v for k, v in ours.get_config().items() if k != "swa_start"}
    reference = theirs.get_config()
    # Keras reports its float32 variable's rate (0.0010000000474974513)
    assert mine.pop("learning_rate") == pytest.approx(reference["learning_rate"], rel=1e-7)
    assert {k: reference[k] for k in mine if k != "name"} == \
        {k: v for k, v in mine.items() if k != "name"}
    model = reglab.Sequential([reglab.layers.Dense(2, input_shape=(3,))])
    model.compile(optimizer=ours, loss="mse")
    model.fit(np.ones((8, 3), "float32"), np.zeros((8, 2), "float32"), verbose=0)
    model.save(tmp_path / "model.keras")
    assert type(reglab.models.load_model(tmp_path / "model.keras").optimizer) is type(ours)
    wrapped = reglab.optimizers.LossScaleOptimizer.from_config(
        reglab.optimizers.LossScaleOptimizer(ours).get_config())
    assert type(wrapped.inner_optimizer) is type(ours)


@pytest.mark.parametrize(("build", "match"), [
    (lambda o: o.Adagrad(initial_accumulator_value=-1.0),
     r"Adagrad: 'initial_accumulator_value' must be a finite float >= 0.0. Got -1.0"),
    (lambda o: o.Adadelta(rho=1.5), r"Adadelta: 'rho' must be a float in the range \[0.0, "
                                    r"1.0\]. Got 1.5"),
    (lambda o: o.Nadam(beta_2=1.0), r"Nadam: 'beta_2' must be a float in the range"),
    (lambda o: o.Lion(beta_1=0.0), r"Lion: 'beta_1' must be a float in the range \(0.0, "
                                   r"1.0\]. Got 0.0"),
    (lambda o: o.Adamax(epsilon="small"), r"Adamax: 'epsilon' must be a finite float"),
    (lambda o: o.Ftrl(learning_rate_power=0.5), r"Ftrl: 'learning_rate_power' must be a float "
                                                r"in the range \[-inf, 0.0\]. Got 0.5"),
    (lambda o: o.Ftrl(l1_regularization_strength=-0.1),
     r"Ftrl: 'l1_regularization_strength' must be a finite float >= 0.0"),
])
def test_bad_arguments_are_refused_by_name(build, match):
    with pytest.raises(ConfigError, match=match):
        build(reglab.optimizers)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Nadam", "Lamb",
                                  "Ftrl", "Adadelta", "Adamax", "Lion", "Adafactor"])
def test_from_config_takes_keras_s_own_config_and_keras_takes_ours(name):
    theirs = getattr(keras.optimizers, name)(learning_rate=0.05)
    ours = getattr(reglab.optimizers, name).from_config(theirs.get_config())
    assert float(ours.learning_rate) == pytest.approx(0.05)
    # Keras's keys in its order (its loss_scale_factor and gradient_accumulation_steps unset;
    # reglab's swa_start only where set: Keras's from_config had refused the config)
    assert list(ours.get_config()) == list(theirs.get_config())
    back = getattr(keras.optimizers, name).from_config(ours.get_config())
    assert float(keras.ops.convert_to_numpy(back.learning_rate)) == pytest.approx(0.05)
    assert reglab.optimizers.Adam(swa_start=3).get_config()["swa_start"] == 3


@pytest.mark.parametrize("make", [
    lambda k: k.optimizers.Adam(0.003, amsgrad=True),
    lambda k: k.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
    lambda k: k.optimizers.AdamW(weight_decay=0.1, clipnorm=1.0),
    lambda k: k.optimizers.Nadam(),
    lambda k: k.optimizers.Adam(k.optimizers.schedules.ExponentialDecay(0.01, 10, 0.9)),
    lambda k: k.optimizers.LossScaleOptimizer(k.optimizers.SGD(0.2, momentum=0.5)),
])
def test_optimizers_serialize_and_get_as_keras_s(make):
    """optimizers.get takes Keras's serialized dict (compile(optimizer={...}) too), and
    optimizers.serialize writes what keras.optimizers.deserialize reads."""
    theirs = make(keras)
    ours = reglab.optimizers.get(keras.optimizers.serialize(theirs))
    assert type(ours).__name__ == type(theirs).__name__
    again = keras.optimizers.deserialize(reglab.optimizers.serialize(ours))

    def settings(optimizer):  # its config but for the names (Keras numbers its instances')
        config = {k: v for k, v in optimizer.get_config().items() if k != "name"}
        if "inner_optimizer" in config:
            config["inner_optimizer"] = settings(optimizer.inner_optimizer)
        return config
    assert settings(again) == settings(theirs)
    assert type(reglab.optimizers.deserialize(reglab.optimizers.serialize(ours))) is type(ours)
    model = reglab.Sequential([reglab.Input((3,)), reglab.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.serialize(theirs), loss="mse")
    assert type(model.optimizer).__name__ == type(theirs).__name__


@pytest.mark.parametrize("name", ["Adafactor", "Lamb"])
def test_a_convolution_s_kernel_steps_as_in_keras(name):
    """Adafactor factors a kernel's last two axes (a Conv2D's ``(in, out)``, its ``(kh, kw)``
    kept apart) and Lamb's trust ratio spans the whole kernel: both as Keras."""
    def build(api):
        model = api.Sequential([
            api.Input((6, 6, 2)),
            api.layers.Conv2D(3, 3, activation="relu"),
            api.layers.Flatten(),
            api.layers.Dense(2, activation="softmax"),
        ])
        model.compile(optimizer=getattr(api.optimizers, name)(learning_rate=0.05),
                      loss="sparse_categorical_crossentropy")
        return model
    keras.utils.set_random_seed(3)
    theirs, ours = build(keras), build(reglab)
    ours.set_weights(theirs.get_weights())
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(48, 6, 6, 2)).astype("float32"), rng.integers(0, 2, 48)
    for lo in range(0, 48, 12):
        np.testing.assert_allclose(ours.train_on_batch(x[lo:lo + 12], y[lo:lo + 12]),
                                   theirs.train_on_batch(x[lo:lo + 12], y[lo:lo + 12]),
                                   rtol=2e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)
