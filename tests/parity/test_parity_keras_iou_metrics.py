"""Keras 3's IoU, MeanIoU, BinaryIoU, OneHotIoU and OneHotMeanIoU: compiled (softmax and
sigmoid heads, sparse and one-hot targets, an ignored class), by hand (integer and float
weights, ids out of range, a segmentation map's pixels), against a closed form, and saved
and read both ways, against Keras on its torch backend."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import warnings  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import reglab  # noqa: E402
from keras_side_by_side import assert_logs_alike, assert_saved_alike, fit_side_by_side  # noqa: E402, I001
from reglab.errors import ConfigError, DataError  # noqa: E402

keras = pytest.importorskip("keras")
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:You are passing weight as")]
if keras.backend.backend() != "torch":  # pragma: no cover - another backend chosen outside
    pytest.skip("these comparisons run Keras on its torch backend", allow_module_level=True)


def data(n=120, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    return x, (x[:, :classes] + rng.normal(size=(n, classes))).argmax(axis=1)


def fit_both(build, x, y, loss, metrics):
    seen = fit_side_by_side(keras, reglab, build, lambda api: {
        "optimizer": api.optimizers.SGD(0.1), "loss": loss, "metrics": metrics(api)}, x, y)
    assert_logs_alike(seen, rtol=1e-6, atol=1e-7)


def test_compiled_on_a_softmax_with_sparse_and_one_hot_targets():
    x, y = data()

    def build(api):
        return api.Sequential([api.Input((6,)), api.layers.Dense(4, activation="softmax")])

    def sparse(api):
        m = api.metrics
        return [m.MeanIoU(4, sparse_y_pred=False, name="miou"),
                m.IoU(4, [1, 3], sparse_y_pred=False, name="iou13"),
                m.MeanIoU(4, sparse_y_pred=False, ignore_class=2, name="ignore2")]
    fit_both(build, x, y, "sparse_categorical_crossentropy", sparse)

    def one_hot(api):
        m = api.metrics
        return [m.OneHotMeanIoU(4, name="ohm"), m.OneHotIoU(4, [0, 2], name="oh02")]
    fit_both(build, x, np.eye(4, dtype="float32")[y], "categorical_crossentropy", one_hot)


def test_compiled_on_a_sigmoid():
    x, y = data(classes=2)

    def build(api):
        return api.Sequential([api.Input((6,)), api.layers.Dense(1, activation="sigmoid")])

    def metrics(api):
        m = api.metrics
        return [m.BinaryIoU(name="biou"), m.BinaryIoU([1], threshold=0.3, name="b1")]
    fit_both(build, x, y.astype("float32")[:, None], "binary_crossentropy", metrics)


@pytest.mark.parametrize("build, weights", [
    (lambda m: m.MeanIoU(3), "int"),
    (lambda m: m.MeanIoU(3), "float"),  # cast toward zero, as Keras's int metric does
    (lambda m: m.MeanIoU(3, dtype="float32"), "float"),
    (lambda m: m.IoU(3, [2], ignore_class=0), None),
    (lambda m: m.BinaryIoU([0], threshold=0.6), "float"),
    (lambda m: m.OneHotMeanIoU(3, sparse_y_pred=True), None),
])
def test_by_hand(build, weights):
    rng = np.random.default_rng(4)
    binary = isinstance(build(reglab.metrics), reglab.metrics.BinaryIoU)
    one_hot = isinstance(build(reglab.metrics), reglab.metrics.OneHotMeanIoU)
    # without weights segmentation maps (every pixel counts; Keras takes weights per
    # element, so weighted samples are one element each)
    shape = (20, 5, 5) if weights is None else (20,)
    y = rng.integers(0, 3, shape)
    p = rng.integers(-1, 4, shape).astype("float32")  # ids out of range not counted
    if binary:
        y, p = (y > 1).astype("float32"), rng.random(shape).astype("float32")
    if one_hot:
        y = np.eye(3, dtype="float32")[y]
    w = {"int": rng.integers(0, 3, 20), "float": rng.uniform(0.2, 2.5, 20).astype("float32"),
         None: None}[weights]
    results = []
    for api in (keras, reglab):
        metric = build(api.metrics)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            metric.update_state(y[:12], p[:12], sample_weight=None if w is None else w[:12])
            metric.update_state(y[12:], p[12:])
        results.append(float(metric.result()))
        metric.reset_state()
        results.append(float(metric.result()))
    np.testing.assert_allclose(results[2:], results[:2], rtol=1e-6, atol=1e-7)


def test_against_the_closed_form():
    m = reglab.metrics.IoU(3, [0, 1, 2])
    m.update_state([0, 0, 1, 1, 2], [0, 1, 1, 1, 0])
    # class 0: 1 hit, union 3; class 1: 2 hits, union 3; class 2: 0 hits, union 1
    expected = (1 / 3 + 2 / 3 + 0) / 3
    assert float(m.result()) == pytest.approx(expected, rel=1e-6)
    empty = reglab.metrics.IoU(4, [3])  # a class never seen: no valid entry, 0
    empty.update_state([0, 1], [0, 1])
    assert float(empty.result()) == 0.0


def test_saved_and_read_both_ways(tmp_path):
    def compiled_model(api):
        model = api.Sequential([api.Input((6,)), api.layers.Dense(4, activation="softmax")])
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                      metrics=[api.metrics.MeanIoU(4, sparse_y_pred=False),
                               api.metrics.IoU(4, [1], sparse_y_pred=False, ignore_class=3)])
        return model
    assert_saved_alike(keras, reglab, compiled_model, *data(), tmp_path, rel=1e-6, abs=1e-7)


def test_bad_arguments_and_mismatched_ids_are_named():
    m = reglab.metrics
    with pytest.raises(ConfigError, match=r"IoU: 'target_class_ids' must be a non-empty list"):
        m.IoU(3, [3])
    with pytest.raises(ConfigError, match=r"MeanIoU: 'num_classes' must be an integer >= 1"):
        m.MeanIoU(0)
    with pytest.raises(ConfigError, match=r"MeanIoU: 'dtype' must be an integer dtype"):
        m.MeanIoU(3, dtype="float16")
    x, y = data()
    model = reglab.Sequential([reglab.Input((6,)), reglab.layers.Dense(4, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                  metrics=[m.MeanIoU(4)])  # scores given as ids: 4 per sample, 1 target
    with pytest.raises(DataError, match=r"mean_io_u: the targets and predictions give "
                                        r"different numbers of class ids"):
        model.fit(x, y, epochs=1, verbose=0)
