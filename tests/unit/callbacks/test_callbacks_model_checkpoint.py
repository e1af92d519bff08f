"""ModelCheckpoint: file names, the save-best rule, weights files, errors."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from reglab.callbacks.model_checkpoint import ModelCheckpoint
from reglab.errors import ConfigError
from reglab.layers import Dense
from reglab.models import Sequential


class FakeModel:
    """Records the paths passed to ``save`` (and to ``save_weights`` when asked to have it)."""

    def __init__(self, with_save_weights=False):
        self.saved, self.saved_weights = [], []
        self.stop_training = False
        self.optimizer = SimpleNamespace(learning_rate=0.001)
        self.weights = [np.arange(6, dtype="float32").reshape(2, 3), np.ones(3, "float32")]
        if with_save_weights:
            self.save_weights = self.saved_weights.append

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def save(self, path):
        self.saved.append(path)


def _run(callback, values, monitor="val_loss", model=None):
    model = model or FakeModel()
    callback.set_model(model)
    callback.on_train_begin({})
    for epoch, value in enumerate(values):
        callback.on_epoch_begin(epoch, {})
        callback.on_epoch_end(epoch, {"loss": 1.0, monitor: value})
    callback.on_train_end({})
    return model


def test_save_best_only_writes_only_on_strict_improvements(tmp_path):
    pattern = str(tmp_path / "m-{epoch:02d}-{val_loss:.2f}.keras")
    callback = ModelCheckpoint(pattern, save_best_only=True)
    model = _run(callback, [1.0, 0.8, 0.9, 0.7, 0.7])
    names = [path.rsplit("/", 1)[1] for path in model.saved]
    assert names == ["m-01-1.00.keras", "m-02-0.80.keras", "m-04-0.70.keras"]
    assert callback.best == 0.7


def test_the_first_value_is_saved_whatever_it_is(tmp_path):
    """Keras 3 starts best at None: the first monitored value is an improvement, NaN too,
    and nothing compares better than NaN afterwards (reglab started at +-inf: NaN was
    skipped and 1.0 saved)."""
    callback = ModelCheckpoint(str(tmp_path / "m-{epoch:02d}.keras"), save_best_only=True)
    assert callback.best is None
    model = _run(callback, [float("nan"), 1.0, 0.5])
    assert [p.rsplit("/", 1)[1] for p in model.saved] == ["m-01.keras"]


def test_without_save_best_only_every_epoch_is_saved(tmp_path):
    model = _run(ModelCheckpoint(str(tmp_path / "{epoch}.keras")), [1.0, 2.0, 3.0])
    assert [p.rsplit("/", 1)[1] for p in model.saved] == ["1.keras", "2.keras", "3.keras"]


def test_accuracy_is_maximized_and_initial_value_threshold_must_be_beaten(tmp_path):
    path = str(tmp_path / "best.keras")
    callback = ModelCheckpoint(path, monitor="val_accuracy", save_best_only=True,
                               initial_value_threshold=0.65)
    assert callback.best == 0.65
    model = _run(callback, [0.5, 0.6, 0.7, 0.65, 0.8], monitor="val_accuracy")
    assert model.saved == [path, path]
    assert callback.best == 0.8


def test_explicit_mode_overrides_the_name(tmp_path):
    callback = ModelCheckpoint(str(tmp_path / "m.keras"), monitor="val_loss", mode="max",
                               save_best_only=True)
    assert len(_run(callback, [1.0, 0.5, 2.0]).saved) == 2


def test_best_is_kept_across_fit_calls_as_in_keras(tmp_path):
    callback = ModelCheckpoint(str(tmp_path / "m.keras"), save_best_only=True)
    _run(callback, [0.5])
    assert _run(callback, [0.7, 0.4]).saved == [str(tmp_path / "m.keras")]


def test_missing_monitor_warns_and_saves_as_keras_3(tmp_path):
    # Keras 3's ModelCheckpoint saves when its monitor is missing (a fit without validation
    # data), so that load_model(path) afterwards finds a file
    callback = ModelCheckpoint(str(tmp_path / "m.keras"), save_best_only=True)
    callback.set_model(model := FakeModel())
    with pytest.warns(UserWarning, match="Can save best model only with val_loss available."):
        callback.on_epoch_end(0, {"loss": 0.3})
    assert model.saved == [str(tmp_path / "m.keras")]
    assert callback.best is None  # nothing to compare the next epoch's value with


def test_weights_only_writes_npz_at_the_exact_path(tmp_path):
    path = tmp_path / "sub" / "w-{epoch}.weights.h5"
    model = _run(ModelCheckpoint(path, save_weights_only=True), [1.0])
    written = tmp_path / "sub" / "w-1.weights.h5"
    assert model.saved == [] and written.exists()
    with np.load(written) as archive:
        loaded = [archive[f"arr_{i}"] for i in range(len(archive.files))]
    assert all(np.array_equal(a, b) for a, b in zip(loaded, model.weights, strict=True))


@pytest.mark.parametrize("name", ["w-{epoch}", "w.h5", "w.keras", "w.weights.npz"])
def test_weights_only_needs_a_weights_file_name_at_construction(tmp_path, name):
    """As Keras's, refused before any training (save_weights refused it after an epoch)."""
    with pytest.raises(ConfigError, match=r"with save_weights_only=True, 'filepath' must end "
                                          r"in '.weights.h5'"):
        ModelCheckpoint(str(tmp_path / name), save_weights_only=True)


def test_weights_only_prefers_model_save_weights(tmp_path):
    path = str(tmp_path / "w.weights.h5")
    model = _run(ModelCheckpoint(path, save_weights_only=True), [1.0],
                 model=FakeModel(with_save_weights=True))
    assert model.saved_weights == [path] and model.saved == []


def test_verbose_messages(tmp_path, capsys):
    path = str(tmp_path / "m.keras")
    _run(ModelCheckpoint(path, save_best_only=True, verbose=1), [1.0, 2.0])
    out = capsys.readouterr().out
    assert f"Epoch 1: val_loss improved from None to 1.00000, saving model to {path}" in out
    assert "Epoch 2: val_loss did not improve from 1.00000" in out


def test_errors():
    for bad in (0, -3, 2.5, True, "batch"):
        with pytest.raises(ConfigError, match="ModelCheckpoint: 'save_freq' must be 'epoch' or "
                                              f"a positive int .*Got {bad!r}"):
            ModelCheckpoint("m.keras", save_freq=bad)
    # as Keras, 'auto' is resolved at the first epoch's end, from the logs and the model's
    # compiled metrics (a metric logged under this name with no known direction)
    mystery = ModelCheckpoint("m.keras", monitor="val_mystery", save_best_only=True)
    mystery.set_model(FakeModel())
    with pytest.raises(ConfigError, match="ModelCheckpoint: cannot tell whether "
                                          "monitor='val_mystery' should be maximized"):
        mystery.on_epoch_end(0, {"loss": 1.0, "mystery": 0.5, "val_mystery": 0.5})
    callback = ModelCheckpoint("m-{val_acc:.2f}.keras")
    callback.set_model(FakeModel())
    with pytest.raises(ConfigError, match="names 'val_acc', which is not in the logs. "
                                          "Available: epoch, loss."):
        callback.on_epoch_end(0, {"loss": 1.0})
    with pytest.warns(UserWarning, match="ModelCheckpoint mode 'best' is unknown"):
        assert ModelCheckpoint("m.keras", mode="best").mode == "auto"


def test_fit_saves_the_best_weights_of_a_sequential(tmp_path):
    model = Sequential([Dense(4, activation="relu", input_shape=(3,)),
                        Dense(2, activation="softmax")], seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    x = np.random.default_rng(0).random((16, 3)).astype("float32")
    y = np.arange(16) % 2
    path = tmp_path / "best.weights.h5"  # Keras's weights file (model.save_weights)
    callback = ModelCheckpoint(path, monitor="loss", save_best_only=True,
                               save_weights_only=True)
    history = model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[callback])
    assert path.exists()
    assert callback.best == min(history.history["loss"])
    best = np.argmin(history.history["loss"])
    again = Sequential([Dense(4, activation="relu", input_shape=(3,)),
                        Dense(2, activation="softmax")], seed=1)
    again.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    again.load_weights(path)
    if best == 2:  # the last epoch was the best: the file holds the final weights
        for a, b in zip(again.get_weights(), model.get_weights()):
            np.testing.assert_array_equal(a, b)


def test_fit_saves_whole_models_with_formatted_names(tmp_path):
    pytest.importorskip("reglab.models.saving")
    model = Sequential([Dense(4, activation="relu", input_shape=(3,)),
                        Dense(2, activation="softmax")], seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    x = np.random.default_rng(0).random((16, 3)).astype("float32")
    callback = ModelCheckpoint(tmp_path / "ckpt" / "model-{epoch:02d}-{val_loss:.2f}.keras")
    history = model.fit(x, np.arange(16) % 2, epochs=2, batch_size=8, verbose=0,
                        validation_split=0.25, callbacks=[callback])
    expected = {f"model-{e + 1:02d}-{v:.2f}.keras"
                for e, v in enumerate(history.history["val_loss"])}
    assert {p.name for p in (tmp_path / "ckpt").iterdir()} == expected
