"""Tuning a population at a time against Optuna's usual way, one trial at a time.

Three searches of the same study (``examples/tune.toml`` by default: its variants, ranges,
sampler and pruner), at the same budget of trials and epochs, in this process, one after
the other:

1. reglab's tuning: trials asked in batches and trained as one population (pruned trials
   leave it, new ones join), as ``reglab run`` does (its confirmation is not timed);
2. one trial at a time, Optuna's usual way: ``study.optimize(objective)`` whose objective
   trains one model (the same engine, a population of one, so that the two searches train
   the same models) and reports each epoch to the same pruner;
3. random search, a population at a time: the control for the sampler.

It prints each search's wall time, trials (complete, pruned), model-epochs and best
validation value, then the ratio of the wall times.

    python benchmarks/tune.py [--study examples/tune.toml] [--trials 32] [--epochs 6]
                              [--batch 0] [--threads 1] [--device cpu] [--no-sequential]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from study import fixed_precision  # noqa: E402  (the benchmarks' one rule for "auto")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "tune.toml"


def with_budget(text: str, trials: int, epochs: int, sampler: str | None = None,
                batch: int = 0) -> str:
    """The study file with a budget of ``trials`` trials of ``epochs`` epochs (``batch``
    trials per population; 0: reglab's choice)."""
    text = re.sub(r"^model_epochs\s*=.*$", "", text, flags=re.M)
    text = re.sub(r"^wall_time\s*=.*$", "", text, flags=re.M)
    text = re.sub(r"^trials\s*=.*$", "", text, flags=re.M)
    text = re.sub(r"^epochs\s*=.*$", f"epochs = {epochs}", text, flags=re.M)
    text = re.sub(r"^confirm_seeds\s*=.*$", "confirm_seeds = 2", text, flags=re.M)
    text = re.sub(r"^batch\s*=.*$", "", text, flags=re.M)
    text = text.replace("[tune]\n", f"[tune]\ntrials = {trials}\nbatch = {batch}\n", 1)
    if sampler is not None:
        text = re.sub(r"^sampler\s*=.*$", f'sampler = "{sampler}"', text, flags=re.M)
    return text


def population_search(study_file: Path, out: Path, device: str = "cpu") -> dict:
    """reglab's tuning; returns its summary (wall time of the tuning alone)."""
    from reglab.study.runner import run_study
    from reglab.tune.runner import journal_path

    store = run_study(study_file, out, device=device, log=lambda *_: None)
    summary = store.get_meta("tuning")
    store.close()
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name="reglab", storage=JournalStorage(
        JournalFileBackend(str(journal_path(out)))))
    summary["best"] = study.best_value
    return summary


class _Pruning:
    """Reports each epoch's objective to the trial and stops the model when pruned."""

    def __init__(self, trial, objective):
        self.trial, self.objective, self.pruned = trial, objective, False

    def on_train_begin(self, population):
        self.population = population

    def on_epoch_end(self, epoch, logs_by_member):
        value = logs_by_member[0][self.objective]
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            self.pruned = True
            self.population.stop_requested.add(0)


def sequential_search(study_file: Path, device: str = "cpu") -> dict:
    """The same search, one trial at a time: ``study.optimize`` with an objective that trains
    one model, as an Optuna user writes it."""
    import optuna

    from reglab.engine import Population
    from reglab.study.build import build_member, load_study_data
    from reglab.study.spec import parse_study
    from reglab.tune import space
    from reglab.tune.runner import make_pruner, make_sampler

    spec = parse_study(study_file)
    data = load_study_data(spec)
    epochs_used = []

    def objective(trial):
        variant, point = space.suggest(trial, spec)
        (run,) = space.trial_runs(spec, trial.number, variant, point)
        model = Population([build_member(spec, run, tuple(spec.input_shape))],
                           loss=spec.training.loss, metrics=spec.training.metrics,
                           device=device)
        pruning = _Pruning(trial, spec.tune.objective)
        result = model.fit(data.x_train, data.y_train, batch_size=spec.training.batch_size,
                           epochs=spec.training.epochs,
                           validation_data=(data.x_val, data.y_val), observers=[pruning])
        epochs_used.append(result.members[0].epochs_run)
        if pruning.pruned:
            raise optuna.TrialPruned()
        name = spec.tune.objective.removeprefix("val_")
        return model.evaluate(data.x_val, data.y_val)[0][name]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=make_sampler(spec), pruner=make_pruner(spec),
                                direction=spec.tune.direction)
    started = time.perf_counter()
    study.optimize(objective, n_trials=spec.tune.trials)
    wall = time.perf_counter() - started
    states = [t.state.name for t in study.trials]
    return {"wall_time": wall, "best": study.best_value, "model_epochs": sum(epochs_used),
            "trials": {"complete": states.count("COMPLETE"), "pruned": states.count("PRUNED"),
                       "failed": states.count("FAIL")}}


def line(name: str, summary: dict) -> str:
    trials = summary["trials"]
    return (f"{name:38s} {summary['wall_time']:8.1f} s  {trials['complete']:3d} complete "
            f"{trials['pruned']:3d} pruned  {summary['model_epochs']:5d} model-epochs  "
            f"best {summary['best']:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=EXAMPLE)
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch", type=int, default=0,
                        help="trials per population (default 0: reglab's choice, 48 on a CPU)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--no-sequential", action="store_true",
                        help="skip the one-trial-at-a-time search (the slow one)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    # one precision for the three searches (each run of "auto" would measure again)
    text = fixed_precision(args.study.read_text(), args.device, args.threads or None)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        searches = {}
        for name, sampler in (("population", None), ("random", "random")):
            study_file = tmp / f"{name}.toml"
            study_file.write_text(with_budget(text, args.trials, args.epochs, sampler,
                                              args.batch))
            searches[name] = population_search(study_file, tmp / name, args.device)
        print(f"{args.study.name}: {args.trials} trials × up to {args.epochs} epochs, "
              f"{args.batch or 'up to 48'} trials per population, "
              f"{torch.get_num_threads()} thread(s), {args.device}")
        print(line("population at a time (its sampler)", searches["population"]))
        print(line("population at a time, random search", searches["random"]))
        if args.no_sequential:
            return
        sequential = sequential_search(tmp / "population.toml", args.device)
        print(line("one trial at a time (its sampler)", sequential))
        ratio = sequential["wall_time"] / searches["population"]["wall_time"]
        print(f"tuning at {args.trials} trials: {ratio:.2f}× less wall time a population at a "
              f"time than one trial at a time; best {searches['population']['best']:.4f} vs "
              f"{sequential['best']:.4f} (random search {searches['random']['best']:.4f})")


if __name__ == "__main__":
    main()
