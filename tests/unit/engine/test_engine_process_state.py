"""A training call leaves the process as it found it; random streams are keyed as promised."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reglab.augment import AffineSpec
from reglab.engine import Member, Population
from reglab.engine.denormals import flushing
from reglab.layers import Dense, Dropout, Flatten, RandomRotation
from reglab.models import Sequential


def tiny_population(**kwargs):
    member = Member([Dense(3, activation="softmax", input_shape=(4,))], "adam", seed=0)
    return Population([member], **kwargs)


@pytest.mark.parametrize("before", [False, True])
def test_flush_to_zero_is_restored_after_fit(before):
    x, y = np.random.default_rng(0).normal(size=(8, 4)), np.arange(8) % 3
    torch.set_flush_denormal(before)
    try:
        seen = []

        class Probe:
            def on_epoch_end(self, epoch, logs):
                seen.append(flushing())

        tiny_population().fit(x, y, batch_size=4, epochs=1, observers=[Probe()])
        assert seen == [True]  # on while training
        assert flushing() is before  # what it was before, afterwards
    finally:
        torch.set_flush_denormal(False)


def test_fit_that_raises_still_restores_flush_to_zero():
    population = tiny_population()

    class Boom:
        def on_epoch_begin(self, epoch):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        population.fit(np.zeros((4, 4)), np.zeros(4, dtype=int), epochs=1, observers=[Boom()])
    assert flushing() is False


def test_inserting_a_dropout_leaves_the_dense_initial_weights_unchanged():
    """Initial weights are drawn from streams named after the layer ('dense', 'dense_1'), and
    a Dropout does not rename the Dense layers around it."""
    plain = Sequential([Dense(5, input_shape=(4,)), Dense(3)], seed=7)
    with_dropout = Sequential([Dense(5, input_shape=(4,)), Dropout(0.5), Dense(3)], seed=7)
    for a, b in zip(plain.get_weights(), with_dropout.get_weights()):
        np.testing.assert_array_equal(a, b)
    other_seed = Sequential([Dense(5, input_shape=(4,)), Dense(3)], seed=8)
    assert not np.array_equal(plain.get_weights()[0], other_seed.get_weights()[0])


def _augmented_batches(seeds, epochs, spec=None, layers=()):
    """Per member and epoch, the first training batch the layers see (inputs captured)."""
    images = np.random.default_rng(0).random((8, 6, 6, 1)).astype("float32")
    members = [Member([*[type(layer)(**layer.kwargs) for layer in layers], Flatten(),
                       Dense(2, activation="softmax")], "sgd", seed=seed,
                      input_shape=(6, 6, 1)) for seed in seeds]
    population = Population(members)
    flatten = population.plan.layers[len(layers)].layer
    seen = []
    forward = flatten.forward

    def capture(x, weights, values, ctx, shape):
        if ctx.training:  # a grouped input (one row per seed) is laid out per member
            seen.append((x if ctx.groups is None else ctx.groups.expand(x)).detach().clone())
        return forward(x, weights, values, ctx, shape)

    flatten.forward = capture
    population.fit(images, np.arange(8) % 2, batch_size=8, epochs=epochs, shuffle=False,
                   augment=spec)
    return seen  # one (P, 8, 6, 6, 1) or shared (8, 6, 6, 1) batch per epoch


class _Rotation(RandomRotation):
    def __init__(self, **kwargs):
        self.kwargs = kwargs
        super().__init__(**kwargs)


@pytest.mark.parametrize("spec,layers", [
    (AffineSpec(rotation_range=40, horizontal_flip=True), ()),
    (None, (_Rotation(factor=0.2),)),
], ids=["image_data_generator", "augmentation_layer"])
def test_augmentation_streams_are_keyed_by_seed_and_by_epoch(spec, layers):
    by_epoch = _augmented_batches([0, 1, 0], epochs=2, spec=spec, layers=layers)
    first, second = by_epoch
    assert torch.equal(first[0], first[2])  # the same seed: the same augmented images
    assert not torch.equal(first[0], first[1])  # another seed: other draws
    assert not torch.equal(first[0], second[0])  # another epoch: other draws
    alone = _augmented_batches([1], epochs=2, spec=spec, layers=layers)
    assert torch.equal(alone[0], first[1]) and torch.equal(alone[1], second[1])
