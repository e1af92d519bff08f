"""Keras 3's model methods, side by side with Keras itself (torch backend): ``losses``,
``train_on_batch`` / ``test_on_batch`` / ``predict_on_batch``, ``get_layer``,
``input_shape`` / ``output_shape`` and the JSON round trip, from the same weights."""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import reglab  # noqa: E402

keras = pytest.importorskip("keras")
# Keras's own NumPy 2 deprecation notices, not ours
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
if keras.backend.backend() != "torch":  # pragma: no cover - another backend chosen outside
    pytest.skip("these comparisons run Keras on its torch backend", allow_module_level=True)


def pair(optimizer: str = "sgd"):
    """The same network in Keras and in reglab, with Keras's initial weights in both."""
    def build(api):
        r = api.regularizers
        return api.Sequential([
            api.Input((5,)),
            api.layers.Dense(6, activation="relu", kernel_regularizer=r.L2(0.05),
                             bias_regularizer=r.L1(0.02), name="hidden"),
            api.layers.Dense(4, activation="tanh", kernel_regularizer=r.L1L2(0.01, 0.03),
                             name="middle"),
            api.layers.Dense(3, activation="softmax", kernel_regularizer=r.L1(0.04),
                             name="output"),
        ])
    keras.utils.set_random_seed(3)
    theirs, ours = build(keras), build(reglab)
    for model, api in ((theirs, keras), (ours, reglab)):
        opt = {"sgd": api.optimizers.SGD(learning_rate=0.1),
               "adam": api.optimizers.Adam(learning_rate=0.01)}[optimizer]
        model.compile(optimizer=opt, loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
    ours.set_weights([w + 0.1 for w in theirs.get_weights()])  # biases away from zero
    theirs.set_weights([w + 0.1 for w in theirs.get_weights()])
    return theirs, ours


def batches(count=4, size=16):
    rng = np.random.default_rng(0)
    return [(rng.normal(size=(size, 5)).astype("float32"), rng.integers(0, 3, size))
            for _ in range(count)]


def test_losses_are_keras_s_weight_penalties():
    theirs, ours = pair()
    expected = [float(keras.ops.convert_to_numpy(loss)) for loss in theirs.losses]
    assert len(expected) == 4  # kernel and bias of the first layer, then one kernel each
    np.testing.assert_allclose([float(loss) for loss in ours.losses], expected, rtol=1e-6)
    x, y = batches(1)[0]
    theirs.train_on_batch(x, y)
    ours.train_on_batch(x, y)
    np.testing.assert_allclose([float(loss) for loss in ours.losses],
                               [float(keras.ops.convert_to_numpy(loss)) for loss in theirs.losses], rtol=1e-5)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_train_on_batch_returns_keras_s_values_step_after_step(optimizer):
    theirs, ours = pair(optimizer)
    for x, y in batches():
        expected = theirs.train_on_batch(x, y)
        got = ours.train_on_batch(x, y)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    x, y = batches(1)[0]
    weights = np.linspace(0.5, 1.5, len(y)).astype("float32")
    assert ours.train_on_batch(x, y, sample_weight=weights, return_dict=True) == \
        pytest.approx(theirs.train_on_batch(x, y, sample_weight=weights, return_dict=True),
                      rel=1e-5)


def test_test_and_predict_on_batch_match_keras():
    theirs, ours = pair()
    x, y = batches(1)[0]
    np.testing.assert_allclose(ours.test_on_batch(x, y), theirs.test_on_batch(x, y),
                               rtol=1e-6)
    assert ours.test_on_batch(x, y, return_dict=True) == pytest.approx(
        theirs.test_on_batch(x, y, return_dict=True), rel=1e-6)
    got = ours.predict_on_batch(x)
    assert isinstance(got, np.ndarray) and got.shape == (16, 3)
    np.testing.assert_allclose(got, theirs.predict_on_batch(x), rtol=1e-5, atol=1e-7)


def test_get_layer_and_shapes_as_keras():
    theirs, ours = pair()
    assert ours.input_shape == theirs.input_shape == (None, 5)
    assert ours.output_shape == theirs.output_shape == (None, 3)
    assert ours.get_layer("middle") is ours.layers[1]
    assert ours.get_layer(index=-1) is ours.layers[-1]
    for args in ({}, {"name": "nope"}, {"index": 7}, {"name": "hidden", "index": 0}):
        with pytest.raises(ValueError) as expected:
            theirs.get_layer(**args)
        with pytest.raises(ValueError) as got:
            ours.get_layer(**args)
        assert str(got.value) == str(expected.value)


def test_to_json_and_back_keeps_the_architecture_and_its_regularizers():
    _, ours = pair()
    text = ours.to_json()
    again = reglab.models.model_from_json(text)
    assert [type(a).__name__ for a in again.layers] == [type(a).__name__ for a in ours.layers]
    assert [layer.get_config() for layer in again.layers] == \
        [layer.get_config() for layer in ours.layers]
    again.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    again.set_weights(ours.get_weights())
    x, _ = batches(1)[0]
    np.testing.assert_array_equal(again.predict(x, verbose=0), ours.predict(x, verbose=0))
    np.testing.assert_allclose([float(v) for v in again.losses],
                               [float(v) for v in ours.losses])
    fresh = reglab.Sequential.from_config(ours.get_config())
    fresh_config, config = fresh.get_config(), ours.get_config()
    assert fresh_config.pop("seed") != config.pop("seed")  # new weights, as Keras's
    assert fresh_config == config
    with pytest.raises(reglab.errors.ConfigError, match="custom_objects"):
        reglab.models.model_from_json(text, custom_objects={"Mine": object})
    with pytest.raises(reglab.errors.ConfigError, match="model_from_json: expected a "
                                                        "Sequential or Functional"):
        reglab.models.model_from_json('{"class_name": "Subclassed"}')
    with pytest.raises(reglab.errors.ConfigError, match="layers\\[0\\]"):
        reglab.models.model_from_json('{"class_name": "Sequential", "config": {"layers": '
                                      '[{"class_name": "Dense", "config": {"units": -1}}]}}')


def test_keras_reads_reglab_s_json_and_reglab_reads_back_what_keras_lacks():
    """to_json writes Keras's form: keras.models.model_from_json builds the same network
    (reglab's own JSON had failed there on its 'module'), and reglab reads back the classes
    and settings Keras has not (ProximalL1, GroupLasso, LabelSmoothing, a RandomFlip's
    fill)."""
    _, ours = pair()
    theirs = keras.models.model_from_json(ours.to_json())
    assert [type(layer).__name__ for layer in theirs.layers] == \
        [type(layer).__name__ for layer in ours.layers]
    theirs.set_weights(ours.get_weights())
    x, _ = batches(1)[0]
    np.testing.assert_allclose(theirs.predict(x, verbose=0), ours.predict(x, verbose=0),
                               rtol=1e-6)
    r, L = reglab.regularizers, reglab.layers
    beyond = reglab.Sequential([
        reglab.Input((4, 4, 1)),
        L.RandomFlip("horizontal", fill_mode="constant"),
        L.Flatten(),
        L.Dense(6, activation="relu", kernel_regularizer=r.ProximalL1(0.01)),
        L.Dense(5, kernel_regularizer=r.GroupLasso(0.02)),
        L.Dense(3, activation="softmax"),
        L.LabelSmoothing(0.1),
    ])
    again = reglab.models.model_from_json(beyond.to_json())
    assert [layer.get_config() for layer in again.layers] == \
        [layer.get_config() for layer in beyond.layers]
    with pytest.raises(Exception, match="ProximalL1|LabelSmoothing|GroupLasso"):
        keras.models.model_from_json(beyond.to_json())  # Keras names what it lacks


def test_batch_methods_take_arrays_and_a_diverged_step_gives_its_values_as_keras():
    theirs, ours = pair()
    x, y = batches(1)[0]
    with pytest.raises(reglab.errors.ConfigError, match="train_on_batch: expected one batch"):
        ours.train_on_batch(iter([(x, y)]))
    with pytest.raises(reglab.errors.ConfigError, match="predict_on_batch: expected one batch"):
        ours.predict_on_batch(iter([x]))
    results = {}
    for model in (theirs, ours):
        model.optimizer.learning_rate = 1e38
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            # the weights blow up at the first step, then the loss is not finite
            results[model] = [model.train_on_batch(x, y) for _ in range(2)]
        if model is ours:
            assert any("NaN or infinite" in str(w.message) for w in said)
    (first_theirs, bad_theirs), (first_ours, bad_ours) = results[theirs], results[ours]
    np.testing.assert_allclose(first_ours, first_theirs, rtol=1e-6)
    # the bad batch's loss is not finite (Keras's softmax probabilities make it NaN; reglab's
    # crossentropy from the logits gives inf where an infinite logit is not the label's), and
    # its accuracy is the batch's, a fraction of its 16 samples, as Keras returns it
    assert not np.isfinite(bad_theirs[0]) and not np.isfinite(bad_ours[0])
    for accuracy in (bad_theirs[1], bad_ours[1]):
        assert 0 <= accuracy <= 1 and float(accuracy * 16).is_integer()


def test_a_frozen_layer_adds_no_penalty_as_in_keras():
    keras.utils.set_random_seed(5)
    models = []
    for api in (keras, reglab):
        r = api.regularizers
        model = api.Sequential([
            api.Input((4,)),
            api.layers.Dense(3, kernel_regularizer=r.L2(0.1), trainable=False, name="frozen"),
            api.layers.Dense(2, kernel_regularizer=r.L2(0.1), name="free")])
        model.compile(optimizer=api.optimizers.SGD(0.1), loss="mse")
        models.append(model)
    theirs, ours = models
    ours.set_weights(theirs.get_weights())
    assert len(ours.losses) == len(theirs.losses) == 1
    x = np.ones((2, 4), "float32")
    y = np.zeros((2, 2), "float32")
    np.testing.assert_allclose(ours.test_on_batch(x, y), theirs.test_on_batch(x, y), rtol=1e-6)
    np.testing.assert_allclose(ours.train_on_batch(x, y), theirs.train_on_batch(x, y),
                               rtol=1e-5)


@pytest.mark.parametrize("metrics", ["absent", None, [], ["accuracy"], ["accuracy", "auc"]])
def test_metrics_names_and_evaluate_are_keras_s(metrics):
    """``metrics_names`` is Keras 3's (``['loss', 'compile_metrics']`` once compiled with
    metrics), and ``evaluate`` returns as many values in the same order."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 5)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    names = {}
    for api in (keras, reglab):
        model = api.Sequential([api.Input((5,)), api.layers.Dense(2, activation="softmax")])
        names[api.__name__] = [list(model.metrics_names)]
        kwargs = {} if metrics == "absent" else {"metrics": metrics}
        if metrics == ["accuracy", "auc"]:
            model = api.Sequential([api.Input((5,)), api.layers.Dense(1, activation="sigmoid")])
            model.compile(optimizer="sgd", loss="binary_crossentropy", **kwargs)
        else:
            model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", **kwargs)
        names[api.__name__].append(list(model.metrics_names))
        scores = model.evaluate(x, y, verbose=0)
        names[api.__name__].append(np.size(scores))
        names[api.__name__].append(list(model.metrics_names))
    assert names["reglab"] == names["keras"]


@pytest.mark.parametrize("hook, at", [("on_train_batch_end", (1, 1)),
                                      ("on_train_batch_end", (0, 2)),
                                      ("on_train_batch_begin", (1, 3)),
                                      ("on_epoch_begin", (1, None))])
def test_stop_training_set_within_an_epoch_ends_it_after_that_batch_as_in_keras(hook, at):
    """Keras ends the epoch after the batch during which a callback set stop_training, then
    validates and calls on_epoch_end over the batches trained, and stops."""
    theirs, ours = pair("adam")
    x = np.concatenate([b[0] for b in batches(5)])
    y = np.concatenate([b[1] for b in batches(5)])
    epoch_at, batch_at = at
    results = []
    for api, model in ((keras, theirs), (reglab, ours)):
        seen = []

        class StopWithin(api.callbacks.Callback):
            def __init__(self, seen):
                super().__init__()
                self.seen = seen

            def on_epoch_begin(self, epoch, logs=None):
                self.epoch = epoch
                if hook == "on_epoch_begin" and epoch == epoch_at:
                    self.model.stop_training = True

            def on_train_batch_begin(self, batch, logs=None):
                if hook == "on_train_batch_begin" and (self.epoch, batch) == at:
                    self.model.stop_training = True

            def on_train_batch_end(self, batch, logs=None):
                self.seen.append((self.epoch, batch))
                if hook == "on_train_batch_end" and (self.epoch, batch) == at:
                    self.model.stop_training = True

            def on_epoch_end(self, epoch, logs=None):
                self.seen.append(("end", epoch))

        history = model.fit(x[:64], y[:64], epochs=3, batch_size=16, shuffle=False,
                            validation_data=(x[64:], y[64:]), callbacks=[StopWithin(seen)],
                            verbose=0)
        results.append((seen, history.history, model.get_weights()))
    (k_seen, k_history, k_weights), (r_seen, r_history, r_weights) = results
    assert r_seen == k_seen
    assert r_history.keys() == k_history.keys()
    for key in k_history:
        np.testing.assert_allclose(r_history[key], k_history[key], rtol=1e-5, atol=1e-6)
    for a, b in zip(r_weights, k_weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _recorder(api, calls):
    """A callback that records every test and predict hook with its logs."""

    class Record(api.callbacks.Callback):
        def on_test_begin(self, logs=None):
            calls.append(("test_begin",))

        def on_test_batch_begin(self, batch, logs=None):
            calls.append(("test_batch_begin", batch))

        def on_test_batch_end(self, batch, logs=None):
            calls.append(("test_batch_end", batch, dict(logs)))

        def on_test_end(self, logs=None):
            calls.append(("test_end", dict(logs)))

        def on_predict_begin(self, logs=None):
            calls.append(("predict_begin",))

        def on_predict_batch_begin(self, batch, logs=None):
            calls.append(("predict_batch_begin", batch))

        def on_predict_batch_end(self, batch, logs=None):
            calls.append(("predict_batch_end", batch,
                          {"outputs": np.asarray(keras.ops.convert_to_numpy(logs["outputs"]))}))

        def on_predict_end(self, logs=None):
            calls.append(("predict_end",))
    return Record()


def _same_calls(got, expected):
    assert [c[:2] if len(c) > 2 else c[:1] for c in got] == \
        [c[:2] if len(c) > 2 else c[:1] for c in expected]
    for g, e in zip(got, expected):
        if isinstance(e[-1], dict):
            assert g[-1].keys() == e[-1].keys(), e[0]
            for key in e[-1]:
                np.testing.assert_allclose(g[-1][key], e[-1][key], rtol=1e-5, atol=1e-6)


def test_test_and_predict_hooks_run_as_in_keras():
    """fit's validation, evaluate(callbacks=) and predict(callbacks=) call the test and
    predict hooks batch by batch with Keras's logs (running means, and each batch's
    outputs)."""
    x = np.concatenate([b[0] for b in batches(3)])
    y = np.concatenate([b[1] for b in batches(3)])
    theirs, ours = pair("adam")
    calls = {}
    for api, model in ((keras, theirs), (reglab, ours)):
        record = calls.setdefault(api.__name__, [])
        model.fit(x[:32], y[:32], epochs=2, batch_size=8, shuffle=False,
                  validation_data=(x[32:], y[32:]), callbacks=[_recorder(api, record)],
                  verbose=0)
        model.evaluate(x, y, batch_size=20, callbacks=[_recorder(api, record)], verbose=0)
        model.predict(x, batch_size=20, callbacks=[_recorder(api, record)], verbose=0)
    assert len(calls["keras"]) == 2 * (2 + 2 * 2) + (2 + 2 * 3) + (2 + 2 * 3)
    _same_calls(calls["reglab"], calls["keras"])


@pytest.mark.parametrize(("input_shape", "x_shape", "build_rest"), [
    ((1,), (30,), lambda api: [api.layers.Dense(2)]),  # one feature given as (N,)
    ((4,), (30, 4, 1), lambda api: [api.layers.Dense(2)]),  # a trailing axis of one
    ((6, 6, 1), (30, 6, 6), lambda api: [api.layers.Conv2D(2, 3), api.layers.Flatten(),
                                         api.layers.Dense(2)]),  # images without channels
])
def test_inputs_a_rank_off_are_adjusted_as_keras(input_shape, x_shape, build_rest):
    rng = np.random.default_rng(4)
    x = rng.normal(size=x_shape).astype("float32")
    y = rng.normal(size=(30, 2)).astype("float32")

    def build(api):
        model = api.Sequential([api.Input(input_shape), *build_rest(api)])
        model.compile(optimizer=api.optimizers.SGD(0.05), loss="mse", metrics=["mae"])
        return model
    keras.utils.set_random_seed(2)
    theirs, ours = build(keras), build(reglab)
    ours.set_weights(theirs.get_weights())
    expected = theirs.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0,
                          validation_data=(x[:10], y[:10])).history
    got = ours.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0,
                   validation_data=(x[:10], y[:10])).history
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, err_msg=key)
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.evaluate(x, y, verbose=0), theirs.evaluate(x, y, verbose=0),
                               rtol=1e-5)


def test_inputs_off_by_more_than_a_trailing_one_are_refused_by_name():
    model = reglab.Sequential([reglab.Input((3, 1)), reglab.layers.Flatten(),
                               reglab.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(reglab.errors.DataError, match=r"expects samples of shape \(3, 1\)"):
        model.fit(np.zeros((4, 2)), np.zeros(4), verbose=0)


def test_logs_come_in_keras_s_order():
    """Keras sorts its logs (``pythonify_logs``): the training keys by name, then the
    validation keys; in History, the callbacks' logs and ``evaluate(return_dict=True)``,
    while ``evaluate``'s list keeps the compiled order."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 5)).astype("float32"), rng.integers(0, 6, 32)
    seen = {}
    for api in (keras, reglab):
        class Record(api.callbacks.Callback):
            keys: list = []

            def on_train_batch_end(self, batch, logs=None):
                self.keys.append(("batch", list(logs)))

            def on_epoch_end(self, epoch, logs=None):
                self.keys.append(("epoch", list(logs)))

        keras.utils.set_random_seed(1)
        model = api.Sequential([api.Input((5,)), api.layers.Dense(6, activation="softmax")])
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                      metrics=["sparse_top_k_categorical_accuracy", "accuracy",
                               "sparse_categorical_accuracy"])
        record = Record()
        record.keys = []
        history = model.fit(x, y, batch_size=16, epochs=1, verbose=0, validation_data=(x, y),
                            callbacks=[record])
        scores = model.evaluate(x, y, verbose=0)
        seen[api.__name__] = (record.keys, list(history.history),
                              list(model.evaluate(x, y, verbose=0, return_dict=True)),
                              len(scores))
    assert seen["reglab"] == seen["keras"]
    assert seen["keras"][1][0] == "accuracy"  # sorted, not the compiled order


def test_logs_of_weighted_metrics_and_several_outputs_come_in_keras_s_order():
    """All keys sorted together (a training key that sorts after 'val_' among them), and
    evaluate's list for several outputs: their losses, then the other logs by name."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4)).astype("float32")
    y_zeta = np.eye(3, dtype="float32")[rng.integers(0, 3, 16)]
    y_alpha = rng.integers(0, 2, (16, 1)).astype("float32")
    seen, weights = {}, None
    for api in (keras, reglab):
        keras.utils.set_random_seed(0)
        i = api.Input((4,))
        model = api.Model(i, [api.layers.Dense(3, activation="softmax", name="zeta")(i),
                              api.layers.Dense(1, activation="sigmoid", name="alpha")(i)])
        if weights is None:
            weights = model.get_weights()
        model.set_weights(weights)
        model.compile(optimizer="sgd", loss={"zeta": "categorical_crossentropy",
                                             "alpha": "binary_crossentropy"},
                      metrics={"zeta": ["mse", "accuracy"], "alpha": ["accuracy"]})
        history = model.fit(x, [y_zeta, y_alpha], epochs=1, verbose=0,
                            validation_data=(x, [y_zeta, y_alpha]))
        single = api.Sequential([api.Input((4,)), api.layers.Dense(3, activation="softmax")])
        single.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["accuracy"],
                       weighted_metrics=["accuracy"])
        weighted = single.fit(x, y_zeta, epochs=1, verbose=0, validation_data=(x, y_zeta),
                              sample_weight=np.linspace(0.1, 1, 16).astype("float32"))
        seen[api.__name__] = (list(history.history), list(weighted.history),
                              model.evaluate(x, [y_zeta, y_alpha], verbose=0),
                              model.evaluate(x, [y_zeta, y_alpha], verbose=0, return_dict=True))
    ours, theirs = seen["reglab"], seen["keras"]
    assert ours[:2] == theirs[:2]
    np.testing.assert_allclose(ours[2], theirs[2], rtol=1e-5)
    assert list(ours[3]) == list(theirs[3])


def test_an_unbuilt_model_s_summary_and_count_params_are_keras_s():
    # the slides' pattern without an input shape: Keras's table of "?" and "0 (unbuilt)",
    # and a ValueError from count_params
    seen = {}
    for api in (keras, reglab):
        model = api.Sequential([api.layers.Dense(64, activation="relu", name="hidden"),
                                api.layers.Dropout(0.5, name="drop"),
                                api.layers.Dense(10, name="out")], name="tutorial")
        lines = []
        model.summary(print_fn=lambda text, _lines=lines, **_: _lines.append(text))
        seen[api.__name__] = "\n".join(lines)
        with pytest.raises(ValueError, match="count_params"):
            model.count_params()
    assert seen["reglab"].strip() == seen["keras"].strip()


@pytest.mark.parametrize("axis", [3, -1])
def test_batch_normalization_named_by_its_positive_channels_axis_trains_as_keras_s(axis):
    x = np.random.default_rng(3).normal(size=(16, 4, 4, 2)).astype("float32")
    y = np.random.default_rng(4).integers(0, 3, 16)
    seen, start = {}, None
    for api in (keras, reglab):
        model = api.Sequential([api.Input((4, 4, 2)),
                                api.layers.BatchNormalization(axis=axis, momentum=0.9),
                                api.layers.Flatten(), api.layers.Dense(3, activation="softmax")])
        start = model.get_weights() if start is None else start
        model.set_weights(start)
        model.compile(optimizer=api.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
        history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0).history
        seen[api.__name__] = (history["loss"], model.get_weights(),
                              model.layers[0].get_config()["axis"])
    (k_loss, k_weights, k_axis), (r_loss, r_weights, r_axis) = seen["keras"], seen["reglab"]
    np.testing.assert_allclose(r_loss, k_loss, rtol=1e-5)
    for ours, theirs in zip(r_weights, k_weights, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    assert r_axis == k_axis == axis


def test_a_checkpoint_of_the_best_without_its_monitor_saves_as_keras_3(tmp_path):
    x = np.random.default_rng(5).normal(size=(8, 5)).astype("float32")
    y = np.random.default_rng(6).integers(0, 2, 8)
    for api in (keras, reglab):
        model = api.Sequential([api.Input((5,)), api.layers.Dense(2, activation="softmax")])
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        path = tmp_path / f"{api.__name__}.keras"
        with pytest.warns(UserWarning, match="Can save best model only with val_loss"):
            model.fit(x, y, epochs=1, verbose=0, callbacks=[
                api.callbacks.ModelCheckpoint(str(path), save_best_only=True)])
        assert path.exists(), api.__name__


@pytest.mark.parametrize("verbose", [1, 2])
def test_a_one_epoch_fit_prints_no_epoch_header_as_keras(capsys, verbose):
    """The slides' fit(..., callbacks=[early_stop]) trains one epoch: Keras prints no
    "Epoch 1/1" line then (its header only when there are several epochs)."""
    x = np.random.default_rng(0).random((16, 4)).astype("float32")
    y = np.arange(16) % 2
    printed = {}
    for api in (keras, reglab):
        model = api.Sequential([api.Input((4,)), api.layers.Dense(2, activation="softmax")])
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        capsys.readouterr()
        model.fit(x, y, verbose=verbose)
        one = capsys.readouterr().out
        model.fit(x, y, epochs=2, verbose=verbose)
        two = capsys.readouterr().out
        printed[api.__name__] = ("Epoch 1/1" in one, "Epoch 1/2" in two and "Epoch 2/2" in two)
    assert printed["reglab"] == printed["keras"] == (False, True)


@pytest.mark.filterwarnings("ignore:Do not pass an `input_shape`")
def test_a_model_with_a_known_input_shape_is_built_as_keras_s():
    states = {}
    for api in (keras, reglab):
        states[api.__name__] = (
            api.Sequential([api.layers.Dense(2, input_shape=(3,))]).built,
            api.Sequential([api.Input((3,)), api.layers.Dense(2)]).built,
            api.Sequential([api.layers.Dense(2)]).built)
    assert states["reglab"] == states["keras"] == (True, True, False)


def test_progress_lines_of_fit_evaluate_and_predict_are_keras_s(capsys):
    """What fit, evaluate and predict print at verbose 1, 2 and by default: Keras's bar (its
    ANSI bold and colours, elapsed seconds, time per step) or line, the same text but for
    the numbers. Each line is compared as it stands after its last rewrite (Keras's
    intermediate updates depend on timing)."""
    import re

    x = np.random.default_rng(0).random((64, 4)).astype("float32")
    y = np.arange(64) % 2
    printed = {}
    for api in (keras, reglab):
        model = api.Sequential([api.Input((4,)), api.layers.Dense(2, activation="softmax")])
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        capsys.readouterr()
        for verbose in (1, 2):
            model.fit(x, y, epochs=2, verbose=verbose)
            model.evaluate(x, y, verbose=verbose)
            model.predict(x, verbose=verbose)
        model.evaluate(x, y)
        model.predict(x)
        # each line as it stands after its last rewrite (after the last carriage return)
        lines = [line.split("\r")[-1] for line in capsys.readouterr().out.split("\n")]
        numbers = [re.sub(r"\d+(\.\d+)?(e[-+]\d+)?", "N", line).rstrip()
                   for line in lines if line]
        printed[api.__name__] = [re.sub(r"N[mu]?s/step", "T/step", line) for line in numbers]
    assert printed["reglab"] == printed["keras"]
    assert any("━" in line and "T/step - accuracy: N - loss: N" in line
               for line in printed["reglab"])


@pytest.mark.parametrize("metrics", [None, [["accuracy"], []]])
@pytest.mark.parametrize("first", ["predict", "evaluate", "fit", "train_on_batch"])
def test_a_multi_output_model_s_metrics_names_are_keras_s(metrics, first):
    """A model with several outputs: ``metrics_names`` gains ``'<output>_loss'`` for each
    once its loss has been computed (not by ``predict``), and loses them when compiled
    again, as Keras's."""
    x = np.ones((10, 8), "float32")
    y = [np.zeros(10), np.zeros((10, 1), "float32")]
    names = {}
    for api in (keras, reglab):
        inputs = api.Input((8,))
        outputs = [api.layers.Dense(3, activation="softmax", name="cls")(inputs),
                   api.layers.Dense(1, name="reg")(inputs)]
        model = api.Model(inputs, outputs)

        def compile_it(model=model):
            model.compile(optimizer="sgd", loss=["sparse_categorical_crossentropy", "mse"],
                          metrics=metrics)
        compile_it()
        seen = [list(model.metrics_names)]
        if first == "predict":
            model.predict(x, verbose=0)
        elif first == "evaluate":
            seen.append(np.size(model.evaluate(x, y, verbose=0)))
        elif first == "fit":
            model.fit(x, y, epochs=1, verbose=0)
        else:
            model.train_on_batch(x, y)
        seen.append(list(model.metrics_names))
        compile_it()
        seen.append(list(model.metrics_names))
        names[api.__name__] = seen
    assert names["reglab"] == names["keras"]
