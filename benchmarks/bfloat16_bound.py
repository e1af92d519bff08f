"""How far down a bfloat16 step of the population benchmark can go on this CPU: the step's
parts that no fusion removes, each timed alone at its real shapes, against issue 10's target
(0.7x the float32 compute floor).

P = 45 members of ``benchmarks/population.py`` (784-64-10, Adam) in 5 seed groups of 9, one
thread. Timed alone, best of several, each after a warm-up:

- ``fp32 GEMM``: a 2048^3 float32 product, the rate the floor is taken at (as that
  benchmark takes it);
- ``bf16 first layer``: the first layer's bfloat16 products of one step, one per seed group
  (forward ``(b, 784) @ (784, 9*64)`` and kernel gradient ``(784, b) @ (b, 9*64)``), their
  operands already laid out (the laying is not counted); through ``reglab.layers.products``,
  as the engine takes them, so on a CPU without bfloat16 matrix instructions they are the
  float32 products of the widened operands (and the line says so);
- ``Adam``: reglab's native Adam step over the 45 members' float32 weights (2.29 M numbers:
  weights, gradient and both moments read, three written), its memory traffic;
- ``cast``: the first kernels cast to bfloat16 once (read float32, write bfloat16).

Their sum is a lower bound of the step (the rest of it: the data, the output layer, the
activations and the loss, is left out), printed beside the 0.7x target for the same step and
beside the step itself, timed in the same run (``Population.fit`` under ``mixed_bfloat16``,
the output layer in float32 as a study has it, ``--steps`` steps on random data after a
warm-up).

    MKL_CBWR=AUTO,STRICT python benchmarks/bfloat16_bound.py [--batch 128] [--repeats 20]
        [--steps 100]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import population as bench  # noqa: E402  (the same members and data)


def best_seconds(fn, repeats: int, inner: int = 5) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - start) / inner)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--steps", type=int, default=100, help="steps of the timed epoch")
    args = parser.parse_args()

    import torch

    from reglab.layers import products as layer_products
    from reglab.native import adam

    torch.set_num_threads(1)
    members, groups, n_in, hidden, classes, b = 45, 5, 784, 64, 10, args.batch
    per_group = members // groups

    big = torch.randn(2048, 2048)
    gemm = 2 * 2048**3 / best_seconds(lambda: big @ big, max(3, args.repeats // 4), 1)
    # the compute floor of one step (population.py's: forward and kernel gradient of both
    # layers, 4 FLOP per weight and sample) at that rate
    params = n_in * hidden + hidden + hidden * classes + classes
    floor = 4 * params * b * members / gemm

    x = torch.randn(groups, b, n_in).to(torch.bfloat16)
    side = torch.randn(groups, n_in, per_group * hidden).to(torch.bfloat16)
    dy = torch.randn(groups, b, per_group * hidden).to(torch.bfloat16)

    def first_layer():
        for g in range(groups):
            layer_products.mm(x[g], side[g])
            layer_products.mm(x[g].t(), dy[g])
    products = best_seconds(first_layer, args.repeats)

    shapes = [(members, n_in, hidden), (members, hidden), (members, hidden, classes),
              (members, classes)]
    w = [torch.randn(s) * 0.05 for s in shapes]
    g = [torch.randn(s) * 1e-3 for s in shapes]
    m = [torch.zeros(s) for s in shapes]
    v = [torch.zeros(s) for s in shapes]
    hyper = {(1e-3, 0.9, 0.999, 1e-7, 1): list(range(members))}
    if not adam.step(w, g, m, v, hyper, None):
        raise SystemExit("the native Adam kernel is not available here")
    optimizer = best_seconds(lambda: adam.step(w, g, m, v, hyper, None), args.repeats)
    traffic = 7 * 4 * members * params  # bytes: w, g, m, v read; w, m, v written

    kernels = w[0]
    cast = best_seconds(lambda: kernels.to(torch.bfloat16), args.repeats)

    step = bfloat16_step(members, b, args.steps)
    bound = products + optimizer + cast
    target = 0.7 * floor
    print(f"fp32 GEMM {gemm / 1e9:.1f} GFLOP/s -> compute floor {floor * 1e3:.2f} ms per "
          f"step (P={members}, batch {b}); target 0.7x = {target * 1e3:.2f} ms")
    if not layer_products.native_half_products(torch.bfloat16):
        print("this CPU has no bfloat16 matrix instructions: its bfloat16 products are float32 "
              "ones of the widened operands, so bfloat16 cannot beat float32 here")
    print(f"bf16 first layer {products * 1e3:.2f} ms ({products / floor:.2f}x floor), "
          f"Adam {optimizer * 1e3:.2f} ms ({traffic / optimizer / 1e9:.1f} GB/s, "
          f"{optimizer / floor:.2f}x), cast {cast * 1e3:.2f} ms ({cast / floor:.2f}x)")
    print(f"bfloat16 step lower bound {bound * 1e3:.2f} ms = {bound / floor:.2f}x the fp32 "
          f"compute floor (target 0.70x); left for everything else: "
          f"{(target - bound) * 1e3:.2f} ms")
    print(f"bfloat16 step measured {step * 1e3:.2f} ms = {step / floor:.2f}x the fp32 compute "
          f"floor: {(step - bound) * 1e3:.2f} ms above the bound")


def bfloat16_step(members: int, batch: int, steps: int) -> float:
    """Seconds per step of one epoch of the benchmark's population under mixed_bfloat16."""
    from reglab import mixed_precision
    from reglab.engine import Population
    from reglab.mixed_precision import DTypePolicy

    def population():
        built = bench._reglab_members(members)
        for member in built:  # the output layer in float32, as the study builder does
            member.layers[-1].dtype_policy = DTypePolicy("float32")
        return Population(built, keep_freed_memory=True)

    x, y = bench.random_data(steps * batch, np.random.default_rng(0))
    previous = mixed_precision.global_policy()
    mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        population().fit(x[:4 * batch], y[:4 * batch], batch_size=batch, epochs=1)
        timed = population()
        start = time.perf_counter()
        timed.fit(x, y, batch_size=batch, epochs=1)
        return (time.perf_counter() - start) / steps
    finally:
        mixed_precision.set_global_policy(previous)


if __name__ == "__main__":
    main()
