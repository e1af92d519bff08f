"""``BackupAndRestore`` resumed side by side with Keras 3 (torch backend): the learning rate a
callback sets at an epoch's end is backed up as Keras backs it up (after the callbacks listed
before the backup, not those after it), and a model built without a seed resumes."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import reglab  # noqa: E402

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
if keras.backend.backend() != "torch":  # pragma: no cover - another backend chosen outside
    pytest.skip("these comparisons run Keras on its torch backend", allow_module_level=True)

X = np.random.default_rng(0).random((32, 4)).astype("float32")
Y = np.random.default_rng(1).random((32, 2)).astype("float32")


class Stop(Exception):
    pass


def callbacks(api, backup_dir, order, seen, stop_at):
    class Halve(api.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.optimizer.learning_rate = float(self.model.optimizer.learning_rate) / 2

    class Watch(api.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append((epoch, float(self.model.optimizer.learning_rate)))
            if epoch == stop_at:
                raise Stop()

    backup = api.callbacks.BackupAndRestore(str(backup_dir))
    return [Halve(), backup, Watch()] if order == "halve_first" else [backup, Halve(), Watch()]


def model(api):
    m = api.Sequential([api.Input((4,)), api.layers.Dense(2)])
    m.compile(optimizer=api.optimizers.SGD(0.08), loss="mse")
    return m


def resumed_rates(api, tmp_path, order):
    seen = []
    with pytest.raises(Stop):
        model(api).fit(X, Y, epochs=4, verbose=0,
                       callbacks=callbacks(api, tmp_path / api.__name__, order, seen, 2))
    seen.clear()
    model(api).fit(X, Y, epochs=4, verbose=0,
                   callbacks=callbacks(api, tmp_path / api.__name__, order, seen, None))
    return seen


@pytest.mark.parametrize("order", ["halve_first", "backup_first"])
def test_the_learning_rate_a_callback_sets_at_an_epoch_s_end_resumes_as_in_keras(order,
                                                                                 tmp_path):
    theirs = resumed_rates(keras, tmp_path, order)
    ours = resumed_rates(reglab, tmp_path, order)
    assert [epoch for epoch, _ in ours] == [epoch for epoch, _ in theirs] == [2, 3]
    np.testing.assert_allclose([lr for _, lr in ours], [lr for _, lr in theirs], rtol=1e-6)
    # halved after epochs 0 and 1 when the backup comes after the cut; once, when before
    assert ours[0][1] == pytest.approx(0.02 if order == "halve_first" else 0.04)


def test_a_model_built_without_a_seed_resumes_from_its_backup_as_in_keras(tmp_path):
    histories = {}
    for api in (keras, reglab):
        def stopping(api=api):
            class StopAt(api.callbacks.Callback):
                def on_epoch_begin(self, epoch, logs=None):
                    if epoch == 2:
                        raise Stop()
            return StopAt()
        backup = str(tmp_path / api.__name__)
        with pytest.raises(Stop):
            model(api).fit(X, Y, epochs=4, verbose=0,
                           callbacks=[api.callbacks.BackupAndRestore(backup), stopping()])
        history = model(api).fit(X, Y, epochs=4, verbose=0,
                                 callbacks=[api.callbacks.BackupAndRestore(backup)])
        histories[api.__name__] = history.epoch
    assert histories["reglab"] == histories["keras"] == [2, 3]


def _sgd_model(api, momentum, name=None, weights=None):
    m = api.Sequential([api.Input((4,)), api.layers.Dense(3, activation="tanh"),
                        api.layers.Dense(2)], name=name)
    if weights is not None:
        m.set_weights(weights)
    m.compile(optimizer=api.optimizers.SGD(0.05, momentum=momentum), loss="mse")
    return m


@pytest.mark.parametrize("second_name", [None, "renamed"])
def test_a_resume_trains_with_the_new_compile_s_momentum_as_keras(tmp_path, second_name):
    """Keras's backup holds the optimizer's variables (steps, learning rate, slots), not its
    other hyperparameters: a resume compiled with momentum 0.5 trains with 0.5, not with the
    backed-up run's 0.9; a model of another name resumes too."""
    start = _sgd_model(keras, 0.9).get_weights()
    finals = {}
    for api in (keras, reglab):
        backup = str(tmp_path / api.__name__)

        class StopAt(api.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                if epoch == 2:
                    raise Stop()
        with pytest.raises(Stop):
            _sgd_model(api, 0.9, weights=start).fit(
                X, Y, epochs=4, batch_size=8, shuffle=False, verbose=0,
                callbacks=[api.callbacks.BackupAndRestore(backup), StopAt()])
        resumed = _sgd_model(api, 0.5, second_name)
        history = resumed.fit(X, Y, epochs=4, batch_size=8, shuffle=False, verbose=0,
                              callbacks=[api.callbacks.BackupAndRestore(backup)])
        assert history.epoch == [2, 3]
        finals[api.__name__] = resumed.get_weights()
    for ours, theirs in zip(finals["reglab"], finals["keras"], strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_after_an_early_stop_a_kept_backup_goes_on_as_in_keras(tmp_path):
    """EarlyStopping's state is not backed up (Keras's rule): each later fit resumes after
    the backed-up epoch and trains until the callback stops it again."""
    epochs = {}
    for api in (keras, reglab):
        backup = str(tmp_path / api.__name__)
        model = _sgd_model(api, 0.0)
        runs = []
        for _ in range(3):
            history = model.fit(X, Y, epochs=6, verbose=0, callbacks=[
                api.callbacks.EarlyStopping(monitor="loss", patience=1, min_delta=10),
                api.callbacks.BackupAndRestore(backup, delete_checkpoint=False)])
            runs.append(history.epoch)
        epochs[api.__name__] = runs
    assert epochs["reglab"] == epochs["keras"] == [[0, 1], [2, 3], [4, 5]]


def test_a_kept_backup_of_a_stopped_fit_holds_the_raw_weights_not_their_average(tmp_path):
    """Keras backs up at the epoch's end, its weights as trained; the exponential moving
    average replaces them only at the end of fit. A kept backup of a fit an early stop ended
    resumes from the trained weights, as Keras's does."""
    start = _sgd_model(keras, 0.0).get_weights()
    finals = {}
    for api in (keras, reglab):
        backup = str(tmp_path / api.__name__)

        def model(api=api):
            m = _sgd_model(api, 0.0, weights=start)
            m.compile(optimizer=api.optimizers.AdamW(0.05, use_ema=True, ema_momentum=0.5),
                      loss="mse")
            return m
        model().fit(X, Y, epochs=4, batch_size=8, shuffle=False, verbose=0, callbacks=[
            api.callbacks.EarlyStopping(monitor="loss", patience=1, min_delta=10),
            api.callbacks.BackupAndRestore(backup, delete_checkpoint=False)])
        resumed = model()
        history = resumed.fit(X, Y, epochs=4, batch_size=8, shuffle=False, verbose=0,
                              callbacks=[api.callbacks.BackupAndRestore(backup)])
        finals[api.__name__] = (history.history["loss"], resumed.get_weights())
    assert len(finals["reglab"][0]) == len(finals["keras"][0]) == 2
    np.testing.assert_allclose(finals["reglab"][0], finals["keras"][0], rtol=1e-4)
    for ours, theirs in zip(finals["reglab"][1], finals["keras"][1], strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
