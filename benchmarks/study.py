"""The tutorial study end to end, against the same runs trained one at a time.

Runs the nine techniques of ``examples/tutorial.toml`` (its sweep variants left out:
9 variants × 5 seeds = 45 runs, up to 30 epochs, early stopping where the slides use it)
through ``reglab.study.run_study`` into a temporary directory, then estimates the
one-by-one cost in the same run: one epoch of each technique trained alone (a
population of one) is timed, and multiplied by the epochs each run actually trained.

    python benchmarks/study.py [--epochs 30] [--seeds 5] [--threads 0] [--workers 1]

``--workers N`` trains in N worker processes (populations split into shards of whole seeds),
``--threads`` torch threads each (default: the CPUs divided among them); the one-by-one
estimate always uses this process with ``--threads`` (default: torch's).
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from reglab.engine import Population
    from reglab.study.build import load_study_data, population_members
    from reglab.study.executors import ProcessPoolExecutor
    from reglab.study.plan import PopulationSpec
    from reglab.study.runner import prepare_study, run_study

    with tempfile.TemporaryDirectory() as tmp:
        study = Path(tmp) / "tutorial45.toml"
        study.write_text(without_sweeps(EXAMPLE.read_text()))
        plan = prepare_study(study, args.seeds, args.epochs)
        print(plan.describe())
        started = time.perf_counter()
        executor = ProcessPoolExecutor(args.workers, args.threads or None) \
            if args.workers > 1 else None
        store = run_study(study, Path(tmp) / "out", args.seeds, args.epochs, executor=executor,
                          log=lambda *_: None)
        wall = time.perf_counter() - started
        runs = store.runs()
        # One epoch of each technique alone, in this process, after the study.
        data = load_study_data(plan.spec)
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
        epochs = sum(r.epochs_run for r in runs)
        print(f"{len(runs)} runs, {epochs} run-epochs in total")
        print("one epoch alone: " + ", ".join(f"{k} {v:.2f}s" for k, v in per_epoch.items()))
        print(f"workers {args.workers}, torch threads {executor.threads if executor else torch.get_num_threads()} each")
        print(f"study wall time: {wall:.1f} s; the same runs one at a time (estimated): "
              f"{one_by_one:.1f} s; speedup {one_by_one / wall:.1f}x")


if __name__ == "__main__":
    main()
