"""What a side-by-side review with Keras 3 found (review 115), fixed and checked against
Keras itself: the logged loss with penalties summed as Keras sums it."""

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


def data(n=90, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 8)).astype("float32"), rng.integers(0, 3, n)


def penalized(api, regularizer: str):
    kinds = {"l2": lambda: api.regularizers.L2(0.1),
             "l1_l2": lambda: api.regularizers.L1L2(l1=0.01, l2=0.05)}
    return api.Sequential([
        api.Input((8,)),
        api.layers.Dense(16, activation="relu", kernel_regularizer=kinds[regularizer](),
                         activity_regularizer=api.regularizers.L2(0.01)
                         if regularizer == "l1_l2" else None),
        api.layers.Dense(3, activation="softmax", kernel_regularizer=kinds[regularizer]()),
    ])


@pytest.mark.parametrize("regularizer", ["l2", "l1_l2"])
def test_the_loss_with_penalties_is_keras_s_float32_sum(regularizer):
    """Each batch's float32 loss as Keras sums it (the data loss, then the activity penalties,
    then the weights' penalties, one at a time), times the batch's size, rounded, then summed,
    as Keras's loss tracker: the logged ``loss``, ``val_loss`` and ``evaluate``'s loss are
    Keras's float32 values, bit for bit. They had been the sum of two means made in float64,
    each summed with a fused multiply-add, off in the 7th digit. A learning rate of 0 keeps
    both models' weights equal, so that only the logging is compared (trained weights part
    at round-off: Keras's and reglab's gradients are summed in other orders). The validation
    batches are given: without them reglab validates in larger ones (the same values, to
    round-off)."""
    x, y = data()
    seen, start = {}, None
    for api in (keras, reglab):
        keras.utils.set_random_seed(0)
        model = penalized(api, regularizer)
        start = model.get_weights() if start is None else start
        model.set_weights(start)
        model.compile(optimizer=api.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy")
        history = model.fit(x, y, epochs=2, batch_size=30, shuffle=False, verbose=0,
                            validation_data=(x[:40], y[:40]),
                            validation_batch_size=30).history  # Keras's default batches
        seen[api.__name__] = (history["loss"], history["val_loss"],
                              model.evaluate(x, y, batch_size=32, verbose=0))
    for ours, theirs in zip(seen["reglab"], seen["keras"]):
        ours, theirs = np.atleast_1d(ours), np.atleast_1d(theirs)
        assert all(float(np.float32(v)) == v for v in ours)  # float32 values, as Keras's
        np.testing.assert_array_equal(ours, theirs)


def test_batch_hooks_take_their_logs_by_name_as_keras_gives_them():
    """Keras calls ``on_*_batch_begin/end(batch, logs=logs)`` (and the train hooks' aliases
    ``on_batch_begin/end`` so too): a callback whose hooks take ``**kwargs`` had been given
    the logs by position, a TypeError."""
    x, y = data(40)
    seen = {}
    for api in (keras, reglab):
        calls = seen.setdefault(api.__name__, [])

        class ByName(api.callbacks.Callback):
            def __init__(self, calls):
                super().__init__()
                self.calls = calls

            def on_batch_end(self, batch, **kwargs):
                self.calls.append(("batch_end", sorted(kwargs)))

            def on_test_batch_begin(self, batch, **kwargs):
                self.calls.append(("test_batch_begin", sorted(kwargs)))

            def on_predict_batch_end(self, batch, **kwargs):
                self.calls.append(("predict_batch_end", sorted(kwargs)))

        model = penalized(api, "l2")
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        model.fit(x, y, epochs=1, batch_size=20, verbose=0, callbacks=[ByName(calls)])
        model.evaluate(x, y, batch_size=20, verbose=0, callbacks=[ByName(calls)])
        model.predict(x, batch_size=20, verbose=0, callbacks=[ByName(calls)])
    assert seen["reglab"] == seen["keras"]
    assert seen["keras"].count(("batch_end", ["logs"])) == 2


@pytest.mark.parametrize("zoom", [0.2, 0, 1, [0.5, 1.5], (0.9, 1.1)])
def test_image_data_generator_keeps_its_zoom_range_as_keras_keeps_it(zoom):
    """Keras keeps ``zoom_range`` as the range it draws from, ``[1 - z, 1 + z]`` for a float:
    reglab had kept the argument as given."""
    legacy = pytest.importorskip("keras.src.legacy.preprocessing.image")
    ours = reglab.preprocessing.image.ImageDataGenerator(zoom_range=zoom)
    theirs = legacy.ImageDataGenerator(zoom_range=zoom)
    assert ours.zoom_range == theirs.zoom_range
    params = {"theta": 0, "tx": 0, "ty": 0, "shear": 0, "zx": 1, "zy": 1}
    drawn = [g.get_random_transform((8, 8, 1), seed=3) for g in (ours, theirs)]
    assert {k: drawn[0][k] for k in params} == {k: drawn[1][k] for k in params}


def test_compiled_metric_objects_hold_what_the_last_pass_saw_as_keras_s():
    """``model.metrics`` (the loss tracker and 'compile_metrics'), ``get_metrics_result()``
    and ``reset_metrics()``, and a metric object given to compile, which Keras updates: after
    a fit with validation they hold the last validation's values, after evaluate its values,
    after a fit without validation the last epoch's training values; predict leaves them.
    reglab had none of the three, and left the object at 0."""
    x, y = data(60)
    seen, start = {}, None
    for api in (keras, reglab):
        keras.utils.set_random_seed(0)
        model = api.Sequential([api.Input((8,)), api.layers.Dense(3, activation="softmax")])
        start = model.get_weights() if start is None else start
        model.set_weights(start)
        steps = [[m.name for m in model.metrics]]
        accuracy = api.metrics.SparseCategoricalAccuracy(name="myacc")
        model.compile(optimizer=api.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy",
                      metrics=[accuracy, "accuracy"])
        steps.append([m.name for m in model.metrics])

        def results(model=model, accuracy=accuracy):
            return {**{k: float(v) for k, v in model.get_metrics_result().items()},
                    "object": float(accuracy.result())}
        history = model.fit(x, y, epochs=2, batch_size=30, shuffle=False, verbose=0,
                            validation_data=(x[:20], y[:20]), validation_batch_size=20)
        steps.append(results())
        steps.append(history.history["val_loss"][-1])
        model.evaluate(x, y, batch_size=32, verbose=0)
        steps.append(results())
        model.predict(x, verbose=0)
        steps.append(results())
        model.reset_metrics()
        steps.append(results())
        model.fit(x, y, epochs=1, batch_size=30, shuffle=False, verbose=0)
        steps.append(results())
        seen[api.__name__] = steps
    ours, theirs = seen["reglab"], seen["keras"]
    assert ours[:2] == theirs[:2] == [[], ["loss", "compile_metrics"]]
    assert ours[2]["loss"] == ours[3]  # the last validation's loss
    assert ours[6] == {"loss": 0.0, "myacc": 0.0, "accuracy": 0.0, "object": 0.0}
    for mine, keras_s in zip(ours[2:], theirs[2:]):
        if isinstance(mine, dict):
            assert mine.keys() == keras_s.keys()
            np.testing.assert_allclose(list(mine.values()), list(keras_s.values()), rtol=1e-6)
