"""reglab's native C kernels (reglab/native) against the torch path they replace, in one
process, the two alternated so that the machine's drift cancels.

The same population as ``benchmarks/population.py`` (the tutorial's nine techniques × seeds,
784-64-10, Adam) trains one epoch on random data with ``REGLAB_NATIVE=1`` and with
``REGLAB_NATIVE=0`` (the torch path: abs/sum/vecdot for the penalty values, sign/addcmul for
their gradients, torch's fused Adam per group of members), ``--repeats`` times each, after a
warm-up of both; it prints each run's milliseconds per step, the medians and their ratio.
``--only member_products`` keeps every other kernel on and compares only the first layer's
per-member products made from C (``reglab/native/member_products.py``) against torch's
calls per member; ``--only pending_gradient`` the first kernel's gradient made member by
member inside Adam's step (``reglab/native/pending_gradient.py``) against the gradient
made whole by the backward and then read by Adam.

    MKL_CBWR=AUTO,STRICT python benchmarks/native.py [--populations 1 45] [--batches 32 128]
        [--steps 300] [--repeats 5] [--threads 1] [--only member_products|pending_gradient]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import population as bench  # noqa: E402  (the same members)


def one_epoch(size: int, x, y, batch: int) -> float:
    """Seconds of one epoch of a fresh population (construction not timed)."""
    from reglab.engine import Population

    population = Population(bench._reglab_members(size), keep_freed_memory=True)
    start = time.perf_counter()
    population.fit(x, y, batch_size=batch, epochs=1)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--populations", type=int, nargs="+", default=[1, 45])
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--steps", type=int, default=300, help="steps per timed epoch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", choices=["all", "member_products", "pending_gradient"],
                        default="all",
                        help="which native kernels to compare against torch's path: all of "
                             "them (REGLAB_NATIVE=1 against 0), only the first layer's "
                             "per-member products, or only the first kernel's gradient "
                             "made inside Adam's step")
    args = parser.parse_args()

    import torch

    from reglab import native
    from reglab.native import member_products, pending_gradient

    switches = {"member_products": (member_products, "available"),
                "pending_gradient": (pending_gradient.PendingKernelGradient, "applies")}
    if args.only != "all":
        owner, name = switches[args.only]
        real = owner.__dict__[name]  # (a staticmethod object for a class's)

    def use(mode: str) -> None:
        """'1': the native kernels; '0': torch's path (or the kernels' other path) for those
        compared."""
        if args.only == "all":
            os.environ["REGLAB_NATIVE"] = mode
        else:
            off = staticmethod(lambda *a: False) if isinstance(real, staticmethod) else (
                lambda *a: False)
            setattr(owner, name, real if mode == "1" else off)

    torch.set_num_threads(args.threads)
    os.environ["REGLAB_NATIVE"] = "1"
    if native.library() is None:
        sys.exit("benchmarks/native.py: the native kernels are not built here (no C compiler, "
                 "or the build failed: see the warning above); nothing to compare.")
    rng = np.random.default_rng(0)
    for size in args.populations:
        for batch in args.batches:
            x, y = bench.random_data(args.steps * batch, rng)
            times: dict[str, list[float]] = {"torch": [], "native": []}
            for mode in ("0", "1"):  # warm-up: every code path of both
                use(mode)
                one_epoch(size, x[:2 * batch], y[:2 * batch], batch)
            for repeat in range(args.repeats):
                # alternate which goes first, so that neither always follows the other
                order = ("0", "1") if repeat % 2 == 0 else ("1", "0")
                for mode in order:
                    use(mode)
                    seconds = one_epoch(size, x, y, batch)
                    times["native" if mode == "1" else "torch"].append(
                        seconds / args.steps * 1e3)
            medians = {k: statistics.median(v) for k, v in times.items()}
            for name, values in times.items():
                print(f"P={size:<3} batch {batch:<4} {name:6s} ms/step "
                      f"{' '.join(f'{v:.2f}' for v in values)}  median {medians[name]:.2f}")
            print(f"P={size}, batch {batch}: native kernels {medians['native']:.2f} ms/step "
                  f"against the torch path's {medians['torch']:.2f}: "
                  f"{medians['native'] / medians['torch']:.2f}× the time", flush=True)
    use("1")


if __name__ == "__main__":
    main()
