"""Keras's symbolic tensors of a built model: ``layer.output`` / ``layer.input``,
``model.inputs`` / ``outputs`` (a Sequential's too) and the feature extractor
``Model(model.input, model.get_layer(name).output)``, side by side with Keras 3 (torch
backend). reglab's models never share weights: the extractor's layers are copies with the
weights as they are, said by a warning (Keras's share the layers)."""

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

X = np.random.default_rng(0).normal(size=(24, 6)).astype("float32")
Y = np.random.default_rng(1).integers(0, 3, 24)


def sequential(api):
    return api.Sequential([api.Input((6,)),
                           api.layers.Dense(5, activation="relu", name="hidden"),
                           api.layers.Dropout(0.3),
                           api.layers.Dense(3, activation="softmax", name="out")])


def functional(api):
    inputs = api.Input((6,))
    hidden = api.layers.Dense(5, activation="tanh", name="hidden")(inputs)
    wide = api.layers.Dense(4, name="wide")(inputs)
    joined = api.layers.Concatenate(name="join")([hidden, wide])
    return api.Model(inputs, api.layers.Dense(3, activation="softmax", name="out")(joined))


def trained(build):
    keras.utils.set_random_seed(4)
    theirs, ours = build(keras), build(reglab)
    ours.set_weights(theirs.get_weights())
    for model in (theirs, ours):
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        model.fit(X, Y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    ours.set_weights(theirs.get_weights())  # the same trained weights (dropout draws differ)
    return theirs, ours


@pytest.mark.parametrize("build", [sequential, functional], ids=["sequential", "functional"])
@pytest.mark.parametrize("layer", ["hidden", "join"])
def test_a_feature_extractor_predicts_as_keras_s(build, layer):
    theirs, ours = trained(build)
    if layer == "join" and build is sequential:
        layer = "hidden"
    with pytest.warns(UserWarning, match=r"copies of those of model '.*', with their weights "
                                         r"as they are now; Keras's model would share"):
        extractor = reglab.Model(ours.inputs, ours.get_layer(layer).output)
    reference = keras.Model(theirs.inputs, theirs.get_layer(layer).output)
    assert extractor.output_shape == reference.output_shape
    np.testing.assert_allclose(extractor.predict(X, verbose=0), reference.predict(X, verbose=0),
                               rtol=1e-5, atol=1e-6)
    assert [w.shape for w in extractor.get_weights()] == \
        [tuple(w.shape) for w in reference.get_weights()]
    # reglab's copies: training the model on leaves the extractor as it was
    before = extractor.predict(X, verbose=0)
    ours.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    np.testing.assert_array_equal(extractor.predict(X, verbose=0), before)


def test_the_tensors_are_keras_s():
    theirs, ours = sequential(keras), sequential(reglab)
    assert [t.shape for t in ours.inputs] == [tuple(t.shape) for t in theirs.inputs]
    assert [t.shape for t in ours.outputs] == [tuple(t.shape) for t in theirs.outputs]
    for mine, reference in zip(ours.layers, theirs.layers, strict=True):
        assert mine.output.shape == tuple(reference.output.shape)
        assert mine.input.shape == tuple(reference.input.shape)
    assert ours.layers[1].input is ours.layers[0].output  # one graph
    for mine, reference in zip(ours.layers, theirs.layers, strict=True):
        assert (mine.output.ndim, mine.output.dtype) == (reference.output.ndim,
                                                         reference.output.dtype)
    assert ours.layers[0].output.name == "hidden"
    model = functional(reglab)
    assert model.get_layer("join").input == [model.get_layer("hidden").output,
                                             model.get_layer("wide").output]
    assert model.input is model.inputs[0] and model.output is model.outputs[0]
    with pytest.raises(AttributeError, match="The layer dense has never been called and thus "
                                             "has no defined output"):
        _ = reglab.layers.Dense(3, name="dense").output
    with pytest.raises(AttributeError):
        _ = keras.layers.Dense(3).output  # Keras's own error is an AttributeError too


def test_a_model_of_the_graph_s_later_part_takes_a_layer_s_output_as_its_input():
    """Keras's Model(hidden_tensor, outputs): the head of a trained model, its weights."""
    theirs, ours = trained(sequential)
    with pytest.warns(UserWarning, match="copies"):
        head = reglab.Model(ours.get_layer("hidden").output, ours.outputs[0])
    reference = keras.Model(theirs.get_layer("hidden").output, theirs.outputs[0])
    features = np.abs(X[:, :5])
    np.testing.assert_allclose(head.predict(features, verbose=0),
                               reference.predict(features, verbose=0), rtol=1e-5, atol=1e-6)


def test_a_sequential_changed_after_its_graph_was_made_makes_it_again():
    model = sequential(reglab)
    assert model.output.shape == (None, 3)
    model.pop()
    assert model.output.shape == (None, 5)
    model.add(reglab.layers.Dense(7))
    assert model.output.shape == (None, 7) and model.layers[-1].output is model.output


@pytest.mark.parametrize("build", [sequential, functional], ids=["sequential", "functional"])
def test_a_loaded_model_has_its_tensors_and_extractors(build, tmp_path):
    """A model read from a file holds its graph as positions: its tensors are made when
    asked, and an extractor of it computes what the saved model's does."""
    theirs, ours = trained(build)
    ours.save(tmp_path / "model.keras")
    loaded = reglab.models.load_model(tmp_path / "model.keras")
    assert [t.shape for t in loaded.outputs] == [t.shape for t in ours.outputs]
    with pytest.warns(UserWarning, match="copies"):
        extractor = reglab.Model(loaded.inputs, loaded.get_layer("hidden").output)
    reference = keras.Model(theirs.inputs, theirs.get_layer("hidden").output)
    np.testing.assert_allclose(extractor.predict(X, verbose=0), reference.predict(X, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_an_extractor_keeps_an_input_its_output_does_not_read_as_keras_s():
    """Model(model.inputs, one branch's output) of a model with two inputs: Keras keeps both
    inputs (the other's data taken unread); reglab had refused the unused input."""
    def two_inputs(api):
        a, b = api.Input((3,), name="a"), api.Input((2,), name="b")
        h1 = api.layers.Dense(4, name="h1")(a)
        h2 = api.layers.Dense(4, name="h2")(b)
        return api.Model([a, b], api.layers.Add(name="sum")([h1, h2]))
    keras.utils.set_random_seed(2)
    theirs, ours = two_inputs(keras), two_inputs(reglab)
    ours.set_weights(theirs.get_weights())
    with pytest.warns(UserWarning, match="copies"):
        extractor = reglab.Model(ours.inputs, ours.get_layer("h1").output)
    reference = keras.Model(theirs.inputs, theirs.get_layer("h1").output)
    assert [layer.name for layer in extractor.layers] == [layer.name for layer in
                                                          reference.layers]
    data = [X[:, :3], X[:, 3:5]]
    np.testing.assert_allclose(extractor.predict(data, verbose=0),
                               reference.predict(data, verbose=0), rtol=1e-5, atol=1e-6)
    extractor.compile(optimizer="sgd", loss="mse")
    extractor.fit(data, np.zeros((len(X), 4), "float32"), epochs=1, verbose=0)


def test_an_unused_input_stands_where_keras_lists_it():
    """Keras's map_graph meets an input no output reads last: just before the output, in
    model.layers and the summary."""
    def three_inputs(api):
        a, b, c = (api.Input((3,), name=n) for n in "abc")
        joined = api.layers.Add(name="add")([api.layers.Dense(2, name="d1")(a),
                                             api.layers.Dense(2, name="d2")(c)])
        return api.Model([a, b, c], api.layers.Dense(1, name="out")(joined))
    assert [layer.name for layer in three_inputs(reglab).layers] == \
        [layer.name for layer in three_inputs(keras).layers]
    assert (reglab.Input((3, 4)).ndim, reglab.Input((3,)).dtype) == (3, "float32")
