"""The engine's ImageDataGenerator-style transforms, drawn ahead a chunk at a time per
group (engine/augmentation.py): every batch's matrices bit for bit those drawn batch by
batch from the same stream, whatever the batch sizes and the other groups."""

from __future__ import annotations

import torch

from reglab.augment import AffineSpec
from reglab.augment.sampling import sample_stacked_transforms
from reglab.engine import augmentation
from reglab.engine.rng import SeedStreams, epoch_purpose, generator

SPEC = AffineSpec(rotation_range=20, width_shift_range=0.2, height_shift_range=3,
                  shear_range=5, zoom_range=0.1, horizontal_flip=True)


class _Population:
    def __init__(self):
        self.streams = SeedStreams()
        self.plan = type("Plan", (), {"layers": []})()


def _batch_by_batch(seed, epoch, sizes, height, width):
    g = generator(seed, epoch_purpose("augment", epoch))
    return [sample_stacked_transforms(SPEC, b, height, width, [g]) for b in sizes]


def test_drawn_ahead_transforms_are_the_batch_by_batch_ones(monkeypatch):
    monkeypatch.setattr(augmentation, "TRANSFORM_CHUNK", 100)  # several chunks, a split batch
    population = _Population()
    groups = [(3, 0), (8, 2)]
    sizes = [32, 32, 7, 64, 150, 32, 1, 90]
    seen = []

    def warp(images, transforms, *args):
        seen.append(transforms.clone())
        return images

    monkeypatch.setattr("reglab.augment.warp", warp)
    for b in sizes:
        xb = torch.zeros(len(groups), b, 6, 5, 1, dtype=torch.float64)
        augmentation.augment_batch(population, xb, groups, SPEC)
    expected = {g: _batch_by_batch(*g, sizes, 6, 5) for g in groups}
    for step, b in enumerate(sizes):
        got = seen[step].view(len(groups), b, 3, 3)
        for row, group in enumerate(groups):
            assert torch.equal(got[row], expected[group][step])


def test_a_new_epoch_draws_from_its_own_stream_again():
    population = _Population()
    first = augmentation._DrawnAhead(SPEC, 6, 5, population.streams.get(1, "augment/epoch0"))
    a = first.take(10)
    population.streams.forget()
    again = population.streams.drawn_ahead("key", lambda: augmentation._DrawnAhead(
        SPEC, 6, 5, population.streams.get(1, "augment/epoch0")))
    assert torch.equal(again.take(10), a)
    assert population.streams.drawn_ahead("key", lambda: None) is again
    population.streams.forget()
    assert population.streams.drawn_ahead("key", lambda: "new") == "new"
