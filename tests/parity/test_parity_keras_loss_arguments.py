"""Keras 3's common loss arguments side by side with Keras itself (torch backend): every
``reduction`` called alone and trained on (with and without sample weights), ``name``,
``get_config``, a ``Loss`` subclass with ``call``, ``LossFunctionWrapper``'s keyword
arguments, and a Keras file whose loss has a reduction."""

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

RNG = np.random.default_rng(5)
LABELS = RNG.integers(0, 3, 8)
ONE_HOT = np.eye(3, dtype="float32")[LABELS]
PROBABILITIES = RNG.dirichlet(np.ones(3), 8).astype("float32")
REGRESSION = (RNG.normal(size=(8, 2)).astype("float32"), RNG.normal(size=(8, 2)).astype("float32"))
IMAGES = (RNG.normal(size=(8, 4, 4, 2)).astype("float32"),
          RNG.normal(size=(8, 4, 4, 2)).astype("float32"))
WEIGHTS = RNG.uniform(0.1, 2.0, 8).astype("float32")
REDUCTIONS = ["sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None]
CASES = [
    ("MeanSquaredError", {}, REGRESSION), ("Huber", {"delta": 0.5}, REGRESSION),
    ("CategoricalCrossentropy", {}, (ONE_HOT, PROBABILITIES)),
    ("SparseCategoricalCrossentropy", {}, (LABELS, PROBABILITIES)),
    ("BinaryCrossentropy", {"from_logits": True},
     ((REGRESSION[0] > 0).astype("float32"), REGRESSION[1])),
    ("KLDivergence", {}, (ONE_HOT * 0.8 + 0.05, PROBABILITIES)),
]


def _numpy(value):
    return keras.ops.convert_to_numpy(value) if not hasattr(value, "detach") else \
        value.detach().numpy()


@pytest.mark.parametrize("reduction", REDUCTIONS, ids=str)
@pytest.mark.parametrize(("name", "arguments", "arrays"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_each_reduction_called_alone_gives_keras_s_values(reduction, name, arguments, arrays,
                                                          weighted):
    weights = WEIGHTS if weighted else None
    ours = getattr(reglab.losses, name)(reduction=reduction, **arguments)
    theirs = getattr(keras.losses, name)(reduction=reduction, **arguments)
    got = _numpy(ours(*arrays, sample_weight=weights))
    expected = _numpy(theirs(*arrays, sample_weight=weights))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("reduction", REDUCTIONS, ids=str)
def test_a_spatial_output_is_reduced_over_every_element_as_keras(reduction):
    ours = reglab.losses.MeanSquaredError(reduction=reduction)(*IMAGES)
    theirs = keras.losses.MeanSquaredError(reduction=reduction)(*IMAGES)
    assert tuple(ours.shape) == tuple(theirs.shape)
    np.testing.assert_allclose(_numpy(ours), _numpy(theirs), rtol=2e-6)


def _side_by_side(loss, targets, weights, **extra):
    """Keras's and reglab's histories, evaluations and weights after training the same
    model on ``loss`` (built by each API) unshuffled, with a validation set and penalty."""
    x = np.random.default_rng(6).normal(size=(40, 4)).astype("float32")
    results = []
    for api in (keras, reglab):
        keras.utils.set_random_seed(3)
        model = api.Sequential([
            api.Input((4,)),
            api.layers.Dense(5, activation="relu",
                             kernel_regularizer=api.regularizers.l2(0.01)),
            api.layers.Dense(3, activation="softmax")])
        if api is reglab:
            model.set_weights(results[0][2])
        else:
            start = model.get_weights()
        model.compile(optimizer=api.optimizers.SGD(0.05), loss=loss(api), metrics=["accuracy"])
        # a validation set of three batches (16, 16, 5), weighted as the training set: a
        # 'sum' or weighted mean is averaged over Keras's batches, not the whole set's
        validation = (x[:37], targets[:37]) if weights is None else \
            (x[:37], targets[:37], weights[:37])
        history = model.fit(x, targets, sample_weight=weights, batch_size=16, epochs=3,
                            shuffle=False, verbose=0, validation_data=validation,
                            **extra).history
        evaluated = model.evaluate(x, targets, sample_weight=weights, batch_size=7, verbose=0)
        results.append((history, evaluated, start if api is keras else None,
                        model.get_weights()))
    (theirs, their_eval, _, their_weights), (ours, our_eval, _, our_weights) = results
    for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
        np.testing.assert_allclose(ours[key], theirs[key], rtol=2e-5, err_msg=key)
    np.testing.assert_allclose(our_eval, their_eval, rtol=2e-5)
    for a, b in zip(our_weights, their_weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


TRAINED = [("SparseCategoricalCrossentropy", LABELS), ("CategoricalCrossentropy", ONE_HOT),
           ("MeanSquaredError", ONE_HOT)]


@pytest.mark.parametrize("reduction", ["sum", "mean", "mean_with_sample_weight"])
@pytest.mark.parametrize(("name", "labels"), TRAINED, ids=[t[0] for t in TRAINED])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_training_on_a_reduction_gives_keras_s_weights_and_logs(reduction, name, labels,
                                                                weighted):
    targets = np.concatenate([labels] * 5)
    weights = np.concatenate([WEIGHTS] * 5) if weighted else None
    _side_by_side(lambda api: getattr(api.losses, name)(reduction=reduction), targets, weights)


def test_a_loss_subclass_with_call_trains_as_keras_s():
    def loss(api):
        class Scaled(api.losses.Loss):
            def __init__(self, factor, **kwargs):
                super().__init__(**kwargs)
                self.factor = factor

            def call(self, y_true, y_pred):
                return self.factor * api.ops.mean(api.ops.square(y_true - y_pred), axis=-1)
        return Scaled(3.0, name="scaled", reduction="sum")
    _side_by_side(loss, np.concatenate([ONE_HOT] * 5), np.concatenate([WEIGHTS] * 5))


def test_a_wrapped_function_gets_its_keyword_arguments_as_in_keras():
    def loss(api):
        def powered(y_true, y_pred, power):
            return api.ops.mean(api.ops.abs(y_true - y_pred) ** power, axis=-1)
        # Keras keeps the class in keras.src (its losses are made of it); reglab exports it
        wrapper = reglab.losses.LossFunctionWrapper if api is reglab else \
            __import__("keras.src.losses.losses", fromlist=["x"]).LossFunctionWrapper
        return wrapper(powered, reduction="sum", power=3.0)
    _side_by_side(loss, np.concatenate([ONE_HOT] * 5), None)


@pytest.mark.parametrize(("name", "arguments", "arrays"), CASES, ids=[c[0] for c in CASES])
def test_name_and_reduction_are_in_the_config_as_keras_s(name, arguments, arrays):
    ours = getattr(reglab.losses, name)(name="mine", reduction="sum", **arguments)
    theirs = getattr(keras.losses, name)(name="mine", reduction="sum", **arguments)
    config = ours.get_config()
    expected = theirs.get_config()
    assert config["name"] == expected["name"] == "mine"
    assert config["reduction"] == expected["reduction"] == "sum"
    for key in set(config) & set(expected):
        assert config[key] == expected[key], key
    again = type(ours).from_config(config)
    assert again.get_config() == config
    np.testing.assert_allclose(_numpy(again(*arrays)), _numpy(theirs(*arrays)), rtol=2e-6)
    # the default name is Keras's
    assert getattr(reglab.losses, name)().name == getattr(keras.losses, name)().name


def test_a_keras_file_whose_loss_has_a_reduction_loads_with_it(tmp_path):
    theirs = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    theirs.compile(optimizer="sgd", loss=keras.losses.MeanSquaredError(reduction="sum",
                                                                       name="total"))
    theirs.save(tmp_path / "model.keras")
    ours = reglab.models.load_model(tmp_path / "model.keras")
    assert (ours.loss.name, ours.loss.reduction) == ("total", "sum")
    x, y = REGRESSION[0].repeat(2, axis=1), np.tile(REGRESSION[1], (1, 2))[:, :3]
    np.testing.assert_allclose(ours.evaluate(x, y, verbose=0),
                               theirs.evaluate(x, y, verbose=0), rtol=2e-6)


@pytest.mark.parametrize("reduction", ["none", None])
def test_a_model_refuses_a_loss_without_reduction_naming_compile(reduction):
    model = reglab.Sequential([reglab.Input((4,)), reglab.layers.Dense(3)])
    with pytest.raises(ConfigError, match="compile: 'loss'.*one value per sample"):
        model.compile(optimizer="sgd", loss=reglab.losses.MeanSquaredError(reduction=reduction))


@pytest.mark.parametrize(("argument", "value"), [
    ("reduction", "avg"), ("reduction", 3), ("name", ""), ("name", 5), ("dtype", "float16")])
def test_bad_loss_arguments_are_refused_naming_the_class_and_argument(argument, value):
    with pytest.raises(ConfigError, match=f"MeanSquaredError: '{argument}'"):
        reglab.losses.MeanSquaredError(**{argument: value})
    with pytest.raises(ValueError):  # a ConfigError is a ValueError, as Keras raises
        reglab.losses.Huber(**{argument: value})


POSITIONAL = ["MeanSquaredError", "MeanAbsoluteError", "MeanAbsolutePercentageError",
              "MeanSquaredLogarithmicError", "LogCosh", "Poisson", "Hinge", "SquaredHinge",
              "CategoricalHinge", "KLDivergence"]


@pytest.mark.parametrize("name", POSITIONAL)
def test_the_first_positional_argument_is_the_reduction_as_in_keras(name):
    y_true, y_pred = np.abs(REGRESSION[0]) + 0.1, np.abs(REGRESSION[1]) + 0.1
    ours, theirs = getattr(reglab.losses, name)("sum"), getattr(keras.losses, name)("sum")
    assert ours.reduction == theirs.reduction == "sum"
    assert ours.name == theirs.name
    np.testing.assert_allclose(_numpy(ours(y_true, y_pred)), _numpy(theirs(y_true, y_pred)),
                               rtol=2e-6)
    huber = reglab.losses.Huber(0.5, "sum", "h")
    assert (huber.delta, huber.reduction, huber.name) == (0.5, "sum", "h")
    sparse = reglab.losses.SparseCategoricalCrossentropy(True, None, "sum")
    assert (sparse.from_logits, sparse.reduction) == (True, "sum")


def test_a_subclass_of_a_built_in_loss_with_call_trains_on_its_call_as_keras():
    def loss(api):
        class Doubled(api.losses.MeanSquaredError):
            def call(self, y_true, y_pred):
                return 2.0 * api.ops.mean(api.ops.square(y_true - y_pred), axis=-1)
        return Doubled()
    _side_by_side(loss, np.concatenate([ONE_HOT] * 5), None)


def test_a_batch_whose_weights_are_all_zero_trains_on_under_mean_with_sample_weight():
    weights = np.concatenate([np.zeros(16, "float32"), np.ones(24, "float32")])
    _side_by_side(lambda api: api.losses.CategoricalCrossentropy(
        reduction="mean_with_sample_weight"), np.concatenate([ONE_HOT] * 5), weights)


def test_a_model_whose_loss_is_a_wrapped_function_is_refused_at_save(tmp_path):
    model = reglab.Sequential([reglab.Input((4,)), reglab.layers.Dense(3)])
    model.compile(optimizer="sgd", loss=reglab.losses.LossFunctionWrapper(
        lambda y_true, y_pred: (y_true - y_pred) ** 2))
    with pytest.raises(ConfigError, match="save_model: 'loss' must be a built-in loss"):
        model.save(tmp_path / "m.keras")
    assert not (tmp_path / "m.keras").exists()
