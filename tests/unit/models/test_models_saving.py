"""reglab.models.saving: one zip file (config.json + weights.npz), round trips, errors."""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import pytest
import torch

import reglab
from reglab import constraints, regularizers
from reglab.errors import ConfigError, DataError
from reglab.layers import (
    Activation,
    BatchNormalization,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GaussianDropout,
    GaussianNoise,
    Input,
    MaxPooling2D,
    RandomFlip,
    RandomRotation,
    RandomTranslation,
    RandomZoom,
    SpatialDropout2D,
)
from reglab.models import Sequential, load_model
from reglab.models.saving import save_model
from reglab.optimizers import SGD, Adam

RNG = np.random.default_rng(7)
X = RNG.random((32, 6)).astype("float32")
Y = RNG.integers(0, 3, 32)
IMAGES = RNG.random((16, 8, 8, 1)).astype("float32")


def dense_model() -> Sequential:
    model = Sequential([
        Dense(8, activation="relu", input_shape=(6,), kernel_initializer="he_normal",
              kernel_regularizer=regularizers.l1(0.01), bias_regularizer=regularizers.l2(0.02),
              activity_regularizer=regularizers.L1L2(l1=0.001, l2=0.002),
              kernel_constraint=constraints.MaxNorm(1.5)),
        Dropout(0.25),
        BatchNormalization(momentum=0.9, gamma_regularizer=regularizers.l2(0.001),
                           beta_constraint=constraints.NonNeg()),
        Dense(3, activation="softmax", kernel_regularizer=regularizers.ProximalL1(0.001, 0.01),
              bias_initializer="ones", name="head"),
    ], seed=11, name="mlp")
    model.compile(optimizer=Adam(learning_rate=0.01, beta_2=0.99, amsgrad=True),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(X, Y, epochs=2, batch_size=8, verbose=0)
    return model


def conv_model() -> Sequential:
    model = Sequential([
        Input(shape=(8, 8, 1)),
        Conv2D(4, 3, strides=(1, 1), padding="same", activation="relu",
               kernel_regularizer=regularizers.l2(0.001), bias_constraint=constraints.UnitNorm()),
        MaxPooling2D(pool_size=(2, 2)),
        Flatten(),
        Dense(3, activation="softmax"),
    ], seed=5)
    model.compile(optimizer=SGD(learning_rate=0.05, momentum=0.9, nesterov=True),
                  loss=reglab.losses.CategoricalCrossentropy(label_smoothing=0.1))
    model.fit(IMAGES, np.eye(3, dtype="float32")[RNG.integers(0, 3, 16)], epochs=1,
              batch_size=8, verbose=0)
    return model


def assert_same_model(original: Sequential, loaded: Sequential, x) -> None:
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), original.predict(x, verbose=0))
    for got, want in zip(loaded.get_weights(), original.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == want.dtype
    assert loaded.get_config() == original.get_config()
    for got, want in zip(loaded.layers, original.layers, strict=True):
        assert type(got) is type(want)
        assert got.structure() == want.structure()
        assert got.values() == want.values()
        for name, value in vars(want).items():
            if name.endswith(("_regularizer", "_initializer")) or name == "activation":
                assert getattr(got, name) == value, name
            elif name.endswith("_constraint"):
                assert repr(getattr(got, name)) == repr(value), name


def test_dense_dropout_batchnorm_round_trip_restores_everything(tmp_path):
    model = dense_model()
    model.optimizer.learning_rate = 0.004  # as a callback (ReduceLROnPlateau) would
    moving_mean = model.layers[2].get_weights()[2]
    assert np.abs(moving_mean).max() > 0  # fit moved the statistics away from their init
    path = tmp_path / "mlp.keras"
    model.save(path)
    loaded = load_model(path)

    assert_same_model(model, loaded, X)
    np.testing.assert_array_equal(loaded.layers[2].get_weights()[2], moving_mean)
    assert (loaded.name, loaded.seed) == ("mlp", 11)
    assert [layer.name for layer in loaded.layers] == ["dense", "dropout",
                                                       "batch_normalization", "head"]
    first, last = loaded.layers[0], loaded.layers[3]
    assert first.kernel_regularizer == regularizers.L1(0.01)
    assert first.bias_regularizer == regularizers.L2(0.02)
    assert first.activity_regularizer == regularizers.L1L2(l1=0.001, l2=0.002)
    assert type(last.kernel_regularizer) is regularizers.ProximalL1
    assert last.kernel_regularizer.get_config() == {"l1": 0.001, "l2": 0.01}
    assert isinstance(first.kernel_constraint, constraints.MaxNorm)
    assert first.kernel_constraint.max_value == 1.5
    assert first.kernel_initializer is reglab.initializers.he_normal
    assert last.bias_initializer is reglab.initializers.ones
    # compile settings, with the current learning rate
    assert type(loaded.optimizer) is Adam
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.optimizer.learning_rate == 0.004
    assert type(loaded.loss) is reglab.losses.SparseCategoricalCrossentropy
    assert loaded.loss.get_config() == model.loss.get_config()
    assert loaded.logged_metric_names == ["accuracy"]
    # penalties included: the same loss and metrics, and training goes on
    assert loaded.evaluate(X, Y, verbose=0) == model.evaluate(X, Y, verbose=0)
    history = loaded.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    assert sorted(history.history) == ["accuracy", "loss"]


def test_conv_model_round_trip_through_save_model_and_a_str_path(tmp_path):
    model = conv_model()
    path = str(tmp_path / "conv.reglab")
    save_model(model, path)
    loaded = reglab.models.load_model(path)
    assert_same_model(model, loaded, IMAGES)
    assert type(loaded.optimizer) is SGD and loaded.optimizer.nesterov
    assert loaded.optimizer.momentum == 0.9 and loaded.optimizer.learning_rate == 0.05
    assert type(loaded.loss) is reglab.losses.CategoricalCrossentropy
    assert loaded.loss.label_smoothing == 0.1
    assert loaded.logged_metric_names == []


def test_every_layer_kind_round_trips_its_arguments(tmp_path):
    model = Sequential([
        Input(shape=(8, 8, 1)),
        RandomFlip("horizontal", seed=3),
        RandomRotation((-0.1, 0.2), fill_mode="constant", fill_value=0.5),
        RandomTranslation(0.1, 0.2, interpolation="nearest"),
        RandomZoom(0.1, -0.2),
        Conv2D(2, (3, 2), strides=2, padding="valid", dilation_rate=1, use_bias=False,
               kernel_initializer="glorot_normal", trainable=False),
        SpatialDropout2D(0.1),
        GaussianNoise(0.2, seed=4),
        GaussianDropout(0.3),
        Activation("tanh"),
        MaxPooling2D(pool_size=1, strides=(1, 1), padding="same"),
        Flatten(),
        Dropout(0.5, noise_shape=(None, 1)),
        BatchNormalization(center=False, scale=False, epsilon=0.01),
        Dense(2, use_bias=False),
    ], seed=1, trainable=False)
    path = tmp_path / "zoo.keras"
    model.save(path)
    loaded = load_model(path)
    assert_same_model(model, loaded, IMAGES)
    assert loaded.optimizer is None and loaded.trainable is False
    assert loaded.layers[1].factor == (-0.1, 0.2)
    assert loaded.layers[4].trainable is False
    assert loaded.layers[11].noise_shape == (None, 1)


def test_uncompiled_and_unbuilt_models_round_trip(tmp_path):
    model = Sequential([Dense(4, activation="elu", input_shape=(6,)), Dense(1)], seed=2)
    model.save(tmp_path / "plain")
    loaded = load_model(tmp_path / "plain")
    assert loaded.optimizer is None and loaded.loss is None and loaded.metrics_names == []
    assert_same_model(model, loaded, X)

    unbuilt = Sequential([Dense(4), Dropout(0.1)], seed=3, name="later")
    unbuilt.save(tmp_path / "unbuilt.keras")
    again = load_model(tmp_path / "unbuilt.keras")
    assert again.get_config() == unbuilt.get_config() and not again.built
    again.build((None, 6))
    unbuilt.build((None, 6))  # same seed, same initial weights
    for got, want in zip(again.get_weights(), unbuilt.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)


def test_archive_holds_only_json_and_pickle_free_arrays(tmp_path):
    model = dense_model()
    path = tmp_path / "model.keras"
    model.save(path)
    assert sorted(os.listdir(tmp_path)) == ["model.keras"]  # no temporary file left
    with zipfile.ZipFile(path) as archive:
        # the training state's member: tests/unit/models/test_models_training_state.py
        # Keras's three members (tests/parity/test_parity_keras_reads_reglab_files.py),
        # then reglab's own
        assert archive.namelist() == ["config.json", "metadata.json", "reglab.json",
                                      "model.weights.h5", "training_state.npz"]
        config = json.loads(archive.read("reglab.json"))
        keras_config = json.loads(archive.read("config.json"))
    assert keras_config["module"] == "keras" and keras_config["class_name"] == "Sequential"
    assert "seed" not in keras_config["config"]  # reglab's own, in reglab.json
    assert config["format_version"] == 1 and config["class_name"] == "Sequential"
    assert config["reglab_version"] == reglab.__version__
    dense = config["config"]["layers"][0]
    assert dense["class_name"] == "Dense"
    assert dense["config"]["kernel_regularizer"] == {"class_name": "L1",
                                                     "config": {"l1": 0.01}}
    assert dense["config"]["kernel_constraint"] == {"class_name": "MaxNorm",
                                                    "config": {"max_value": 1.5, "axis": 0}}
    assert dense["config"]["kernel_initializer"] == {"class_name": "HeNormal",
                                                     "config": {"seed": None}}
    assert config["config"]["layers"][3]["config"]["kernel_regularizer"]["class_name"] == \
        "ProximalL1"
    assert config["compile_config"]["optimizer"]["class_name"] == "Adam"
    assert config["compile_config"]["loss"]["class_name"] == "SparseCategoricalCrossentropy"
    from reglab.models import weights_file

    with zipfile.ZipFile(path) as archive:  # the weights once, in Keras's layout
        stored, _ = weights_file.read(io.BytesIO(archive.read("model.weights.h5")), path)
    arrays = [a for group in weights_file.layer_paths(model) for a in stored[group]]
    assert weights_file.layer_paths(model)[:2] == ["dense", "dropout"]
    for got, want in zip(arrays, model.get_weights(), strict=True):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_saving_replaces_a_file_and_appends_no_suffix(tmp_path):
    model = Sequential([Dense(2, input_shape=(3,))], seed=0)
    path = tmp_path / "model"
    path.write_bytes(b"old contents")
    model.save(path)
    assert sorted(os.listdir(tmp_path)) == ["model"]
    assert zipfile.is_zipfile(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        model.save(tmp_path / "missing" / "model.keras")
    with pytest.raises(IsADirectoryError):
        model.save(tmp_path)


# -- what cannot be saved ---------------------------------------------------------------
def my_activation(x):
    return x * 2


def my_initializer(shape, generator=None, dtype=torch.float32):
    return torch.zeros(tuple(shape), dtype=dtype)


class MyRegularizer(regularizers.Regularizer):
    def get_config(self):
        return {}


@pytest.mark.parametrize("layer, argument", [
    (Dense(2, activation=my_activation, input_shape=(3,)), "'activation'"),
    (Dense(2, kernel_initializer=my_initializer, input_shape=(3,)), "'kernel_initializer'"),
    (Dense(2, kernel_regularizer=lambda w: w.sum(), input_shape=(3,)), "'kernel_regularizer'"),
    (Dense(2, bias_regularizer=MyRegularizer(), input_shape=(3,)), "'bias_regularizer'"),
])
def test_custom_callables_cannot_be_saved(tmp_path, layer, argument):
    model = Sequential([layer], seed=0)
    with pytest.raises(ConfigError, match=rf"layers\[0\] 'dense' \(Dense\): {argument}.*"
                                          "Only built-in"):
        model.save(tmp_path / "custom.keras")
    assert os.listdir(tmp_path) == []  # nothing written, not even a temporary file


# -- damaged files ----------------------------------------------------------------------
def rewrite(path, config=None, drop=(), weights=None):
    """Rewrites the archive at ``path`` with ``config(dict) -> dict|bytes`` applied,
    members in ``drop`` left out, and ``weights`` (a dict of arrays) replacing the npz."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    if config is not None:
        new = config(json.loads(members["reglab.json"]))
        members["reglab.json"] = new if isinstance(new, bytes) else json.dumps(new).encode()
    if weights is not None:
        buffer = io.BytesIO()
        np.savez(buffer, **weights)
        members["weights.npz"] = buffer.getvalue()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            if name not in drop:
                archive.writestr(name, data)


@pytest.fixture
def saved(tmp_path):
    model = Sequential([Dense(4, input_shape=(3,)), Dense(2)], seed=0)
    path = tmp_path / "saved.keras"
    model.save(path)
    return path


def as_saved_before(path, model) -> None:
    """Rewrites ``path`` as reglab wrote model files before Keras's members: its document as
    ``config.json`` and the weights in ``weights.npz`` (by ``weight_names``)."""
    from reglab.models.saving import weight_names

    with zipfile.ZipFile(path) as archive:
        document = archive.read("reglab.json")
    buffer = io.BytesIO()
    np.savez(buffer, **dict(zip(weight_names(model), model.get_weights())))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", document)
        archive.writestr("weights.npz", buffer.getvalue())


@pytest.fixture
def saved_before(tmp_path):
    model = Sequential([Dense(4, input_shape=(3,)), Dense(2)], seed=0)
    path = tmp_path / "saved.keras"
    model.save(path)
    as_saved_before(path, model)
    return path


def saved_weights(path) -> dict:
    with zipfile.ZipFile(path) as archive, np.load(io.BytesIO(archive.read("weights.npz"))) as z:
        return {name: z[name] for name in z.files}


def rewrite_keras_weights(path, edit) -> None:
    """Rewrites ``model.weights.h5`` in the archive at ``path``: ``edit(h5py.File)``."""
    import h5py

    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    buffer = io.BytesIO(members["model.weights.h5"])
    with h5py.File(buffer, "r+") as file:
        edit(file)
    members["model.weights.h5"] = buffer.getvalue()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def test_a_file_saved_before_keras_s_members_loads(tmp_path):
    model = Sequential([Dense(4, input_shape=(3,), kernel_regularizer=regularizers.l2(0.1)),
                        Dense(2)], seed=5)
    path = tmp_path / "before.keras"
    model.save(path)
    as_saved_before(path, model)
    again = load_model(path)
    assert again.seed == 5
    for a, b in zip(again.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_missing_member_of_a_file_saved_before(saved_before):
    rewrite(saved_before, drop=("weights.npz",))
    with pytest.raises(DataError, match=r"saved\.keras.*missing weights\.npz"):
        load_model(saved_before)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.keras"):
        load_model(tmp_path / "nope.keras")


def test_truncated_and_non_zip_files_are_data_errors(saved, tmp_path):
    saved.write_bytes(saved.read_bytes()[:100])
    with pytest.raises(DataError, match=r"saved\.keras: expected a zip archive"):
        load_model(saved)
    text = tmp_path / "notes.keras"
    text.write_text("hello")
    with pytest.raises(DataError, match=r"notes\.keras: expected a zip archive"):
        load_model(text)


def test_missing_member(saved):
    rewrite(saved, drop=("model.weights.h5",))
    with pytest.raises(DataError, match=r"saved\.keras.*members reglab\.json and "
                                        r"model\.weights\.h5.*missing model\.weights\.h5"):
        load_model(saved)


def test_a_file_reglab_saved_without_its_own_document_is_refused(saved, tmp_path):
    """Keras's members alone would load it with another seed and no training state."""
    rewrite(saved, drop=("reglab.json",))
    with pytest.raises(DataError, match=r"saved\.keras: expected reglab\.json in a file "
                                        r"reglab saved .*damaged"):
        load_model(saved)


def test_weights_that_do_not_fit_in_model_weights_h5_are_a_data_error(saved):
    def edit(file):
        del file["layers/dense_1/vars/1"]
        file["layers/dense_1/vars"].create_dataset("1", data=np.zeros(3, "float32"))
    rewrite_keras_weights(saved, edit)
    with pytest.raises(DataError, match=r"saved\.keras: model\.weights\.h5: the file does not "
                                        r"fit the model: layer 'dense_1' \(layers/dense_1/vars/"
                                        r"1\): expected shape \(2,\)\. Got \(3,\)"):
        load_model(saved)


def test_words_in_model_weights_h5_are_a_data_error(saved):
    def edit(file):
        del file["layers/dense/vars/0"]
        file["layers/dense/vars"].create_dataset("0", data=np.array([[b"a"] * 4] * 3))
    rewrite_keras_weights(saved, edit)
    with pytest.raises(DataError, match=r"layers/dense/vars/0\): expected numbers"):
        load_model(saved)


def test_a_model_weights_h5_that_is_no_hdf5_file_is_a_data_error(saved):
    with zipfile.ZipFile(saved) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["model.weights.h5"] = b"not hdf5"
    with zipfile.ZipFile(saved, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(DataError, match=r"saved\.keras: model\.weights\.h5: not an HDF5"):
        load_model(saved)


@pytest.mark.parametrize("edit, match", [
    (lambda c: b"{not json", r"expected UTF-8 JSON"),
    (lambda c: {**c, "format_version": 2}, r"expected format_version 1\. Got 2"),
    (lambda c: {**c, "class_name": "Subclassed"},
     r"expected class_name 'Sequential' or 'Functional'\. Got 'Subclassed'"),
    (lambda c: {**c, "config": {**c["config"], "layers": None}}, r"expected 'config' to be an object with a 'layers' list"),
])
def test_bad_config_is_a_data_error(saved, edit, match):
    rewrite(saved, config=edit)
    with pytest.raises(DataError, match=rf"saved\.keras: reglab\.json: {match}"):
        load_model(saved)


def test_unknown_layer_class_is_refused_with_the_valid_names(saved):
    def to_lstm(config):
        config["config"]["layers"][1] = {"class_name": "LSTM", "config": {"units": 3}}
        return config

    rewrite(saved, config=to_lstm)
    with pytest.raises(ConfigError, match=r"saved\.keras: layers\[1\]: unknown layer class "
                                          r"'LSTM'\. Expected one of: Activation, .*Dense"):
        load_model(saved)


def test_a_lambda_in_a_file_is_refused_and_runs_no_code(saved, monkeypatch):
    """A file can only name a Lambda's function (Keras writes its bytecode): reglab reads no
    code from a file, whatever it names."""
    import os

    ran = []
    monkeypatch.setattr(os, "system", lambda *a: ran.append(a))

    def to_lambda(config):
        config["config"]["layers"][1] = {"class_name": "Lambda",
                                         "config": {"function": "os.system"}}
        return config

    rewrite(saved, config=to_lambda)
    with pytest.raises(ConfigError, match=r"saved\.keras: layers\[1\] \(Lambda\): a "
                                          r"Lambda's function cannot be read from a file"):
        load_model(saved)
    assert not ran


def test_bad_layer_arguments_name_the_file_and_layer(saved):
    def edit(config):
        config["config"]["layers"][0]["config"]["unitz"] = 3
        return config

    rewrite(saved, config=edit)
    with pytest.raises(ConfigError, match=r"saved\.keras: layers\[0\] \(Dense\).*'unitz'"):
        load_model(saved)


def test_weight_count_and_shape_mismatches(saved_before):
    saved = saved_before
    weights = saved_weights(saved)
    rewrite(saved, weights={k: v for k, v in weights.items() if k != "0003_dense_1.bias"})
    with pytest.raises(DataError, match=r"saved\.keras: weights\.npz: expected 4 arrays.*"
                                        r"Got 3 \(missing: 0003_dense_1\.bias"):
        load_model(saved)
    rewrite(saved, weights={**weights, "0000_dense.kernel": np.zeros((4, 3), "float32")})
    with pytest.raises(DataError, match=r"expected '0000_dense\.kernel' of shape \(3, 4\) "
                                        r"and dtype float32\. Got shape \(4, 3\)"):
        load_model(saved)


def test_pickled_arrays_are_refused(saved_before):
    saved = saved_before
    weights = saved_weights(saved)
    weights["0000_dense.kernel"] = np.array([object()] * 12, dtype=object).reshape(3, 4)
    rewrite(saved, weights=weights)
    with pytest.raises(DataError, match=r"saved\.keras: weights\.npz: .*no pickled objects"):
        load_model(saved)


def test_corrupted_compressed_config_is_a_data_error(saved):
    with zipfile.ZipFile(saved) as archive:
        info = archive.getinfo("reglab.json")
    data = bytearray(saved.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + 5] ^= 0xFF
    saved.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"saved\.keras: expected a zip archive"):
        load_model(saved)


def test_bad_input_shape_names_the_file(saved):
    rewrite(saved, config=lambda c: {**c, "config": {**c["config"], "input_shape": [0]}})
    with pytest.raises(ConfigError, match=r"saved\.keras: Input: 'shape' must be"):
        load_model(saved)


@pytest.mark.parametrize("name", ["model.h5", "model.HDF5", "model.weights.h5"])
def test_an_hdf5_path_is_refused_and_nothing_written(tmp_path, name):
    model = Sequential([reglab.Input((4,)), Dense(2)])
    with pytest.raises(ConfigError, match=r"names an HDF5 file, Keras's legacy model format"):
        model.save(tmp_path / name)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match=r"names an HDF5 file"):
        reglab.callbacks.ModelCheckpoint(str(tmp_path / name))
    reglab.callbacks.ModelCheckpoint(str(tmp_path / "w.weights.h5"), save_weights_only=True)


def test_an_hdf5_model_file_is_named_with_how_to_convert_it(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "legacy.h5"
    with h5py.File(path, "w") as file:  # what Keras's legacy format starts with
        file.attrs["model_config"] = "{}"
    with pytest.raises(DataError, match=r"an HDF5 file \(Keras's legacy .h5 model format\).*"
                                        r"save\('model.keras'\)"):
        load_model(path)


def test_a_dataset_declaring_more_than_the_file_stores_is_a_data_error(saved):
    """A few kilobytes that declare a terabyte (an empty chunked dataset): refused before
    anything is allocated."""
    def edit(file):
        del file["layers/dense/vars/0"]
        file["layers/dense/vars"].create_dataset("0", shape=(2**20, 2**20), dtype="f4",
                                                 chunks=(1024, 1024))
    rewrite_keras_weights(saved, edit)
    with pytest.raises(DataError, match=r"model\.weights\.h5: layers/dense/vars/0: a dataset of "
                                        r"shape \(1048576, 1048576\) .* the file is damaged"):
        load_model(saved)


@pytest.mark.parametrize("member", ["reglab.json", "model.weights.h5"])
def test_a_member_flagged_encrypted_is_a_data_error(saved, member):
    """zipfile raises RuntimeError for an encrypted member: a damaged model file here."""
    import struct

    data = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as archive:
        local = archive.getinfo(member).header_offset
    struct.pack_into("<H", data, local + 6, struct.unpack_from("<H", data, local + 6)[0] | 1)
    central = data.find(b"PK\x01\x02")
    while central != -1:  # the member's central directory entry too
        length = struct.unpack_from("<H", data, central + 28)[0]
        if data[central + 46:central + 46 + length].decode() == member:
            flags = struct.unpack_from("<H", data, central + 8)[0]
            struct.pack_into("<H", data, central + 8, flags | 1)
        central = data.find(b"PK\x01\x02", central + 4)
    saved.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"saved\.keras: expected a zip archive written by "
                                        r"model\.save\(\)\. .*encrypted"):
        load_model(saved)
