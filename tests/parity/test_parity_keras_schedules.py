"""Keras 3's learning-rate schedules, ``optimizer.iterations`` and ``LearningRateScheduler``,
side by side with Keras itself (torch backend)."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import pickle  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import reglab  # noqa: E402
from reglab.errors import ConfigError  # noqa: E402

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
if keras.backend.backend() != "torch":  # pragma: no cover - another backend chosen outside
    pytest.skip("these comparisons run Keras on its torch backend", allow_module_level=True)

SCHEDULES = [
    ("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=7, decay_rate=0.6)),
    ("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=7, decay_rate=0.6,
                              staircase=True)),
    ("PiecewiseConstantDecay", dict(boundaries=[5, 12, 30], values=[0.1, 0.05, 0.02, 0.001])),
    ("PolynomialDecay", dict(initial_learning_rate=0.1, decay_steps=20)),
    ("PolynomialDecay", dict(initial_learning_rate=0.1, decay_steps=9, end_learning_rate=0.01,
                             power=0.5, cycle=True)),
    ("InverseTimeDecay", dict(initial_learning_rate=0.1, decay_steps=4, decay_rate=0.5)),
    ("InverseTimeDecay", dict(initial_learning_rate=0.1, decay_steps=4, decay_rate=0.5,
                              staircase=True)),
    ("CosineDecay", dict(initial_learning_rate=0.1, decay_steps=25, alpha=0.1)),
    ("CosineDecay", dict(initial_learning_rate=0.0, decay_steps=20, warmup_target=0.2,
                         warmup_steps=10)),
    ("CosineDecayRestarts", dict(initial_learning_rate=0.1, first_decay_steps=6)),
    ("CosineDecayRestarts", dict(initial_learning_rate=0.1, first_decay_steps=5, t_mul=1.0,
                                 m_mul=0.7, alpha=0.05)),
]


@pytest.mark.parametrize(("name", "arguments"), SCHEDULES,
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(SCHEDULES)])
def test_each_schedule_gives_keras_s_rates(name, arguments):
    ours = getattr(reglab.optimizers.schedules, name)(**arguments)
    theirs = getattr(keras.optimizers.schedules, name)(**arguments)
    steps = list(range(0, 70)) + [99, 1000]
    got = np.array([ours(s) for s in steps], dtype=np.float32)
    expected = np.array([keras.ops.convert_to_numpy(theirs(s)) for s in steps],
                        dtype=np.float32)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)
    again = reglab.optimizers.schedules.deserialize(reglab.optimizers.schedules.serialize(ours))
    assert [again(s) for s in steps] == [ours(s) for s in steps]


@pytest.mark.parametrize(("name", "arguments"), SCHEDULES,
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(SCHEDULES)])
def test_each_schedule_keeps_the_name_it_is_given_as_keras(name, arguments):
    ours = getattr(reglab.optimizers.schedules, name)(**arguments, name="my_schedule")
    theirs = getattr(keras.optimizers.schedules, name)(**arguments, name="my_schedule")
    assert ours.name == theirs.name == "my_schedule"
    assert ours.get_config()["name"] == theirs.get_config()["name"] == "my_schedule"
    default = getattr(reglab.optimizers.schedules, name)(**arguments)
    assert default.name == getattr(keras.optimizers.schedules, name)(**arguments).name


def pair(optimizer, make_rate):
    def build(api):
        model = api.Sequential([api.Input((5,)), api.layers.Dense(6, activation="relu"),
                                api.layers.Dense(3, activation="softmax")])
        model.compile(optimizer=getattr(api.optimizers, optimizer)(make_rate(api)),
                      loss="sparse_categorical_crossentropy")
        return model
    keras.utils.set_random_seed(2)
    theirs, ours = build(keras), build(reglab)
    ours.set_weights(theirs.get_weights())
    return theirs, ours


def data(n=80):
    rng = np.random.default_rng(4)
    return rng.normal(size=(n, 5)).astype("float32"), rng.integers(0, 3, n)


@pytest.mark.parametrize("optimizer", ["SGD", "Adam", "RMSprop"])
def test_fit_with_a_schedule_trains_as_keras_and_reports_its_current_rate(optimizer):
    def rate(api):
        return api.optimizers.schedules.CosineDecay(0.0, decay_steps=8, warmup_target=0.1,
                                                   warmup_steps=4)
    theirs, ours = pair(optimizer, rate)
    x, y = data()
    assert ours.optimizer.iterations == 0 and ours.optimizer.learning_rate == 0.0
    expected = theirs.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0).history
    got = ours.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0).history
    np.testing.assert_allclose(got["loss"], expected["loss"], rtol=1e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):  # Adam's round-off
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert ours.optimizer.iterations == int(theirs.optimizer.iterations) == 15
    assert ours.optimizer.learning_rate == pytest.approx(
        float(keras.ops.convert_to_numpy(theirs.optimizer.learning_rate)), rel=1e-6)
    with pytest.raises(TypeError, match="not settable"):
        ours.optimizer.learning_rate = 0.5


def test_a_rate_callback_cannot_set_a_scheduled_rate():
    _, ours = pair("SGD", lambda api: api.optimizers.schedules.ExponentialDecay(0.1, 5, 0.5))
    x, y = data()
    with pytest.raises(TypeError, match="not settable"):
        ours.fit(x, y, epochs=2, verbose=0,
                 callbacks=[reglab.callbacks.LearningRateScheduler(lambda epoch, lr: lr / 2)])


@pytest.mark.parametrize("schedule", [
    lambda epoch, lr: lr if epoch < 1 else lr * 0.5,
    lambda epoch: 0.05 / (1 + epoch),
    lambda epoch, lr: np.float32(0.02 * (epoch + 1)),
], ids=["two-arguments", "one-argument", "float32"])
def test_learning_rate_scheduler_sets_and_logs_keras_s_rates(schedule, capsys):
    theirs, ours = pair("Adam", lambda api: 0.05)
    x, y = data()
    expected = theirs.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0, callbacks=[
        keras.callbacks.LearningRateScheduler(schedule, verbose=1)]).history
    theirs_printed = capsys.readouterr().out
    got = ours.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0, callbacks=[
        reglab.callbacks.LearningRateScheduler(schedule, verbose=1)]).history
    # the same lines; the numbers as set (Keras prints its float32 variable's, 0.05000000074…)
    printed = capsys.readouterr().out

    def lines(text):
        return [(line.rsplit(" ", 1)[0], float(line.rsplit(" ", 1)[1].rstrip(".")))
                for line in text.splitlines() if line]
    assert [t for t, _ in lines(printed)] == [t for t, _ in lines(theirs_printed)]
    np.testing.assert_allclose([v for _, v in lines(printed)],
                               [v for _, v in lines(theirs_printed)], rtol=1e-7)
    assert got["learning_rate"] == expected["learning_rate"]  # its float32 variable's, as Keras
    np.testing.assert_allclose(got["loss"], expected["loss"], rtol=1e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("schedule", "match"), [
    (lambda epoch, lr: "0.1", r"LearningRateScheduler: the output of the 'schedule' function "
                              r"should be a float. Got '0.1' at epoch 0"),
    (lambda epoch, lr: 1, r"should be a float. Got 1 at epoch 0"),
    (lambda epoch, lr: -0.1, r"'learning_rate' must be a finite float >= 0.0. Got -0.1"),
])
def test_a_bad_scheduled_rate_is_refused_naming_it(schedule, match):
    _, ours = pair("Adam", lambda api: 0.05)
    x, y = data()
    with pytest.raises(ConfigError, match=match):
        ours.fit(x, y, epochs=1, verbose=0,
                 callbacks=[reglab.callbacks.LearningRateScheduler(schedule)])


@pytest.mark.parametrize(("name", "arguments", "match"), [
    ("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=0, decay_rate=0.5),
     r"ExponentialDecay: 'decay_steps' must be a finite number > 0. Got 0"),
    ("PiecewiseConstantDecay", dict(boundaries=[5], values=[0.1]),
     r"the length of 'boundaries' should be 1 less than the length of 'values'"),
    ("PiecewiseConstantDecay", dict(boundaries=[5, 3], values=[0.1, 0.2, 0.3]),
     r"'boundaries' must be strictly increasing. Got \[5, 3\]"),
    ("CosineDecay", dict(initial_learning_rate=float("nan"), decay_steps=5),
     r"'initial_learning_rate' must be a finite number >= 0. Got nan"),
    ("CosineDecay", dict(initial_learning_rate=0.0, decay_steps=5, warmup_target=0.1),
     r"'warmup_steps' must be > 0 with a 'warmup_target'"),
])
def test_bad_schedule_arguments_are_refused_by_name(name, arguments, match):
    with pytest.raises(ConfigError, match=match):
        getattr(reglab.optimizers.schedules, name)(**arguments)


def test_a_scheduled_optimizer_round_trips_through_its_config_pickles_and_keras_reads_it():
    schedule = reglab.optimizers.schedules.PolynomialDecay(0.1, 30, power=2.0)
    opt = reglab.optimizers.Adam(schedule, clipnorm=1.0)
    config = opt.get_config()
    again = reglab.optimizers.Adam.from_config(config)
    assert again.schedule.get_config() == schedule.get_config() and again.clipnorm == 1.0
    theirs = keras.optimizers.Adam.from_config({k: v for k, v in config.items()
                                                if k != "swa_start"})  # reglab's own
    assert isinstance(theirs._learning_rate,
                      keras.optimizers.schedules.PolynomialDecay)
    assert pickle.loads(pickle.dumps(opt)).schedule.get_config() == schedule.get_config()
    with pytest.raises(ConfigError, match=r"'learning_rate' must be a float or a "
                                          r"reglab.optimizers.schedules.LearningRateSchedule"):
        reglab.optimizers.SGD(lambda: 0.1)


def test_a_model_with_a_schedule_saves_and_loads_with_it(tmp_path):
    theirs, ours = pair("Adam",
                        lambda api: api.optimizers.schedules.InverseTimeDecay(0.05, 4, 0.5))
    x, y = data()
    ours.fit(x, y, batch_size=16, epochs=1, verbose=0)
    theirs.fit(x, y, batch_size=16, epochs=1, verbose=0)
    ours.save(tmp_path / "model.keras")
    theirs.save(tmp_path / "theirs.keras")
    loaded = reglab.models.load_model(tmp_path / "model.keras")
    again = keras.models.load_model(tmp_path / "theirs.keras")
    assert loaded.optimizer.schedule.get_config() == ours.optimizer.schedule.get_config()
    # the step count is saved: the schedule goes on from it, as Keras's
    assert int(loaded.optimizer.iterations) == int(again.optimizer.iterations) == len(x) // 16
    assert loaded.optimizer.learning_rate == pytest.approx(float(again.optimizer.learning_rate))
    assert loaded.optimizer.learning_rate < 0.05


def test_train_on_batch_follows_the_schedule_as_keras():
    theirs, ours = pair("SGD", lambda api: api.optimizers.schedules.ExponentialDecay(0.1, 3, 0.5))
    x, y = data()
    theirs.fit(x[:32], y[:32], batch_size=16, epochs=1, shuffle=False, verbose=0)
    ours.fit(x[:32], y[:32], batch_size=16, epochs=1, shuffle=False, verbose=0)
    for lo in range(32, 80, 16):
        np.testing.assert_allclose(ours.train_on_batch(x[lo:lo + 16], y[lo:lo + 16]),
                                   theirs.train_on_batch(x[lo:lo + 16], y[lo:lo + 16]),
                                   rtol=1e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert ours.optimizer.iterations == int(theirs.optimizer.iterations) == 5


def test_compiling_again_with_the_same_optimizer_keeps_its_state_as_keras():
    theirs, ours = pair("Adam", lambda api: api.optimizers.schedules.ExponentialDecay(0.05, 3,
                                                                                      0.5))
    x, y = data()
    for model in (theirs, ours):
        model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
        model.compile(optimizer=model.optimizer, loss="sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    assert ours.optimizer.iterations == int(theirs.optimizer.iterations) == 10
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    ours.compile(optimizer=reglab.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    assert ours.optimizer.iterations == 0  # another optimizer starts fresh, as in Keras


def test_a_schedule_that_fails_leaves_the_step_count_and_weights_as_they_were():
    class Falling(reglab.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            return 0.1 - 0.05 * step  # negative from step 3

    _, ours = pair("SGD", lambda api: 0.1)
    ours.compile(optimizer=reglab.optimizers.SGD(Falling()),
                 loss="sparse_categorical_crossentropy")
    x, y = data()
    with pytest.raises(ConfigError, match=r"Falling: the learning rate at step 3 must be a "
                                          r"finite number >= 0"):
        ours.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    assert ours.optimizer.iterations == 3


def test_a_custom_schedule_is_refused_at_save_not_at_load(tmp_path):
    class Halving(reglab.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            return 0.1 / 2 ** step

        def get_config(self):
            return {}

    _, ours = pair("SGD", lambda api: 0.1)
    ours.compile(optimizer=reglab.optimizers.SGD(Halving()),
                 loss="sparse_categorical_crossentropy")
    with pytest.raises(ConfigError, match=r"save_model: the optimizer's learning-rate schedule "
                                          r"must be a built-in one"):
        ours.save(tmp_path / "model.keras")
    assert not (tmp_path / "model.keras").exists()


@pytest.mark.parametrize(("build", "match"), [
    (lambda s: s.PiecewiseConstantDecay(5, [1.0, 2.0]),
     r"PiecewiseConstantDecay: 'boundaries' must be a list of numbers. Got 5"),
    (lambda s: s.CosineDecay(0.1, 10, warmup_steps=-3),
     r"CosineDecay: 'warmup_steps' must be a finite number >= 0. Got -3"),
    (lambda s: s.ExponentialDecay(-0.1, 10, 0.5),
     r"'initial_learning_rate' must be a finite number >= 0. Got -0.1"),
    (lambda s: s.ExponentialDecay(0.1, 10, -0.5), r"'decay_rate' must be a finite number >= 0"),
    (lambda s: s.PiecewiseConstantDecay([1], [0.1, -0.2]), r"'values\[1\]' must be a finite "
                                                           r"number >= 0"),
])
def test_more_bad_schedule_arguments_are_refused_by_name(build, match):
    with pytest.raises(ConfigError, match=match):
        build(reglab.optimizers.schedules)


def test_learning_rate_scheduler_checks_its_verbose():
    with pytest.raises(ConfigError, match=r"LearningRateScheduler: 'verbose' must be 0 or 1. "
                                          r"Got 'x'"):
        reglab.callbacks.LearningRateScheduler(lambda epoch: 0.1, verbose="x")
