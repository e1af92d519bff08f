"""Keras 3's F1Score and FBetaScore: compiled (each average, a threshold, beta), by hand with
sample weights (a score per class with average=None), and read from a Keras file, against
Keras on its torch backend; refused where a compiled metric could not log one number."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import reglab  # noqa: E402
from keras_side_by_side import assert_logs_alike, fit_side_by_side  # noqa: E402, I001
from reglab.errors import ConfigError, DataError  # noqa: E402

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
if keras.backend.backend() != "torch":  # pragma: no cover - another backend chosen outside
    pytest.skip("these comparisons run Keras on its torch backend", allow_module_level=True)


def compiled(api):
    m = api.metrics
    return [m.F1Score(average="macro", name="f1_macro"),
            m.F1Score(average="micro", name="f1_micro"),
            m.F1Score(average="weighted", name="f1_weighted"),
            m.F1Score(average="macro", threshold=0.3, name="f1_at_0_3"),
            m.FBetaScore(average="macro", beta=2.0, name="f2"),
            m.FBetaScore(average="weighted", beta=0.5, threshold=0.4, name="f_half")]


def data(n=120, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    labels = (x[:, :classes] + rng.normal(scale=0.8, size=(n, classes))).argmax(axis=1)
    return x, np.eye(classes, dtype="float32")[labels]


def fit_both(activation, y_of):
    x, y = data()
    loss = "categorical_crossentropy" if activation == "softmax" else "binary_crossentropy"
    seen = fit_side_by_side(
        keras, reglab,
        lambda api: api.Sequential([api.Input((6,)), api.layers.Dense(8, activation="relu"),
                                    api.layers.Dense(4, activation=activation)]),
        lambda api: {"optimizer": api.optimizers.SGD(0.1), "loss": loss,
                     "metrics": compiled(api)}, x, y_of(y))
    return seen["keras"], seen["reglab"]


@pytest.mark.parametrize("activation, y_of", [
    ("softmax", lambda y: y),  # one-hot classes
    ("sigmoid", lambda y: np.maximum(y, np.roll(y, 1, axis=0))),  # multi-label targets
])
def test_compiled_f_scores_log_keras_s_values(activation, y_of):
    theirs, ours = fit_both(activation, y_of)
    assert_logs_alike({"keras": theirs, "reglab": ours})


@pytest.mark.parametrize("build", [
    lambda m: m.F1Score(),  # average=None: a score per class
    lambda m: m.F1Score(average="macro", threshold=0.6),
    lambda m: m.FBetaScore(average="micro", beta=3.0),
    lambda m: m.FBetaScore(average="weighted", beta=0.5),
])
def test_by_hand_with_sample_weights(build):
    rng = np.random.default_rng(3)
    y = np.eye(5, dtype="float32")[rng.integers(0, 5, 40)]
    y[:, 4] = 0  # a class never present: Keras's epsilon keeps its score 0
    p = rng.random((40, 5)).astype("float32")
    p[3] = 0.0  # a row of zeros predicts nothing (not every class at its maximum)
    weights = rng.uniform(0.1, 2.0, 40).astype("float32")
    results = []
    for api in (keras, reglab):
        metric = build(api.metrics)
        metric.update_state(y[:25], p[:25], sample_weight=weights[:25])
        metric.update_state(y[25:], p[25:], sample_weight=weights[25:])
        results.append(np.asarray(metric.result()))
        metric.reset_state()
        metric.update_state(y[:10], p[:10])
        results.append(np.asarray(metric.result()))
    np.testing.assert_allclose(results[2], results[0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(results[3], results[1], rtol=1e-5, atol=1e-7)


def test_against_the_closed_form():
    # argmax predictions [0, 1, 0]: class 0 precision 1/2, recall 1; class 1 exact; class 2 none
    y = torch.eye(3)
    p = torch.tensor([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    f1 = reglab.metrics.F1Score()
    f1.update_state(y, p)
    np.testing.assert_allclose(f1.result().numpy(), [2 / 3, 1.0, 0.0], atol=1e-6)
    macro = reglab.metrics.F1Score(average="macro")
    macro.update_state(y, p)
    assert float(macro.result()) == pytest.approx((2 / 3 + 1) / 3, abs=1e-6)
    micro = reglab.metrics.F1Score(average="micro")  # 2 of 3 right, 3 predicted, 3 targets
    micro.update_state(y, p)
    assert float(micro.result()) == pytest.approx(2 / 3, abs=1e-6)


def test_each_member_of_a_population_gets_its_own_scores():
    from reglab.engine import Member, Population
    x, y = data()

    def member(seed):
        return Member([reglab.layers.Dense(8, activation="relu", input_shape=(6,)),
                       reglab.layers.Dense(4, activation="softmax")],
                      reglab.optimizers.SGD(0.1), seed=seed)

    metric = [reglab.metrics.F1Score(average="macro")]
    together = Population([member(1), member(2)], loss="categorical_crossentropy",
                          metrics=metric)
    logs = together.fit(x, y, batch_size=32, epochs=2)
    for position, seed in enumerate((1, 2)):
        alone = Population([member(seed)], loss="categorical_crossentropy", metrics=metric)
        assert alone.fit(x, y, batch_size=32, epochs=2).members[0].history == \
            logs.members[position].history
    assert logs.members[0].history["f1_score"] != logs.members[1].history["f1_score"]


@pytest.mark.parametrize(("build", "match"), [
    (lambda m: m.F1Score(average="samples"), r"F1Score: 'average' must be one of None"),
    (lambda m: m.FBetaScore(beta=2), r"FBetaScore: 'beta' must be a Python float > 0"),
    (lambda m: m.FBetaScore(beta=-1.0), r"FBetaScore: 'beta' must be a Python float > 0"),
    (lambda m: m.F1Score(threshold=0.0), r"F1Score: 'threshold' must be None"),
    (lambda m: m.F1Score(threshold=1.5), r"F1Score: 'threshold' must be None"),
])
def test_bad_arguments_are_refused_by_name_where_keras_refuses_them(build, match):
    with pytest.raises(ConfigError, match=match):
        build(reglab.metrics)
    with pytest.raises(ValueError):
        build(keras.metrics)


def test_what_a_compiled_metric_cannot_log_is_refused_at_compile_or_fit():
    x, y = data()
    model = reglab.Sequential([reglab.layers.Dense(4, activation="softmax", input_shape=(6,))])
    with pytest.raises(ConfigError, match=r"f1_score: a compiled metric logs one number"):
        model.compile(optimizer="sgd", loss="categorical_crossentropy",
                      metrics=[reglab.metrics.F1Score()])
        model.fit(x, y, epochs=1, verbose=0)
    for name in ("f1_score", "F1Score", "fbeta_score"):  # by name: the class's defaults,
        with pytest.raises(ConfigError,  # checked alike (had failed after an epoch, inside
                           match=rf"\({name!r}\).*a compiled metric logs one"):  # torch)
            model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=[name])
            model.fit(x, y, epochs=1, verbose=0)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                  metrics=[reglab.metrics.F1Score(average="macro")])
    with pytest.raises((DataError, ConfigError), match=r"f1_score"):
        model.fit(x, y.argmax(axis=1), epochs=1, verbose=0)  # integer labels


def test_a_keras_file_with_f_scores_loads_and_evaluates_alike(tmp_path):
    x, y = data()
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, activation="softmax")])
    model.compile(optimizer="sgd", loss="categorical_crossentropy",
                  metrics=[keras.metrics.F1Score(average="weighted"),
                           keras.metrics.FBetaScore(average="macro", beta=2.0, threshold=0.3)])
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    model.save(tmp_path / "m.keras")
    theirs = model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    mine = reglab.models.load_model(tmp_path / "m.keras").evaluate(
        x, y, batch_size=32, verbose=0, return_dict=True)
    assert sorted(mine) == sorted(theirs)
    for key, value in theirs.items():
        assert mine[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_members_sharing_their_targets_each_get_their_scores():
    # validation targets, and members of one seed, come shared by the members: (1, B, C)
    from reglab.engine import Member, Population
    x, y = data()
    metric = [reglab.metrics.F1Score(average="macro")]

    def member(seed):
        return Member([reglab.layers.Dense(8, activation="relu", input_shape=(6,)),
                       reglab.layers.Dense(4, activation="softmax")],
                      reglab.optimizers.SGD(0.1), seed=seed)
    for seeds in ((0, 0), (1, 2)):
        together = Population([member(s) for s in seeds], loss="categorical_crossentropy",
                              metrics=metric).fit(x, y, batch_size=32, epochs=2,
                                                  validation_data=(x[:40], y[:40]))
        for position, seed in enumerate(seeds):
            alone = Population([member(seed)], loss="categorical_crossentropy",
                               metrics=metric).fit(x, y, batch_size=32, epochs=2,
                                                   validation_data=(x[:40], y[:40]))
            assert alone.members[0].history == together.members[position].history


def test_a_weighted_f_score_is_maximized_by_the_monitors_auto_mode():
    x, y = data()
    weights = np.random.default_rng(1).uniform(0.5, 2.0, len(x))
    histories = []
    for api in (keras, reglab):
        keras.utils.set_random_seed(0)
        model = api.Sequential([api.Input((6,)), api.layers.Dense(4, activation="softmax")])
        model.compile(optimizer=api.optimizers.SGD(0.1), loss="categorical_crossentropy",
                      weighted_metrics=[api.metrics.F1Score(average="macro")])
        stop = api.callbacks.EarlyStopping(monitor="val_f1_score", patience=0,
                                           restore_best_weights=True)
        histories.append(model.fit(x, y, sample_weight=weights, epochs=6, batch_size=16,
                                   verbose=0, shuffle=False, validation_data=(x, y),
                                   callbacks=[stop]).history)
    assert len(histories[1]["val_f1_score"]) == len(histories[0]["val_f1_score"])


def test_soft_targets_are_scored_by_their_largest_class():
    # the LabelSmoothing layer's soft targets score as the labels do (as Keras's
    # label_smoothing inside the loss leaves the metrics the hard labels)
    from reglab.engine import Member, Population
    from reglab.layers import Dense, LabelSmoothing
    x, y = data(96)
    metrics = [reglab.metrics.F1Score(average="macro"),
               reglab.metrics.F1Score(average="micro", name="micro")]

    def logs(first, loss):
        return Population([Member([*first, Dense(8, activation="relu", input_shape=(6,)),
                                   Dense(4, activation="softmax")], "sgd", seed=0)],
                          loss=loss, metrics=metrics).fit(
            x, y, batch_size=16, epochs=1, shuffle=False).members[0].history
    smoothed = logs([LabelSmoothing(0.2, input_shape=(6,))], "categorical_crossentropy")
    keras_like = logs([], reglab.losses.CategoricalCrossentropy(label_smoothing=0.2))
    assert smoothed["f1_score"] == keras_like["f1_score"]
    assert smoothed["micro"] == keras_like["micro"]


def test_reset_keeps_a_score_per_class_and_dtype_is_float32():
    for api in (keras, reglab):
        f1 = api.metrics.F1Score()
        f1.update_state(np.eye(3, dtype="float32"), np.eye(3, dtype="float32"))
        f1.reset_state()
        np.testing.assert_array_equal(np.asarray(f1.result()), np.zeros(3))
    with pytest.raises(ConfigError, match=r"F1Score: 'dtype' must be None or 'float32'"):
        reglab.metrics.F1Score(dtype="int32")
