"""A saved model's training state (reglab/models/training_state.py): a loaded model trains on
as the saved one would have (optimizer slots, step count, loss scale, averages, epochs of
the random streams), and a damaged state is a DataError naming the entry."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

import reglab
from reglab import regularizers
from reglab.errors import DataError
from reglab.layers import BatchNormalization, Dense, Dropout, GaussianNoise, Input
from reglab.models import Model, Sequential, load_model
from reglab.optimizers import (
    SGD,
    Adagrad,
    Adam,
    AdamW,
    Lion,
    LossScaleOptimizer,
    Nadam,
    RMSprop,
    schedules,
)

RNG = np.random.default_rng(3)
X = RNG.random((96, 6)).astype("float32")
Y = RNG.integers(0, 3, 96)
MEMBER = "training_state.npz"


def stack(optimizer) -> Sequential:
    model = Sequential([
        Dense(12, activation="relu", input_shape=(6,), kernel_regularizer=regularizers.l2(0.01)),
        Dropout(0.3), BatchNormalization(), GaussianNoise(0.1),
        Dense(3, activation="softmax")], seed=4)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


OPTIMIZERS = {
    "adam_scheduled": lambda: Adam(schedules.ExponentialDecay(0.02, 3, 0.8)),
    "adam_amsgrad_clipped": lambda: Adam(0.01, amsgrad=True, clipnorm=0.5),
    "sgd_nesterov": lambda: SGD(0.05, momentum=0.9, nesterov=True),
    "rmsprop_centered": lambda: RMSprop(0.01, momentum=0.5, centered=True),
    "adagrad": lambda: Adagrad(0.05),
    "nadam": lambda: Nadam(0.01),
    "lion": lambda: Lion(0.001),
    "adamw_ema": lambda: AdamW(0.01, use_ema=True, ema_overwrite_frequency=5),
    "sgd_swa": lambda: SGD(0.05, momentum=0.9, swa_start=1),
    "loss_scaled": lambda: LossScaleOptimizer(Adam(0.01), initial_scale=2.0**4,
                                              dynamic_growth_steps=3),
}


def same_weights(a, b) -> None:
    for got, want in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_save_load_and_fit_on_is_fitting_on_without_saving_bit_for_bit(name, tmp_path):
    """The same two calls of fit, with the model saved and loaded between them (the first
    fit's end counts: an averaging optimizer puts its average into the weights there)."""
    make = OPTIMIZERS[name]
    whole = stack(make())
    whole.fit(X, Y, epochs=2, batch_size=16, verbose=0)
    whole.fit(X, Y, epochs=1, batch_size=16, verbose=0)
    first = stack(make())
    first.fit(X, Y, epochs=2, batch_size=16, verbose=0)
    first.save(tmp_path / "model.keras")
    loaded = load_model(tmp_path / "model.keras")
    assert int(loaded.optimizer.iterations) == int(first.optimizer.iterations) == 12
    history = loaded.fit(X, Y, epochs=1, batch_size=16, verbose=0)
    same_weights(loaded, whole)
    assert history.history["loss"][-1] == whole.history.history["loss"][-1]


def test_a_checkpoint_written_mid_fit_resumes_as_the_fit_went_on(tmp_path):
    """ModelCheckpoint's file of epoch 2 of 3, loaded and fit one epoch: the whole fit's
    weights (the state was taken after the epoch's count moved on: the next epoch's
    dropout and shuffling are the uninterrupted fit's)."""
    whole = stack(Adam(0.01))
    whole.fit(X, Y, epochs=3, batch_size=16, verbose=0, callbacks=[
        reglab.callbacks.ModelCheckpoint(str(tmp_path / "epoch{epoch}.keras"))])
    resumed = load_model(tmp_path / "epoch2.keras")
    assert int(resumed.optimizer.iterations) == 12
    resumed.fit(X, Y, epochs=1, batch_size=16, verbose=0)
    same_weights(resumed, whole)


def test_without_the_state_a_loaded_model_starts_its_optimizer_afresh(tmp_path):
    """What the state changes: the same file with the member dropped trains otherwise."""
    model = stack(Adam(0.01))
    model.fit(X, Y, epochs=2, batch_size=16, verbose=0)
    model.save(tmp_path / "model.keras")
    with zipfile.ZipFile(tmp_path / "model.keras") as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    assert sorted(members) == ["config.json", "metadata.json", "model.weights.h5",
                               "reglab.json", MEMBER]
    with zipfile.ZipFile(tmp_path / "stateless.keras", "w") as archive:
        for name in sorted(set(members) - {MEMBER}):
            archive.writestr(name, members[name])
    # the slots without the epochs trained (reglab's streams) are a damaged file
    with pytest.raises(DataError, match=r"stateless\.keras: expected training_state\.npz "
                                        r"beside the optimizer's variables of a model that "
                                        r"has trained"):
        load_model(tmp_path / "stateless.keras")
    np.testing.assert_array_equal(  # its weights alone
        load_model(tmp_path / "stateless.keras", compile=False).get_weights()[0],
        model.get_weights()[0])
    from reglab.models.saving import weight_names

    buffer = io.BytesIO()  # as reglab saved files before, without a training state
    np.savez(buffer, **dict(zip(weight_names(model), model.get_weights())))
    with zipfile.ZipFile(tmp_path / "before.keras", "w") as archive:
        archive.writestr("config.json", members["reglab.json"])
        archive.writestr("weights.npz", buffer.getvalue())
    fresh, kept = load_model(tmp_path / "before.keras"), load_model(tmp_path / "model.keras")
    assert int(fresh.optimizer.iterations) == 0
    fresh.fit(X, Y, epochs=1, batch_size=16, verbose=0)
    kept.fit(X, Y, epochs=1, batch_size=16, verbose=0)
    model.fit(X, Y, epochs=1, batch_size=16, verbose=0)
    same_weights(kept, model)
    assert any((a != b).any() for a, b in zip(fresh.get_weights(), model.get_weights()))


def test_the_state_is_held_once_keras_s_variables_and_reglab_s_own_beside_them(tmp_path):
    """The slots and the step count are Keras's optimizer variables in model.weights.h5 (in
    Keras's order: iterations, learning rate, then each weight's slots); training_state.npz
    holds what Keras has no variable for (the epochs trained), no pickles."""
    model = stack(Adam(0.01))
    model.fit(X, Y, epochs=1, batch_size=32, verbose=0)
    model.save(tmp_path / "model.keras")
    with zipfile.ZipFile(tmp_path / "model.keras") as archive, \
            np.load(io.BytesIO(archive.read(MEMBER)), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
        variables = keras_state(archive.read("model.weights.h5"))
    assert arrays.keys() == {"scalars:epochs"} and int(arrays["scalars:epochs"]) == 1
    assert int(variables[0]) == 3 and variables[1] == np.float32(0.01)
    kernel_m, kernel_v = variables[2], variables[3]
    assert kernel_m.shape == kernel_v.shape == (6, 12) and np.abs(kernel_m).max() > 0
    assert (kernel_v >= 0).all()
    # the kernel, the bias, BN's gamma and beta (no slots for the moving statistics), the head
    assert len(variables) == 2 + 2 * 6


def test_a_functional_model_with_two_inputs_trains_on_after_loading(tmp_path):
    def make():
        a, b = Input((4,), name="a"), Input((2,), name="b")
        joined = reglab.layers.Concatenate()([Dense(5, activation="relu")(a), b])
        model = Model([a, b], Dense(3, activation="softmax")(Dropout(0.2)(joined)), seed=2)
        model.compile(optimizer=RMSprop(0.01), loss="sparse_categorical_crossentropy")
        return model

    inputs = [X[:, :4], X[:, 4:]]
    whole = make()
    whole.fit(inputs, Y, epochs=2, batch_size=32, verbose=0)  # one fit: the same as two here
    first = make()
    first.fit(inputs, Y, epochs=1, batch_size=32, verbose=0)
    first.save(tmp_path / "model.keras")
    loaded = load_model(tmp_path / "model.keras")
    loaded.fit(inputs, Y, epochs=1, batch_size=32, verbose=0)
    same_weights(loaded, whole)


# -- damaged states ----------------------------------------------------------------------
@pytest.fixture
def saved(tmp_path):
    model = stack(Adam(0.01))
    model.fit(X, Y, epochs=1, batch_size=32, verbose=0)
    model.save(tmp_path / "saved.keras")
    return tmp_path / "saved.keras"


def keras_state(raw: bytes) -> list[np.ndarray]:
    """The optimizer's variables in a model.weights.h5 file's bytes, in order."""
    import h5py

    with h5py.File(io.BytesIO(raw), "r") as file:
        group = file["optimizer/vars"]
        return [np.asarray(group[str(i)]) for i in range(len(group))]


def rewrite_keras_state(path, edit) -> None:
    """Rewrites the optimizer's variables in the archive's model.weights.h5:
    ``edit(list of arrays) -> list of arrays``."""
    import h5py

    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    new = edit(keras_state(members["model.weights.h5"]))
    buffer = io.BytesIO(members["model.weights.h5"])
    with h5py.File(buffer, "r+") as file:
        group = file["optimizer/vars"]
        for name in list(group):
            del group[name]
        for i, value in enumerate(new):
            group.create_dataset(str(i), data=value)
    members["model.weights.h5"] = buffer.getvalue()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def rewrite_state(path, edit) -> None:
    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    with np.load(io.BytesIO(members[MEMBER]), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    new = edit(arrays)
    if isinstance(new, dict):
        buffer = io.BytesIO()
        np.savez(buffer, **new)
        new = buffer.getvalue()
    members[MEMBER] = new
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


KERNEL_M = "optimizer/m:0000_dense.kernel"
H5 = r"optimizer/vars"


def replace(index, value):
    return lambda v: [*v[:index], value, *v[index + 1:]]


@pytest.mark.parametrize("edit, match", [
    (lambda a: {**a, "optimizer/m:0099_nowhere.kernel": np.zeros(3, "float32")},
     r"expected the \d+ entries of the model's Adam .*unexpected: "
     r"optimizer/m:0099_nowhere\.kernel\)"),
    (lambda a: {**a, "momentum:0000_dense.kernel": np.zeros((6, 12), "float32")},
     r"unexpected: momentum:0000_dense\.kernel"),
    (lambda a: {**a, "optimizer/m:0004_batch_normalization.moving_mean": np.zeros(12)},
     r"unexpected: optimizer/m:0004_batch_normalization\.moving_mean"),  # takes no gradient
    # an entry Keras's variables hold, given twice
    (lambda a: {**a, KERNEL_M: np.zeros((6, 12), "float32")}, rf"unexpected: {KERNEL_M}"),
    (lambda a: {k: v for k, v in a.items() if k != "scalars:epochs"},
     r"missing: scalars:epochs"),
    (lambda a: {}, r"Got 0 \(missing: "),
    (lambda a: {**a, "scalars:epochs": np.array(np.nan)}, r"'scalars:epochs' to be a count"),
    (lambda a: {**a, "scalars:epochs": np.array([object()], dtype=object)},
     r"no pickled objects"),
    (lambda a: b"not an npz", r"expected arrays written by np\.savez"),
])
def test_a_damaged_state_is_a_data_error_naming_the_entry(saved, edit, match):
    rewrite_state(saved, edit)
    with pytest.raises(DataError, match=rf"saved\.keras: {MEMBER}: .*{match}"):
        load_model(saved)


@pytest.mark.parametrize("edit, match", [
    (replace(2, np.zeros((12, 6), "float32")),
     rf"{H5}/2: expected '{KERNEL_M}' to be a float array of shape \(6, 12\)\. Got float32 "
     r"of shape \(12, 6\)"),
    (replace(2, np.zeros((6, 12), "int64")),
     rf"{H5}/2: .*to be a float array of shape \(6, 12\)\. Got int64"),
    (replace(2, np.full((6, 12), np.inf, "float32")),
     rf"{H5}/2: expected '{KERNEL_M}' to be finite\. Got 72 values that are not"),
    (lambda v: v[:-1], r"expected the 14 optimizer variables of the model's Adam .*Got 13"),
    (lambda v: [], r"expected the 14 optimizer variables .*Got 0"),
    (replace(0, np.array(-3)),
     rf"{H5}/0: expected 'scalars:steps' to be a count \(an integer from 0 to 2\*\*63 - 1\)"),
    (replace(0, np.array(2.5)), rf"{H5}/0: expected 'scalars:steps' to be a count"),
    (replace(0, np.array(np.inf)), rf"{H5}/0: expected 'scalars:steps' to be a count"),
    (replace(0, np.array(2**64 - 1, dtype=np.uint64)),
     rf"{H5}/0: expected 'scalars:steps' to be a count"),
])
def test_damaged_optimizer_variables_are_a_data_error_naming_the_variable(saved, edit, match):
    rewrite_keras_state(saved, edit)
    with pytest.raises(DataError, match=rf"saved\.keras: model\.weights\.h5: (.*: )?{match}"):
        load_model(saved)


@pytest.mark.parametrize("scale", [1e300, 1e-300, 0.0, np.nan])
def test_a_loss_scale_beyond_float32_is_refused(scale, tmp_path):
    model = stack(LossScaleOptimizer(Adam(0.01)))
    model.fit(X, Y, epochs=1, batch_size=32, verbose=0)
    model.save(tmp_path / "scaled.keras")
    # Keras's order: the LossScaleOptimizer's iterations, rate, step counter, then its scale
    rewrite_keras_state(tmp_path / "scaled.keras", replace(3, np.array(scale)))
    with pytest.raises(DataError, match=r"optimizer/vars/3: expected 'scalars:loss_scale' to "
                                        r"be a scale within float32's normal range"):
        load_model(tmp_path / "scaled.keras")


def test_big_endian_slots_and_colons_in_layer_names_load(tmp_path):
    """A file written on a big-endian machine, and a layer named with ':' (Keras allows it)."""
    model = Sequential([Dense(5, activation="relu", input_shape=(6,), name="block:1"),
                        Dense(3, activation="softmax", name="head:out")], seed=1)
    model.compile(optimizer=Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(X, Y, epochs=1, batch_size=32, verbose=0)
    model.save(tmp_path / "named.keras")
    rewrite_keras_state(tmp_path / "named.keras", lambda variables: [
        v.astype(v.dtype.newbyteorder(">")) if v.dtype.kind in "fi" else v
        for v in variables])
    loaded = load_model(tmp_path / "named.keras")
    model.fit(X, Y, epochs=1, batch_size=32, verbose=0)
    loaded.fit(X, Y, epochs=1, batch_size=32, verbose=0)
    same_weights(loaded, model)


def test_a_state_for_a_model_that_was_never_compiled_is_refused(tmp_path):
    model = Sequential([Dense(2, input_shape=(3,))], seed=0)
    model.save(tmp_path / "plain.keras")
    with zipfile.ZipFile(tmp_path / "plain.keras") as archive:
        assert MEMBER not in archive.namelist()  # nothing to keep
    buffer = io.BytesIO()
    np.savez(buffer, **{"scalars:steps": np.array(4)})
    with zipfile.ZipFile(tmp_path / "plain.keras", "a") as archive:
        archive.writestr(MEMBER, buffer.getvalue())
    with pytest.raises(DataError, match=r"holds a training state but no compile settings"):
        load_model(tmp_path / "plain.keras")
