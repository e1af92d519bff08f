"""A population of one against the plain PyTorch loop, epoch by epoch in one process.

The member is ``benchmarks/population.py``'s baseline (784-64-10, Adam, no penalty) and the
loop its ``_plain_epoch``, on the same random data. Each repeat trains one epoch of each,
back to back, so that the machine's drift falls on both; the printed ratio is
``plain / reglab`` per pair, its median over the repeats (higher is better; the issue's
targets: >= 1.0 at batch 128, >= 0.83 at batch 32), beside each side's best epoch.

    MKL_CBWR=AUTO,STRICT python benchmarks/population_of_one.py [--batches 32 128]
        [--steps 150] [--repeats 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import population as bench  # noqa: E402  (the same member, data and plain loop)


class _EpochTimer:
    def on_epoch_begin(self, epoch):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs):
        self.seconds = time.perf_counter() - self.start


def measure(batch: int, steps: int, repeats: int) -> tuple[float, float, float]:
    """``(median plain / reglab over the pairs, best reglab s/step, best plain s/step)``."""
    from reglab.engine import Population

    n = steps * batch
    x, y = bench.random_data(n, np.random.default_rng(0))
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    cpu = torch.device("cpu")

    def population():
        return Population(bench._reglab_members(1), keep_freed_memory=True)

    warm = 8 * batch  # every code path once
    population().fit(x[:warm], y[:warm], batch_size=batch, epochs=1)
    bench._plain_epoch(torch, x[:warm], y[:warm], batch, bench.TECHNIQUES[0], 0, cpu)
    ours, theirs = [], []
    for _ in range(repeats):
        timer = _EpochTimer()
        population().fit(x, y, batch_size=batch, epochs=1, observers=[timer])
        ours.append(timer.seconds)
        theirs.append(bench._plain_epoch(torch, x, y, batch, bench.TECHNIQUES[0], 0, cpu)[0])
    ratio = statistics.median(p / r for p, r in zip(theirs, ours))
    return ratio, min(ours) / steps, min(theirs) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    from reglab.engine.allocator import keep_freed_memory

    keep_freed_memory()  # the same malloc settings for both loops
    for batch in args.batches:
        ratio, ours, theirs = measure(batch, args.steps, args.repeats)
        print(f"P=1, batch {batch}: plain / reglab {ratio:.2f} (median of {args.repeats} "
              f"paired epochs); best step reglab {ours * 1e3:.3f} ms, plain {theirs * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
