"""A torch DataLoader and a PyDataset fed to fit/evaluate/predict, side by side with Keras 3
(torch backend): a pass per epoch, each batch one step, ``on_epoch_end`` after each pass,
``steps_per_epoch`` going on where the last epoch stopped, validation on a dataset, and
``predict`` on batches of ``x`` alone."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import reglab  # noqa: E402
from reglab.errors import ConfigError, DataError  # noqa: E402

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
if keras.backend.backend() != "torch":  # pragma: no cover - another backend chosen outside
    pytest.skip("these comparisons run Keras on its torch backend", allow_module_level=True)

RNG = np.random.default_rng(3)
X = RNG.random((70, 6)).astype("float32")
Y = RNG.integers(0, 3, 70)
W = RNG.uniform(0.5, 2.0, 70).astype("float32")


def _pair():
    """The same small model in Keras and in reglab, with Keras's initial weights."""
    models = []
    for api in (keras, reglab):
        model = api.Sequential([api.Input((6,)), api.layers.Dense(5, activation="relu"),
                                api.layers.Dense(3, activation="softmax")])
        model.compile(optimizer=api.optimizers.SGD(0.2), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        models.append(model)
    models[1].set_weights(models[0].get_weights())
    return models


def _loader(batch_size=16, with_weights=False):
    tensors = [torch.tensor(X), torch.tensor(Y)] + ([torch.tensor(W)] if with_weights else [])
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*tensors),
                                       batch_size=batch_size, shuffle=False)


def _py_dataset(api, batch_size=16, x_only=False):
    class Batches(api.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.ends, self.order = 0, np.arange(len(X))

        def __len__(self):
            return -(-len(X) // batch_size)

        def __getitem__(self, index):
            rows = self.order[index * batch_size:(index + 1) * batch_size]
            return X[rows] if x_only else (X[rows], Y[rows])

        def on_epoch_end(self):
            self.ends += 1
            self.order = np.roll(self.order, 7)  # a new order for the next pass

    return Batches()


def _close_weights(a, b):
    for got, expected in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-6)


def test_fit_on_a_data_loader_trains_as_keras():
    theirs, ours = _pair()
    history = [model.fit(_loader(with_weights=True), epochs=3, verbose=0).history
               for model in (theirs, ours)]
    _close_weights(theirs, ours)
    np.testing.assert_allclose(history[1]["loss"], history[0]["loss"], rtol=1e-5)
    np.testing.assert_allclose(theirs.evaluate(_loader(), verbose=0),
                               ours.evaluate(_loader(), verbose=0), rtol=1e-5)
    np.testing.assert_allclose(theirs.predict(_loader(), verbose=0),
                               ours.predict(_loader(), verbose=0), rtol=1e-5, atol=1e-6)


def test_fit_on_a_py_dataset_calls_on_epoch_end_after_each_pass_as_keras():
    theirs, ours = _pair()
    datasets = [_py_dataset(keras), _py_dataset(reglab)]
    for model, dataset in zip((theirs, ours), datasets):
        model.fit(dataset, epochs=3, verbose=0, shuffle=False)
    _close_weights(theirs, ours)
    # Keras's iterator reset calls on_epoch_end once before the first epoch
    assert datasets[1].ends == datasets[0].ends == 4
    np.testing.assert_array_equal(datasets[1].order, datasets[0].order)


def test_fit_shuffles_a_py_dataset_s_batch_order_at_each_pass_as_keras():
    reads = []

    class Logged(reglab.utils.PyDataset):
        def __len__(self):
            return 5

        def __getitem__(self, index):
            reads.append(index)
            return X[index * 14:(index + 1) * 14], Y[index * 14:(index + 1) * 14]

    model = _pair()[1]
    model.fit(Logged(), epochs=4, verbose=0)  # shuffle=True, fit's default
    passes = [reads[i:i + 5] for i in range(0, 20, 5)]
    assert all(sorted(p) == [0, 1, 2, 3, 4] for p in passes)
    assert any(p != [0, 1, 2, 3, 4] for p in passes)
    reads.clear()
    model.fit(Logged(), epochs=2, verbose=0, shuffle=False)
    assert reads == [0, 1, 2, 3, 4] * 2


def test_steps_per_epoch_goes_on_where_the_last_epoch_stopped_as_keras():
    theirs, ours = _pair()
    for model in (theirs, ours):
        model.fit(_loader(), epochs=3, steps_per_epoch=2, verbose=0)
    _close_weights(theirs, ours)


def test_validation_on_a_data_loader_and_predict_on_x_batches_as_keras():
    theirs, ours = _pair()
    logs = [model.fit(X, Y, batch_size=10, epochs=2, shuffle=False, verbose=0,
                      validation_data=_loader(batch_size=25)).history
            for model in (theirs, ours)]
    np.testing.assert_allclose(logs[1]["val_loss"], logs[0]["val_loss"], rtol=1e-5)
    np.testing.assert_allclose(logs[1]["val_accuracy"], logs[0]["val_accuracy"])
    np.testing.assert_allclose(
        theirs.predict(_py_dataset(keras, x_only=True), verbose=0),
        ours.predict(_py_dataset(reglab, x_only=True), verbose=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(theirs.evaluate(_py_dataset(keras), steps=2, verbose=0),
                               ours.evaluate(_py_dataset(reglab), steps=2, verbose=0),
                               rtol=1e-5)


class _Stream(torch.utils.data.IterableDataset):
    def __iter__(self):
        for i in range(0, len(X), 10):
            yield torch.tensor(X[i:i + 10]), torch.tensor(Y[i:i + 10])


def _steps_per_epoch(api, model, data, **kwargs):
    seen = []
    spy = api.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs=None: seen.append(0),
        on_train_batch_end=lambda batch, logs=None: seen.__setitem__(-1, seen[-1] + 1))
    history = model.fit(data, verbose=0, callbacks=[spy], **kwargs).history
    return seen, history["loss"]


@pytest.mark.parametrize("steps", [None, 5, 9])
def test_a_stream_without_length_ends_each_epoch_where_it_runs_out_as_keras(steps):
    """Seven batches a pass: read to the end without steps_per_epoch, else epochs of 5, 2,
    5 (or 7, 7, 7): an epoch ends where the stream runs out, the next starts it again."""
    theirs, ours = _pair()
    results = [_steps_per_epoch(api, model, torch.utils.data.DataLoader(_Stream(),
                                                                       batch_size=None),
                                epochs=3, steps_per_epoch=steps)
               for api, model in ((keras, theirs), (reglab, ours))]
    assert results[1][0] == results[0][0]
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-5)
    _close_weights(theirs, ours)


def test_steps_beyond_a_dataset_read_one_pass_as_keras():
    theirs, ours = _pair()
    for model in (theirs, ours):
        model.fit(X, Y, epochs=1, verbose=0, shuffle=False)
    assert ours.predict(_loader(), steps=7, verbose=0).shape == (70, 3)
    np.testing.assert_allclose(ours.evaluate(_loader(), steps=7, verbose=0),
                               theirs.evaluate(_loader(), steps=7, verbose=0), rtol=1e-5)
    np.testing.assert_allclose(ours.predict(X, steps=2, verbose=0),
                               theirs.predict(X, steps=2, verbose=0), rtol=1e-5, atol=1e-6)


def test_arrays_with_steps_per_epoch_and_no_batch_size_take_one_pass_per_epoch_as_keras():
    theirs, ours = _pair()
    results = [_steps_per_epoch(api, model, X, y=Y, steps_per_epoch=4, epochs=3,
                                shuffle=False) for api, model in ((keras, theirs), (reglab, ours))]
    assert results[1][0] == results[0][0] == [4, 4, 4]
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-5)
    _close_weights(theirs, ours)


def test_evaluate_and_predict_on_a_dataset_step_through_its_batches_as_keras():
    def count(api, model):
        seen = {"test": 0, "predict": 0}

        def add(kind):
            return lambda batch, logs=None: seen.__setitem__(kind, seen[kind] + 1)

        spy = api.callbacks.LambdaCallback(on_test_batch_end=add("test"),
                                           on_predict_batch_end=add("predict"))
        model.evaluate(_loader(batch_size=10), callbacks=[spy], verbose=0)
        model.predict(_loader(batch_size=10), callbacks=[spy], verbose=0)
        return seen

    theirs, ours = _pair()
    assert count(reglab, ours) == count(keras, theirs) == {"test": 7, "predict": 7}


def test_a_py_dataset_of_num_batches_only_is_read_and_iterated_as_keras():
    class Sized(reglab.utils.PyDataset):
        @property
        def num_batches(self):
            return 3

        def __getitem__(self, index):
            return X[index * 10:(index + 1) * 10], Y[index * 10:(index + 1) * 10]

    class Unsized(reglab.utils.PyDataset):
        def __getitem__(self, index):
            if index >= 4:
                raise IndexError(index)
            return X[index * 10:(index + 1) * 10], Y[index * 10:(index + 1) * 10]

    model = _pair()[1]
    assert len(model.fit(Sized(), epochs=2, verbose=0).history["loss"]) == 2
    assert model.predict(Sized(), verbose=0).shape == (30, 3)
    assert model.predict(Unsized(), verbose=0).shape == (40, 3)
    assert len(list(Sized())) == 3 and len(list(Unsized())) == 4


def test_bad_datasets_say_what_is_wrong():
    model = _pair()[1]
    with pytest.raises(ConfigError, match=r"fit: pass either a dataset \(DataLoader\) or "
                                          r"\(x, y\)"):
        model.fit(_loader(), Y, verbose=0)

    class Loose(reglab.utils.PyDataset):
        def __len__(self):
            return 2

        def __getitem__(self, index):
            return (X[:4], Y[:4], W[:4], W[:4])

    with pytest.raises(DataError, match=r"dataset batch 0 must be \(x, y\) or \(x, y, "
                                        r"sample_weight\)\. Got a tuple of 4"):
        model.evaluate(Loose(), verbose=0)

    class XOnly(reglab.utils.PyDataset):
        def __len__(self):
            return 1

        def __getitem__(self, index):
            return X[:4]

    with pytest.raises(DataError, match=r"fit: dataset batch 0 must be \(x, y\) or \(x, y, "
                                        r"sample_weight\)\. Got a ndarray\."):
        model.fit(XOnly(), verbose=0)
    with pytest.raises(ConfigError, match="'workers' must be a positive int"):
        XOnly.__init__(XOnly(), workers=0)


def test_backup_and_restore_refuses_a_dataset_up_front(tmp_path):
    model = _pair()[1]
    backup = reglab.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(ConfigError, match="DataLoader or PyDataset"):
        model.fit(_loader(), epochs=1, callbacks=[backup], verbose=0)


def test_a_model_of_several_inputs_refuses_a_dataset_by_name():
    a, b = reglab.Input((3,)), reglab.Input((3,))
    out = reglab.layers.Dense(3, activation="softmax")(reglab.layers.Concatenate()([a, b]))
    model = reglab.Model([a, b], out)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(ConfigError, match="several inputs takes arrays .* not DataLoader"):
        model.fit(_loader(), verbose=0)


def test_a_dataset_s_odd_batches_are_named_by_the_call_that_reads_them():
    class Ragged(reglab.utils.PyDataset):
        def __len__(self):
            return 2

        def __getitem__(self, index):
            return np.zeros((4, 6 + index), "float32"), Y[:4]

    model = _pair()[1]
    with pytest.raises(DataError, match=r"evaluate: a dataset's batches must share one sample "
                                        r"shape for 'x'\. Got samples of shapes \[\(6,\), \(7,\)\]"):
        model.evaluate(Ragged(), verbose=0)

    def batches():
        while True:
            yield X[:4], Y[:4], W[:4], W[:4]

    with pytest.raises(DataError, match=r"evaluate: a generator must yield \(x, y\) or "
                                        r"\(x, y, sample_weight\) batches\. Got a tuple of 4\."):
        model.evaluate(batches(), steps=2, verbose=0)


def test_keras_s_own_image_data_generator_flow_is_read_as_the_pydataset_it_is():
    """Keras's legacy flow (a Keras PyDataset) given to reglab's fit: one step per batch,
    a pass per epoch, as Keras's fit reads it (not as reglab's own flow)."""
    legacy = pytest.importorskip("keras.src.legacy.preprocessing.image")
    images = RNG.random((16, 8, 8, 1)).astype("float32")
    labels = np.arange(16) % 2
    steps = []
    for api in (keras, reglab):
        flow = legacy.ImageDataGenerator(rotation_range=10).flow(images, labels, batch_size=4,
                                                                  seed=0)
        model = api.Sequential([api.Input((8, 8, 1)), api.layers.Flatten(),
                                api.layers.Dense(2, activation="softmax")])
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        model.fit(flow, epochs=2, verbose=0)
        steps.append(int(model.optimizer.iterations))
    assert steps == [8, 8]
