"""The layer contract, run over every public class of reglab.layers.

Each layer: ``from_config(get_config())`` gives the same config and keeps its regularizers,
constraints and initializers; a model holding it saves and loads to the same predictions
and weights; its weights come in Keras's layouts; and a population of two members trains
bit for bit as two populations of one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import reglab.layers as layers_module
from reglab.constraints import MaxNorm
from reglab.engine import Member, Population
from reglab.layers import Layer
from reglab.models import Sequential, load_model
from reglab.regularizers import L1L2, GroupLasso, l2

IMAGE, FLAT = (6, 6, 2), (5,)


def _TWICE_PLUS_ONE(x):  # one function object for every member (a Lambda's structure)
    return 2 * x + 1


#: layers whose config holds a function, which no file holds: their models are not saved
UNSAVED = {"Lambda"}


def examples():
    """``class name -> (factory of an instance with non-default values, input shape)``."""
    L = layers_module
    return {
        "Activation": (lambda: L.Activation("tanh"), FLAT),
        "BatchNormalization": (lambda: L.BatchNormalization(momentum=0.9, epsilon=0.01,
                                                            beta_regularizer=l2(0.1),
                                                            gamma_constraint=MaxNorm(3.0)), FLAT),
        "Conv2D": (lambda: L.Conv2D(3, 2, activation="relu", padding="same",
                                    kernel_regularizer=GroupLasso(0.01),
                                    bias_regularizer=l2(0.1), kernel_initializer="he_uniform",
                                    kernel_constraint=MaxNorm(2.0)), IMAGE),
        "CutMix": (lambda: L.CutMix(0.5), IMAGE),
        "Dense": (lambda: L.Dense(4, activation="sigmoid", kernel_regularizer=L1L2(0.01, 0.02),
                                  activity_regularizer=l2(0.001), bias_initializer="ones",
                                  kernel_constraint=MaxNorm(1.5)), FLAT),
        "Dropout": (lambda: L.Dropout(0.3, noise_shape=(None, 5)), FLAT),
        "Flatten": (lambda: L.Flatten(), IMAGE),
        "GaussianDropout": (lambda: L.GaussianDropout(0.2), FLAT),
        "GaussianNoise": (lambda: L.GaussianNoise(0.1), FLAT),
        "Embedding": (lambda: L.Embedding(7, 3, embeddings_regularizer=l2(0.01),
                                          embeddings_constraint=MaxNorm(2.0)), FLAT),
        "AveragePooling2D": (lambda: L.AveragePooling2D(3, strides=2, padding="same"), IMAGE),
        "LayerNormalization": (lambda: L.LayerNormalization(epsilon=0.01,
                                                            beta_regularizer=l2(0.1),
                                                            gamma_constraint=MaxNorm(2.0)), FLAT),
        "Permute": (lambda: L.Permute((2, 1, 3)), IMAGE),
        "Reshape": (lambda: L.Reshape((6, -1)), IMAGE),
        "ZeroPadding2D": (lambda: L.ZeroPadding2D(((1, 0), (2, 1))), IMAGE),
        "GlobalAveragePooling2D": (lambda: L.GlobalAveragePooling2D(keepdims=True), IMAGE),
        "GlobalMaxPooling2D": (lambda: L.GlobalMaxPooling2D(keepdims=True), IMAGE),
        "Cropping2D": (lambda: L.Cropping2D(((1, 0), (2, 1))), IMAGE),
        "UpSampling2D": (lambda: L.UpSampling2D((2, 1)), IMAGE),
        "Identity": (lambda: L.Identity(), FLAT),
        "Lambda": (lambda: L.Lambda(_TWICE_PLUS_ONE), FLAT),
        "LabelSmoothing": (lambda: L.LabelSmoothing(0.2), FLAT),
        "MaxPooling2D": (lambda: L.MaxPooling2D(2, padding="same"), IMAGE),
        "MixUp": (lambda: L.MixUp(0.4), FLAT),
        "RandomFlip": (lambda: L.RandomFlip("horizontal"), IMAGE),
        "RandomRotation": (lambda: L.RandomRotation(0.2, fill_mode="constant"), IMAGE),
        "RandomTranslation": (lambda: L.RandomTranslation(0.1, 0.2), IMAGE),
        "RandomZoom": (lambda: L.RandomZoom(0.1, 0.2), IMAGE),
        "RandomBrightness": (lambda: L.RandomBrightness((-0.1, 0.3), value_range=(0, 1)),
                             IMAGE),
        "RandomContrast": (lambda: L.RandomContrast((0.2, 0.4), value_range=(0, 1)), IMAGE),
        "SpatialDropout2D": (lambda: L.SpatialDropout2D(0.25), IMAGE),
        "ReLU": (lambda: L.ReLU(max_value=2.0, negative_slope=0.1, threshold=0.2), FLAT),
        "LeakyReLU": (lambda: L.LeakyReLU(0.1), FLAT),
        "ELU": (lambda: L.ELU(0.5), IMAGE),
        "Softmax": (lambda: L.Softmax(axis=(1, 3)), IMAGE),
        "ActivityRegularization": (lambda: L.ActivityRegularization(l1=0.01, l2=0.02), FLAT),
        "Rescaling": (lambda: L.Rescaling([0.5, 2.0], offset=-1.0), IMAGE),
        "AlphaDropout": (lambda: L.AlphaDropout(0.2, noise_shape=(None, 1, 1, 2)), IMAGE),
        "SpatialDropout1D": (lambda: L.SpatialDropout1D(0.3), (6, 4)),
        "UnitNormalization": (lambda: L.UnitNormalization(axis=[1, 2]), IMAGE),
    }


#: each public layer class once, by its own name (Keras's other names, MaxPool2D for
#: MaxPooling2D, are the same classes)
ALL_LAYERS = sorted(name for name in layers_module.__all__
                    if isinstance(getattr(layers_module, name), type)
                    and issubclass(getattr(layers_module, name), Layer) and name != "Layer"
                    and getattr(layers_module, name).__name__ == name)
#: layers that exist only in functional models (a list of inputs; the model's input):
#: their own contract below, and the functional API's tests against Keras
GRAPH_ONLY = {"Add": lambda: layers_module.Add(name="sum"),
              "Average": lambda: layers_module.Average(),
              "Concatenate": lambda: layers_module.Concatenate(axis=1),
              "InputLayer": lambda: layers_module.InputLayer((4, 3), name="pixels"),
              "Maximum": lambda: layers_module.Maximum(),
              "Minimum": lambda: layers_module.Minimum(),
              "Multiply": lambda: layers_module.Multiply(),
              "Subtract": lambda: layers_module.Subtract(),
              "StochasticDepth": lambda: layers_module.StochasticDepth(0.3, seed=4)}
PUBLIC = [name for name in ALL_LAYERS if name not in GRAPH_ONLY]

# Layout of each weight, from the input shape: Keras's get_weights() order and shapes.
LAYOUTS = {
    "Dense": lambda shape: [(shape[-1], 4), (4,)],
    "Conv2D": lambda shape: [(2, 2, shape[-1], 3), (3,)],
    "BatchNormalization": lambda shape: [(shape[-1],)] * 4,
    "LayerNormalization": lambda shape: [(shape[-1],)] * 2,
    "Embedding": lambda shape: [(7, 3)],
}


def test_every_public_layer_has_an_example():
    assert sorted([*examples(), *GRAPH_ONLY]) == ALL_LAYERS


@pytest.mark.parametrize("name", sorted(GRAPH_ONLY))
def test_graph_layers_round_trip_their_config(name):
    layer = GRAPH_ONLY[name]()
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config


@pytest.mark.parametrize("name", PUBLIC)
def test_config_round_trip_keeps_everything(name):
    factory, _ = examples()[name]
    layer = factory()
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    for attribute in vars(layer):
        if attribute.endswith(("_regularizer", "_constraint", "_initializer")):
            original, copied = getattr(layer, attribute), getattr(clone, attribute)
            assert (original is None) == (copied is None), attribute
            if original is not None:
                assert type(original) is type(copied), attribute
                assert original.get_config() == copied.get_config(), attribute


def _model(name, seed=0):
    factory, shape = examples()[name]
    return Sequential([layers_module.Input(shape=shape), factory()], seed=seed), shape


@pytest.mark.parametrize("name", [name for name in PUBLIC if name not in UNSAVED])
def test_save_and_load_give_the_same_model(name, tmp_path):
    model, shape = _model(name)
    model.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(0).random((7, *shape)).astype("float32")
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = load_model(path)
    assert loaded.layers[0].get_config() == model.layers[0].get_config()
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))


@pytest.mark.parametrize("name", PUBLIC)
def test_weight_layouts_are_keras_layouts(name):
    model, shape = _model(name)
    expected = LAYOUTS.get(name, lambda shape: [])(shape)
    assert [w.shape for w in model.get_weights()] == expected


def _members(name, seeds):
    factory, shape = examples()[name]
    # an image, a sequence, or an Embedding's (positions, vectors), is flattened before the head
    head = [layers_module.Flatten()] if len(shape) > 1 or name == "Embedding" else []
    return [Member([layers_module.Input(shape=shape), factory(), *head,
                    layers_module.Dense(2, activation="softmax")], "adam", seed=seed)
            for seed in seeds]


@pytest.mark.parametrize("name", PUBLIC)
def test_a_population_of_two_trains_as_two_populations_of_one(name):
    factory, shape = examples()[name]
    rng = np.random.default_rng(1)
    x, y = rng.random((20, *shape)).astype("float32"), rng.integers(0, 2, 20)
    if name == "Embedding":  # indices into its table of 7
        x = np.floor(x * 7)
    both = Population(_members(name, [0, 1]))
    result = both.fit(x, y, batch_size=8, epochs=2)
    for member, seed in enumerate([0, 1]):
        alone = Population(_members(name, [seed]))
        expected = alone.fit(x, y, batch_size=8, epochs=2)
        assert result.members[member].history == expected.members[0].history
        for key, value in alone.member_weights(0).items():
            assert torch.equal(both.member_weights(member)[key], value), key
