"""Times the engine's augmentation of a batch (``engine.augmentation.augment_batch``) with its
transforms drawn ahead a chunk at a time, against the same batch with the transforms drawn
and built batch by batch (the baseline, written here as the engine did before), in one run.

The tutorial's ImageDataGenerator arguments, 5 seed groups of 128 images of 28x28, 100
batches an epoch; the two alternated ``--repeats`` times (the machine's drift cancels);
prints each one's median milliseconds per batch and their ratio.

    python benchmarks/augment_draws.py [--groups 5] [--batch 128] [--repeats 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from reglab.augment import AffineSpec, warp
from reglab.augment.sampling import sample_stacked_transforms
from reglab.engine import augmentation
from reglab.engine.rng import SeedStreams, epoch_purpose

SPEC = AffineSpec(rotation_range=20, width_shift_range=0.2, height_shift_range=0.2,
                  horizontal_flip=True)


class _Population:
    """What ``augment_batch`` reads of a population: its streams and its layers."""

    def __init__(self):
        self.streams = SeedStreams()
        self.plan = type("Plan", (), {"layers": []})()


def batch_by_batch(population, xb, groups):
    """The baseline: each batch's transforms drawn and built on their own."""
    g, b, h, w, c = xb.shape
    mats = sample_stacked_transforms(SPEC, b, h, w, [
        population.streams.get(seed, epoch_purpose("augment", epoch)) for seed, epoch in groups])
    images = warp(xb.reshape(g * b, h, w, c), mats.to(xb.dtype), SPEC.fill_mode, SPEC.cval,
                  "bilinear")
    return images.reshape(xb.shape)


def drawn_ahead(population, xb, groups):
    return augmentation.augment_batch(population, xb, groups, SPEC)


def epoch_ms(fn, xb, groups, batches: int) -> float:
    population = _Population()
    start = time.perf_counter()
    for _ in range(batches):
        fn(population, xb, groups)
    return (time.perf_counter() - start) / batches * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=5)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    groups = [(seed, 0) for seed in range(args.groups)]
    xb = torch.rand(args.groups, args.batch, 28, 28, 1)
    first = _Population()
    assert torch.equal(drawn_ahead(first, xb, groups), batch_by_batch(_Population(), xb, groups))
    times = {"batch by batch": [], "drawn ahead": []}
    for _ in range(args.repeats):
        times["batch by batch"].append(epoch_ms(batch_by_batch, xb, groups, args.batches))
        times["drawn ahead"].append(epoch_ms(drawn_ahead, xb, groups, args.batches))
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(f"{name:15s} ms/batch " + " ".join(f"{v:.2f}" for v in values)
              + f"  median {medians[name]:.2f}")
    print(f"augmentation of {args.groups} x {args.batch} images: drawn ahead "
          f"{medians['drawn ahead']:.2f} ms/batch against {medians['batch by batch']:.2f} "
          f"batch by batch: {medians['drawn ahead'] / medians['batch by batch']:.2f}x the time")


if __name__ == "__main__":
    main()
