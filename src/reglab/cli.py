"""The ``reglab`` command line: run, validate, show, list and report studies."""

from __future__ import annotations

import os
import platform
import sys
import warnings
from pathlib import Path

# MKL's conditional bitwise reproducibility: without it, MKL's kernels for small matrices
# take another path when a member's slice of a stacked tensor is not 16-byte aligned, and
# a member's results would depend on its position in the population. It must be set
# before MKL's first call, so here, before anything imports torch (this process is ours;
# spawned workers inherit it). No measurable cost on the tutorial's shapes.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

import click  # noqa: E402

import reglab  # noqa: E402
from reglab.errors import ReglabError, StoreError  # noqa: E402
from reglab.study.spec import (  # noqa: E402  (no torch)
    MAX_EPOCHS,
    MAX_SEEDS,
    default_directory_problem,
)


def _fail(error: Exception) -> None:
    click.echo(f"error: {error}", err=True)
    sys.exit(2)


def _clear_errors(command):
    """Every failure a user can cause ends in one ``error:`` line and exit status 2, never
    a traceback: reglab's own errors, a store SQLite cannot read, a path the system
    refuses. Ctrl-C ends with status 130 (128 + SIGINT, as a shell reports it), SIGTERM with
    143, each keeping what was saved."""
    import functools
    import sqlite3

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from reglab.utils.interrupts import Terminated, terminate_as_interrupt

        try:
            with terminate_as_interrupt():  # a SIGTERM ends it as Ctrl-C does
                return command(*args, **kwargs)
        except ReglabError as error:
            _fail(error)
        except BrokenPipeError:  # the reader left (`reglab ls DIR | head -1`): end quietly
            _stdout_to_devnull()  # (no second error when Python flushes stdout at exit)
            sys.exit(141)  # 128 + SIGPIPE, as a shell reports a writer whose reader left
        except sqlite3.DatabaseError as error:
            full = "full" in str(error)  # SQLite's 'database or disk is full'
            _fail(ReglabError(
                f"the study's store cannot be {'written' if full else 'read'} ({error}); it "
                "is left as it is" + (": free some space and run the same command again, and "
                                      "the study goes on from its finished runs."
                                      if full else ".")))
        except OSError as error:
            where = f"{error.filename}: " if error.filename else ""
            _fail(ReglabError(f"{where}{error.strerror or error}."))
        except KeyboardInterrupt as error:  # Ctrl-C: 130 as a shell reports it, not 1
            # ("runs failed"); SIGTERM: 143
            _process_ends_on_interrupt()
            stopped = isinstance(error, Terminated)
            click.echo(f"\n{'terminated (SIGTERM)' if stopped else 'interrupted'}: what was "
                       "saved is kept; the same command goes on from there.", err=True)
            sys.exit(143 if stopped else 130)
        except MemoryError as error:
            said = f" ({error})" if str(error) else ""
            _fail(ReglabError(f"out of memory{said}. Use fewer seeds, sweep points or a "
                              "smaller model, or fewer --workers."))
        except Exception as error:  # a bug of reglab's: one line, the traceback on request
            if os.environ.get("REGLAB_DEBUG"):
                raise
            click.echo(f"error: unexpected {type(error).__name__}: {error}. This is a bug "
                       "in reglab; REGLAB_DEBUG=1 shows where. Saved results are kept.",
                       err=True)
            sys.exit(3)
    return wrapper


#: whether the command runs as the whole process (``reglab ...``, ``python -m reglab.cli``),
#: not inside another program's (click's CliRunner calls ``main.main`` itself)
_whole_process = False


def _process_ends_on_interrupt() -> None:
    """Once a Ctrl-C ends a command that is the whole process, further Ctrl-C are ignored
    while it exits: one pressed again had ended the process by the signal itself (status
    -2, not 130) after reglab's line. Inside another program nothing changes (its own
    Ctrl-C stays its own, as do the processes it starts, which would inherit the ignoring)."""
    if not _whole_process:
        return
    import signal

    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except (ValueError, OSError):  # not the main thread: nothing to change
        pass


def _stdout_to_devnull() -> None:
    """Points stdout at /dev/null (Python's advice for a closed pipe)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no file descriptor (stdout replaced): nothing to flush
        pass


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as the command line says it: ``warning: <message>`` on stderr, not Python's
    file, line number, class and source line (a library's own warnings, in code, keep
    Python's form)."""
    click.echo(f"warning: {message}", err=True)


class _Commands(click.Group):
    """reglab's commands, where Ctrl-C while click reads the arguments or hands them to a
    command (before the command's own handling, :func:`_clear_errors`) ends as it does
    inside one: status 130 (143 for SIGTERM), not click's 'Aborted!' with status 1, which
    reglab's ``run`` gives for failed runs."""

    def __call__(self, *args, **kwargs):
        """The command line's entry (the ``reglab`` script, ``python -m reglab.cli``): the
        command is the whole process (:func:`_process_ends_on_interrupt`)."""
        global _whole_process
        _whole_process = True
        warnings.showwarning = _warning_line  # the process's own: one line each
        return super().__call__(*args, **kwargs)

    def make_context(self, *args, **kwargs):
        with _interrupt_ends_it():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx):
        with _interrupt_ends_it():
            return super().invoke(ctx)


class _interrupt_ends_it:
    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if kind is None or not issubclass(kind, KeyboardInterrupt):
            return False
        from reglab.utils.interrupts import Terminated

        _process_ends_on_interrupt()
        stopped = isinstance(error, Terminated)
        click.echo(f"\n{'terminated (SIGTERM)' if stopped else 'interrupted'}: what was saved "
                   "is kept; the same command goes on from there.", err=True)
        sys.exit(143 if stopped else 130)


@click.group(cls=_Commands)
@click.version_option(reglab.__version__, prog_name="reglab")
def main() -> None:
    """reglab: a regularization laboratory for neural networks."""
    from reglab.utils.quick_exit import freeze_at_exit

    freeze_at_exit()  # ~1 s less at the end of every command (utils/quick_exit.py)


@main.command()
def info() -> None:
    """Prints the versions and devices reglab sees."""
    import torch

    click.echo(f"reglab {reglab.__version__}")
    click.echo(f"python {platform.python_version()}")
    click.echo(f"torch {torch.__version__} (threads: {torch.get_num_threads()})")
    cuda = torch.cuda.is_available()
    click.echo(f"cuda {'available: ' + torch.cuda.get_device_name(0) if cuda else 'not available'}")
    from reglab.layers import products

    halves = ", ".join(f"{dtype} {'native' if products.native_half_products(dtype) else 'in float32'}"
                       for dtype in ("bfloat16", "float16"))
    click.echo(f"cpu {torch.backends.cpu.get_cpu_capability()} (half-precision products: {halves})")
    from reglab.study import precision

    chosen = precision.choose("cpu")
    click.echo(f'precision = "auto" on this CPU: {chosen.precision} ({chosen.reason})')


@main.command()
@click.argument("study", type=click.Path(dir_okay=False))
@click.option("--seeds", type=click.IntRange(min=1, max=MAX_SEEDS),
              help="Override the number of seeds: the study file's first N, then the smallest "
                   "seeds it does not list.")
@click.option("--epochs", type=click.IntRange(min=1, max=MAX_EPOCHS),
              help="Override the number of epochs.")
@_clear_errors
def validate(study, seeds, epochs) -> None:
    """Checks a study file and prints its plan (no training, nothing written): builds every
    variant's model and checks it against the data."""
    from reglab.study.build import check_study
    from reglab.study.runner import prepare_study

    plan = prepare_study(study, seeds, epochs)
    data = check_study(plan)
    click.echo(_describe(plan))
    problem = default_directory_problem(plan.spec.name)
    if problem is not None:  # not an error: run --out DIR places it
        click.echo(f"note: {problem}")
    if data.class_names:  # a CSV's labels by name: which class is which
        shown = ", ".join(f"{i} = {name}" for i, name in enumerate(data.class_names[:10]))
        more = len(data.class_names) - 10
        click.echo(f"  classes by name (sorted): {shown}"
                   + (f", ... ({more} more)" if more > 0 else ""))
    if any(run.regime for run in plan.runs):  # data regimes: one line per regime
        from reglab.study.regimes import regime_label

        # (regimes that differ only in their label noise share populations)
        regimes: dict[str, tuple[list, set]] = {
            regime_label(run.regime): ([], set()) for run in plan.runs}
        for run in plan.runs:  # twins included
            regimes[regime_label(run.regime)][0].append(run)
        for index, population in enumerate(plan.populations):
            for run in population.runs:
                regimes[regime_label(run.regime)][1].add(index)
        for label, (runs, populations) in regimes.items():
            click.echo(f"  data regime {label}: {len(runs)} runs in {len(populations)} "
                       "populations")
    else:
        for index, population in enumerate(plan.populations, start=1):
            variants = sorted({run.variant for run in population.runs})
            click.echo(f"  population {index}: {len(population.runs)} runs "
                       f"({', '.join(variants)})")
    _twins_line(plan)
    _baseline_note(plan)
    _precision_note(plan, choose=True)


def _twins_line(plan) -> None:
    if plan.twins:
        twins = [run for run in plan.runs if run.run_id in plan.twins]
        click.echo(f"  not trained: {len(twins)} runs repeat another run's settings and seed "
                   f"and take its results ({', '.join(sorted({r.variant for r in twins}))})")


def _named_path(value: str | None) -> str | None:
    """``--out`` as given; an empty one (an unset variable in a script) is refused: it would
    have written the study into the current directory."""
    if value is not None and not value.strip():
        raise click.BadParameter(f"expected a directory. Got {value!r} (empty: an unset "
                                 "variable?); leave --out out for runs/<study name>.")
    return value


@main.command()
@click.argument("study", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default=None,
              callback=lambda ctx, param, value: _named_path(value),
              help="Output directory (default: runs/<study name>).")
@click.option("--seeds", type=click.IntRange(min=1, max=MAX_SEEDS),
              help="Override the number of seeds: the study file's first N, then the smallest "
                   "seeds it does not list.")
@click.option("--epochs", type=click.IntRange(min=1, max=MAX_EPOCHS),
              help="Override the number of epochs.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu")
@click.option("--restart", is_flag=True, help="Start over in a directory holding another study.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--no-report", is_flag=True, help="Do not write report.html at the end.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Train in this many worker processes, a local Dask cluster (each population "
                   "cut into as many shards), the CPU's threads shared among them.")
@click.option("--cluster", metavar="ADDRESS", default=None,
              help="Train on the Dask cluster whose scheduler is at ADDRESS "
                   "(tcp://host:port); the store stays here.")
@_clear_errors
def run(study, out, seeds, epochs, device, restart, quiet, no_report, workers, cluster) -> None:
    """Runs (or resumes) a study, prints the results table, writes OUT/report.html.

    Exits with status 1 when runs failed (the others are saved), 2 on an error."""
    from reglab.study.report_table import results_table
    from reglab.study.runner import check_executor, prepare_study, run_study

    if cluster is not None and workers > 1:
        raise ReglabError("--workers and --cluster: give one (--workers N starts a local "
                          "cluster of N processes; --cluster uses a running one).")
    most = max(8, 4 * (os.cpu_count() or 1))
    if workers > most:
        raise ReglabError(f"--workers: at most {most} here (4 per CPU: each worker is a "
                          f"process with its own copy of the data). Got {workers}.")
    plan = prepare_study(study, seeds, epochs)
    check_executor(study, plan, cluster is not None or workers > 1)  # before reaching one
    if out is None:
        problem = default_directory_problem(plan.spec.name)
        if problem is not None:
            raise ReglabError(f"{study}: {problem}")
        out = Path("runs") / plan.spec.name
    out = Path(out)
    click.echo(f"{_describe(plan)} -> {out}")
    _baseline_note(plan)
    if device == "cpu" and cluster is None:  # a cluster's workers may have other CPUs
        _precision_note(plan)
    executor = None
    if cluster is not None or workers > 1:
        import logging

        import distributed  # noqa: F401  (configures its loggers on import)

        from reglab.study.dask_executor import DaskExecutor

        # Dask logs its reconnection attempts with tracebacks; what matters reaches the
        # user as reglab's own one-line error.
        # asyncio's "Task exception was never retrieved" (a scatter cut short by Ctrl-C)
        # is Dask's too.
        for name in ["distributed", "asyncio", *logging.root.manager.loggerDict]:
            if name.startswith("distributed") or name == "asyncio":
                logging.getLogger(name).setLevel(logging.CRITICAL)
        executor = DaskExecutor(address=cluster, workers=workers)
    try:
        store = run_study(study, out, seeds, epochs, device, restart, executor=executor,
                          progress_factory=None if quiet else _progress_bar, log=click.echo)
    finally:
        if executor is not None:
            executor.close()
    click.echo(results_table(store))
    runs = store.runs()
    failed = [r for r in runs if r.status == "failed"]
    store.close()
    if not no_report:
        _write_report(out, after_run=True)
    if failed:
        first = (failed[0].error or "").splitlines()[0] if failed[0].error else "no message"
        click.echo(f"error: {len(failed)} of {len(runs)} runs failed (the first: "
                   f"{failed[0].run_id}: {first}). The other runs are saved; `reglab ls {out}` "
                   "lists them; a failed run trains again after --restart.", err=True)
        sys.exit(1)


def _describe(plan) -> str:
    if plan.spec.tune is not None:
        from reglab.tune.space import describe

        return describe(plan.spec)
    return plan.describe()


def _baseline_note(plan) -> None:
    """Says which variant the verdicts compare with when none is named 'baseline', and
    that there will be no verdicts when the study has fewer seeds than a verdict needs."""
    from reglab.stats import MIN_SEEDS

    seeds = len(plan.spec.seeds)
    if seeds < MIN_SEEDS and (plan.spec.tune is not None or len(plan.spec.variants) > 1):
        what = "tune.confirm_seeds" if plan.spec.tune is not None else "seeds"
        click.echo(f"note: {what} = {seeds}: a verdict needs at least {MIN_SEEDS} paired "
                   "seeds, so the table will rank the variants without verdicts")
    names = [variant.name for variant in plan.spec.variants]
    regimes = any(run.regime for run in plan.runs)  # those say so in their table
    if plan.spec.tune is None and not regimes and len(names) > 1 and "baseline" not in names:
        click.echo(f"note: no variant is named 'baseline': the others are compared with the "
                   f"first, {names[0]!r}")


def _precision_note(plan, choose: bool = False) -> None:
    """Says when this CPU has no matrix instructions for the study's half precision: its
    products then run in float32 on widened operands (layers/products.py), as exact as
    the half precision's own but no faster than float32. For ``precision = "auto"``, with
    ``choose`` (``reglab validate``), what it would choose on this CPU now (``reglab run``
    says what it chose)."""
    from reglab.study import precision as auto_precision

    precision = plan.spec.training.precision
    if precision == auto_precision.AUTO:
        if choose:
            chosen = auto_precision.choose("cpu")
            click.echo(f"precision auto: {chosen.precision} on this CPU ({chosen.reason}); "
                       "measured again when the study starts training, with its workers' "
                       "threads (with --device cuda: bfloat16 on a GPU with bfloat16 tensor "
                       "cores)")
        return
    note = auto_precision.widened_note(precision)
    if note:
        click.echo(note)


def _write_report(directory, after_run: bool = False) -> None:
    import sqlite3

    from reglab.report import write_report

    try:
        path = write_report(directory)
    except StoreError as error:  # a damaged store: retrying cannot help, the error says why
        _fail(ReglabError(f"the report could not be written: {error}"))
    except sqlite3.DatabaseError as error:  # damaged below what the store checks (its bytes)
        _fail(ReglabError(f"the report could not be written: the study's store cannot be "
                          f"read ({error}); it is left as it is. Restore it from a copy, or "
                          "run the study again into another directory."))
    except Exception as error:  # the study itself is saved; only the page is missing
        saved = f"The study in {directory} is complete and saved; " if after_run else ""
        text = str(error).rstrip(".")
        _fail(ReglabError(f"{saved}the report could not be written: "
                          f"{type(error).__name__}: {text}. Retry with `reglab report "
                          f"{directory}`."))
    click.echo(f"report: {path}")


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@_clear_errors
def report(directory) -> None:
    """Writes DIRECTORY/report.html (every plot embedded) and DIRECTORY/plots/*.png."""
    from reglab.storage import SQLiteStore

    SQLiteStore(directory, read_only=True).close()  # a study directory, readable
    _write_report(Path(directory))


def _progress_bar(index: int, count: int, runs: int):
    from tqdm import tqdm

    # disable=None: no bar when stderr is not a terminal (a log file gets no redraws)
    bar = tqdm(total=None, desc=f"population {index + 1}/{count} ({runs} runs)", unit="epoch",
               leave=True, dynamic_ncols=True, disable=None)

    def update(epoch, epochs, running, best):
        bar.total = epochs
        bar.n = epoch
        bar.set_postfix(running=running, best_val_acc=f"{best:.4f}")
        bar.refresh()

    update.close = bar.close
    return update


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@_clear_errors
def show(directory) -> None:
    """Prints the results table of a study directory (read-only)."""
    from reglab.storage import SQLiteStore
    from reglab.study.report_table import results_table

    with SQLiteStore(directory, read_only=True) as store:
        click.echo(results_table(store))


@main.command(name="ls")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@_clear_errors
def list_runs(directory) -> None:
    """Lists the runs of a study directory with their status (read-only)."""
    from reglab.storage import SQLiteStore
    from reglab.storage.lock import unheld
    from reglab.study.report_table import (
        decimals_for,
        format_number,
        metric_keys,
        stored_metrics,
    )

    with SQLiteStore(directory, read_only=True) as store:
        records = store.runs()
        metrics = stored_metrics(store)
    with unheld(directory) as idle:  # no `reglab run` trains them: a run was stopped
        pass
    metric = metric_keys(metrics)[0]  # the table's: accuracy, mae, ... or the loss
    digits = decimals_for(r.metrics.get(metric) for r in records)  # as the table's
    for record in records:
        value = record.metrics.get(metric)
        shown = format_number(value, digits) if value is not None else "—"
        status = "interrupted" if idle and record.status == "running" else record.status
        click.echo(f"{status:14s} {record.epochs_run:4d} epochs  {metric.replace('_', ' ')} "
                   f"{shown}  {record.run_id}")


if __name__ == "__main__":
    main()
