"""Where a training step's time goes: wall-clock timers around the phases of the engine's
step (data, forward, loss, penalty values, backward, metrics, update), no profiler (the
torch profiler's per-operation cost inflates small GEMMs by up to 2×).

The same population as ``benchmarks/population.py`` (the tutorial's nine techniques × seeds,
784-64-10, Adam) trains one epoch on random data after a warm-up epoch; the phases are
timed by wrapping the functions ``reglab.engine.epoch`` calls, and "other" is the rest of
the epoch (Python between them, observers). Where the step runs without autograd's graph
(``reglab.engine.direct_step``), its forward, loss and backward are one call and are timed
as one phase.

    MKL_CBWR=AUTO,STRICT python benchmarks/phases.py [--populations 45] [--batches 32 128]
        [--steps 300] [--threads 1] [--precision bfloat16]
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import population as bench  # noqa: E402  (the same members)


def timed_phases(totals: dict[str, float]) -> None:
    """Wraps the step's phases so that each call adds its seconds to ``totals``."""
    import torch

    import reglab.engine.epoch as epoch

    def wrap(owner, name, label):
        inner = getattr(owner, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                totals[label] += time.perf_counter() - start

        setattr(owner, name, timed)

    wrap(epoch.data_module, "batch", "data")
    # the step without autograd's graph: forward, loss and backward in one call
    wrap(epoch.direct_step, "forward_backward", "forward+loss+backward")
    wrap(epoch, "forward", "forward")
    wrap(epoch.softmax_crossentropy, "loss_and_predictions", "softmax+loss")
    wrap(epoch, "weight_penalties", "penalty values")
    wrap(torch.Tensor, "backward", "backward")
    wrap(epoch.EpochSums, "add", "metrics")
    wrap(epoch, "apply_updates", "update")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--populations", type=int, nargs="+", default=[45])
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--steps", type=int, default=300, help="steps in the timed epoch")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--precision", choices=["float32", *bench.MIXED_POLICIES],
                        default="float32",
                        help="every layer but the output one computes in it, as in a study")
    args = parser.parse_args()

    import torch

    from reglab.engine import Population

    torch.set_num_threads(args.threads)
    totals: dict[str, float] = collections.defaultdict(float)
    timed_phases(totals)
    rng = np.random.default_rng(0)
    if args.precision != "float32":
        from reglab import mixed_precision

        mixed_precision.set_global_policy(bench.MIXED_POLICIES[args.precision])

    def members(size):
        from reglab.mixed_precision import DTypePolicy
        from reglab.optimizers import Adam, LossScaleOptimizer

        built = bench._reglab_members(size)
        for member in built:  # the output layer in float32, as the study builder does
            member.layers[-1].dtype_policy = DTypePolicy("float32")
            if args.precision == "float16":
                member.optimizer = LossScaleOptimizer(Adam(1e-3))
        return built

    for size in args.populations:
        for batch in args.batches:
            x, y = bench.random_data(args.steps * batch, rng)
            Population(members(size), keep_freed_memory=True).fit(
                x[:2 * batch], y[:2 * batch], batch_size=batch, epochs=1)  # warm-up
            totals.clear()
            population = Population(members(size), keep_freed_memory=True)
            start = time.perf_counter()
            population.fit(x, y, batch_size=batch, epochs=1)
            total = time.perf_counter() - start
            per_step = {k: v / args.steps * 1e3 for k, v in totals.items()}
            per_step["other"] = total / args.steps * 1e3 - sum(per_step.values())
            print(f"P={size}, batch {batch}: {total / args.steps * 1e3:.2f} ms/step; "
                  + ", ".join(f"{k} {v:.2f}" for k, v in per_step.items()), flush=True)


if __name__ == "__main__":
    main()
