"""The tutorial study end to end, against its compute floor and the same runs trained one
at a time.

Runs the nine techniques of ``examples/tutorial.toml`` (its sweep variants left out:
9 variants × 5 seeds = 45 runs, up to 30 epochs, early stopping where the slides use it),
or with ``--full`` the main job itself (sweeps included, 135 runs), through
``reglab.study.run_study`` into a temporary directory. It prints the wall time against the
fp32 compute floor: the FLOPs of every epoch each run trained (training on the training
split, the forward pass on the validation split) at the fp32 matmul rate measured in the
same run. Without ``--full`` it also estimates the one-by-one cost: one epoch of each
technique trained alone (a population of one) is timed, and multiplied by the epochs each
run actually trained.

    python benchmarks/study.py [--full] [--epochs 30] [--seeds 5] [--threads 0] [--workers 1]
    python benchmarks/study.py --dask [--cluster tcp://HOST:PORT] [--epochs 30]

``--dask`` times the 45-run study three ways in one run: in this process, on a local Dask
cluster of one worker process, and of two (or, with ``--cluster``, on that cluster), and
prints each against the in-process time (the cost of going through Dask).

``--workers N`` trains on a local Dask cluster of N worker processes (populations split into
shards of whole seeds),
``--threads`` torch threads each (default: the CPUs divided among them); the one-by-one
estimate always uses this process with ``--threads`` (default: torch's).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import tempfile
import time
from pathlib import Path

import torch

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "tutorial.toml"


def without_sweeps(text: str) -> str:
    """The study file minus the [variants.*_path] tables (the sweeps)."""
    blocks = re.split(r"(?=^\[variants\.)", text, flags=re.M)
    return "".join(b for b in blocks if not re.match(r"\[variants\.\w+_path\]", b))


def fixed_precision(text: str, device: str = "cpu", threads: int | None = None) -> str:
    """The study file with ``precision = "auto"`` replaced by what it chooses here now, so
    that every setup a benchmark compares trains in one precision (each run of "auto"
    measures again)."""
    from reglab.study import precision

    if not re.search(r'^precision\s*=\s*"auto"', text, flags=re.M):
        return text
    chosen = precision.choose(device, threads=threads)
    print(f"precision auto: {chosen.precision} ({chosen.reason})")
    return re.sub(r'^precision\s*=\s*"auto"', f'precision = "{chosen.precision}"', text,
                  flags=re.M)


def matmul_gflops(size: int = 2048, runs: int = 5) -> float:
    """The best fp32 rate of a large square product (the floor's peak)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    out = torch.empty(size, size)
    torch.matmul(a, b, out=out)
    best = math.inf
    for _ in range(runs):
        start = time.perf_counter()
        torch.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def dense_flops(widths: list[int]) -> tuple[int, int]:
    """(training, forward) FLOPs per sample of a stack of Dense layers of these widths
    (input first): forward 2·in·out per layer; backward the weight gradient of every layer
    and the input gradient of every layer but the first."""
    pairs = list(zip(widths[:-1], widths[1:]))
    forward = sum(2 * a * b for a, b in pairs)
    backward = sum(2 * a * b for a, b in pairs) + sum(2 * a * b for a, b in pairs[1:])
    return forward + backward, forward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true",
                        help="the main job itself, sweeps included (no one-by-one estimate)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--dask", action="store_true",
                        help="in process against a local Dask cluster of 1 and 2 workers")
    parser.add_argument("--cluster", default=None,
                        help="with --dask: the scheduler of a running cluster instead")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.dask:
        dask_overhead(args)
        return
    from reglab.engine import Population
    from reglab.study.build import load_study_data, population_members
    from reglab.study.dask_executor import DaskExecutor
    from reglab.study.plan import PopulationSpec
    from reglab.study.precision import with_precision
    from reglab.study.runner import prepare_study, run_study

    peak = matmul_gflops()
    with tempfile.TemporaryDirectory() as tmp:
        study = Path(tmp) / "tutorial45.toml"
        text = EXAMPLE.read_text()
        study.write_text(text if args.full else without_sweeps(text))
        plan = prepare_study(study, args.seeds, args.epochs)
        print(plan.describe())
        started = time.perf_counter()
        executor = DaskExecutor(workers=args.workers, threads=args.threads or None) \
            if args.workers > 1 else None
        try:
            store = run_study(study, Path(tmp) / "out", args.seeds, args.epochs,
                              executor=executor, log=lambda *_: None)
        finally:
            if executor is not None:
                executor.close()
        wall = time.perf_counter() - started
        # the precision the study trained in ("auto" resolved when it started)
        plan = dataclasses.replace(plan, spec=with_precision(plan.spec,
                                                             store.get_meta("precision")))
        # the runs trained (a twin repeats another run and gets its results untrained)
        runs = [r for r in store.runs() if r.run_id not in plan.twins]
        data = load_study_data(plan.spec)
        epochs = sum(r.epochs_run for r in runs)
        print(f"{len(runs)} runs trained ({len(plan.twins)} twins not), {epochs} run-epochs; "
              f"precision {plan.spec.training.precision}")
        if any(layer.type != "Dense" for layer in plan.spec.layers):
            print(f"study wall time: {wall:.1f} s (the floor is counted for Dense stacks only)")
        else:
            widths = [math.prod(plan.spec.input_shape)] + [
                layer.args["units"] for layer in plan.spec.layers]
            train, forward = dense_flops(widths)
            per_epoch_flops = train * len(data.x_train) + forward * len(data.x_val)
            floor = epochs * per_epoch_flops / (peak * 1e9)
            print(f"fp32 matmul peak {peak:.1f} GFLOP/s; {per_epoch_flops / 1e9:.2f} GFLOP per "
                  f"run-epoch -> compute floor {floor:.1f} s")
            print(f"study wall time: {wall:.1f} s = {wall / floor:.2f}x the fp32 compute floor")
        if args.full:
            return
        # One epoch of each technique alone, in this process, after the study.
        per_epoch = {}
        for population in plan.populations:
            for run in population.runs:
                if run.variant in per_epoch or run.seed != 0:
                    continue
                single = PopulationSpec(population.key, (run,))
                members, augment, images = population_members(plan.spec, single, data)
                def shaped(a, images=images):
                    return a.reshape(len(a), *data.image_shape) if images else a
                x, x_val = shaped(data.x_train), shaped(data.x_val)
                pop = Population(members, keep_freed_memory=True)
                pop.fit(x[:1024], data.y_train[:1024], batch_size=128, epochs=1, augment=augment,
                        validation_data=(x_val[:256], data.y_val[:256]))  # warm-up
                t0 = time.perf_counter()
                pop.fit(x, data.y_train, batch_size=plan.spec.training.batch_size, epochs=1,
                        augment=augment, validation_data=(x_val, data.y_val))
                per_epoch[run.variant] = time.perf_counter() - t0
        one_by_one = sum(per_epoch[r.variant] * r.epochs_run for r in runs)
        print("one epoch alone: " + ", ".join(f"{k} {v:.2f}s" for k, v in per_epoch.items()))
        print(f"workers {args.workers}, torch threads {executor.threads if executor else torch.get_num_threads()} each")
        print(f"study wall time: {wall:.1f} s; the same runs one at a time (estimated): "
              f"{one_by_one:.1f} s; speedup {one_by_one / wall:.1f}x")


def dask_overhead(args) -> None:
    """The 45-run study in process, then through Dask (see the module docstring)."""
    from reglab.study.dask_executor import DaskExecutor
    from reglab.study.runner import prepare_study, run_study

    with tempfile.TemporaryDirectory() as tmp:
        study = Path(tmp) / "tutorial45.toml"
        study.write_text(fixed_precision(without_sweeps(EXAMPLE.read_text()),
                                         threads=args.threads or None))
        print(prepare_study(study, args.seeds, args.epochs).describe())
        setups = [("in process", None)]
        if args.cluster:
            setups.append((f"cluster {args.cluster}", dict(address=args.cluster)))
        else:
            threads = args.threads or None  # default: the CPUs divided among the workers
            setups += [("local Dask, 1 worker", dict(workers=1, threads=threads)),
                       ("local Dask, 2 workers", dict(workers=2, threads=threads))]
        walls = {}
        for index, (name, options) in enumerate(setups):
            started = time.perf_counter()
            executor = DaskExecutor(**options) if options is not None else None
            try:
                store = run_study(study, Path(tmp) / f"out{index}", args.seeds, args.epochs,
                                  executor=executor, log=lambda *_: None)
                store.close()
            finally:
                if executor is not None:
                    executor.close()
            walls[name] = time.perf_counter() - started  # cluster start-up included
            print(f"{name}: {walls[name]:.1f} s = {walls[name] / walls['in process']:.2f}x "
                  "in process", flush=True)


if __name__ == "__main__":
    main()
