"""Keras 3's Precision, Recall and AUC side by side with Keras itself (torch backend): the
epoch's values in fit's logs and evaluate, for binary and one-hot outputs, ROC and PR
curves and every summation method; each member of a population gets its own."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import reglab  # noqa: E402
from reglab.errors import ConfigError, DataError  # noqa: E402

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
if keras.backend.backend() != "torch":  # pragma: no cover - another backend chosen outside
    pytest.skip("these comparisons run Keras on its torch backend", allow_module_level=True)


def metrics(api):
    m = api.metrics
    # named: Keras counts its automatic names up within a session (auc, auc_1...)
    return [m.Precision(name="precision"), m.Recall(name="recall"), m.AUC(name="auc"),
            m.AUC(curve="PR", name="pr_auc"),
            m.AUC(num_thresholds=17, summation_method="minoring", name="auc_minoring"),
            m.AUC(curve="PR", summation_method="majoring", name="pr_majoring"),
            m.Precision(thresholds=0.3, name="precision_at_0_3"),
            m.Recall(thresholds=0.7, name="recall_at_0_7"),
            m.AUC(from_logits=False, thresholds=[0.25, 0.5, 0.75], name="auc_three")]


def data(units, n=150):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(n, 6)).astype("float32")
    if units == 1:
        return x, (x[:, 0] + 0.5 * rng.normal(size=n) > 0).astype("float32")
    return x, np.eye(units, dtype="float32")[(x[:, :units] + rng.normal(size=(n, units))
                                              ).argmax(axis=1)]


def fit_both(build, x, y, seed: int, epochs: int):
    """Builds the model in Keras and in reglab from Keras's initial weights, fits both on the
    same batches (the first 50 samples as validation data) and asserts every logged value
    agrees; returns ``(theirs, ours)``."""
    keras.utils.set_random_seed(seed)
    theirs, ours = build(keras), build(reglab)
    ours.set_weights(theirs.get_weights())
    expected = theirs.fit(x, y, batch_size=32, epochs=epochs, shuffle=False, verbose=0,
                          validation_data=(x[:50], y[:50])).history
    got = ours.fit(x, y, batch_size=32, epochs=epochs, shuffle=False, verbose=0,
                   validation_data=(x[:50], y[:50])).history
    assert sorted(got) == sorted(expected)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=2e-5, atol=2e-6, err_msg=key)
    return theirs, ours


@pytest.mark.parametrize(("units", "activation", "loss"), [
    (1, "sigmoid", "binary_crossentropy"), (3, "softmax", "categorical_crossentropy")])
def test_fit_and_evaluate_log_keras_s_confusion_metrics(units, activation, loss):
    x, y = data(units)

    def build(api):
        model = api.Sequential([api.Input((6,)), api.layers.Dense(8, activation="relu"),
                                api.layers.Dense(units, activation=activation)])
        model.compile(optimizer=api.optimizers.SGD(0.1), loss=loss, metrics=metrics(api))
        return model
    theirs, ours = fit_both(build, x, y, seed=3, epochs=3)
    np.testing.assert_allclose(ours.evaluate(x, y, verbose=0),
                               theirs.evaluate(x, y, verbose=0), rtol=2e-5, atol=2e-6)


def test_names_compile_and_saving(tmp_path):
    x, y = data(1)
    model = reglab.Sequential([reglab.layers.Dense(1, activation="sigmoid", input_shape=(6,))])
    model.compile(optimizer="sgd", loss="binary_crossentropy",
                  metrics=["auc", "precision", reglab.metrics.Recall()])
    history = model.fit(x, y, epochs=1, verbose=0).history
    assert {"auc", "precision", "recall"} <= set(history)
    model.save(tmp_path / "model.keras")
    loaded = reglab.models.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(loaded.evaluate(x, y, verbose=0), model.evaluate(x, y, verbose=0),
                               rtol=1e-6)
    model.compile(optimizer="sgd", loss="binary_crossentropy",
                  metrics=[reglab.metrics.AUC(curve="PR")])  # saved by its arguments
    model.save(tmp_path / "other.keras")
    loaded = reglab.models.load_model(tmp_path / "other.keras")
    assert loaded.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)
    assert loaded._population_metrics[0].curve == "PR"


def test_each_member_of_a_population_gets_its_own_counts():
    from reglab.engine import Member, Population
    x, y = data(1)

    def member(seed):
        return Member([reglab.layers.Dense(4, activation="relu", input_shape=(6,)),
                       reglab.layers.Dense(1, activation="sigmoid")],
                      reglab.optimizers.SGD(0.1), seed=seed)

    metric = [reglab.metrics.AUC(), reglab.metrics.Precision()]
    together = Population([member(1), member(2)], loss="binary_crossentropy", metrics=metric)
    logs = together.fit(x, y, batch_size=32, epochs=2)
    for position, seed in enumerate((1, 2)):
        alone = Population([member(seed)], loss="binary_crossentropy", metrics=metric)
        assert alone.fit(x, y, batch_size=32, epochs=2).members[0].history == \
            logs.members[position].history
    assert logs.members[0].history["auc"] != logs.members[1].history["auc"]


def test_counts_and_results_against_closed_forms():
    y_true = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0])[None, :, None]
    y_pred = torch.tensor([0.9, 0.6, 0.4, 0.8, 0.1])[None, :, None]
    precision, recall = reglab.metrics.Precision(), reglab.metrics.Recall()
    assert float(precision.totals_result(precision(y_true, y_pred).sum(dim=1))[0]) == pytest.approx(2 / 3)
    assert float(recall.totals_result(recall(y_true, y_pred).sum(dim=1))[0]) == pytest.approx(2 / 3)
    auc = reglab.metrics.AUC(num_thresholds=1001)
    # the exact ROC AUC of these five: 5 of the 6 positive-negative pairs ordered right
    assert float(auc.totals_result(auc(y_true, y_pred).sum(dim=1))[0]) == pytest.approx(5 / 6, abs=2e-3)


@pytest.mark.parametrize(("build", "error", "match"), [
    (lambda m: m.Precision(top_k=2), ConfigError, r"Precision: 'top_k' is not supported yet"),
    (lambda m: m.Recall(thresholds=[0.2, 0.8]), ConfigError,
     r"Recall: 'thresholds' must be one number in \[0, 1\]"),
    (lambda m: m.AUC(num_thresholds=1), ConfigError, r"AUC: 'num_thresholds' must be an "
                                                     r"integer > 1. Got 1"),
    (lambda m: m.AUC(curve="DET"), ConfigError, r"AUC: 'curve' must be 'ROC' or 'PR'"),
    (lambda m: m.AUC(multi_label=True), ConfigError, r"AUC: 'multi_label' is not supported"),
])
def test_bad_arguments_are_refused_by_name(build, error, match):
    with pytest.raises(error, match=match):
        build(reglab.metrics)


def test_integer_labels_for_a_softmax_are_refused_naming_the_metric():
    x, y = data(3)
    model = reglab.Sequential([reglab.layers.Dense(3, activation="softmax", input_shape=(6,))])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                  metrics=[reglab.metrics.Precision()])
    with pytest.raises(DataError, match=r"precision: the targets must have the output's shape"):
        model.fit(x, y.argmax(axis=1), epochs=1, verbose=0)


@pytest.mark.parametrize("units", [1, 3])
def test_auc_of_a_linear_head_clips_as_keras(units):
    # outputs outside [0, 1] (logits, a regression head): Keras clips them to [0, 1] before
    # counting when the thresholds are evenly spaced (the default, or [0.25, 0.5, 0.75]),
    # not for other thresholds
    x, y = data(units)

    def build(api):
        m = api.metrics
        model = api.Sequential([api.Input((6,)), api.layers.Dense(8, activation="relu"),
                                api.layers.Dense(units)])
        model.compile(optimizer=api.optimizers.SGD(0.1),
                      loss=api.losses.BinaryCrossentropy(from_logits=True) if units == 1
                      else api.losses.CategoricalCrossentropy(from_logits=True),
                      metrics=[m.AUC(name="auc"), m.AUC(curve="PR", name="pr_auc"),
                               m.AUC(thresholds=[0.25, 0.5, 0.75], name="auc_even"),
                               m.AUC(thresholds=[0.1, 0.5, 0.7], name="auc_uneven"),
                               m.AUC(from_logits=True, name="auc_logits")])
        return model
    fit_both(build, x, y, seed=5, epochs=2)


def test_auc_clips_out_of_range_predictions_by_hand():
    y_true = torch.tensor([0.0, 1, 1, 0, 1]).reshape(1, 5, 1)
    y_pred = torch.tensor([-2.0, 3, -0.5, 0.3, 1.5]).reshape(1, 5, 1)
    for kwargs in [{}, {"curve": "PR"}, {"thresholds": [0.25, 0.5, 0.75]},
                   {"thresholds": [0.1, 0.5, 0.7]}]:
        ours = reglab.metrics.AUC(**kwargs)
        value = float(ours.totals_result(ours(y_true, y_pred).sum(dim=1))[0])
        theirs = keras.metrics.AUC(**kwargs)
        theirs.update_state(y_true.reshape(5, 1).numpy(), y_pred.reshape(5, 1).numpy())
        assert value == pytest.approx(float(theirs.result()), rel=1e-6, abs=1e-7), kwargs


COUNTS = ["TruePositives", "FalsePositives", "TrueNegatives", "FalseNegatives"]


def test_the_count_metrics_are_keras_s_compiled_by_hand_and_in_files(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 4)).astype("float32")
    y = rng.integers(0, 2, (24, 1)).astype("float32")
    seen, weights = {}, None
    for api in (keras, reglab):
        keras.utils.set_random_seed(0)
        model = api.Sequential([api.Input((4,)), api.layers.Dense(1, activation="sigmoid")])
        weights = model.get_weights() if weights is None else weights
        model.set_weights(weights)
        model.compile(optimizer="sgd", loss="binary_crossentropy",
                      metrics=[*(getattr(api.metrics, n)() for n in COUNTS),
                               api.metrics.TruePositives(thresholds=0.3, name="tp3"),
                               "false_negatives"])
        history = model.fit(x, y, epochs=2, batch_size=8, verbose=0, shuffle=False,
                            validation_data=(x, y)).history
        by_hand = []
        for name in COUNTS:
            metric = getattr(api.metrics, name)(thresholds=0.4)
            metric.update_state(y, np.linspace(0, 1, 24).reshape(24, 1).astype("float32"),
                                sample_weight=np.linspace(0.1, 1, 24))
            by_hand.append(float(metric.result()))
        model.compile(optimizer="sgd", loss="binary_crossentropy",
                      metrics=[getattr(api.metrics, n)() for n in COUNTS])
        model.save(tmp_path / f"{api.__name__}.keras")
        seen[api.__name__] = (history, by_hand)
    (theirs, their_hand), (ours, our_hand) = seen["keras"], seen["reglab"]
    assert list(ours) == list(theirs)
    for key in theirs:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-6, err_msg=key)
    np.testing.assert_allclose(our_hand, their_hand, rtol=1e-6)
    for writer in ("keras", "reglab"):  # each file read by both
        path = tmp_path / f"{writer}.keras"
        expected = keras.models.load_model(path).evaluate(x, y, verbose=0, return_dict=True)
        got = reglab.models.load_model(path).evaluate(x, y, verbose=0, return_dict=True)
        assert list(got) == list(expected)
        np.testing.assert_allclose(list(got.values()), list(expected.values()), rtol=1e-5)
