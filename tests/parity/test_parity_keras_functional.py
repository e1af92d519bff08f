"""Keras's functional API side by side with Keras 3 (torch backend): graphs with residual
connections, branches and merge layers give Keras's outputs, losses and training steps from
the same weights; in a population, graph members train as they would alone."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import reglab  # noqa: E402
from reglab.errors import ConfigError  # noqa: E402

keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":  # pragma: no cover
    pytest.skip("these comparisons run Keras on its torch backend", allow_module_level=True)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def residual(api, l2=0.01):
    """A residual MLP: input -> dense -> [dense -> dense] + skip -> batch norm -> softmax."""
    r = api.regularizers
    inputs = api.Input(shape=(6,), name="features")
    h = api.layers.Dense(8, activation="relu", kernel_regularizer=r.L2(l2), name="stem")(inputs)
    b = api.layers.Dense(8, activation="relu", name="branch_a")(h)
    b = api.layers.Dense(8, kernel_regularizer=r.L1(0.001), name="branch_b")(b)
    merged = api.layers.Add(name="skip")([h, b])
    merged = api.layers.BatchNormalization(name="norm")(merged)
    outputs = api.layers.Dense(3, activation="softmax", name="head")(merged)
    return api.Model(inputs, outputs)


def branches(api, merge):
    inputs = api.Input(shape=(5,))
    a = api.layers.Dense(4, activation="tanh", name="a")(inputs)
    b = api.layers.Dense(4, activation="sigmoid", name="b")(inputs)
    joined = getattr(api.layers, merge)(name="join")([a, b])
    return api.Model(inputs, api.layers.Dense(2, name="out")(joined))


def assert_members_train_as_alone(member):
    """Two members (``member(l2, seed)``) of one population, with other penalties and seeds,
    each train as in a population of its own, bit for bit."""
    from reglab.engine import Population

    x, y = data(48)
    settings = ((0.0, 0), (0.1, 3))
    together = Population([member(*s) for s in settings]).fit(x, y, batch_size=16, epochs=3)
    for i, s in enumerate(settings):
        alone = Population([member(*s)]).fit(x, y, batch_size=16, epochs=3)
        np.testing.assert_array_equal(together.members[i].history["loss"],
                                      alone.members[0].history["loss"])


def same_weights(theirs, ours):
    ours.set_weights(theirs.get_weights())


def compile_both(theirs, ours, optimizer: str, sgd_rate: float, **compile_args):
    """Both models compiled alike: SGD at ``sgd_rate``, or Adam (its epsilon raised from
    1e-7: a weight whose gradient is round-off, ~1e-9, moves by lr * g / epsilon, which
    would make round-off the difference)."""
    for model, api in ((theirs, keras), (ours, reglab)):
        opt = api.optimizers.SGD(sgd_rate) if optimizer == "sgd" else \
            api.optimizers.Adam(0.01, epsilon=1e-3)
        model.compile(optimizer=opt, **compile_args)


def data(n=24, features=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, features)).astype("float32"), rng.integers(0, 3, n)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_residual_network_trains_as_in_keras(optimizer):
    keras.utils.set_random_seed(1)
    theirs, ours = residual(keras), residual(reglab)
    assert [layer.name for layer in ours.layers] == [layer.name for layer in theirs.layers]
    same_weights(theirs, ours)
    for model, api in ((theirs, keras), (ours, reglab)):
        # (Adam's epsilon raised from 1e-7: a weight whose gradient is round-off, ~1e-9,
        # moves by lr * g / epsilon, which would make round-off the difference)
        opt = api.optimizers.SGD(0.05) if optimizer == "sgd" else \
            api.optimizers.Adam(0.01, epsilon=1e-3)
        model.compile(optimizer=opt, loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
    x, y = data()
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([float(v) for v in ours.losses],
                               [float(keras.ops.convert_to_numpy(v)) for v in theirs.losses],
                               rtol=1e-6)
    rtol = 1e-5
    for step in range(4):
        batch = slice(step * 6, step * 6 + 6)
        np.testing.assert_allclose(ours.train_on_batch(x[batch], y[batch]),
                                   theirs.train_on_batch(x[batch], y[batch]),
                                   rtol=rtol, atol=1e-6)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-6)
    np.testing.assert_allclose(ours.evaluate(x, y, verbose=0), theirs.evaluate(x, y, verbose=0),
                               rtol=1e-5)
    assert ours.input_shape == theirs.input_shape and ours.output_shape == theirs.output_shape


@pytest.mark.parametrize("merge", ["Add", "Subtract", "Multiply", "Average", "Maximum",
                                   "Minimum", "Concatenate"])
def test_merge_layers_give_keras_s_outputs(merge):
    keras.utils.set_random_seed(2)
    theirs, ours = branches(keras, merge), branches(reglab, merge)
    same_weights(theirs, ours)
    x, _ = data(features=5)
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    assert ours.get_layer("join").compute_output_shape([(4,), (4,)]) == \
        tuple(theirs.get_layer("join").output.shape[1:])


def test_graph_members_of_one_population_train_as_alone():
    """Two members of one residual graph with other penalties: each as in a population of
    its own, bit for bit."""
    from reglab.engine import Member

    def member(l2, seed):
        model = residual(reglab, l2)
        return Member(model.layers, "adam", seed, input_shape=(6,), graph=model._graph)
    assert_members_train_as_alone(member)


def test_what_the_functional_api_does_not_take_yet_is_refused():
    inputs = reglab.Input(shape=(4,))
    dense = reglab.layers.Dense(4)
    with pytest.raises(ConfigError, match="shared layer takes inputs of one shape"):
        dense(reglab.layers.Dense(5)(dense(inputs)))
    other = reglab.Input(shape=(4,))
    mixed = reglab.layers.Add()([reglab.layers.Dense(4)(inputs), reglab.layers.Dense(4)(other)])
    with pytest.raises(ConfigError, match="not one of the model's 'inputs'"):
        reglab.Model(inputs, mixed)
    with pytest.raises(ConfigError, match="lists one tensor twice"):
        reglab.Model([inputs, other], [mixed, mixed])
    with pytest.raises(ConfigError, match="'outputs' as a dict is not supported yet"):
        reglab.Model([inputs, other], {"a": mixed})
    with pytest.raises(ConfigError, match="lists one reglab.Input twice"):
        reglab.Model([inputs, inputs], mixed)
    with pytest.raises(ConfigError, match="a layer with weights is called on an array inside "
                                          "a model only"):
        reglab.layers.Dense(2)(np.zeros((3, 4)))
    with pytest.raises(ConfigError, match="layers are called on reglab.Input"):
        reglab.layers.Dense(2)([[0.0, 1.0]])  # neither symbolic nor an array
    with pytest.raises(ConfigError, match="expected a list of inputs"):
        reglab.layers.Add()(inputs)
    with pytest.raises(ConfigError, match="expected inputs of one shape"):
        reglab.layers.Add()([reglab.layers.Dense(3)(inputs), reglab.layers.Dense(4)(inputs)])
    model = reglab.Model(inputs, reglab.layers.Dense(2)(inputs))
    with pytest.raises(ConfigError, match="Model.add"):
        model.add(reglab.layers.Dense(2))


def test_functional_weights_files_move_between_keras_and_reglab(tmp_path):
    keras.utils.set_random_seed(4)
    theirs, ours = residual(keras), residual(reglab)
    x, _ = data()
    theirs.save_weights(tmp_path / "theirs.weights.h5")
    ours.load_weights(tmp_path / "theirs.weights.h5")
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    ours.set_weights([w * 0.5 for w in ours.get_weights()])
    ours.save_weights(tmp_path / "ours.weights.h5")
    theirs.load_weights(tmp_path / "ours.weights.h5")
    np.testing.assert_allclose(theirs.predict(x, verbose=0), ours.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_functional_models_save_load_and_json_round_trip(tmp_path):
    model = residual(reglab)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    x, y = data()
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    model.save(tmp_path / "residual.keras")
    loaded = reglab.models.load_model(tmp_path / "residual.keras")
    assert type(loaded).__name__ == "Model" and loaded._graph == model._graph
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    again = reglab.models.model_from_json(model.to_json())
    assert [type(a).__name__ for a in again.layers] == [type(a).__name__ for a in model.layers]
    again.set_weights(model.get_weights())
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))
    fresh = reglab.Model.from_config(model.get_config())
    assert fresh._graph == model._graph and fresh.seed != model.seed
    with pytest.raises(ConfigError, match="graph"):
        reglab.Model.from_graph(model.layers[:2], [(-1,), (5,)], (6,))


def test_keras_io_s_functional_mlp_runs_with_the_import_changed():
    """keras.io's "The Functional API" guide, its first model (an MNIST MLP; random data
    here, offline), with ``import reglab as keras`` and ``from reglab import layers``."""
    keras_ = reglab
    layers = reglab.layers
    inputs = keras_.Input(shape=(784,))
    dense = layers.Dense(64, activation="relu")
    x = dense(inputs)
    x = layers.Dense(64, activation="relu")(x)
    outputs = layers.Dense(10)(x)
    model = keras_.Model(inputs=inputs, outputs=outputs, name="mnist_model")
    model.summary(print_fn=lambda *_: None)
    rng = np.random.default_rng(0)
    x_train = rng.random((256, 784)).astype("float32")
    y_train = rng.integers(0, 10, 256)
    model.compile(loss=keras_.losses.SparseCategoricalCrossentropy(from_logits=True),
                  optimizer=keras_.optimizers.RMSprop(), metrics=["accuracy"])
    history = model.fit(x_train, y_train, batch_size=64, epochs=2, validation_split=0.2,
                        verbose=0)
    assert len(history.history["val_loss"]) == 2
    test_scores = model.evaluate(x_train[:64], y_train[:64], verbose=0)
    assert len(test_scores) == 2


def test_a_small_residual_cnn_gives_keras_s_outputs():
    """keras.io's toy ResNet's pattern, small: Conv2D blocks with layers.add and global
    average pooling."""
    def build(api):
        layers = api.layers
        inputs = api.Input(shape=(12, 12, 3), name="img")
        x = layers.Conv2D(8, 3, activation="relu")(inputs)
        block_1_output = layers.MaxPooling2D(3)(x)
        x = layers.Conv2D(8, 3, activation="relu", padding="same")(block_1_output)
        x = layers.Conv2D(8, 3, activation="relu", padding="same")(x)
        block_2_output = layers.add([x, block_1_output])
        x = layers.GlobalAveragePooling2D()(block_2_output)
        x = layers.Dense(16, activation="relu")(x)
        x = layers.Dropout(0.5)(x)
        return api.Model(inputs, layers.Dense(4)(x), name="toy_resnet")
    keras.utils.set_random_seed(6)
    theirs, ours = build(keras), build(reglab)
    same_weights(theirs, ours)
    x = np.random.default_rng(1).random((10, 12, 12, 3)).astype("float32")
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("make, shape", [
    (lambda api: api.layers.Reshape((6, 8)), (48,)),
    (lambda api: api.layers.Reshape((-1, 4)), (6, 4, 2)),
    (lambda api: api.layers.Permute((2, 1, 3)), (5, 4, 3)),
    (lambda api: api.layers.ZeroPadding2D(((1, 0), (2, 1))), (4, 5, 2)),
    (lambda api: api.layers.ZeroPadding2D(2), (3, 3, 1)),
    (lambda api: api.layers.AveragePooling2D(2), (6, 6, 2)),
    (lambda api: api.layers.AveragePooling2D(3, strides=2, padding="same"), (7, 5, 2)),
    (lambda api: api.layers.LayerNormalization(), (7,)),
    (lambda api: api.layers.LayerNormalization(center=False, epsilon=0.1), (4, 6)),
])
def test_shape_and_normalization_layers_give_keras_s_outputs(make, shape):
    keras.utils.set_random_seed(7)
    models = []
    for api in (keras, reglab):
        inputs = api.Input(shape=shape)
        x = make(api)(inputs)
        x = api.layers.Flatten()(x)
        models.append(api.Model(inputs, api.layers.Dense(3)(x)))
    theirs, ours = models
    weights = theirs.get_weights()
    rng = np.random.default_rng(3)
    ours.set_weights([w + rng.normal(0, 0.1, w.shape).astype(w.dtype) for w in weights])
    theirs.set_weights(ours.get_weights())  # gamma and beta away from 1 and 0
    x = rng.normal(size=(5, *shape)).astype("float32")
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)
    assert ours.output_shape == theirs.output_shape


def test_embedding_gives_keras_s_outputs_and_refuses_indices_outside_its_table():
    keras.utils.set_random_seed(8)
    models = []
    for api in (keras, reglab):
        inputs = api.Input(shape=(5,))
        x = api.layers.Embedding(10, 4)(inputs)
        models.append(api.Model(inputs, api.layers.Dense(3)(api.layers.Flatten()(x))))
    theirs, ours = models
    same_weights(theirs, ours)
    x = np.random.default_rng(2).integers(0, 10, (6, 5)).astype("float32")
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=1e-6, atol=1e-6)
    with pytest.raises(ConfigError, match=r"Embedding: indices must be in \[0, 10\)"):
        ours.predict(x + 5, verbose=0)
    fresh = reglab.Sequential([reglab.Input((3,)), reglab.layers.Embedding(200, 50)])
    table = fresh.get_weights()[0]  # Keras's 'uniform': U(-0.05, 0.05)
    assert table.shape == (200, 50) and table.min() >= -0.05 and table.max() < 0.05
    assert abs(table.mean()) < 0.002 and abs(table.std() - 0.1 / 12 ** 0.5) < 0.001


def test_layers_come_in_keras_s_order_so_weights_files_match_layer_for_layer(tmp_path):
    """Branches of equal shapes whose order a plain depth-first walk would swap: Keras orders
    by depth; a weights file names layers by that order."""
    def build(api):
        inputs = api.Input((4,), name="x")
        a = api.layers.Dense(4, name="a")(inputs)
        b = api.layers.Dense(4, name="b")(inputs)
        c = api.layers.Dense(4, name="c")(b)
        d = api.layers.Dense(4, name="d")(c)
        return api.Model(inputs, api.layers.Dense(2, name="o")(api.layers.Add(name="add")([a, d])))
    keras.utils.set_random_seed(9)
    theirs, ours = build(keras), build(reglab)
    assert [layer.name for layer in ours.layers] == [layer.name for layer in theirs.layers]
    theirs.save_weights(tmp_path / "branches.weights.h5")
    ours.load_weights(tmp_path / "branches.weights.h5")
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_call_arguments_are_refused_not_ignored():
    inputs = reglab.Input((4,))
    with pytest.raises(ConfigError, match="training= or mask= are not supported"):
        reglab.layers.Dropout(0.5)(inputs, training=True)
    with pytest.raises(ConfigError, match="mask= are not supported"):
        reglab.layers.Dropout(0.5)(np.ones((2, 4), "float32"), mask=None)


@pytest.mark.parametrize("rate", [0.2, 0.5, 0.8])
def test_a_weightless_layer_called_on_a_batch_computes_as_keras_s_eager_call(rate):
    """The student's look at dropout: Dropout(rate)(x, training=True) keeps each unit
    scaled by 1 / (1 - rate) or drops it, about a rate of them; without training it is x."""
    x = np.random.default_rng(2).uniform(1, 2, size=(200, 50)).astype("float32")
    for api in (keras, reglab):
        layer = api.layers.Dropout(rate)
        y = keras.ops.convert_to_numpy(layer(x, training=True))
        kept = y != 0
        np.testing.assert_allclose(y[kept], x[kept] / (1 - rate), rtol=1e-6)
        assert abs((~kept).mean() - rate) < 0.03, api.__name__
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), x)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(torch.from_numpy(x))), x)
    relu = [keras.ops.convert_to_numpy(api.layers.Activation("relu")(x - 1.5))
            for api in (keras, reglab)]
    np.testing.assert_array_equal(relu[1], relu[0])
    with pytest.raises(ConfigError, match="a layer with weights is called on an array inside "
                                          "a model only"):
        reglab.layers.Dense(2)(x)


def test_layer_normalization_first_in_a_population_of_one_seed():
    from reglab.engine import Member, Population

    members = [Member([reglab.Input((4,)), reglab.layers.LayerNormalization(epsilon=e),
                       reglab.layers.Dense(2)], "sgd", seed=0) for e in (1e-3, 0.5)]
    x = np.random.default_rng(0).normal(size=(6, 4)).astype("float32")
    together = Population(members).predict(x)
    for i, member in enumerate(members):
        alone = Population([Member(member.layers, "sgd", seed=0)]).predict(x)
        np.testing.assert_allclose(together[i], alone[0], rtol=1e-6)


def test_augmentation_in_a_graph_must_lead_from_the_input():
    inputs = reglab.Input((6, 6, 1))
    flipped = reglab.layers.Flatten()(reglab.layers.RandomFlip("horizontal")(inputs))
    raw = reglab.layers.Flatten()(inputs)
    model = reglab.Model(inputs, reglab.layers.Dense(2)(reglab.layers.Add()([flipped, raw])))
    with pytest.raises(ConfigError, match="must come right after the input"):
        model.compile(optimizer="sgd", loss="mse")  # builds the model
    inputs = reglab.Input((6, 6, 1))
    x = reglab.layers.Flatten()(reglab.layers.RandomFlip("horizontal")(inputs))
    fine = reglab.Model(inputs, reglab.layers.Dense(2)(reglab.layers.Add()(
        [x, reglab.layers.Dense(36)(x)])))
    fine.compile(optimizer="sgd", loss="mse")
    assert fine.predict(np.zeros((2, 6, 6, 1), "float32"), verbose=0).shape == (2, 2)


def test_keras_habits_around_inputs_and_configs():
    model = reglab.Sequential([reglab.layers.InputLayer(shape=(4,)), reglab.layers.Dense(2)])
    assert model.input_shape == (None, 4)
    keras.utils.set_random_seed(1)
    inputs = keras.Input((4,))
    functional = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    # Keras's own functional JSON is read (reglab/models/keras_files.py) as the same graph
    rebuilt = reglab.models.model_from_json(functional.to_json())
    rebuilt.set_weights(functional.get_weights())
    x = np.ones((2, 4), "float32")
    np.testing.assert_allclose(rebuilt.predict(x, verbose=0),
                               keras.ops.convert_to_numpy(functional(x)), rtol=1e-6)
    inputs = reglab.Input((5,))
    with pytest.raises(ConfigError, match="expects inputs of rank 4"):
        reglab.layers.AveragePooling2D()(inputs)


def test_symbolic_shapes_carry_the_batch_as_in_keras():
    for shape, batch_size in (((4,), None), ((6, 6, 1), None), ((3,), 8)):
        ours, theirs = reglab.Input(shape, batch_size=batch_size), keras.Input(
            shape, batch_size=batch_size)
        assert ours.shape == tuple(theirs.shape)
        assert reglab.layers.Flatten()(ours).shape == tuple(
            keras.layers.Flatten()(theirs).shape)
    inputs = reglab.Input((4,))
    model = reglab.Model(inputs, reglab.layers.Dense(2)(reglab.layers.Dense(3)(inputs)))
    assert model.input_shape == (None, 4) and model.output_shape == (None, 2)
    assert reglab.Sequential([reglab.Input((4,)), reglab.layers.Dense(2)]).input_shape == (None, 4)


def shared(api):
    """One Dense layer called three times (on the input, on its own output, on a side
    branch), so one set of weights gets three gradients; Keras's siamese pattern."""
    inputs = api.Input(shape=(6,), name="x")
    trunk = api.layers.Dense(6, activation="tanh", name="trunk",
                             kernel_regularizer=api.regularizers.L2(0.01))
    once = trunk(inputs)
    side = api.layers.Dense(6, activation="relu", name="side")(inputs)
    merged = api.layers.Add(name="sum")([trunk(once), trunk(side)])
    merged = api.layers.Concatenate(name="cat")([merged, once])
    return api.Model(inputs, api.layers.Dense(3, activation="softmax", name="head")(merged))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_shared_layer_trains_as_in_keras(optimizer):
    keras.utils.set_random_seed(5)
    theirs, ours = shared(keras), shared(reglab)
    assert [layer.name for layer in ours.layers] == [layer.name for layer in theirs.layers]
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in theirs.get_weights()]
    same_weights(theirs, ours)
    compile_both(theirs, ours, optimizer, 0.1, loss="sparse_categorical_crossentropy")
    x, y = data(32)
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([float(v) for v in ours.losses],
                               [float(keras.ops.convert_to_numpy(v)) for v in theirs.losses],
                               rtol=1e-6)  # the shared kernel's penalty counted once
    for step in range(4):
        batch = slice(step * 8, step * 8 + 8)
        np.testing.assert_allclose(ours.train_on_batch(x[batch], y[batch]),
                                   theirs.train_on_batch(x[batch], y[batch]), rtol=1e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert ours.count_params() == theirs.count_params()


def test_shared_layers_save_load_json_and_weights_files(tmp_path):
    keras.utils.set_random_seed(6)
    theirs, ours = shared(keras), shared(reglab)
    theirs.save_weights(tmp_path / "k.weights.h5")
    ours.load_weights(tmp_path / "k.weights.h5")
    x, _ = data(8)
    expected = theirs.predict(x, verbose=0)
    np.testing.assert_allclose(ours.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    ours.save_weights(tmp_path / "r.weights.h5")
    back = shared(keras)
    back.load_weights(tmp_path / "r.weights.h5")
    np.testing.assert_allclose(back.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    ours.save(tmp_path / "m.keras")
    loaded = reglab.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-6)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in ours.layers]
    rebuilt = reglab.models.model_from_json(ours.to_json())
    rebuilt.set_weights(ours.get_weights())
    np.testing.assert_allclose(rebuilt.predict(x, verbose=0), expected, rtol=1e-6)
    lines = []
    ours.summary(print_fn=lines.append)
    text = "\n".join(lines).splitlines()
    start = next(i for i, line in enumerate(text) if "trunk (Dense)" in line)
    cell = []  # its "Connected to" cell, wrapped over lines as Keras wraps it
    for line in text[start:]:
        if not line.startswith("│"):
            break
        cell.append(line.strip("│").split("│")[-1].strip())
    row = " ".join(cell)
    assert "x[0][0]" in row and "trunk[0][0]" in row and "side[0][0]" in row


def test_members_with_shared_layers_train_as_alone_and_stacks_refuse_them():
    from reglab.engine import Member

    def member(l2, seed):
        model = shared(reglab)
        model.get_layer("trunk").kernel_regularizer = reglab.regularizers.L2(l2)
        layers = [model.layers[i] for i in model._calls]
        return Member(layers, "adam", seed, input_shape=(6,), graph=model._graph)
    assert_members_train_as_alone(member)
    dense = reglab.layers.Dense(6, input_shape=(6,))
    model = reglab.Sequential([dense, dense])
    with pytest.raises(ConfigError, match="a stack calls each layer once"):
        model.build()


def two_inputs(api):
    """Keras's multi-input pattern: an image-like input through its own layers, a second
    input joining near the output (so the inputs sit at different depths)."""
    pixels = api.Input(shape=(4, 4, 1), name="pixels")
    meta = api.Input(shape=(3,), name="meta")
    h = api.layers.Flatten(name="flat")(pixels)
    h = api.layers.Dense(8, activation="relu", name="deep_a",
                         kernel_regularizer=api.regularizers.L2(0.01))(h)
    h = api.layers.Dense(5, activation="relu", name="deep_b")(h)
    joined = api.layers.Concatenate(name="join")([h, api.layers.Dense(5, name="side")(meta)])
    outputs = api.layers.Dense(3, activation="softmax", name="head")(joined)
    return api.Model([pixels, meta], outputs)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_model_with_two_inputs_trains_as_in_keras(optimizer):
    keras.utils.set_random_seed(7)
    theirs, ours = two_inputs(keras), two_inputs(reglab)
    assert [layer.name for layer in ours.layers] == [layer.name for layer in theirs.layers]
    assert ours.input_shape == [tuple(s) for s in theirs.input_shape]
    same_weights(theirs, ours)
    compile_both(theirs, ours, optimizer, 0.1, loss="sparse_categorical_crossentropy",
                 metrics=["accuracy"])
    rng = np.random.default_rng(8)
    pixels, meta = rng.random((32, 4, 4, 1)).astype("float32"), rng.normal(size=(32, 3))
    y = rng.integers(0, 3, 32)
    np.testing.assert_allclose(ours.predict([pixels, meta], verbose=0),
                               theirs.predict([pixels, meta], verbose=0), rtol=1e-5, atol=1e-6)
    by_name = {"meta": meta, "pixels": pixels}
    np.testing.assert_allclose(ours.predict(by_name, verbose=0),
                               theirs.predict(by_name, verbose=0), rtol=1e-5, atol=1e-6)
    for step in range(4):
        batch = slice(step * 8, step * 8 + 8)
        np.testing.assert_allclose(ours.train_on_batch([pixels[batch], meta[batch]], y[batch]),
                                   theirs.train_on_batch([pixels[batch], meta[batch]], y[batch]),
                                   rtol=1e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.evaluate([pixels, meta], y, verbose=0),
                               theirs.evaluate([pixels, meta], y, verbose=0), rtol=1e-5)
    history = ours.fit([pixels, meta], y, batch_size=8, epochs=2, verbose=0,
                       validation_data=([pixels[:8], meta[:8]], y[:8]))
    assert len(history.history["val_loss"]) == 2
    ours.fit([pixels, meta], y, epochs=1, verbose=0, validation_split=0.25)


def test_two_inputs_round_trip_and_refuse_what_does_not_fit(tmp_path):
    keras.utils.set_random_seed(9)
    theirs, ours = two_inputs(keras), two_inputs(reglab)
    theirs.save_weights(tmp_path / "k.weights.h5")
    ours.load_weights(tmp_path / "k.weights.h5")
    rng = np.random.default_rng(10)
    x = [rng.random((5, 4, 4, 1)).astype("float32"), rng.normal(size=(5, 3)).astype("float32")]
    expected = theirs.predict(x, verbose=0)
    np.testing.assert_allclose(ours.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    ours.save(tmp_path / "m.keras")
    loaded = reglab.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-6)
    rebuilt = reglab.models.model_from_json(ours.to_json())
    rebuilt.set_weights(ours.get_weights())
    np.testing.assert_allclose(rebuilt.predict(x, verbose=0), expected, rtol=1e-6)
    lines = []
    ours.summary(print_fn=lines.append)
    assert "pixels (InputLayer)" in lines[0] and "meta (InputLayer)" in lines[0]
    from reglab.errors import DataError
    with pytest.raises(DataError, match="2 inputs"):
        ours.predict(x[0], verbose=0)
    with pytest.raises(DataError, match=r"input 1 \('meta'\) expects samples of shape \(3,\)"):
        ours.predict([x[0], x[1][:, :2]], verbose=0)
    with pytest.raises(DataError, match="same number of samples"):
        ours.predict([x[0], x[1][:4]], verbose=0)
    with pytest.raises(DataError, match="keyed by the inputs' names"):
        ours.predict({"pixels": x[0], "other": x[1]}, verbose=0)
    # an input no output reads is the model's all the same, as in Keras (its data unread)
    unused = reglab.Input((2,))
    inputs = reglab.Input((3,))
    model = reglab.Model([inputs, unused], reglab.layers.Dense(2)(inputs))
    assert [type(layer).__name__ for layer in model.layers] == ["InputLayer", "InputLayer",
                                                                  "Dense"]
    with pytest.raises(DataError, match="2 inputs"):
        model.predict(x[0][:, :3], verbose=0)


def two_outputs(api):
    """A classifier head and a regression head on one trunk (Keras's multi-output pattern),
    with a second input joining the regression head."""
    features = api.Input(shape=(4,), name="features")
    extra = api.Input(shape=(2,), name="extra")
    trunk = api.layers.Dense(6, activation="relu", name="trunk",
                             kernel_regularizer=api.regularizers.L2(0.01))(features)
    label = api.layers.Dense(3, activation="softmax", name="label")(trunk)
    joined = api.layers.Concatenate(name="join")([trunk, extra])
    amount = api.layers.Dense(2, name="amount")(joined)
    return api.Model([features, extra], [label, amount])


def two_output_data(n=32, seed=11):
    rng = np.random.default_rng(seed)
    x = [rng.normal(size=(n, 4)).astype("float32"), rng.normal(size=(n, 2)).astype("float32")]
    return x, [rng.integers(0, 3, n), rng.normal(size=(n, 2)).astype("float32")]


COMPILES = {
    "lists": dict(loss=["sparse_categorical_crossentropy", "mse"], loss_weights=[1.0, 0.5],
                  metrics=[["accuracy"], ["mae"]]),
    "dicts": dict(loss={"label": "sparse_categorical_crossentropy", "amount": "mse"},
                  loss_weights={"label": 0.3, "amount": 1.0},
                  metrics={"label": "accuracy", "amount": ["mae", "mse"]}),
    # metrics on one head alone (Keras's dict may leave outputs out)
    "partial metrics": dict(loss={"label": "sparse_categorical_crossentropy", "amount": "mse"},
                            metrics={"label": "accuracy"}),
}


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("spelling", sorted(COMPILES))
def test_a_model_with_two_outputs_trains_as_in_keras(optimizer, spelling):
    keras.utils.set_random_seed(12)
    theirs, ours = two_outputs(keras), two_outputs(reglab)
    assert [layer.name for layer in ours.layers] == [layer.name for layer in theirs.layers]
    assert ours.output_shape == [tuple(s) for s in theirs.output_shape]
    same_weights(theirs, ours)
    compile_both(theirs, ours, optimizer, 0.05, **COMPILES[spelling])
    x, y = two_output_data()
    for a, b in zip(ours.predict(x, verbose=0), theirs.predict(x, verbose=0)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    expected = theirs.evaluate(x, y, return_dict=True, verbose=0)
    got = ours.evaluate(x, y, return_dict=True, verbose=0)
    assert sorted(got) == sorted(expected)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, err_msg=key)
    np.testing.assert_allclose(ours.evaluate(x, y, verbose=0), theirs.evaluate(x, y, verbose=0),
                               rtol=1e-5)  # Keras's order: loss, each output's, metrics
    y_by_name = {"label": y[0], "amount": y[1]}
    for step in range(4):
        batch = slice(step * 8, step * 8 + 8)
        xb = [part[batch] for part in x]
        yb = {name: part[batch] for name, part in y_by_name.items()}
        np.testing.assert_allclose(ours.train_on_batch(xb, yb), theirs.train_on_batch(xb, yb),
                                   rtol=1e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    history = ours.fit(x, y, epochs=1, verbose=0, validation_split=0.25)
    reference = theirs.fit(x, y, epochs=1, verbose=0, validation_split=0.25)
    assert sorted(history.history) == sorted(reference.history)


def test_two_outputs_round_trip_and_refuse_what_does_not_fit(tmp_path):
    keras.utils.set_random_seed(13)
    theirs, ours = two_outputs(keras), two_outputs(reglab)
    theirs.save_weights(tmp_path / "k.weights.h5")
    ours.load_weights(tmp_path / "k.weights.h5")
    ours.compile("adam", **COMPILES["dicts"])
    x, y = two_output_data(8)
    expected = ours.evaluate(x, y, return_dict=True, verbose=0)
    for a, b in zip(ours.predict(x, verbose=0), theirs.predict(x, verbose=0)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    ours.save(tmp_path / "m.keras")
    loaded = reglab.models.load_model(tmp_path / "m.keras")
    assert loaded.evaluate(x, y, return_dict=True, verbose=0) == pytest.approx(expected)
    rebuilt = reglab.models.model_from_json(ours.to_json())
    rebuilt.set_weights(ours.get_weights())
    for a, b in zip(rebuilt.predict(x, verbose=0), ours.predict(x, verbose=0)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    from reglab.errors import DataError
    with pytest.raises(DataError, match="2 outputs"):
        ours.evaluate(x, y[0], verbose=0)
    with pytest.raises(DataError, match="keyed by the outputs' names"):
        ours.evaluate(x, {"label": y[0], "other": y[1]}, verbose=0)
    with pytest.raises(DataError, match=r"output 'label'.*labels must lie in \[0, 2\]"):
        ours.evaluate(x, [y[0] + 3, y[1]], verbose=0)
    with pytest.raises(DataError, match="same number of samples"):
        ours.evaluate(x, [y[0], y[1][:4]], verbose=0)
    fresh = two_outputs(reglab)
    with pytest.raises(ConfigError, match="one entry per output"):
        fresh.compile("sgd", loss="mse", metrics=["mae"])
    with pytest.raises(ConfigError, match="one entry per output, keyed"):
        fresh.compile("sgd", loss={"label": "sparse_categorical_crossentropy"})
    with pytest.raises(ConfigError, match=r"'metrics' as a dict is keyed by the outputs' names "
                                          r"\['label', 'amount'\]. Got 'labels' among"):
        fresh.compile("sgd", loss="mse", metrics={"labels": "mae"})
    with pytest.raises(ConfigError, match="has one"):
        reglab.Sequential([reglab.layers.Dense(2, input_shape=(3,))]).compile(
            "sgd", loss="mse", loss_weights=[1.0, 2.0])
    with pytest.raises(ConfigError, match="class_weight"):
        fresh.compile("sgd", loss=["sparse_categorical_crossentropy", "mse"])
        fresh.fit(x, y, class_weight={0: 1.0}, verbose=0)


def test_a_shared_batch_norm_called_twice_at_one_depth_updates_as_in_keras():
    """Keras runs the calls of one depth in its map_graph order; a shared layer with state
    (BatchNormalization's moving statistics) sees its calls in that order."""
    keras.utils.set_random_seed(14)

    def make(api):
        inputs = api.Input(shape=(4,), name="x")
        norm = api.layers.BatchNormalization(momentum=0.5, name="bn")
        left = api.layers.Dense(3, name="left")(inputs)
        right = api.layers.Dense(3, name="right")(inputs)
        out = api.layers.Add(name="sum")([api.layers.Dense(2, name="a")(norm(left)),
                                          api.layers.Dense(2, name="b")(norm(right))])
        return api.Model(inputs, out)
    theirs, ours = make(keras), make(reglab)
    same_weights(theirs, ours)
    for model, api in ((theirs, keras), (ours, reglab)):
        model.compile(api.optimizers.SGD(1e-9), loss="mse")
    rng = np.random.default_rng(15)
    x, y = rng.normal(size=(16, 4)).astype("float32"), rng.normal(size=(16, 2)).astype("float32")
    ours.train_on_batch(x, y)
    theirs.train_on_batch(x, y)
    for a, b in zip(ours.get_layer("bn").get_weights(), theirs.get_layer("bn").get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_two_outputs_with_sample_weights_log_keras_s_weighted_losses():
    keras.utils.set_random_seed(16)
    theirs, ours = two_outputs(keras), two_outputs(reglab)
    same_weights(theirs, ours)
    for model, api in ((theirs, keras), (ours, reglab)):
        model.compile(api.optimizers.SGD(0.1), **COMPILES["lists"])
    x, y = two_output_data(10)
    weights = np.linspace(0.1, 1.0, 10)
    expected = theirs.test_on_batch(x, y, sample_weight=weights, return_dict=True)
    got = ours.test_on_batch(x, y, sample_weight=weights, return_dict=True)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, err_msg=key)
    np.testing.assert_allclose(ours.train_on_batch(x, y, sample_weight=weights),
                               theirs.train_on_batch(x, y, sample_weight=weights), rtol=1e-5)
    with pytest.raises(ConfigError, match="'class_weight' is for a model with one output"):
        ours.train_on_batch(x, y, class_weight={0: 1.0, 1: 5.0, 2: 1.0})
    with pytest.raises(ConfigError, match="sample weights per output"):
        ours.evaluate(x, y, sample_weight=[weights, weights], verbose=0)


def test_a_shared_dropout_takes_one_rate_for_all_its_calls():
    inputs = reglab.Input(shape=(4,))
    drop = reglab.layers.Dropout(0.5)
    h = drop(reglab.layers.Dense(4)(inputs))
    model = reglab.Model(inputs, reglab.layers.Dense(2)(drop(reglab.layers.Dense(4)(h))))
    population = model._build()
    names = population.hyperparameter_names()
    assert "dropout.rate" in names and not any("@" in name for name in names)
    population.set_hyperparameter(0, "dropout.rate", 0.0)
    rates = [lp.values["rate"] for lp in population.plan.layers if "rate" in lp.values]
    assert rates == [[0.0], [0.0]]


def test_the_summary_numbers_a_shared_layer_s_calls_as_keras():
    def make(api):
        x = api.Input((4,), name="x")
        shared_dense = api.layers.Dense(4, name="s")
        first = shared_dense(x)
        second = shared_dense(api.layers.Dense(4, name="d2")(x))
        return api.Model(x, api.layers.Add(name="add")([second, first]))

    def connected(api):
        lines = []
        make(api).summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
        rows = [row for line in lines for row in line.splitlines() if row.startswith("│")]
        return {cells[0].split()[0]: cells[-1] for cells in
                ([c.strip() for c in row.strip("│").split("│")] for row in rows)}
    ours, theirs = connected(reglab), connected(keras)
    assert ours["s"] == theirs["s"] == "x[0][0], d2[0][0]"
    assert ours["add"] == theirs["add"] == "s[1][0], s[0][0]"


def test_a_layer_called_on_arrays_reads_its_settings_at_each_call_as_keras():
    x = np.random.default_rng(3).uniform(1, 2, size=(200, 50)).astype("float32")
    for api in (keras, reglab):
        layer = api.layers.Dropout(0.1)
        layer(x, training=True)
        layer.rate = 0.9  # Keras reads it at the next call
        y = keras.ops.convert_to_numpy(layer(x, training=True))
        assert abs((y == 0).mean() - 0.9) < 0.03, api.__name__


def test_layer_calls_on_arrays_leave_later_models_seeds_and_take_the_layer_s_own():
    """An exploratory Dropout(0.5)(x) must not change the models made after it (their
    seeds come from set_random_seed's stream); a layer's own seed gives its masks, as
    Keras's seed generator does."""
    x = np.ones((8, 16), "float32")

    def later_model_weights(explore):
        reglab.utils.set_random_seed(0)
        if explore:
            reglab.layers.Dropout(0.5)(x, training=True)
            reglab.layers.Activation("relu")(x)
        return reglab.Sequential([reglab.Input((16,)), reglab.layers.Dense(3)]).get_weights()
    for a, b in zip(later_model_weights(False), later_model_weights(True), strict=True):
        np.testing.assert_array_equal(a, b)
    masks = [reglab.layers.Dropout(0.5, seed=42)(x, training=True).numpy() for _ in range(2)]
    np.testing.assert_array_equal(masks[0], masks[1])


def test_a_training_call_s_output_never_shares_the_caller_s_memory():
    x = np.ones((3, 4), "float32")
    for call in (lambda: reglab.layers.Flatten()(x, training=True),
                 lambda: reglab.layers.Dropout(0.0)(x, training=True),
                 lambda: reglab.Sequential([reglab.Input((4,)),
                                            reglab.layers.Activation("linear")])(
                     x, training=True)):
        call().add_(1)
        np.testing.assert_array_equal(x, 1.0)


def test_an_augmentation_layer_called_on_an_array_in_training_mode_is_refused_by_name():
    with pytest.raises(ConfigError, match=r"(random_flip|RandomFlip): an augmentation layer "
                                          r"computes in training mode inside fit only"):
        reglab.layers.RandomFlip()(np.zeros((2, 4, 4, 1), "float32"), training=True)
