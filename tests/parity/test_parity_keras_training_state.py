"""The optimizer's state between Keras 3 and reglab: Keras's ``.keras`` file read by reglab's
``load_model`` and reglab's ``.weights.h5`` read by Keras carry every optimizer variable in
Keras's order (the same numbers on both sides after loading), and both models train on
alike from there (Keras on its torch backend)."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import reglab  # noqa: E402
from reglab.models import training_state  # noqa: E402

keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":  # pragma: no cover - another backend chosen outside
    pytest.skip("these comparisons run Keras on its torch backend", allow_module_level=True)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

RNG = np.random.default_rng(5)
X = RNG.normal(size=(64, 5)).astype("float32")
Y = (X[:, 0] + X[:, 1] > 0).astype("int64") + (X[:, 2] > 1)


def optimizers(api):
    o = api.optimizers
    return {
        "adam_scheduled": lambda: o.Adam(o.schedules.ExponentialDecay(0.02, 3, 0.8)),
        "adam_amsgrad": lambda: o.Adam(0.01, amsgrad=True),
        "sgd": lambda: o.SGD(0.05),
        "sgd_nesterov": lambda: o.SGD(0.05, momentum=0.9, nesterov=True),
        "rmsprop": lambda: o.RMSprop(0.01),
        "rmsprop_centered": lambda: o.RMSprop(0.01, momentum=0.5, centered=True),
        "adagrad": lambda: o.Adagrad(0.05),
        "adadelta": lambda: o.Adadelta(1.0),
        "adamax": lambda: o.Adamax(0.01),
        "nadam": lambda: o.Nadam(0.01),
        "lion": lambda: o.Lion(0.001),
        "ftrl": lambda: o.Ftrl(0.05, l1_regularization_strength=0.01),
        "lamb": lambda: o.Lamb(0.01),
        "adafactor": lambda: o.Adafactor(0.05),
        # Keras leaves a vector's placeholders out of its variables inside a loss scaler
        "adafactor_loss_scaled": lambda: o.LossScaleOptimizer(o.Adafactor(0.05),
                                                              initial_scale=2.0**4),
        "adamw_ema": lambda: o.AdamW(0.01, use_ema=True),
        "loss_scaled": lambda: o.LossScaleOptimizer(o.Adam(0.01), initial_scale=2.0**4,
                                                    dynamic_growth_steps=3),
    }


NAMES = sorted(optimizers(keras))


def model(api, name):
    built = api.Sequential([
        api.Input((5,)),
        api.layers.Dense(8, activation="relu", kernel_regularizer=api.regularizers.L2(0.01)),
        api.layers.BatchNormalization(),
        api.layers.Dense(3, activation="softmax"),
    ])
    built.compile(optimizer=optimizers(api)[name](), loss="sparse_categorical_crossentropy")
    return built


def fit(m, epochs=1):
    m.fit(X, Y, epochs=epochs, batch_size=16, shuffle=False, verbose=0)


def assert_same_variables(ours, theirs) -> None:
    """reglab's state in Keras's order against Keras's own optimizer variables."""
    mine = training_state.keras_variables(ours)
    keras_values = [np.asarray(v.numpy()) for v in theirs.optimizer.variables]
    assert len(mine) == len(keras_values)
    for i, (got, want) in enumerate(zip(mine, keras_values)):
        assert got.shape == want.shape, i
        # Nadam's product: Keras multiplies in float32 step by step, reglab from the step
        np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=f"variable {i}")


def assert_close_weights(ours, theirs) -> None:
    for got, want in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("name", NAMES)
def test_a_keras_file_brings_its_optimizer_state_and_both_train_on_alike(name, tmp_path):
    keras.utils.set_random_seed(0)
    theirs = model(keras, name)
    fit(theirs, epochs=2)
    theirs.save(tmp_path / "model.keras")
    ours = reglab.models.load_model(tmp_path / "model.keras")
    again = keras.models.load_model(tmp_path / "model.keras")
    assert int(ours.optimizer.iterations) == int(again.optimizer.iterations) == 8
    assert_same_variables(ours, again)
    fit(ours)
    fit(again)
    assert_close_weights(ours, again)


def test_without_the_state_the_next_epoch_would_differ(tmp_path):
    """What the comparisons above can see: Adam's moments started afresh move the weights
    by far more than their tolerance."""
    keras.utils.set_random_seed(0)
    theirs = model(keras, "adam_amsgrad")
    fit(theirs, epochs=2)
    theirs.save(tmp_path / "model.keras")
    fresh = reglab.models.load_model(tmp_path / "model.keras")
    fresh.compile(optimizer=reglab.optimizers.Adam(0.01, amsgrad=True),
                  loss="sparse_categorical_crossentropy")  # another optimizer: a fresh one
    assert int(fresh.optimizer.iterations) == 0
    fit(fresh)
    fit(theirs)
    with pytest.raises(AssertionError):
        assert_close_weights(fresh, theirs)


@pytest.mark.parametrize("name", NAMES)
def test_reglab_weights_files_bring_the_optimizer_state_to_keras(name, tmp_path):
    ours = model(reglab, name)
    fit(ours, epochs=2)
    ours.save_weights(tmp_path / "ours.weights.h5")
    theirs = model(keras, name)
    theirs.optimizer.build(theirs.trainable_variables)  # Keras reads into a built optimizer
    theirs.load_weights(tmp_path / "ours.weights.h5")
    assert int(theirs.optimizer.iterations) == 8
    assert_same_variables(ours, theirs)
    fit(ours)
    fit(theirs)
    assert_close_weights(ours, theirs)


def test_a_trained_reglab_model_reads_the_state_of_a_weights_file_as_keras_does(tmp_path):
    keras.utils.set_random_seed(0)
    theirs = model(keras, "rmsprop_centered")
    fit(theirs, epochs=2)
    theirs.optimizer.learning_rate = 0.0005  # as a callback would: the file holds it
    theirs.save_weights(tmp_path / "theirs.weights.h5")
    ours = model(reglab, "rmsprop_centered")
    fit(ours)  # it has stepped: its optimizer is built, as Keras's would be
    ours.load_weights(tmp_path / "theirs.weights.h5")
    assert_same_variables(ours, theirs)
    assert ours.optimizer.learning_rate == pytest.approx(0.0005)
    fit(ours)
    fit(theirs)
    assert_close_weights(ours, theirs)
    for other_name, match in (
            ("sgd", r"the optimizer's state has 20 variables where the model's SGD has 2"),
            ("adam_amsgrad", r"optimizer/vars/3 should be a number array of shape \(5, 8\)\. "
                             r"Got float32 of shape \(8,\)")):
        other = model(reglab, other_name)  # another optimizer's variables do not fit
        fit(other)
        before = training_state.keras_variables(other)
        with pytest.warns(UserWarning, match=match + r".*\(20 variables\) was skipped"):
            other.load_weights(tmp_path / "theirs.weights.h5")
        for got, want in zip(training_state.keras_variables(other), before, strict=True):
            np.testing.assert_array_equal(got, want)


def test_a_compiled_keras_file_without_optimizer_variables_says_so(tmp_path):
    import zipfile

    import h5py

    keras.utils.set_random_seed(0)
    theirs = model(keras, "adam_amsgrad")
    fit(theirs)
    theirs.save(tmp_path / "model.keras")
    with zipfile.ZipFile(tmp_path / "model.keras") as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    (tmp_path / "w.h5").write_bytes(members["model.weights.h5"])
    with h5py.File(tmp_path / "w.h5", "a") as file:
        del file["optimizer"]
    members["model.weights.h5"] = (tmp_path / "w.h5").read_bytes()
    with zipfile.ZipFile(tmp_path / "bare.keras", "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.warns(UserWarning, match=r"load_model: .*bare\.keras holds no optimizer state"):
        ours = reglab.models.load_model(tmp_path / "bare.keras")
    assert int(ours.optimizer.iterations) == 0
