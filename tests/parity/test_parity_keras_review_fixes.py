"""What a review of the new metrics found, fixed, each against Keras or against the member
trained alone: the correlations' rank handling and arrays, the transcendental losses'
values whatever the number of members, loss functions among weighted_metrics (saved and
monitored), the classes' Keras names, IoU beside MixUp, numpy scalars, from_config, and a
population's metrics of one name."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import reglab  # noqa: E402
from reglab.engine import Member, Population  # noqa: E402
from reglab.errors import ConfigError  # noqa: E402

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
if keras.backend.backend() != "torch":  # pragma: no cover - another backend chosen outside
    pytest.skip("these comparisons run Keras on its torch backend", allow_module_level=True)


def assert_same_by_hand(name, y, p):
    """Keras's and reglab's metric ``name`` give one value (NaN where Keras's is) after one
    update with ``y`` and ``p``."""
    values = []
    for api in (keras, reglab):
        metric = getattr(api.metrics, name)()
        metric.update_state(y, p)
        values.append(float(metric.result()))
    np.testing.assert_allclose(values[1], values[0], rtol=1e-5)


@pytest.mark.parametrize("name", ["PearsonCorrelation", "ConcordanceCorrelation"])
@pytest.mark.parametrize("true_extra, pred_extra", [(False, True), (True, False)])
def test_a_trailing_axis_of_one_on_one_side_is_dropped_as_keras_drops_it(name, true_extra,
                                                                        pred_extra):
    rng = np.random.default_rng(0)
    y, p = rng.normal(size=(2, 12, 7)).astype("float32")
    y, p = (y[..., None] if true_extra else y), (p[..., None] if pred_extra else p)
    assert_same_by_hand(name, y, p)
    got = reglab.metrics.pearson_correlation(y.tolist(), p.tolist())  # lists, as Keras's
    assert np.asarray(got).shape == np.asarray(keras.metrics.pearson_correlation(y, p)).shape


@pytest.mark.parametrize("loss", ["log_cosh", "poisson", "mean_squared_logarithmic_error"])
def test_a_transcendental_loss_gives_a_member_its_values_alone(loss):
    # 19 samples x 3 outputs: a member's values end on a vectorized loop's scalar tail when
    # alone, not beside others; computed by whole vectors, they are the same either way
    rng = np.random.default_rng(5)
    x = rng.normal(size=(64, 5)).astype("float32")
    y = np.abs(3 * rng.normal(size=(64, 3))).astype("float32")

    def member(rate):
        return Member([reglab.layers.Dense(3, activation="softplus", input_shape=(5,))],
                      reglab.optimizers.SGD(rate), seed=1)
    metrics = [reglab.metrics.LogCoshError()]
    together = Population([member(0.05), member(0.02), member(0.01)], loss=loss,
                          metrics=metrics).fit(x, y, batch_size=19, epochs=3)
    alone = Population([member(0.05)], loss=loss, metrics=metrics).fit(x, y, batch_size=19,
                                                                     epochs=3)
    assert together.members[0].history == alone.members[0].history
    for key, value in alone.members[0].weights.items():
        assert np.array_equal(value.numpy(), together.members[0].weights[key].numpy()), key


def test_loss_functions_among_weighted_metrics_are_saved_and_minimized(tmp_path):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 4)).astype("float32"), rng.random((40, 2)).astype("float32")
    model = reglab.Sequential([reglab.Input((4,)), reglab.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse",
                  weighted_metrics=[reglab.metrics.huber, reglab.losses.Huber(delta=0.5)])
    stop = reglab.callbacks.EarlyStopping(monitor="val_huber", patience=5)
    history = model.fit(x, y, epochs=3, verbose=0, validation_data=(x, y), callbacks=[stop],
                        sample_weight=rng.uniform(0.5, 2.0, 40)).history
    assert stop.best == min(history["val_huber"])  # 'auto' minimizes a loss, as Keras
    model.save(tmp_path / "m.keras")
    ours = model.evaluate(x, y, verbose=0, return_dict=True)
    for loader in (reglab.models.load_model, keras.models.load_model):
        assert loader(tmp_path / "m.keras").evaluate(x, y, verbose=0, return_dict=True) == \
            pytest.approx(ours, rel=1e-6)


@pytest.mark.parametrize("name", ["r2_score", "R2Score", "PearsonCorrelation",
                                  "ConcordanceCorrelation", "LogCoshError", "log_cosh_error",
                                  "BinaryIoU", "binary_io_u"])
def test_the_classes_keras_names_compile_and_load(name, tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 4)).astype("float32")
    y = rng.random((40, 2)).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="mse", metrics=[name])
    model.save(tmp_path / "k.keras")
    theirs = model.evaluate(x, y, verbose=0, return_dict=True)
    ours = reglab.models.load_model(tmp_path / "k.keras").evaluate(x, y, verbose=0,
                                                                    return_dict=True)
    assert sorted(ours) == sorted(theirs)
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_iou_beside_mixup_scores_the_soft_targets_by_their_largest_class():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(48, 5)).astype("float32"), rng.integers(0, 3, 48)
    population = Population([Member([reglab.layers.MixUp(0.3, input_shape=(5,)),
                                     reglab.layers.Dense(3, activation="softmax")],
                                    "sgd", seed=0)],
                            loss="sparse_categorical_crossentropy",
                            metrics=[reglab.metrics.MeanIoU(3, sparse_y_pred=False)])
    history = population.fit(x, y, batch_size=16, epochs=1).members[0].history
    assert 0.0 <= history["mean_io_u"][0] <= 1.0


def test_numpy_scalars_from_config_and_one_name_per_population_metric():
    m = reglab.metrics
    built = [m.BinaryIoU(threshold=np.float32(0.3)), m.MeanIoU(np.int64(3)),
             m.IoU(3, np.array([0, 2]), ignore_class=np.int64(1)),
             m.R2Score(num_regressors=np.int64(2)),
             m.SensitivityAtSpecificity(0.5, num_thresholds=np.int64(50)),
             m.AUC(curve="PR", thresholds=[0.2, 0.6]), m.Precision(thresholds=0.3),
             m.F1Score(average="macro"), m.PearsonCorrelation(), m.TruePositives(0.4)]
    for metric in built:  # Keras's from_config(get_config()) gives the same metric back
        again = type(metric).from_config(metric.get_config())
        assert again.get_config() == metric.get_config(), type(metric).__name__
    with pytest.raises(ConfigError, match=r"both named 'r2_score'"):
        Population([Member([reglab.layers.Dense(2, input_shape=(3,))], "sgd")], loss="mse",
                   metrics=[m.R2Score(), m.R2Score(num_regressors=3)])


@pytest.mark.parametrize("name", ["LogCoshError", "PearsonCorrelation",
                                  "ConcordanceCorrelation", "MeanSquaredError"])
@pytest.mark.parametrize("shapes", ["(B,1) (B,)", "(B,T,1) (B,T)", "(T,) (T,)"])
def test_by_hand_shapes_line_up_as_keras_s(name, shapes):
    rng = np.random.default_rng(4)
    y, p = rng.normal(size=(2, 10, 6)).astype("float32")
    if shapes == "(B,1) (B,)":
        y, p = y[:, :1], p[:, 0]
    elif shapes == "(B,T,1) (B,T)":
        y = y[..., None]
    else:
        y, p = y[0], p[0]
    if name == "MeanSquaredError" and shapes == "(T,) (T,)":
        pytest.skip("a vector's elements are weighed one by one there (not asked here)")
    assert_same_by_hand(name, y, p)


@pytest.mark.parametrize("cls, args, binary", [
    ("MeanIoU", (3,), False), ("IoU", (3, [1]), False), ("BinaryIoU", (), True),
    ("PrecisionAtRecall", (0.5,), True), ("Precision", (), True), ("R2Score", (), True),
    ("PearsonCorrelation", (), True)])
def test_an_empty_batch_by_hand_adds_nothing(cls, args, binary):
    rng = np.random.default_rng(0)
    if binary:
        y, p = (rng.random((10, 1)) > .5).astype("float32"), rng.random((10, 1)).astype("float32")
    else:
        y, p = rng.integers(0, 3, 10), rng.integers(0, 3, 10)
    values = []
    for api in (keras, reglab):
        metric = getattr(api.metrics, cls)(*args)
        metric.update_state(y, p)
        metric.update_state(y[:0], p[:0])
        values.append(float(metric.result()))
    np.testing.assert_allclose(values[1], values[0], rtol=1e-6)


def test_the_engine_s_early_stopping_reads_a_custom_named_metric_s_direction():
    from reglab.engine.early_stopping import EarlyStoppingRule
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 5)).astype("float32"), rng.normal(size=(40, 2)).astype("float32")
    member = Member([reglab.layers.Dense(2, input_shape=(5,))], reglab.optimizers.SGD(0.1),
                    seed=0, early_stopping=EarlyStoppingRule(monitor="val_myr2", patience=1))
    population = Population([member], loss="mse",
                            metrics=[reglab.metrics.R2Score(name="myr2")])
    population.fit(x, y, batch_size=8, epochs=2, validation_data=(x[:10], y[:10]))
    assert population.state.members.scalars["early_stopping"][0].mode == "max"


@pytest.mark.parametrize("callback", [None, "ReduceLROnPlateau", "LearningRateScheduler"])
@pytest.mark.parametrize("verbose", [1, 2])
def test_the_progress_line_orders_its_keys_as_keras_s(verbose, callback, capsys):
    # verbose=1: the keys as first seen (training's, then val_); verbose=2: the epoch's logs
    # sorted; either way a callback's learning_rate last (it had been sorted in)
    import re
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)).astype("float32"), rng.integers(0, 2, 32)
    weights = rng.uniform(0.5, 2.0, 32)
    orders = []
    for api in (keras, reglab):
        keras.utils.set_random_seed(0)
        model = api.Sequential([api.Input((4,)), api.layers.Dense(2, activation="softmax")])
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"], weighted_metrics=["accuracy"])
        capsys.readouterr()
        callbacks = [] if callback is None else [
            api.callbacks.ReduceLROnPlateau(patience=0, min_delta=10.0)
            if callback == "ReduceLROnPlateau" else
            api.callbacks.LearningRateScheduler(lambda epoch, rate: rate / 2)]
        model.fit(x, y, sample_weight=weights, epochs=1, verbose=verbose,
                  validation_data=(x, y), callbacks=callbacks)
        last = [line for line in capsys.readouterr().out.replace("\r", "\n").splitlines()
                if "val_loss" in line][-1]
        orders.append(re.findall(r"(\w+): ", last))
    assert orders[1] == orders[0]
    assert ("learning_rate" in orders[0]) == (callback is not None)


@pytest.mark.parametrize("dtype", [None, "float32"])
def test_iou_takes_a_weight_per_pixel_by_hand(dtype):
    # Keras's way to leave pixels out of a segmentation map: weight 0 (floats cast toward
    # zero by its integer metric)
    rng = np.random.default_rng(6)
    y, p = rng.integers(0, 3, (5, 4, 4)), rng.integers(0, 3, (5, 4, 4))
    weights = rng.uniform(0.0, 2.5, (5, 4, 4)).astype("float32")
    values = []
    for api in (keras, reglab):
        metric = api.metrics.MeanIoU(3, dtype=dtype)
        metric.update_state(y, p, sample_weight=weights)
        values.append(float(metric.result()))
    np.testing.assert_allclose(values[1], values[0], rtol=1e-6)
    with pytest.raises(ConfigError, match=r"one weight per sample \(5\) or per element \(80\)"):
        reglab.metrics.MeanIoU(3).update_state(y, p, sample_weight=np.ones(7))
