"""Keras 3's regression and margin losses side by side with Keras itself (torch backend):
each function's per-sample values, each class with sample weights, and training with them
(the same weights after a few epochs); names and saving."""

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

RNG = np.random.default_rng(3)
REGRESSION = (RNG.normal(size=(12, 4)).astype("float32"),
              RNG.normal(size=(12, 4)).astype("float32") * 2)
POSITIVE = (RNG.random((12, 4)).astype("float32") * 3, RNG.random((12, 4)).astype("float32") + 0.1)
PROBABILITIES = (RNG.dirichlet(np.ones(4), 12).astype("float32"),
                 RNG.dirichlet(np.ones(4), 12).astype("float32"))
SIGNS = (RNG.integers(0, 2, (12, 4)).astype("float32"), RNG.normal(size=(12, 4)).astype("float32"))
ONE_HOT = (np.eye(4, dtype="float32")[RNG.integers(0, 4, 12)],
           RNG.normal(size=(12, 4)).astype("float32"))
BINARY = (RNG.integers(0, 2, (12, 4)).astype("float32"),
          RNG.uniform(0.02, 0.98, (12, 4)).astype("float32"))
CLASS_PROBABILITIES = (ONE_HOT[0], PROBABILITIES[1])

def side_by_side(build, x, y, **fit):
    """``(theirs, ours, their history, ours)``: the model built in Keras and in reglab from
    Keras's initial weights, each fitted on ``x, y`` unshuffled with ``fit``'s arguments."""
    keras.utils.set_random_seed(2)
    theirs, ours = build(keras), build(reglab)
    ours.set_weights(theirs.get_weights())
    fit = {"shuffle": False, "verbose": 0, **fit}
    return theirs, ours, theirs.fit(x, y, **fit).history, ours.fit(x, y, **fit).history


FUNCTIONS = [
    ("mean_absolute_error", REGRESSION), ("mae", REGRESSION),
    ("mean_absolute_percentage_error", REGRESSION), ("mape", REGRESSION),
    ("mean_squared_logarithmic_error", POSITIVE), ("msle", POSITIVE),
    ("huber", REGRESSION), ("log_cosh", REGRESSION), ("poisson", POSITIVE),
    ("hinge", SIGNS), ("squared_hinge", SIGNS), ("categorical_hinge", ONE_HOT),
    ("kl_divergence", PROBABILITIES), ("kld", PROBABILITIES),
    ("cosine_similarity", REGRESSION), ("binary_focal_crossentropy", BINARY),
    ("categorical_focal_crossentropy", CLASS_PROBABILITIES),
]


@pytest.mark.parametrize(("name", "arrays"), FUNCTIONS, ids=[n for n, _ in FUNCTIONS])
def test_each_function_gives_keras_s_per_sample_values(name, arrays):
    y_true, y_pred = arrays
    got = getattr(reglab.losses, name)(y_true, y_pred)
    # Keras has the short names (mae, kld...) through get() only
    expected = keras.ops.convert_to_numpy(keras.losses.get(name)(y_true, y_pred))
    assert tuple(got.shape) == expected.shape == (12,)
    np.testing.assert_allclose(got.numpy(), expected, rtol=2e-6, atol=1e-6)


CLASSES = [
    ("MeanAbsoluteError", {}, REGRESSION), ("MeanAbsolutePercentageError", {}, REGRESSION),
    ("MeanSquaredLogarithmicError", {}, POSITIVE), ("Huber", dict(delta=0.5), REGRESSION),
    ("LogCosh", {}, REGRESSION), ("Poisson", {}, POSITIVE), ("Hinge", {}, SIGNS),
    ("SquaredHinge", {}, SIGNS), ("CategoricalHinge", {}, ONE_HOT),
    ("KLDivergence", {}, PROBABILITIES), ("CosineSimilarity", {}, REGRESSION),
    ("BinaryFocalCrossentropy", dict(gamma=1.5, apply_class_balancing=True, alpha=0.4), BINARY),
    ("BinaryFocalCrossentropy", dict(from_logits=True, label_smoothing=0.1), SIGNS),
    ("CategoricalFocalCrossentropy", dict(alpha=0.5, gamma=0.7), CLASS_PROBABILITIES),
    ("CategoricalFocalCrossentropy", dict(from_logits=True, label_smoothing=0.2), ONE_HOT),
]


@pytest.mark.parametrize(("name", "arguments", "arrays"), CLASSES, ids=[n for n, _, _ in CLASSES])
def test_each_class_reduces_with_sample_weights_as_keras(name, arguments, arrays):
    y_true, y_pred = arrays
    weights = np.linspace(0.2, 1.8, 12).astype("float32")
    ours = getattr(reglab.losses, name)(**arguments)
    theirs = getattr(keras.losses, name)(**arguments)
    np.testing.assert_allclose(float(ours(y_true, y_pred, sample_weight=weights)),
                               float(keras.ops.convert_to_numpy(
                                   theirs(y_true, y_pred, sample_weight=weights))), rtol=2e-6)
    assert reglab.losses.get(name) is not None and type(reglab.losses.get(name)).__name__ == name


TRAINED = [("mae", "linear", REGRESSION), ("huber", "linear", REGRESSION),
           ("log_cosh", "linear", REGRESSION), ("msle", "softplus", POSITIVE),
           ("poisson", "softplus", POSITIVE), ("squared_hinge", "tanh", SIGNS),
           ("categorical_hinge", "linear", ONE_HOT), ("kl_divergence", "softmax", PROBABILITIES),
           ("cosine_similarity", "linear", REGRESSION),
           ("binary_focal_crossentropy", "sigmoid", BINARY),
           ("categorical_focal_crossentropy", "softmax", ONE_HOT)]


@pytest.mark.parametrize(("loss", "activation", "arrays"), TRAINED,
                         ids=[n for n, _, _ in TRAINED])
def test_training_with_the_loss_gives_keras_s_weights(loss, activation, arrays):
    targets = np.concatenate([arrays[0]] * 4)
    x = np.random.default_rng(4).normal(size=(len(targets), 5)).astype("float32")

    def build(api):
        model = api.Sequential([api.Input((5,)), api.layers.Dense(6, activation="relu"),
                                api.layers.Dense(4, activation=activation)])
        model.compile(optimizer=api.optimizers.SGD(0.05), loss=loss, metrics=["mae"])
        return model
    theirs, ours, expected, got = side_by_side(build, x, targets, batch_size=12, epochs=3)
    np.testing.assert_allclose(got["loss"], expected["loss"], rtol=1e-5)
    np.testing.assert_allclose(got["mae"], expected["mae"], rtol=1e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_model_with_a_new_loss_saves_and_loads(tmp_path):
    model = reglab.Sequential([reglab.layers.Dense(2, input_shape=(3,))])
    model.compile(optimizer="sgd", loss=reglab.losses.Huber(delta=0.3))
    model.save(tmp_path / "model.keras")
    loaded = reglab.models.load_model(tmp_path / "model.keras")
    assert isinstance(loaded.loss, reglab.losses.Huber) and loaded.loss.delta == 0.3
    with pytest.raises(ConfigError, match=r"Huber: 'delta' must be a float >= 0. Got -1"):
        reglab.losses.Huber(delta=-1)


def test_a_custom_metric_function_is_logged_as_keras_logs_it(tmp_path):
    def mean_error(y_true, y_pred):  # written with keras.ops, as a Keras user would
        return keras.ops.mean(y_pred - y_true, axis=-1)

    def big_misses(y_true, y_pred):
        return keras.ops.cast(keras.ops.abs(y_true - y_pred) > 1.0, "float32")

    targets = np.concatenate([REGRESSION[0]] * 4)
    x = np.random.default_rng(4).normal(size=(len(targets), 5)).astype("float32")

    def build(api):
        model = api.Sequential([api.Input((5,)), api.layers.Dense(4)])
        model.compile(optimizer=api.optimizers.SGD(0.05), loss="mse",
                      metrics=[mean_error, big_misses, "mae", api.losses.huber])
        return model
    theirs, ours, expected, got = side_by_side(build, x, targets, batch_size=12, epochs=2,
                                               validation_data=(x[:12], targets[:12]))
    assert sorted(got) == sorted(expected)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ours.evaluate(x, targets, verbose=0),
                               theirs.evaluate(x, targets, verbose=0), rtol=1e-5)
    with pytest.raises(ConfigError, match=r"save_model: 'metrics' and 'weighted_metrics' must be built-in metrics "
                                          r"by name .*Got FunctionMetric\(mean_error\)"):
        ours.save(tmp_path / "model.keras")


def test_metric_functions_see_one_batch_as_keras_calls_them():
    """Per member ``(B, ...)`` arrays, the targets as given; a scalar result counts once per
    batch; a user's function named like a built-in is the user's; two lambdas are two
    metrics (lambda, lambda_1); a model with several outputs takes them too."""
    def accuracy(y_true, y_pred):  # axis=1 and the targets' own dtype, as in Keras
        return keras.ops.cast(keras.ops.equal(keras.ops.argmax(y_pred, axis=1),
                                              keras.ops.cast(y_true, "int64")), "float32")

    def mae(y_true, y_pred):
        return keras.ops.ones_like(y_pred[:, 0]) * 3.0

    def scalar(y_true, y_pred):
        return keras.ops.mean(y_pred[:, 0])

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(10, 5)).astype("float32"), rng.integers(0, 3, 10)

    def build(api):
        model = api.Sequential([api.Input((5,)), api.layers.Dense(3, activation="softmax")])
        model.compile(optimizer=api.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy",
                      metrics=[accuracy, mae, scalar, lambda t, p: p[:, 0], lambda t, p: p[:, 1]])
        return model
    theirs, ours, expected, got = side_by_side(build, x, y, batch_size=4, epochs=2)
    assert sorted(got) == sorted(expected)
    assert "lambda_1" in got and got["mae"] == [3.0, 3.0]
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, err_msg=key)
    # (by name: Keras's list repeats a value when two metrics share a base name)
    got = ours.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)
    expected = theirs.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)
    assert got == pytest.approx(expected, rel=1e-5)

    def heads(api):
        i = api.Input((5,))
        h = api.layers.Dense(4, activation="relu")(i)
        model = api.Model(i, [api.layers.Dense(3, activation="softmax", name="cls")(h),
                              api.layers.Dense(1, name="reg")(h)])
        model.compile(optimizer=api.optimizers.SGD(0.05),
                      loss=["sparse_categorical_crossentropy", "mse"],
                      metrics={"cls": [accuracy], "reg": ["mae", scalar]})
        return model
    targets = [y, x[:, 0]]
    theirs, ours, expected, got = side_by_side(heads, x, targets, batch_size=4, epochs=2)
    assert sorted(got) == sorted(expected)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, err_msg=key)


def test_a_hinge_member_is_decided_alone_beside_a_mixup_neighbour():
    from reglab.engine import Member, Population
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(64, 6)).astype("float32"), rng.integers(0, 2, (64, 2))

    def member(alpha):
        return Member([reglab.layers.MixUp(alpha, input_shape=(6,)),
                       reglab.layers.Dense(5, activation="relu"),
                       reglab.layers.Dense(2, activation="tanh")], reglab.optimizers.SGD(0.05),
                      seed=0)
    alone = Population([member(0.0)], loss="hinge")
    alone.fit(x, y.astype("float32"), batch_size=16, epochs=2)
    pair = Population([member(0.0), member(0.4)], loss="hinge")
    pair.fit(x, y.astype("float32"), batch_size=16, epochs=2)
    for key, value in alone.member_weights(0).items():
        assert torch.equal(value, pair.member_weights(0)[key]), key


@pytest.mark.parametrize("loss", ["mae", "huber", "log_cosh", "poisson", "mse"])
def test_a_convolution_s_spatial_output_is_averaged_over_every_element_as_keras(loss):
    rng = np.random.default_rng(2)
    x = rng.random((8, 6, 6, 2)).astype("float32")
    y = rng.random((8, 4, 4, 3)).astype("float32")

    def build(api):
        model = api.Sequential([api.Input((6, 6, 2)),
                                api.layers.Conv2D(3, 3, activation="softplus")])
        model.compile(optimizer=api.optimizers.SGD(0.05), loss=loss)
        return model
    theirs, ours, expected, got = side_by_side(build, x, y, batch_size=4, epochs=2)
    np.testing.assert_allclose(got["loss"], expected["loss"], rtol=1e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_keras_s_loss_aliases_and_loss_named_metrics():
    for alias, name in (("MSE", "MeanSquaredError"), ("MAE", "MeanAbsoluteError"),
                        ("MAPE", "MeanAbsolutePercentageError"), ("KLD", "KLDivergence"),
                        ("MSLE", "MeanSquaredLogarithmicError"), ("bce", "BinaryCrossentropy"),
                        ("BCE", "BinaryCrossentropy")):
        assert type(reglab.losses.resolve(alias)).__name__ == name
    y_true, y_pred = POSITIVE
    targets = np.concatenate([y_true] * 2)
    x = np.random.default_rng(4).normal(size=(len(targets), 5)).astype("float32")
    names = ["mape", "msle", "poisson", "mean_absolute_percentage_error", "kl_divergence",
             "squared_hinge", "hinge"]

    def build(api):
        model = api.Sequential([api.Input((5,)), api.layers.Dense(4, activation="softplus")])
        model.compile(optimizer=api.optimizers.SGD(0.01), loss="mse", metrics=names)
        return model
    theirs, ours, expected, got = side_by_side(build, x, targets, batch_size=12, epochs=2)
    assert sorted(got) == sorted(expected)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, err_msg=key)


def test_the_cosine_similarity_metric_is_keras_s_and_is_maximized():
    # the metric is the loss with its sign turned; EarlyStopping's 'auto' maximizes it
    targets = np.concatenate([REGRESSION[0]] * 4)
    x = np.random.default_rng(5).normal(size=(len(targets), 5)).astype("float32")

    def build(api):
        model = api.Sequential([api.Input((5,)), api.layers.Dense(4)])
        model.compile(optimizer=api.optimizers.SGD(0.05), loss="mse",
                      metrics=["cosine_similarity"])
        return model
    stop = {api: api.callbacks.EarlyStopping("val_cosine_similarity", patience=0)
            for api in (keras, reglab)}
    keras.utils.set_random_seed(2)
    theirs, ours = build(keras), build(reglab)
    ours.set_weights(theirs.get_weights())
    fit = dict(shuffle=False, verbose=0, batch_size=12, epochs=3,
               validation_data=(x[:12], targets[:12]))
    expected = theirs.fit(x, targets, callbacks=[stop[keras]], **fit).history
    got = ours.fit(x, targets, callbacks=[stop[reglab]], **fit).history
    assert sorted(got) == sorted(expected)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, atol=1e-7, err_msg=key)
    assert keras.metrics.CosineSimilarity()._direction == "up"
    assert reglab.monitors.direction("val_cosine_similarity") == "max"


@pytest.mark.parametrize("name", ["cosine_similarity", "huber", "log_cosh"])
def test_a_loss_function_as_a_metric_is_minimized_as_in_keras(name):
    # Keras's MeanMetricWrapper of a loss function has the direction 'down' (the cosine
    # similarity loss is negative: its metric by name is the positive one)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 4)).astype("float32"), rng.normal(size=(16, 3)).astype("float32")
    weights = [(np.arange(12, dtype="float32").reshape(4, 3) * 0.1) % 0.7,
               np.zeros(3, "float32")]
    seen = {}
    for api in (keras, reglab):
        model = api.Sequential([api.Input((4,)), api.layers.Dense(3)])
        model.set_weights(weights)
        model.compile(optimizer=api.optimizers.SGD(0.05), loss="mse",
                      metrics=[getattr(api.losses, name)])
        stop = api.callbacks.EarlyStopping(f"val_{name}", patience=10)
        plateau = api.callbacks.ReduceLROnPlateau(f"val_{name}", patience=0, factor=0.5)
        history = model.fit(x, y, epochs=4, batch_size=16, verbose=0, validation_data=(x, y),
                            callbacks=[stop, plateau]).history
        seen[api.__name__] = (history, stop.best_epoch)
    (theirs, their_best), (ours, our_best) = seen["keras"], seen["reglab"]
    assert our_best == their_best
    assert ours["learning_rate"] == theirs["learning_rate"]  # its float32 variable's, as Keras
    np.testing.assert_allclose(ours[f"val_{name}"], theirs[f"val_{name}"], rtol=1e-5)


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean_with_sample_weight"])
@pytest.mark.parametrize("weight", [2.0, [2.0], [1.0, 2.0, 3.0]])
def test_one_sample_s_loss_takes_its_sample_weights_as_in_keras(reduction, weight):
    # 1-D targets and predictions: one value, multiplied by the weights before the reduction
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=5).astype("float32"), rng.normal(size=5).astype("float32")
    weight = np.asarray(weight, "float32")
    for name in ("CosineSimilarity", "MeanSquaredError", "Huber"):
        ours = getattr(reglab.losses, name)(reduction=reduction)(a, b, sample_weight=weight)
        theirs = getattr(keras.losses, name)(reduction=reduction)(a, b, sample_weight=weight)
        np.testing.assert_allclose(float(ours), float(keras.ops.convert_to_numpy(theirs)),
                                   rtol=1e-6, err_msg=name)


METRIC_CLASSES = ["CosineSimilarity", "Hinge", "SquaredHinge", "CategoricalHinge",
                  "KLDivergence", "Poisson", "MeanAbsolutePercentageError",
                  "MeanSquaredLogarithmicError"]


def test_the_loss_metrics_classes_are_keras_s_compiled_and_by_hand():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(24, 4)).astype("float32"), rng.random((24, 3)).astype("float32")
    weights = np.linspace(0.1, 1, 24).astype("float32")

    def build(api):
        model = api.Sequential([api.Input((4,)), api.layers.Dense(3, activation="softmax")])
        model.compile(optimizer=api.optimizers.SGD(0.05), loss="mse",
                      metrics=[getattr(api.metrics, name)() for name in METRIC_CLASSES])
        return model
    theirs, ours, expected, got = side_by_side(build, x, y, batch_size=8, epochs=2,
                                               validation_data=(x, y))
    assert sorted(got) == sorted(expected)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, err_msg=key)
    for name in METRIC_CLASSES:
        mine, keras_own = getattr(reglab.metrics, name)(), getattr(keras.metrics, name)()
        for metric in (mine, keras_own):
            metric.update_state(y, y[::-1] * 0.9 + 0.05, sample_weight=weights)
            metric.update_state(y[:5], y[:5])
        assert mine.name == keras_own.name
        np.testing.assert_allclose(float(mine.result()), float(keras_own.result()), rtol=1e-6,
                                   err_msg=name)
    with pytest.raises(ConfigError, match=r"CosineSimilarity: only axis=-1"):
        reglab.metrics.CosineSimilarity(axis=0)


def test_loss_objects_and_scalar_functions_as_metrics_validate_in_keras_s_batches():
    # a loss object gives one value per batch, as a function may: Keras averages the batches'
    # values, so fit's validation runs in its batches (8, 8, 4 here), and the objects are
    # logged by their names and minimized
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 4)).astype("float32"), rng.normal(size=(20, 3)).astype("float32")

    def scalar(y_true, y_pred):
        return keras.ops.mean(y_pred)

    stops = {}

    def build(api):
        model = api.Sequential([api.Input((4,)), api.layers.Dense(3)])
        model.compile(optimizer=api.optimizers.SGD(0.05), loss="mse",
                      metrics=[api.losses.Huber(delta=0.5),
                               api.losses.MeanAbsoluteError(name="l1err"), scalar])
        stops[api.__name__] = api.callbacks.EarlyStopping("val_huber_loss", patience=5)
        return model
    keras.utils.set_random_seed(2)
    theirs, ours = build(keras), build(reglab)
    ours.set_weights(theirs.get_weights())
    fit = dict(shuffle=False, verbose=0, batch_size=8, epochs=3, validation_data=(x, y))
    expected = theirs.fit(x, y, callbacks=[stops["keras"]], **fit).history
    got = ours.fit(x, y, callbacks=[stops["reglab"]], **fit).history
    assert sorted(got) == sorted(expected)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, err_msg=key)
    assert stops["reglab"].best_epoch == stops["keras"].best_epoch
    np.testing.assert_allclose(ours.evaluate(x, y, verbose=0), theirs.evaluate(x, y, verbose=0),
                               rtol=1e-5)


@pytest.mark.parametrize("identifier", [
    "mse", "MSE", "mean_squared_error", "mae", "MAPE", "msle", "KLD", "bce", "BCE", "huber",
    "log_cosh", "poisson", "hinge", "categorical_crossentropy", "binary_focal_crossentropy",
    "MeanSquaredError", "CategoricalCrossentropy", None])
def test_get_gives_what_keras_s_get_gives(identifier):
    """keras.losses.get: a function's name or alias gives the function (each sample's loss,
    so get('mse')(y, p) * w weighs samples), a class's name an instance, None None."""
    ours, theirs = reglab.losses.get(identifier), keras.losses.get(identifier)
    if theirs is None:
        assert ours is None
        return
    assert callable(ours) and (type(ours).__name__ == type(theirs).__name__ if
                               isinstance(theirs, keras.losses.Loss) else
                               ours.__name__ == theirs.__name__)
    y_true, y_pred = POSITIVE[0] / 3, POSITIVE[1] / 1.2  # in (0, 1), as binary ones take
    np.testing.assert_allclose(
        np.asarray(ours(y_true, y_pred)),
        keras.ops.convert_to_numpy(theirs(y_true, y_pred)), rtol=2e-6, atol=1e-7)


def test_get_takes_a_callable_as_it_is_and_refuses_unknown_names():
    def mine(y_true, y_pred):
        return y_pred
    assert reglab.losses.get(mine) is mine is keras.losses.get(mine)
    loss = reglab.losses.Huber(delta=2.0)
    assert reglab.losses.get(loss) is loss
    assert type(reglab.losses.get(reglab.losses.Huber)) is reglab.losses.Huber
    made = reglab.losses.get({"class_name": "Huber", "config": {"delta": 2.0}})
    assert type(made) is reglab.losses.Huber and made.get_config()["delta"] == 2.0
    with pytest.raises(ConfigError, match="unknown loss 'msee'.*Did you mean 'mse'"):
        reglab.losses.get("msee")
    with pytest.raises(ValueError):
        keras.losses.get("msee")
