"""``BackupAndRestore`` as Keras 3 documents it: a fit interrupted after some epochs and run
again with the same callback goes on from the last backed-up epoch, and ends where an
uninterrupted fit ends."""

from __future__ import annotations

import numpy as np
import pytest

from reglab.callbacks import BackupAndRestore, Callback, ReduceLROnPlateau
from reglab.errors import ConfigError
from reglab.layers import Dense, Dropout
from reglab.models import Sequential


def model():
    m = Sequential([Dense(8, activation="relu", input_shape=(6,)), Dropout(0.3),
                    Dense(3, activation="softmax")], seed=3)
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    return x, (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0.7)


class Interrupt(Exception):
    pass


class InterruptAt(Callback):
    """Raises at the start of an epoch, as a kill between epochs would."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise Interrupt()


def fit(m, callbacks, epochs=6):
    x, y = data()
    return m.fit(x, y, batch_size=16, epochs=epochs, validation_split=0.25, verbose=0,
                 callbacks=callbacks)


@pytest.mark.parametrize("interrupt_at", [1, 4])
def test_an_interrupted_fit_goes_on_from_its_backup(tmp_path, interrupt_at):
    reference = model()
    expected = fit(reference, [ReduceLROnPlateau(patience=1, factor=0.5)]).history
    first = model()
    with pytest.raises(Interrupt):
        fit(first, [BackupAndRestore(tmp_path), ReduceLROnPlateau(patience=1, factor=0.5),
                    InterruptAt(interrupt_at)])
    assert (tmp_path / "latest.pt").is_file()
    again = model()
    history = fit(again, [BackupAndRestore(tmp_path), ReduceLROnPlateau(patience=1, factor=0.5)])
    assert history.epoch == list(range(interrupt_at, 6))  # only the epochs trained now
    for key, values in expected.items():
        assert history.history[key] == values[interrupt_at:], key
    for got, want in zip(again.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(got, want)
    assert not (tmp_path / "latest.pt").exists()  # deleted when training ends


def test_without_a_backup_the_fit_starts_at_its_beginning_and_keeps_none(tmp_path):
    history = fit(model(), [BackupAndRestore(tmp_path / "new")], epochs=2)
    assert history.epoch == [0, 1]
    assert not (tmp_path / "new").exists()  # its directory removed too, as Keras removes it
    shared = tmp_path / "shared"  # a directory that holds a user's file is kept, with it
    shared.mkdir()
    (shared / "notes.txt").write_text("mine")
    fit(model(), [BackupAndRestore(shared)], epochs=2)
    assert sorted(p.name for p in shared.iterdir()) == ["notes.txt"]
    kept = tmp_path / "kept"
    fit(model(), [BackupAndRestore(kept, delete_checkpoint=False)], epochs=2)
    assert (kept / "latest.pt").is_file()


def test_double_checkpoint_falls_back_on_the_previous_backup(tmp_path):
    first = model()
    with pytest.raises(Interrupt):
        fit(first, [BackupAndRestore(tmp_path, double_checkpoint=True), InterruptAt(3)])
    assert (tmp_path / "previous.pt").is_file()
    (tmp_path / "latest.pt").write_bytes(b"damaged")
    history = fit(model(), [BackupAndRestore(tmp_path, double_checkpoint=True)])
    assert history.epoch == [2, 3, 4, 5]  # from the backup of epoch 1 (index)


@pytest.mark.parametrize("kwargs,fragment", [
    ({"backup_dir": ""}, "'backup_dir' must be a non-empty path"),
    ({"backup_dir": "x", "save_freq": 10}, "'save_freq' must be 'epoch'"),
    ({"backup_dir": "x", "delete_checkpoint": "yes"}, "'delete_checkpoint' must be True"),
])
def test_bad_arguments(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        BackupAndRestore(**kwargs)


def test_a_fit_with_a_learning_rate_schedule_resumes_where_it_stopped(tmp_path):
    from reglab.optimizers import Adam
    from reglab.optimizers.schedules import CosineDecay

    def scheduled():
        m = Sequential([Dense(8, activation="relu", input_shape=(6,)),
                        Dense(3, activation="softmax")], seed=3)
        m.compile(optimizer=Adam(CosineDecay(0.0, 12, warmup_target=0.05, warmup_steps=6)),
                  loss="sparse_categorical_crossentropy")
        return m
    reference = scheduled()
    expected = fit(reference, []).history
    with pytest.raises(Interrupt):
        fit(scheduled(), [BackupAndRestore(tmp_path), InterruptAt(3)])
    again = scheduled()
    history = fit(again, [BackupAndRestore(tmp_path)])
    assert history.history["loss"] == expected["loss"][3:]
    for got, want in zip(again.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(got, want)
    assert again.optimizer.iterations == reference.optimizer.iterations == 18


def test_ctrl_c_inside_the_backup_write_stays_ctrl_c_and_the_last_backup_is_kept(
        tmp_path, monkeypatch):
    """torch's writer turns a KeyboardInterrupt raised in the middle of its write into
    'RuntimeError: ... unexpected pos'; the user pressed Ctrl-C and gets KeyboardInterrupt,
    and the backup of the epoch before is whole: a second fit goes on from it."""
    import signal

    import torch

    from interrupt_helpers import interrupt_turned_into

    real_save, saves = torch.save, []

    def save_interrupted_at_the_third(obj, handle):
        saves.append(1)
        if len(saves) < 3:
            return real_save(obj, handle)
        interrupt_turned_into(RuntimeError)

    monkeypatch.setattr(torch, "save", save_interrupted_at_the_third)
    with pytest.raises(KeyboardInterrupt):
        fit(model(), [BackupAndRestore(tmp_path)])
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    monkeypatch.setattr(torch, "save", real_save)
    history = fit(model(), [BackupAndRestore(tmp_path)])
    assert history.epoch == [2, 3, 4, 5]  # the backup of epoch 1 (index) was kept whole


def test_a_failing_backup_write_is_reported_as_it_failed(tmp_path, monkeypatch):
    import torch

    def full_disk(obj, handle):
        raise RuntimeError("No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(RuntimeError, match="No space left"):
        fit(model(), [BackupAndRestore(tmp_path)])


@pytest.mark.parametrize("second_seed", [None, 11])
def test_a_model_rebuilt_with_another_seed_goes_on_with_the_backup_s(tmp_path, second_seed):
    """The slides' code sets no seed: each run draws one. The backup's seed (its dropout and
    batch order) goes on, as Keras's backup brings its seed generators' state."""
    def unseeded(seed=None):
        m = Sequential([Dense(8, activation="relu", input_shape=(6,)), Dropout(0.3),
                        Dense(3, activation="softmax")], seed=seed)
        m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        return m
    first = unseeded()
    with pytest.raises(Interrupt):
        fit(first, [BackupAndRestore(tmp_path), InterruptAt(3)])
    reference = unseeded(first.seed)
    expected = fit(reference, []).history
    again = unseeded(second_seed)
    history = fit(again, [BackupAndRestore(tmp_path)])
    assert history.epoch == [3, 4, 5] and again.seed == first.seed
    assert history.history["loss"] == expected["loss"][3:]
    for got, want in zip(again.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(got, want)


def test_a_backup_of_another_architecture_is_refused_naming_it(tmp_path):
    with pytest.raises(Interrupt):
        fit(model(), [BackupAndRestore(tmp_path), InterruptAt(2)])
    other = Sequential([Dense(8, activation="relu", input_shape=(6,)),
                        Dense(3, activation="softmax")], seed=3, name="other")
    other.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(ConfigError, match=r"checkpoint of another population: layer 1 "
                                          r"\('dense\w*'\) has a weight 'bias' here, "
                                          r"the checkpoint none .*a layer added or removed"):
        fit(other, [BackupAndRestore(tmp_path)])


@pytest.mark.parametrize("units, optimizer, fragment", [
    (16, "adam", r"'bias' of layer 0 \('dense.*'\) has shape \(8,\) there, \(16,\) here"),
    (8, "sgd", "checkpoint of another optimizer"),
])
def test_a_backup_of_other_weights_under_the_same_names_is_refused(tmp_path, units,
                                                                    optimizer, fragment):
    """As Keras refuses to load a backup whose weights do not fit: the seed it carries is
    no proof of the architecture."""
    def make(units, optimizer):
        m = Sequential([Dense(units, activation="relu", input_shape=(6,)),
                        Dense(3, activation="softmax")])
        m.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
        return m
    with pytest.raises(Interrupt):
        fit(make(8, "adam"), [BackupAndRestore(tmp_path), InterruptAt(2)])
    with pytest.raises(ConfigError, match=fragment):
        fit(make(units, optimizer), [BackupAndRestore(tmp_path)])
    assert (tmp_path / "latest.pt").is_file()  # kept for the right model


@pytest.mark.parametrize("second", ["adamax", "nadam", "amsgrad"])
def test_a_backup_of_an_optimizer_without_this_one_s_state_is_refused_changing_nothing(
        tmp_path, second):
    from reglab.optimizers import Adam

    def make(optimizer, seed):
        m = Sequential([Dense(8, activation="relu", input_shape=(6,)),
                        Dense(3, activation="softmax")], seed=seed)
        m.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
        return m
    with pytest.raises(Interrupt):
        fit(make("adam", 1), [BackupAndRestore(tmp_path), InterruptAt(2)])
    other = make(Adam(amsgrad=True) if second == "amsgrad" else second, 5)
    before = other.get_weights()
    with pytest.raises(ConfigError, match=r"checkpoint of another optimizer: this one \(\w+\) "
                                          r"keeps optimizer/"):
        fit(other, [BackupAndRestore(tmp_path)])
    assert other.seed == 5  # the backup's seed is taken only with the backup
    for got, want in zip(other.get_weights(), before):
        np.testing.assert_array_equal(got, want)
    assert fit(other, [], epochs=2).epoch == [0, 1]  # it trains as it was
    assert (tmp_path / "latest.pt").is_file()


def test_a_backup_file_that_is_no_checkpoint_is_refused_as_such(tmp_path):
    import torch

    torch.save([1, 2, 3], tmp_path / "latest.pt")
    with pytest.raises(ConfigError, match="'resume' must be a Population.checkpoint"):
        fit(model(), [BackupAndRestore(tmp_path)])
