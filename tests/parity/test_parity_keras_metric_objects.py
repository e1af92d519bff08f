"""Keras 3's metric objects side by side with Keras itself (torch backend): the stateful
``update_state`` / ``result`` / ``reset_state`` by hand (with sample weights), the mean-metric
classes in ``compile`` (logged names and values over fit and evaluate), ``Mean``/``Sum``,
and saving a model compiled with them."""

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

RNG = np.random.default_rng(0)
LABELS = RNG.integers(0, 3, 8)
PROBABILITIES = RNG.dirichlet(np.ones(3), 8).astype("float32")
ONE_HOT = np.eye(3, dtype="float32")[LABELS]
BINARY = ((RNG.uniform(size=(8, 1)) > 0.5).astype("float32"),
          RNG.uniform(size=(8, 1)).astype("float32"))
WEIGHTS = RNG.uniform(0, 2, 8).astype("float32")
BY_HAND = [
    ("SparseCategoricalAccuracy", {}, (LABELS, PROBABILITIES)),
    ("CategoricalAccuracy", {}, (ONE_HOT, PROBABILITIES)),
    ("BinaryAccuracy", {"threshold": 0.3}, BINARY),
    ("Accuracy", {}, (LABELS, PROBABILITIES.argmax(-1))),
    ("MeanSquaredError", {}, (ONE_HOT, PROBABILITIES)),
    ("MeanAbsoluteError", {}, (ONE_HOT, PROBABILITIES)),
    ("RootMeanSquaredError", {}, (ONE_HOT, PROBABILITIES)),
    ("SparseCategoricalCrossentropy", {}, (LABELS, PROBABILITIES)),
    ("CategoricalCrossentropy", {"label_smoothing": 0.1}, (ONE_HOT, PROBABILITIES)),
    ("BinaryCrossentropy", {}, BINARY),
    ("Precision", {}, BINARY), ("Recall", {"thresholds": 0.3}, BINARY), ("AUC", {}, BINARY),
    ("SparseTopKCategoricalAccuracy", {"k": 2}, (LABELS, PROBABILITIES)),
    ("TopKCategoricalAccuracy", {"k": 2}, (ONE_HOT, PROBABILITIES)),
]


def _by_hand(api, name, arguments, arrays):
    """The results after a first update, a weighted second, a reset, and all at once."""
    y_true, y_pred = arrays
    if api is keras:  # Keras counts default names up within a session (auc, auc_1...):
        keras.backend.clear_session()  # a fresh one, whatever ran before
    metric = getattr(api.metrics, name)(**arguments)
    seen = []
    metric.update_state(y_true[:4], y_pred[:4])
    seen.append(float(metric.result()))
    metric.update_state(y_true[4:], y_pred[4:], sample_weight=WEIGHTS[4:])
    seen.append(float(metric.result()))
    metric.reset_state()
    seen.append(float(metric.result()))
    metric.update_state(y_true, y_pred)
    seen.append(float(metric.result()))
    return seen, metric.name


@pytest.mark.parametrize(("name", "arguments", "arrays"), BY_HAND, ids=[b[0] for b in BY_HAND])
def test_update_result_and_reset_by_hand_give_keras_s_values(name, arguments, arrays):
    ours, our_name = _by_hand(reglab, name, arguments, arrays)
    theirs, their_name = _by_hand(keras, name, arguments, arrays)
    assert our_name == their_name
    np.testing.assert_allclose(ours, theirs, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["Mean", "Sum"])
def test_mean_and_sum_of_values_by_hand_as_keras(name):
    results = []
    for api in (keras, reglab):
        metric = getattr(api.metrics, name)()
        metric.update_state([1.0, 2.0, 3.5])
        metric.update_state(np.array([4.0, 1.0]), sample_weight=[2.0, 0.5])
        first = float(metric.result())
        metric.reset_state()
        results.append((first, float(metric.result()), metric.name))
    assert results[0] == pytest.approx(results[1])


def _compiled_runs(x, y, classes, metrics, validation):
    """``(logs, evaluation)`` of Keras's model and of reglab's from Keras's initial weights,
    compiled with ``metrics(api)``, trained 2 epochs and evaluated: Keras's first."""
    results = []
    for api in (keras, reglab):
        keras.utils.set_random_seed(2)
        model = api.Sequential([api.Input((4,)), api.layers.Dense(5, activation="relu"),
                                api.layers.Dense(classes, activation="softmax")])
        if results:
            model.set_weights(results[0][0])
        start = model.get_weights()
        model.compile(optimizer=api.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                      metrics=metrics(api))
        history = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0,
                            validation_data=(x[:validation], y[:validation])).history
        results.append((start, history, model.evaluate(x, y, verbose=0, return_dict=True)))
    return [r[1:] for r in results]


def test_the_classes_in_compile_log_keras_s_names_and_values():
    x = np.random.default_rng(1).normal(size=(40, 4)).astype("float32")
    y = np.random.default_rng(2).integers(0, 3, 40)
    (theirs, their_eval), (ours, our_eval) = _compiled_runs(
        x, y, 3, lambda api: [api.metrics.SparseCategoricalAccuracy(),
                              api.metrics.SparseCategoricalAccuracy(name="acc2"),
                              api.metrics.SparseCategoricalCrossentropy(name="xent"),
                              "sparse_categorical_crossentropy"], validation=10)
    _assert_same_logs(ours, theirs, our_eval, their_eval)


def _assert_same_logs(ours, theirs, our_eval, their_eval):
    """The same history keys and values (to round-off), and the same evaluation."""
    assert sorted(ours) == sorted(theirs)
    for key in theirs:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=2e-5, err_msg=key)
    assert sorted(our_eval) == sorted(their_eval)
    for key in their_eval:
        assert our_eval[key] == pytest.approx(their_eval[key], rel=2e-5), key


def test_a_model_compiled_with_default_metric_objects_saves_them_by_name(tmp_path):
    model = reglab.Sequential([reglab.Input((4,)), reglab.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=[reglab.metrics.SparseCategoricalAccuracy(),
                           reglab.metrics.SparseCategoricalCrossentropy()])
    model.save(tmp_path / "m.keras")
    again = reglab.models.load_model(tmp_path / "m.keras")
    x = np.random.default_rng(3).normal(size=(6, 4)).astype("float32")
    y = np.array([0, 1, 2, 0, 1, 2])
    assert again.evaluate(x, y, verbose=0, return_dict=True) == \
        pytest.approx(model.evaluate(x, y, verbose=0, return_dict=True))
    custom = reglab.Sequential([reglab.Input((4,)), reglab.layers.Dense(3)])
    custom.compile(optimizer="adam", loss="mse",
                   metrics=[reglab.metrics.MeanMetricWrapper(lambda a, b: (a - b) ** 4)])
    with pytest.raises(ConfigError, match="save_model: 'metrics'"):  # code: not in a file
        custom.save(tmp_path / "n.keras")


def test_metric_objects_with_their_arguments_are_saved_and_built_again_by_both(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 6)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, 60)]
    m = reglab.metrics
    model = reglab.Sequential([reglab.Input((6,)), reglab.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=[
        m.Precision(thresholds=0.3, name="p3"), m.Recall(thresholds=[0.6]),
        m.AUC(curve="PR", thresholds=[0.2, 0.5, 0.9]),
        m.AUC(num_thresholds=17, summation_method="minoring", name="auc17"),
        m.F1Score(average="macro"), m.FBetaScore(average="weighted", beta=2.0, threshold=0.4),
        m.TruePositives(thresholds=0.4, name="tp4"), m.CategoricalAccuracy(name="acc"),
        m.RootMeanSquaredError(), m.CategoricalCrossentropy(label_smoothing=0.1), "accuracy"],
        weighted_metrics=[m.Precision(thresholds=0.7, name="wp")])
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    ours = model.evaluate(x, y, verbose=0, return_dict=True)
    again = reglab.models.load_model(tmp_path / "m.keras")
    assert again.evaluate(x, y, verbose=0, return_dict=True) == ours  # the same objects
    assert [repr(a) for a in again._population_metrics] == \
        [repr(a) for a in model._population_metrics]
    theirs = keras.models.load_model(tmp_path / "m.keras").evaluate(x, y, verbose=0,
                                                                   return_dict=True)
    assert sorted(theirs) == sorted(ours)
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, rel=1e-5), key


def test_bad_metric_arguments_are_refused_naming_the_class():
    with pytest.raises(ConfigError, match="SparseCategoricalAccuracy: 'name'"):
        reglab.metrics.SparseCategoricalAccuracy(name="")
    with pytest.raises(ConfigError, match="BinaryAccuracy: unexpected argument 'treshold'"):
        reglab.metrics.BinaryAccuracy(treshold=0.3)
    metric = reglab.metrics.MeanSquaredError()
    with pytest.raises(ConfigError, match="one weight per sample"):
        metric.update_state(ONE_HOT, PROBABILITIES, sample_weight=[1.0, 2.0])


def _weighted_run(api, start, weights, class_weight=None):
    x = np.random.default_rng(4).normal(size=(40, 4)).astype("float32")
    y = np.random.default_rng(5).integers(0, 3, 40)
    keras.utils.set_random_seed(3)
    model = api.Sequential([api.Input((4,)), api.layers.Dense(3, activation="softmax")])
    if start is not None:
        model.set_weights(start)
    first = model.get_weights()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  weighted_metrics=["accuracy", api.metrics.SparseCategoricalCrossentropy(
                      name="xe"), "sparse_categorical_crossentropy",
                      "sparse_categorical_accuracy"])
    validation = (x[:12], y[:12]) if weights is None else (x[:12], y[:12], weights[:12])
    history = model.fit(x, y, sample_weight=weights, class_weight=class_weight, epochs=2,
                        batch_size=16, shuffle=False, verbose=0,
                        validation_data=validation).history
    evaluated = model.evaluate(x, y, sample_weight=weights, batch_size=7, verbose=0,
                               return_dict=True)
    return first, history, evaluated, model


@pytest.mark.parametrize("weighting", ["sample", "class", "none"])
def test_weighted_metrics_are_weighted_means_named_as_keras_names_them(weighting):
    weights = np.random.default_rng(6).uniform(0, 2, 40).astype("float32") \
        if weighting == "sample" else None
    class_weight = {0: 0.5, 1: 2.0, 2: 1.0} if weighting == "class" else None
    start, theirs, their_eval, _ = _weighted_run(keras, None, weights, class_weight)
    _, ours, our_eval, _ = _weighted_run(reglab, start, weights, class_weight)
    _assert_same_logs(ours, theirs, our_eval, their_eval)


def test_a_model_with_weighted_metrics_saves_and_loads_them(tmp_path):
    weights = np.random.default_rng(6).uniform(0, 2, 40).astype("float32")
    x = np.random.default_rng(4).normal(size=(40, 4)).astype("float32")
    y = np.random.default_rng(5).integers(0, 3, 40)
    model = reglab.Sequential([reglab.Input((4,)), reglab.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  weighted_metrics=["accuracy",
                                    reglab.metrics.SparseCategoricalCrossentropy()])
    model.fit(x, y, sample_weight=weights, epochs=1, verbose=0)
    evaluated = model.evaluate(x, y, sample_weight=weights, verbose=0, return_dict=True)
    assert sorted(evaluated) == ["accuracy", "loss", "sparse_categorical_crossentropy",
                                 "weighted_accuracy"]
    model.save(tmp_path / "m.keras")
    loaded = reglab.models.load_model(tmp_path / "m.keras")
    again = loaded.evaluate(x, y, sample_weight=weights, verbose=0, return_dict=True)
    assert again == pytest.approx(evaluated)
    with pytest.raises(ConfigError, match="compile: 'weighted_metrics' must be a list"):
        model.compile(optimizer="sgd", loss="mse", weighted_metrics="accuracy")


def test_a_keras_file_with_weighted_metrics_loads_with_them(tmp_path):
    weights = np.random.default_rng(6).uniform(0, 2, 40).astype("float32")
    x = np.random.default_rng(4).normal(size=(40, 4)).astype("float32")
    y = np.random.default_rng(5).integers(0, 3, 40)
    theirs = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    theirs.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                   metrics=["accuracy"], weighted_metrics=["accuracy"])
    theirs.fit(x, y, sample_weight=weights, epochs=1, verbose=0)
    theirs.save(tmp_path / "k.keras")
    ours = reglab.models.load_model(tmp_path / "k.keras")
    expected = theirs.evaluate(x, y, sample_weight=weights, verbose=0, return_dict=True)
    got = ours.evaluate(x, y, sample_weight=weights, verbose=0, return_dict=True)
    assert sorted(got) == sorted(expected)
    for key in expected:
        assert got[key] == pytest.approx(expected[key], rel=2e-5), key


def test_a_wrapped_user_function_sees_one_model_s_batch_as_in_keras():
    def first_column_error(y_true, y_pred):
        return abs(y_true[:, 0] - y_pred[:, 0])

    x = np.random.default_rng(7).normal(size=(24, 4)).astype("float32")
    y = np.random.default_rng(8).normal(size=(24, 3)).astype("float32")
    results = []
    for api in (keras, reglab):
        wrapper = reglab.metrics.MeanMetricWrapper if api is reglab else \
            __import__("keras.src.metrics.reduction_metrics",
                       fromlist=["x"]).MeanMetricWrapper
        by_hand = wrapper(first_column_error, name="c0")
        by_hand.update_state(y, x[:, :3])
        keras.utils.set_random_seed(2)
        model = api.Sequential([api.Input((4,)), api.layers.Dense(3)])
        if results:
            model.set_weights(results[0][0])
        model.compile(optimizer="sgd", loss="mse",
                      metrics=[wrapper(first_column_error, name="c0")])
        results.append((model.get_weights(), float(by_hand.result()),
                        model.evaluate(x, y, verbose=0, return_dict=True)))
    assert results[1][1] == pytest.approx(results[0][1], rel=1e-6)
    assert results[1][2] == pytest.approx(results[0][2], rel=1e-6)


def test_a_binary_accuracy_object_scores_mixed_targets_as_its_name_does():
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")

    def run(metric):
        reglab.utils.set_random_seed(0)
        model = reglab.Sequential([reglab.Input((4,)), reglab.layers.LabelSmoothing(0.2),
                                   reglab.layers.Dense(1, activation="sigmoid")])
        model.compile("adam", "binary_crossentropy", metrics=[metric])
        return model.fit(x, y, epochs=2, batch_size=16, verbose=0).history
    assert run(reglab.metrics.BinaryAccuracy()) == run("binary_accuracy")


@pytest.mark.parametrize("name", ["Mean", "Sum"])
def test_mean_and_sum_reduce_a_sample_s_values_before_its_weight_as_keras(name):
    values = np.arange(12, dtype="float32").reshape(4, 3)
    weights = np.array([1, 0, 2, 0.5], "float32")
    results = []
    for api in (keras, reglab):
        metric = getattr(api.metrics, name)()
        metric.update_state(values, sample_weight=weights)
        metric.update_state(values)
        results.append(float(metric.result()))
    assert results[1] == pytest.approx(results[0])


TIED = np.array([[0.2, 0.5, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25], [0.1, 0.2, 0.3, 0.4],
                 [0.4, 0.3, 0.2, 0.1], [0.3, 0.3, 0.2, 0.2], [0.1, 0.1, 0.1, 0.7]], "float32")
TIED_LABELS = np.array([0, 3, 0, 2, 2, 1])


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_top_k_functions_count_ties_as_keras(k):
    for name, y_true in (("sparse_top_k_categorical_accuracy", TIED_LABELS),
                         ("top_k_categorical_accuracy", np.eye(4, dtype="float32")[TIED_LABELS])):
        ours = getattr(reglab.metrics, name)(y_true, TIED, k=k)
        theirs = getattr(keras.metrics, name)(y_true, TIED, k=k)
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs), err_msg=name)


def test_top_k_metrics_in_compile_log_keras_s_names_and_values():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(48, 4)).astype("float32")
    y = rng.integers(0, 6, 48)
    (theirs, their_eval), (ours, our_eval) = _compiled_runs(
        x, y, 6, lambda api: ["sparse_top_k_categorical_accuracy",
                              api.metrics.SparseTopKCategoricalAccuracy(k=2, name="top2")],
        validation=16)
    assert "top2" in ours and "val_sparse_top_k_categorical_accuracy" in ours
    _assert_same_logs(ours, theirs, our_eval, their_eval)


def test_a_top_k_of_every_class_or_more_counts_every_sample():
    """k >= the classes (compile's k = 5 beside 3 classes): every target is among the top k
    (TensorFlow's in_top_k; Keras on torch raises from torch.topk instead)."""
    for k in (4, 5, 9):
        np.testing.assert_array_equal(
            reglab.metrics.sparse_top_k_categorical_accuracy(TIED_LABELS, TIED, k=k).numpy(),
            np.ones(6, "float32"))
    metric = reglab.metrics.SparseTopKCategoricalAccuracy()
    metric.update_state(LABELS, PROBABILITIES)
    assert float(metric.result()) == 1.0


@pytest.mark.parametrize("k", [0, -2, 2.5, "5", True])
def test_a_top_k_that_is_not_a_positive_int_is_refused_by_name(k):
    for cls in (reglab.metrics.SparseTopKCategoricalAccuracy,
                reglab.metrics.TopKCategoricalAccuracy):
        with pytest.raises(ValueError, match=rf"{cls.__name__}: 'k' must be an int >= 1"):
            cls(k=k)


def test_sparse_top_k_takes_soft_targets_by_their_largest_class():
    """MixUp, CutMix and LabelSmoothing hand the metric (B, C) soft targets: top-k of their
    largest class, as sparse_categorical_accuracy takes them."""
    soft = np.eye(4, dtype="float32")[TIED_LABELS] * 0.7 + 0.075
    for k in (1, 2, 3):
        np.testing.assert_array_equal(
            reglab.metrics.sparse_top_k_categorical_accuracy(soft, TIED, k=k).numpy(),
            reglab.metrics.sparse_top_k_categorical_accuracy(TIED_LABELS, TIED, k=k).numpy())


def test_top_k_categorical_with_integer_labels_is_refused_by_name():
    with pytest.raises(reglab.errors.DataError, match="top_k_categorical_accuracy: expected "
                       "one-hot targets of the output's 4 classes.*integer labels take "
                       "sparse_top_k_categorical_accuracy"):
        reglab.metrics.top_k_categorical_accuracy(TIED_LABELS, TIED)


def test_several_outputs_keep_their_metric_objects_through_both_loaders(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    ya = (x[:, :1] > 0).astype("float32")
    yb = np.eye(3, dtype="float32")[rng.integers(0, 3, 64)]
    inputs = reglab.Input((6,))
    a = reglab.layers.Dense(1, activation="sigmoid", name="a")(inputs)
    b = reglab.layers.Dense(3, activation="softmax", name="b")(inputs)
    model = reglab.Model(inputs, [a, b])
    m = reglab.metrics
    model.compile(optimizer="sgd", loss=["binary_crossentropy", "categorical_crossentropy"],
                  metrics=[[m.Precision(thresholds=0.3), "accuracy"],
                           [m.F1Score(average="macro"), m.AUC(curve="PR", name="pr")]])
    model.fit(x, [ya, yb], epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    ours = model.evaluate(x, [ya, yb], verbose=0, return_dict=True)
    again = reglab.models.load_model(tmp_path / "m.keras")
    assert again.evaluate(x, [ya, yb], verbose=0, return_dict=True) == ours
    theirs = keras.models.load_model(tmp_path / "m.keras").evaluate(
        x, [ya, yb], verbose=0, return_dict=True)
    assert sorted(theirs) == sorted(ours)
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, rel=1e-5), key


def test_loss_weights_and_weighted_metrics_are_both_saved(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 6)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    model = reglab.Sequential([reglab.Input((6,)), reglab.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="binary_crossentropy", loss_weights=0.5,
                  metrics=["accuracy"],
                  weighted_metrics=[reglab.metrics.Precision(thresholds=0.3, name="wp")])
    model.save(tmp_path / "m.keras")
    w = rng.uniform(0.5, 2.0, 40)
    ours = model.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True)
    for loader in (reglab.models.load_model, keras.models.load_model):
        again = loader(tmp_path / "m.keras").evaluate(x, y, sample_weight=w, verbose=0,
                                                      return_dict=True)
        assert sorted(again) == sorted(ours)  # wp kept beside the loss weight
        for key, value in ours.items():
            assert again[key] == pytest.approx(value, rel=1e-5), (loader, key)


def test_a_keras_files_per_output_metric_objects_load(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 6)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    inputs = keras.Input((6,))
    out = keras.layers.Dense(1, activation="sigmoid", name="out")(inputs)
    model = keras.Model(inputs, out)
    model.compile(optimizer="sgd", loss="binary_crossentropy",
                  metrics={"out": [keras.metrics.Precision(thresholds=0.3)]})
    model.save(tmp_path / "k.keras")
    theirs = model.evaluate(x, y, verbose=0, return_dict=True)
    mine = reglab.models.load_model(tmp_path / "k.keras").evaluate(x, y, verbose=0,
                                                                    return_dict=True)
    assert mine == pytest.approx(theirs, rel=1e-6)


def _edited(path, index, entry, tmp_path):
    import json
    import zipfile
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    document = json.loads(members["reglab.json"])
    document["compile_config"]["metrics"][index] = entry
    members["reglab.json"] = json.dumps(document).encode()
    edited = tmp_path / f"edited{index}.keras"
    with zipfile.ZipFile(edited, "w") as archive:
        for name, raw in members.items():
            archive.writestr(name, raw)
    return edited


@pytest.mark.parametrize("index, entry, match", [
    (1, {"class_name": "AUC", "config": {"thresholds": ["a", "b"]}},
     r"compile_config.metrics\[1\]: AUC: 'thresholds' must be a list of numbers"),
    (2, {"class_name": "BinaryAccuracy", "config": {"threshold": "x"}},
     r"compile_config.metrics\[2\]: BinaryAccuracy: 'threshold' must be a finite number"),
    (2, {"config": {"name": "p"}}, r"compile_config.metrics\[2\]: expected a metric name"),
    (0, {"class_name": "Nope", "config": {}}, r"compile_config.metrics\[0\]: expected"),
])
def test_a_damaged_metric_entry_is_named_once_and_compile_false_still_loads(index, entry, match,
                                                                          tmp_path):
    model = reglab.Sequential([reglab.Input((6,)), reglab.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="binary_crossentropy",
                  metrics=["accuracy", reglab.metrics.AUC(curve="PR"),
                           reglab.metrics.Precision(thresholds=0.3)])
    model.save(tmp_path / "base.keras")
    edited = _edited(tmp_path / "base.keras", index, {"module": "keras.metrics", **entry},
                     tmp_path)
    with pytest.raises(ConfigError, match=match) as caught:
        reglab.models.load_model(edited)
    assert str(caught.value).count("load_model:") == 1
    reglab.models.load_model(edited, compile=False)


def test_arguments_keras_s_metric_classes_do_not_take_are_refused():
    with pytest.raises(ConfigError, match=r"BinaryCrossentropy: unexpected argument 'axis'; "
                                          r"Keras's metric takes name, dtype, from_logits, "
                                          r"label_smoothing"):
        reglab.metrics.BinaryCrossentropy(axis=-1)
    with pytest.raises(ConfigError, match=r"SparseCategoricalCrossentropy: unexpected "
                                          r"argument 'label_smoothing'"):
        reglab.metrics.SparseCategoricalCrossentropy(label_smoothing=0.1)
    reglab.metrics.CategoricalCrossentropy(label_smoothing=0.1, axis=-1)  # Keras's own
    # numpy scalars as thresholds, as Keras takes them
    assert reglab.metrics.Precision(thresholds=np.float32(0.3)).init_thresholds == \
        pytest.approx(0.3)
    assert reglab.metrics.TruePositives(thresholds=np.float64(0.4)).init_thresholds == 0.4


def test_built_in_losses_and_metric_functions_as_metrics_are_saved(tmp_path):
    # a loss object or function given as a metric (or read from a Keras file), and a metric
    # function among weighted_metrics: saved as Keras serializes them, saved again alike
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype("float32")
    y = np.eye(2, dtype="float32")[rng.integers(0, 2, 40)]
    w = rng.uniform(0.5, 2.0, 40)
    model = reglab.Sequential([reglab.Input((3,)), reglab.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="categorical_crossentropy",
                  metrics=[reglab.losses.Huber(delta=0.5), reglab.losses.huber],
                  weighted_metrics=[reglab.metrics.categorical_accuracy])
    model.save(tmp_path / "m.keras")
    ours = model.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True)
    for loader in (reglab.models.load_model, keras.models.load_model):
        again = loader(tmp_path / "m.keras").evaluate(x, y, sample_weight=w, verbose=0,
                                                      return_dict=True)
        assert again == pytest.approx(ours, rel=1e-6), loader
    reloaded = reglab.models.load_model(tmp_path / "m.keras")
    reloaded.save(tmp_path / "again.keras")
    assert reglab.models.load_model(tmp_path / "again.keras").evaluate(
        x, y, sample_weight=w, verbose=0, return_dict=True) == ours


def test_a_metric_object_compiled_twice_keeps_its_name_for_the_first_model():
    # the second compile logs its own copy as precision_1; the object (and the first model,
    # which logs it) keep 'precision', as in Keras
    x = np.random.default_rng(0).normal(size=(16, 6)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    for api in (keras, reglab):
        if api is keras:
            keras.backend.clear_session()
        shared = api.metrics.Precision(thresholds=0.3)
        first = api.Sequential([api.Input((6,)), api.layers.Dense(1, activation="sigmoid")])
        first.compile(optimizer="sgd", loss="binary_crossentropy", metrics=[shared])
        second = api.Sequential([api.Input((6,)), api.layers.Dense(1, activation="sigmoid")])
        second.compile(optimizer="sgd", loss="binary_crossentropy",
                       metrics=["precision", shared])
        assert shared.name == "precision"
        assert sorted(first.evaluate(x, y, verbose=0, return_dict=True)) == \
            ["loss", "precision"]
        assert sorted(second.evaluate(x, y, verbose=0, return_dict=True)) == \
            ["loss", "precision", "precision_1"]


def test_a_metric_object_and_its_name_log_the_same_bits():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, 64)]
    logs, start = [], None
    for metric in (reglab.metrics.MeanAbsoluteError(), "mean_absolute_error"):
        model = reglab.Sequential([reglab.Input((6,)), reglab.layers.Dense(3, "softmax")])
        start = model.get_weights() if start is None else start
        model.set_weights(start)
        model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=[metric])
        logs.append(model.fit(x, y, epochs=2, batch_size=20, verbose=0, shuffle=False,
                              validation_data=(x, y)).history)
    assert logs[0] == logs[1]


@pytest.mark.parametrize("name", [
    "accuracy", "mse", "mae", "bce", "AUC", "auc", "categorical_accuracy",
    "sparse_categorical_accuracy", "Precision", "precision", "top_k_categorical_accuracy",
    "binary_accuracy", "F1Score", "f1_score", "r2_score", "MeanSquaredError",
    "log_cosh_error", "root_mean_squared_error", "true_positives", "sum", "mean", None])
def test_get_gives_the_object_keras_s_get_gives(name):
    """keras.metrics.get: a class's name, its snake_case or an alias gives the class's
    object with its defaults (it was missing: AttributeError)."""
    ours, theirs = reglab.metrics.get(name), keras.metrics.get(name)
    assert type(ours).__name__ == type(theirs).__name__
    if theirs is not None:
        assert ours.get_config() == {**theirs.get_config(), "name": ours.name}


def test_serialize_and_deserialize_go_both_ways_with_keras():
    theirs = keras.metrics.Precision(thresholds=0.3, name="p")
    ours = reglab.metrics.deserialize(keras.metrics.serialize(theirs))
    assert type(ours) is reglab.metrics.Precision and ours.get_config() == theirs.get_config()
    back = keras.metrics.deserialize(reglab.metrics.serialize(ours))
    assert back.get_config() == theirs.get_config()
    assert reglab.metrics.get(reglab.metrics.serialize(ours)).get_config() == ours.get_config()
    with pytest.raises(ConfigError, match="unknown metric 'acuracy'.*Did you mean"):
        reglab.metrics.get("acuracy")
    with pytest.raises(ValueError):
        keras.metrics.get("acuracy")
