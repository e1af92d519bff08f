"""Batches as Keras 3 reads them, side by side with Keras itself (torch backend): a
generator's batches trained as they came (a short one mid-epoch too), an
ImageDataGenerator flow read ``steps_per_epoch`` batches at a time (going on from where the
last epoch stopped, ending where the flow's pass ends), and ``evaluate``/``predict`` reading
only their first ``steps`` batches."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import reglab  # noqa: E402
from reglab.errors import ConfigError  # noqa: E402
from reglab.preprocessing.image import ImageDataGenerator  # noqa: E402

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
if keras.backend.backend() != "torch":  # pragma: no cover - another backend chosen outside
    pytest.skip("these comparisons run Keras on its torch backend", allow_module_level=True)

RNG = np.random.default_rng(0)
IMAGES = RNG.random((250, 4, 4, 1)).astype("float32")
LABELS = RNG.integers(0, 3, 250)


def _pair(shape=(4, 4, 1)):
    """The same small model in Keras and in reglab, with Keras's initial weights."""
    models = []
    for api in (keras, reglab):
        model = api.Sequential([api.Input(shape), api.layers.Flatten(),
                                api.layers.Dense(6, activation="relu"),
                                api.layers.Dense(3, activation="softmax")])
        model.compile(optimizer=api.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        models.append(model)
    models[1].set_weights(models[0].get_weights())
    return models


def _batches_per_epoch(api, model, data, **kwargs):
    seen = []
    spy = api.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs=None: seen.append(0),
        on_train_batch_end=lambda batch, logs=None: seen.__setitem__(-1, seen[-1] + 1))
    history = model.fit(data, verbose=0, shuffle=False, callbacks=[spy], **kwargs)
    return seen, history.history["loss"]


def _assert_same_weights(models):
    for ours, theirs in zip(models[1].get_weights(), models[0].get_weights()):
        np.testing.assert_allclose(ours, theirs, rtol=2e-5, atol=2e-6)


def _keras_flow(batch_size, images=IMAGES, labels=LABELS):
    from keras.src.legacy.preprocessing.image import ImageDataGenerator as KerasGenerator

    return KerasGenerator().flow(images, labels, batch_size=batch_size, shuffle=False)


@pytest.mark.parametrize("steps", [3, 7, 8, 11])
def test_a_flow_read_steps_per_epoch_batches_at_a_time_trains_as_in_keras(steps):
    """250 images in batches of 32: a pass is 7 full batches and one of 26. Keras's epochs
    take the next ``steps`` batches and end where the pass ends ([7, 1, 7, 1] for 7)."""
    models = _pair()
    flows = (_keras_flow(32), ImageDataGenerator().flow(IMAGES, LABELS, batch_size=32,
                                                        shuffle=False))
    (k_seen, k_loss), (r_seen, r_loss) = (
        _batches_per_epoch(api, model, flow, steps_per_epoch=steps, epochs=4)
        for api, model, flow in zip((keras, reglab), models, flows))
    assert r_seen == k_seen
    np.testing.assert_allclose(r_loss, k_loss, rtol=2e-5)
    _assert_same_weights(models)


def test_a_generator_s_short_batch_mid_epoch_is_trained_as_it_came():
    """Batches of 32, 10, 32, 32 then 20, 32: each trained as one step (joining them and
    cutting again by the largest would move the boundaries)."""
    sizes = [32, 10, 32, 32, 20, 32]
    starts = np.cumsum([0] + sizes)

    def batches():
        while True:
            for lo, hi in zip(starts[:-1], starts[1:]):
                yield IMAGES[lo:hi], LABELS[lo:hi]

    models = _pair()
    results = [_batches_per_epoch(api, model, batches(), steps_per_epoch=3, epochs=4)
               for api, model in zip((keras, reglab), models)]
    assert results[1][0] == results[0][0] == [3, 3, 3, 3]
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=2e-5)
    _assert_same_weights(models)


@pytest.mark.parametrize("batch_size,steps", [(16, 1), (32, 3), (50, 2), (64, 10)])
def test_evaluate_and_predict_read_their_first_steps_batches_as_in_keras(batch_size, steps):
    models = _pair()
    x, y = IMAGES[:200], LABELS[:200]
    scores = [m.evaluate(x, y, batch_size=batch_size, steps=steps, verbose=0) for m in models]
    np.testing.assert_allclose(scores[1], scores[0], rtol=1e-5)
    outputs = [m.predict(x, batch_size=batch_size, steps=steps, verbose=0) for m in models]
    assert outputs[1].shape == outputs[0].shape == (min(200, batch_size * steps), 3)
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-5, atol=1e-6)


def test_evaluate_a_flow_with_steps_reads_its_first_batches():
    ours = _pair()[1]
    flow = ImageDataGenerator().flow(IMAGES, LABELS, batch_size=20, shuffle=False)
    np.testing.assert_allclose(ours.evaluate(flow, steps=2, verbose=0),
                               ours.evaluate(IMAGES[:40], LABELS[:40], verbose=0), rtol=1e-6)
    assert ours.predict(flow, steps=3, verbose=0).shape == (60, 3)


@pytest.mark.parametrize("steps", [0, -1, 1.5, "2", True])
def test_a_count_of_batches_that_is_not_a_positive_int_is_refused_by_name(steps):
    ours = _pair()[1]
    flow = ImageDataGenerator().flow(IMAGES, LABELS, batch_size=32)
    with pytest.raises(ConfigError, match="'steps_per_epoch' must be an int >= 1"):
        ours.fit(flow, steps_per_epoch=steps, epochs=1, verbose=0)
    with pytest.raises(ConfigError, match="'steps' must be an int >= 1"):
        ours.evaluate(IMAGES, LABELS, steps=steps, verbose=0)
    with pytest.raises(ConfigError, match="'steps' must be an int >= 1"):
        ours.predict(IMAGES, steps=steps, verbose=0)


def test_validation_steps_validate_on_the_first_batches_as_in_keras():
    """validation_steps of validation_batch_size (else batch_size) samples, with
    validation_data and with validation_split."""
    rng = np.random.default_rng(5)
    x, y = rng.random((96, 5)).astype("float32"), rng.integers(0, 3, 96)
    xv, yv = rng.random((64, 5)).astype("float32"), rng.integers(0, 3, 64)
    logs = []
    for api in (keras, reglab):
        model = api.Sequential([api.Input((5,)), api.layers.Dense(3, activation="softmax")])
        if logs:
            model.set_weights(logs[0][0])
        start = model.get_weights()
        model.compile(optimizer=api.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        runs = [model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0,
                          validation_data=(xv, yv), validation_steps=2).history,
                model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0,
                          validation_data=(xv, yv), validation_steps=3,
                          validation_batch_size=8).history,
                model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0,
                          validation_split=0.25, validation_steps=1).history]
        logs.append((start, runs))
    for theirs, ours in zip(logs[0][1], logs[1][1]):
        assert sorted(ours) == sorted(theirs)
        for key in theirs:
            np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-5, err_msg=key)
    # the whole validation set gives another value: the steps were taken
    whole = reglab.Sequential([reglab.Input((5,)), reglab.layers.Dense(3, activation="softmax")])
    whole.set_weights(logs[0][0])
    whole.compile(optimizer=reglab.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    history = whole.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0,
                        validation_data=(xv, yv)).history
    assert history["val_loss"][0] != logs[1][1][0]["val_loss"][0]


def test_each_fit_reads_a_flow_from_its_first_batch_as_in_keras():
    """A loop of fit calls on one flow, and a batch looked at with next(flow) first: every
    fit of Keras 3 reads the flow by index from batch 0 (50 images, 4 batches a pass)."""
    images, labels = IMAGES[:50], LABELS[:50]
    for peek in (False, True):
        models = _pair()
        flows = (_keras_flow(16, images, labels),
                 ImageDataGenerator().flow(images, labels, batch_size=16, shuffle=False))
        if peek:
            for flow in flows:
                next(flow)
        seen = []
        for api, model, flow in zip((keras, reglab), models, flows):
            counts = []
            for _ in range(2 if peek else 3):
                counts += _batches_per_epoch(api, model, flow, steps_per_epoch=3,
                                             epochs=2 if peek else 1)[0]
            seen.append(counts)
        assert seen[1] == seen[0], peek
        _assert_same_weights(models)


@pytest.mark.parametrize("kind", ["flow", "generator"])
@pytest.mark.parametrize("epochs", [{"epochs": 0}, {"epochs": 3, "initial_epoch": 3}])
def test_no_epoch_to_run_gives_an_empty_history_and_reads_nothing(kind, epochs):
    ours = _pair()[1]
    read = []

    def batches():
        while True:
            read.append(1)
            yield IMAGES[:32], LABELS[:32]

    data = (ImageDataGenerator().flow(IMAGES, LABELS, batch_size=32) if kind == "flow"
            else batches())
    before = ours.get_weights()
    history = ours.fit(data, steps_per_epoch=3, verbose=0, **epochs)
    assert history.history == {} and read == []
    for a, b in zip(ours.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_backup_and_restore_with_a_flow_read_by_steps_is_refused_before_any_backup(tmp_path):
    ours = _pair()[1]
    backup = tmp_path / "backup"
    flow = ImageDataGenerator().flow(IMAGES, LABELS, batch_size=32)
    with pytest.raises(ConfigError, match="BackupAndRestore needs arrays or an "
                                          "ImageDataGenerator flow read whole"):
        ours.fit(flow, steps_per_epoch=3, epochs=2, verbose=0,
                 callbacks=[reglab.callbacks.BackupAndRestore(str(backup))])
    assert not backup.exists() or not any(backup.iterdir())


def test_validation_steps_of_a_shuffled_flow_read_its_order_as_evaluate_does():
    ours = _pair()[1]
    labels = np.repeat([0, 1, 2], 16)  # sorted by class: the stored first batch is one class
    images = IMAGES[:48]
    history = ours.fit(IMAGES[:32], LABELS[:32], epochs=1, verbose=0, shuffle=False,
                       validation_data=ImageDataGenerator().flow(images, labels, batch_size=16,
                                                                 shuffle=True, seed=1),
                       validation_steps=1).history
    expected = ours.evaluate(ImageDataGenerator().flow(images, labels, batch_size=16,
                                                       shuffle=True, seed=1),
                             steps=1, verbose=0)
    np.testing.assert_allclose(history["val_loss"][0], expected[0], rtol=1e-6)
    assert history["val_loss"][0] != pytest.approx(ours.evaluate(images[:16], labels[:16],
                                                                 verbose=0)[0])


def test_an_empty_generator_batch_is_refused_naming_the_batch():
    ours = _pair()[1]

    def batches():
        yield IMAGES[:32], LABELS[:32]
        yield IMAGES[:0], LABELS[:0]

    with pytest.raises(reglab.errors.DataError, match="generator batch 1: the batch has no "
                                                      "samples"):
        ours.fit(batches(), steps_per_epoch=2, epochs=1, verbose=0)


@pytest.mark.parametrize("steps", [3, 8, 11])
def test_arrays_read_steps_per_epoch_batches_at_a_time_train_as_in_keras(steps):
    """Unshuffled arrays, 250 samples in batches of 32: the same epochs as a flow's, step
    for step (Keras's epochs end where a pass ends, with a warning there)."""
    models = _pair()
    (k_seen, k_loss), (r_seen, r_loss) = (
        _batches_per_epoch(api, model, IMAGES, y=LABELS, batch_size=32,
                           steps_per_epoch=steps, epochs=4)
        for api, model in zip((keras, reglab), models))
    assert r_seen == k_seen
    np.testing.assert_allclose(r_loss, k_loss, rtol=2e-5)
    _assert_same_weights(models)


def test_shuffled_arrays_read_steps_per_epoch_draw_a_new_order_per_pass_from_the_seed(
        monkeypatch):
    seen = []
    original = reglab.models.fit_data.ArrayBatches.__next__

    def spying(self):
        batch = original(self)
        seen.append(np.asarray(batch[0])[:, 0, 0, 0].astype(int).tolist())
        return batch

    monkeypatch.setattr(reglab.models.fit_data.ArrayBatches, "__next__", spying)
    x = np.arange(40, dtype="float32")[:, None, None, None] * np.ones((1, 4, 4, 1), "float32")

    def orders(seed, shuffle):
        model = reglab.Sequential([reglab.Input((4, 4, 1)), reglab.layers.Flatten(),
                                   reglab.layers.Dense(3, activation="softmax")], seed=seed)
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        seen.clear()
        model.fit(x, np.arange(40) % 3, batch_size=10, steps_per_epoch=3, epochs=4,
                  shuffle=shuffle, verbose=0)
        return list(seen)

    shuffled = orders(5, True)
    assert len(shuffled) == 3 + 1 + 3 + 1  # a pass is 4 batches: epochs of 3, 1, 3, 1
    first, second = sum(shuffled[:4], []), sum(shuffled[4:], [])
    assert sorted(first) == sorted(second) == list(range(40)) and first != second
    assert orders(5, True) == shuffled and orders(6, True) != shuffled
    within = orders(5, "batch")
    assert [sorted(b) for b in within] == [list(range(i, i + 10)) for i in (0, 10, 20, 30)] * 2
    assert within != [list(range(i, i + 10)) for i in (0, 10, 20, 30)] * 2
    assert orders(5, False) == [list(range(i, i + 10)) for i in (0, 10, 20, 30)] * 2
