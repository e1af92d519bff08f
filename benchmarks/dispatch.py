"""Operations launched and host synchronizations per training step, reglab against the
torch.func ensemble recipe, for the CPU path and for the CUDA path (run on the CPU).

On a GPU a small model's step is bound by launches, not arithmetic: each ATen operation
is at least one kernel launch (a few microseconds of host time), and each synchronization
stalls the queue. Those counts do not depend on the device, so they are measured here on
the CPU, with the engine's three device decisions set as on CUDA for the CUDA path
(penalties on every row, one fused Adam call on the stacked tensors, divergence checked
every 32 steps; the per-member product instead of the CPU's shared first-layer GEMM; torch's
operations where the CPU takes reglab's C kernels).
The first H200 run (scripts/device_check.sh) showed P = 450 at batch 32 taking 11x the
recipe's time, with the per-run penalty calls on top of the profile.

    python benchmarks/dispatch.py [--populations 1 45 450] [--batch 32] [--steps 64]

Operations are counted at the dispatcher (``TorchDispatchMode``), after autograd and
vmap, so backward operations count too; views and detaches count as well (free on a
GPU), so the figures are upper bounds of the launches. The epoch's end (logs, early
stopping) is included, spread over the steps.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import population as bench  # noqa: E402  (the same members and the same recipe)

SYNC_OPS = ("aten._local_scalar_dense", "aten.is_nonzero", "aten.item")


def counter():
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = self.syncs = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops += 1
            if any(str(func).startswith(name) for name in SYNC_OPS):
                self.syncs += 1
            return func(*args, **(kwargs or {}))

    return Count()


@contextlib.contextmanager
def cuda_path(enabled: bool):
    """The engine's device decisions as on CUDA (when ``enabled``), restored afterwards."""
    from reglab.engine import epoch, penalties
    from reglab.layers import shared_input
    from reglab.optimizers import optimizers

    saved = (penalties.computes_by_rows, optimizers._fuses_stacked,
             epoch.divergence_check_steps, shared_input.applies)
    native = os.environ.get("REGLAB_NATIVE")
    if enabled:
        penalties.computes_by_rows = lambda device: False
        optimizers._fuses_stacked = lambda device: True
        epoch.divergence_check_steps = lambda device: epoch.DIVERGENCE_CHECK_STEPS
        shared_input.applies = lambda units, x: False
        os.environ["REGLAB_NATIVE"] = "0"  # the C kernels take CPU tensors only
    try:
        yield
    finally:
        (penalties.computes_by_rows, optimizers._fuses_stacked,
         epoch.divergence_check_steps, shared_input.applies) = saved
        if native is None:
            os.environ.pop("REGLAB_NATIVE", None)
        else:
            os.environ["REGLAB_NATIVE"] = native


def count_reglab(torch, x, y, size, batch, steps, as_cuda):
    from reglab.engine import Population

    with cuda_path(as_cuda):
        Population(bench._reglab_members(size)).fit(x[:2 * batch], y[:2 * batch],
                                                    batch_size=batch, epochs=1)
        population = Population(bench._reglab_members(size))
        mode = counter()
        with mode:
            population.fit(x, y, batch_size=batch, epochs=1)
    return mode.ops / steps, mode.syncs / steps


def count_recipe(torch, x, y, size, batch, steps):
    device = torch.device("cpu")
    bench._ensemble_epoch(torch, x[:2 * batch], y[:2 * batch], batch, size, device)
    mode = counter()
    with mode:
        bench._ensemble_epoch(torch, x, y, batch, size, device)
    return mode.ops / steps, mode.syncs / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--populations", type=int, nargs="+", default=[1, 45, 450])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=64)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    n = args.steps * args.batch
    x = torch.from_numpy(rng.random((n, bench.INPUT), dtype=np.float32))
    y = torch.from_numpy(rng.integers(0, bench.CLASSES, n))
    began = time.perf_counter()
    print(f"operations dispatched per training step (batch {args.batch}, {args.steps} steps, "
          f"the members of benchmarks/population.py), and host synchronizations per step")
    print(f"{'P':>4} {'reglab CPU path':>22} {'reglab CUDA path':>22} "
          f"{'torch.func recipe':>22} {'CUDA path / recipe':>19}")
    for size in args.populations:
        bench.population_members(size)
        cpu_ops, cpu_syncs = count_reglab(torch, x, y, size, args.batch, args.steps, False)
        gpu_ops, gpu_syncs = count_reglab(torch, x, y, size, args.batch, args.steps, True)
        recipe_ops, recipe_syncs = count_recipe(torch, x, y, size, args.batch, args.steps)
        print(f"{size:>4} {cpu_ops:>9.0f} ops {cpu_syncs:>4.2f} sync "
              f"{gpu_ops:>9.0f} ops {gpu_syncs:>4.2f} sync "
              f"{recipe_ops:>9.0f} ops {recipe_syncs:>4.2f} sync {gpu_ops / recipe_ops:>18.2f}x")
    print(f"benchmark wall time: {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
