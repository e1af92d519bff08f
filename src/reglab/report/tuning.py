"""The report's Tuning section: a tuning study's trials, read from Optuna's journal.

A tuning study (one with ``[tune]``) keeps Optuna's study in ``<study dir>/optuna.journal``
(see :mod:`reglab.tune.runner`); it is opened read-only here, never written. The figures are
drawn like :mod:`reglab.report.figures` (matplotlib's object API on Agg, user strings through
:func:`~reglab.report.figures.plain`):

* :func:`optimization_history`: each trial's objective by trial number, the running best;
* :func:`parameter_panels`: each searched parameter against the objective;
* :func:`importances`: Optuna's parameter importances (its default evaluator);
* :func:`intermediate_values`: each trial's per-epoch objective, where pruning stopped it.

:func:`summary_rows` is the section's table, from the store's ``tuning`` summary.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

from reglab.report.figures import _color, _figure, _margins, plain

#: the journal's file name and Optuna's study name in it (:data:`reglab.tune.runner.JOURNAL`
#: and ``STUDY_NAME``; not imported from there: the runner imports torch)
JOURNAL = "optuna.journal"
STUDY_NAME = "reglab"
PRUNED_COLOR = "#8a8a8a"


def journal_file(results) -> Path | None:
    """The study's journal, or None for a grid study or a tuning without one yet."""
    if results.spec.tune is None:
        return None
    summary = results.meta.get("tuning")
    name = summary.get("journal") if isinstance(summary, dict) else None
    path = results.directory / (name if isinstance(name, str) and name else JOURNAL)
    return path if path.is_file() else None


@dataclass(frozen=True)
class TuningTrials:
    """A tuning's trials, as the figures need them."""

    objective: str
    direction: str  # 'maximize' or 'minimize'
    trials: list  # Optuna's FrozenTrials, by number
    variants: tuple[str, ...]  # the candidates, in the study's order (their colors)
    params: tuple[str, ...]  # every parameter drawn: 'variant' first, then the variants'
    study: object  # Optuna's Study, for the importances
    chosen: int | None  # the confirmed trial's number
    scheduler: str = "optuna"  # or 'pbt': population-based training changed the values

    @property
    def pbt(self) -> bool:
        """Population-based training: a trial's parameters are only its starting values."""
        return self.scheduler == "pbt"

    def variant_of(self, trial) -> str:
        from reglab.tune.space import VARIANT_PARAM

        return str(trial.params.get(VARIANT_PARAM, self.variants[0]))

    def color(self, variant: str) -> str:
        return _color(self.variants.index(variant)) if variant in self.variants else "#333333"

    def of_state(self, name: str) -> list:
        """The trials in Optuna's state ``name`` ('COMPLETE', 'PRUNED', 'FAIL', ...); a
        diverged trial (told PRUNED at its last value, for the sampler) is not among the
        pruned: see :attr:`diverged`."""
        return [t for t in self.trials if t.state.name == name
                and not (name == "PRUNED" and t.user_attrs.get("diverged"))]

    @property
    def diverged(self) -> list:
        """The trials whose training diverged (whatever state Optuna was told)."""
        return [t for t in self.trials if t.user_attrs.get("diverged")]

    @property
    def complete(self) -> list:
        return [t for t in self.of_state("COMPLETE")
                if t.value is not None and math.isfinite(t.value)]

    def distribution(self, param: str):
        return next(t.distributions[param] for t in self.trials if param in t.distributions)

    def handles(self, extra=()) -> list:
        """Legend entries: one per variant that has a complete trial, then ``extra``."""
        shown = {self.variant_of(t) for t in self.complete}
        return [Line2D([], [], color=self.color(v), marker="o", ls="", ms=5, label=plain(v))
                for v in self.variants if v in shown] + list(extra)


def read_trials(results, path: Path) -> TuningTrials:
    """The trials in ``path`` (Optuna's journal), opened read-only.

    Raises:
        Exception: whatever Optuna raises for a journal it cannot read.
    """
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from reglab.tune.space import VARIANT_PARAM, candidates, param_name
    from reglab.tune.trainer import objective_key

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(path)))
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage)
    spec = results.spec
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    variants = tuple(v.name for v in candidates(spec))
    order = [VARIANT_PARAM] + [param_name(v.name, d.path) for v in candidates(spec)
                               for d in v.search]
    drawn = {name for t in trials for name in t.distributions}
    params = tuple([p for p in order if p in drawn] + sorted(drawn - set(order)))
    summary = results.meta.get("tuning")
    chosen = (summary.get("chosen") or {}).get("number") if isinstance(summary, dict) else None
    return TuningTrials(objective_key(spec.tune.objective), study.direction.name.lower(),
                        trials, variants,
                        params, study, chosen if isinstance(chosen, int) else None,
                        getattr(spec.tune, "scheduler", "optuna"))


def _last_value(trial) -> tuple[int, float] | None:
    """A trial's last intermediate value, ``(step, value)``."""
    if not trial.intermediate_values:
        return None
    step = max(trial.intermediate_values)
    return step, float(trial.intermediate_values[step])


def _mark_chosen(ax, tuning: TuningTrials, x_of) -> list:
    """Rings the confirmed trial; returns its legend handle."""
    chosen = next((t for t in tuning.complete if t.number == tuning.chosen), None)
    if chosen is None:
        return []
    x = x_of(chosen)
    if x is None:
        return []
    ax.scatter([x], [chosen.value], s=90, facecolors="none", edgecolors="#111111", lw=1.4,
               zorder=4)
    return [Line2D([], [], marker="o", ls="", ms=8, markerfacecolor="none",
                   markeredgecolor="#111111", label=f"chosen (trial {chosen.number})")]


# ---- optimization history --------------------------------------------------------------------


def optimization_history(tuning: TuningTrials) -> Figure | None:
    """Each trial's objective against its number: complete trials colored by variant, pruned
    trials as gray crosses at their last intermediate value; the best so far as a step line."""
    complete = tuning.complete
    pruned = [(t.number, last[1]) for t in tuning.of_state("PRUNED")
              if (last := _last_value(t)) is not None]
    if not complete and not pruned:
        return None
    figure = _figure(9.0, 3.4)
    _margins(figure, left=0.7, bottom=0.5)
    ax = figure.add_subplot()
    for variant in tuning.variants:
        mine = [t for t in complete if tuning.variant_of(t) == variant]
        if mine:
            ax.scatter([t.number for t in mine], [t.value for t in mine], s=18,
                       color=tuning.color(variant), zorder=3)
    extra = []
    if pruned:
        ax.scatter([n for n, _ in pruned], [v for _, v in pruned], marker="x", s=22,
                   color=PRUNED_COLOR, lw=1.2, zorder=2)
        extra.append(Line2D([], [], marker="x", ls="", ms=5, color=PRUNED_COLOR,
                            label="pruned (last value)"))
    if complete:
        values = np.array([t.value for t in complete])
        running = (np.maximum if tuning.direction == "maximize" else np.minimum).accumulate(values)
        numbers = [t.number for t in complete]
        end = max(t.number for t in tuning.trials)
        ax.step(numbers + [end], list(running) + [running[-1]], where="post", color="#333333",
                lw=1.3, zorder=1)
        extra.append(Line2D([], [], color="#333333", lw=1.3, label="best so far"))
    extra.extend(_mark_chosen(ax, tuning, lambda t: t.number))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial", fontsize=8)
    ax.set_ylabel(plain(tuning.objective), fontsize=8)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=8)
    ax.legend(handles=tuning.handles(extra), fontsize=7, loc="best")
    return figure


# ---- parameters against the objective ---------------------------------------------------------


def _is_log(distribution) -> bool:
    return bool(getattr(distribution, "log", False))


def _choices(distribution) -> tuple | None:
    return getattr(distribution, "choices", None)


def _log_axis(ax, distribution) -> None:
    """A log x axis over the searched range; ticks at 1, 2 and 5 times the powers of ten when it spans
    two decades or less (else only the powers of ten would be labeled: one or two ticks)."""
    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(NullLocator())
    low, high = float(distribution.low), float(distribution.high)
    ax.set_xlim(low / (high / low) ** 0.04, high * (high / low) ** 0.04)  # the searched range
    if high / low <= 100:
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))


def parameter_panels(tuning: TuningTrials) -> Figure | None:
    """One panel per searched parameter: the objective of every complete trial that drew it
    against its value (log axis for log ranges; a categorical's choices at positions 0, 1, ...,
    spread a little so that equal values show), colored by variant."""
    complete = tuning.complete
    params = [p for p in tuning.params if any(p in t.params for t in complete)]
    if not params:
        return None
    columns = min(4, len(params))
    rows = math.ceil(len(params) / columns)
    figure = _figure(3.1 * columns + 0.4, 2.5 * rows + 0.1)
    _margins(figure, left=0.75, bottom=0.85, top=0.35, wspace=0.3, hspace=0.75)
    axes = figure.subplots(rows, columns, squeeze=False, sharey=True)
    for ax in axes.flat[len(params):]:
        ax.set_visible(False)
    spread = np.random.default_rng(0)
    ring: list = []
    for ax, param in zip(axes.flat, params):
        distribution = tuning.distribution(param)
        choices = _choices(distribution)
        xs = {}
        for trial in complete:
            if param not in trial.params:
                continue
            value = trial.params[param]
            if choices is None:
                xs[trial.number] = float(value)
            elif value in choices:
                xs[trial.number] = choices.index(value) + spread.uniform(-0.12, 0.12)
        for variant in tuning.variants:
            mine = [t for t in complete if t.number in xs and tuning.variant_of(t) == variant]
            if mine:
                ax.scatter([xs[t.number] for t in mine], [t.value for t in mine], s=16,
                           color=tuning.color(variant), zorder=3)
        ring = _mark_chosen(ax, tuning, lambda t, xs=xs: xs.get(t.number)) or ring
        label = ""
        if choices is not None:
            ax.set_xticks(range(len(choices)), [plain(c) for c in choices], fontsize=7,
                          rotation=20 if len(choices) > 3 else 0)
            ax.set_xlim(-0.5, len(choices) - 0.5)
        elif _is_log(distribution):
            _log_axis(ax, distribution)
            label = " (log)"
        else:
            ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
            pad = 0.04 * (distribution.high - distribution.low) or 0.5
            ax.set_xlim(distribution.low - pad, distribution.high + pad)
        ax.set_title(plain(param), fontsize=8)
        ax.set_xlabel(f"value{label}", fontsize=7)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
        ax.yaxis.set_tick_params(labelleft=True)
    for ax in axes[:, 0]:
        ax.set_ylabel(plain(tuning.objective), fontsize=8)
    handles = tuning.handles(ring)
    figure.legend(handles=handles, loc="lower center", ncols=max(1, len(handles)), fontsize=8,
                  frameon=False)
    return figure


# ---- importances ------------------------------------------------------------------------------

#: fewer complete trials than this give no importances (Optuna's evaluators need a spread)
MIN_IMPORTANCE_TRIALS = 4


def importances(tuning: TuningTrials) -> tuple[Figure | None, str]:
    """Optuna's parameter importances (``optuna.importance.get_param_importances``, its
    default evaluator) as horizontal bars; or None and why not (too few trials, or whatever
    Optuna raised or warned that makes them meaningless). The text is the caption's account
    of what was assessed."""
    import optuna

    complete = tuning.complete
    if tuning.pbt:
        return None, ("Parameter importances are not shown for population-based training: a "
                      "trial's objective comes from the values it trained with over time and "
                      "the states it copied, not from its starting values.")
    if len(complete) < MIN_IMPORTANCE_TRIALS:
        return None, (f"Parameter importances need at least {MIN_IMPORTANCE_TRIALS} complete "
                      f"trials; this tuning has {len(complete)}.")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            found = optuna.importance.get_param_importances(tuning.study)
        except Exception as error:  # the page renders without them
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
            return None, f"Optuna could not compute parameter importances: {reason}"
    said = list(dict.fromkeys(str(w.message).strip() for w in caught))
    equal = [s for s in said if "will be equal" in s]
    if equal or not found:
        return None, ("Optuna could not tell the parameters' importances apart"
                      f"{f': {equal[0]}' if equal else ''} (too few or too similar trials).")
    names = list(found)[::-1]  # the most important on top
    figure = _figure(7.5, 0.7 + 0.32 * len(names))
    _margins(figure, left=0.4 + 0.065 * max(len(n) for n in names), bottom=0.45, top=0.15)
    ax = figure.add_subplot()
    owners = [n.split(":", 1)[0] if ":" in n else "" for n in names]
    ax.barh(range(len(names)), [found[n] for n in names], height=0.6,
            color=[tuning.color(o) if o else "#7f7f7f" for o in owners])
    ax.set_yticks(range(len(names)), [plain(n) for n in names], fontsize=8)
    for y, name in enumerate(names):
        ax.text(found[name], y, f" {found[name]:.2f}", va="center", fontsize=7)
    ax.set_xlim(0, max(1.0, max(found.values())) * 1.1)
    ax.set_xlabel("importance (sums to 1)", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    ax.tick_params(axis="x", labelsize=8)
    drawn = {p for t in complete for p in t.params}
    left_out = [p for p in tuning.params if p in drawn and p not in found]
    text = (f"Parameter importances by Optuna's default evaluator "
            f"(optuna.importance.get_param_importances, Optuna {optuna.__version__}) over the "
            f"{len(complete)} complete trials, normalized to sum to 1; bars colored by the "
            "variant whose parameter it is (gray: the choice of variant).")
    if left_out:
        text += (f" Not assessed: {', '.join(left_out)} (this evaluator assesses only the "
                 "parameters present in every complete trial, so a variant's own parameters "
                 "are left out when several variants are candidates).")
    elif any(p not in t.params for p in drawn for t in complete):
        text += (" Every parameter drawn is assessed, a variant's own ones too (though only "
                 "that variant's trials draw them).")
    others = [s for s in said if s not in equal]
    if others:
        text += f" Optuna warned: {' '.join(others[:3])}{' …' if len(others) > 3 else ''}"
    return figure, text


# ---- intermediate values ----------------------------------------------------------------------


def _curve(trial) -> np.ndarray:
    """``(epochs, 2)``: a trial's intermediate values at epochs 1, 2, ... (steps 0, 1, ...)."""
    steps = sorted(trial.intermediate_values)
    return np.array([(s + 1, trial.intermediate_values[s]) for s in steps], dtype=float)


def intermediate_values(tuning: TuningTrials) -> Figure | None:
    """Each trial's objective per epoch as Optuna was told it (the mean over the trial's
    seeds): complete trials as thin lines colored by variant, pruned ones gray, ending in a
    cross at the epoch where they were stopped."""
    shown = [t for t in tuning.trials if t.state.name in ("COMPLETE", "PRUNED")
             and t.intermediate_values and not t.user_attrs.get("diverged")]
    if not shown:
        return None
    figure = _figure(9.0, 3.4)
    _margins(figure, left=0.7, bottom=0.5)
    ax = figure.add_subplot()
    pruned = [t for t in shown if t.state.name == "PRUNED"]
    # one collection per color: a tuning may have thousands of trials
    if pruned:
        curves = [_curve(t) for t in pruned]
        ax.add_collection(LineCollection(curves, colors=PRUNED_COLOR, linewidths=0.9, alpha=0.7,
                                         zorder=1, label="pruned"))
        ax.plot([c[-1][0] for c in curves], [c[-1][1] for c in curves], "x", ls="",
                color=PRUNED_COLOR, ms=5, zorder=2)
    for variant in tuning.variants:
        mine = [_curve(t) for t in shown
                if t.state.name == "COMPLETE" and tuning.variant_of(t) == variant]
        if mine:
            ax.add_collection(LineCollection(mine, colors=tuning.color(variant), linewidths=0.9,
                                             alpha=0.75, zorder=3, label=plain(variant)))
    ax.autoscale_view()
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch", fontsize=8)
    ax.set_ylabel(plain(tuning.objective), fontsize=8)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=8)
    extra = [Line2D([], [], color=PRUNED_COLOR, marker="x", ms=5, lw=0.9,
                    label="pruned (stopped at ×)")] if pruned else []
    shown_variants = {tuning.variant_of(t) for t in shown if t.state.name == "COMPLETE"}
    handles = [Line2D([], [], color=tuning.color(v), lw=1.2, label=plain(v))
               for v in tuning.variants if v in shown_variants]
    ax.legend(handles=handles + extra, fontsize=7, loc="best")
    return figure


# ---- the table --------------------------------------------------------------------------------


def _count(value) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else "—"


def summary_rows(results, tuning: TuningTrials | None) -> list[tuple[str, str]]:
    """The section's table: the trials, the budget they used and the confirmed trial, from
    the store's ``tuning`` summary (the trials counted from the journal when the store has
    none yet: a tuning killed, or one where no trial completed)."""
    from reglab.study.sweeps import format_value
    from reglab.tune.trainer import objective_key, objective_name

    tune = results.spec.tune
    summary = results.meta.get("tuning")
    summary = summary if isinstance(summary, dict) else {}
    counts = summary.get("trials") if isinstance(summary.get("trials"), dict) else None
    asked = summary.get("asked")
    if counts is None and tuning is not None:
        counts = {"complete": len(tuning.of_state("COMPLETE")),
                  "pruned": len(tuning.of_state("PRUNED")),
                  "diverged": len(tuning.diverged),
                  "failed": len([t for t in tuning.of_state("FAIL")
                                 if not t.user_attrs.get("diverged")])}
        asked = len(tuning.trials)
    counts = counts or {}
    rows = [("objective", f"{objective_name(tune.objective)} ({tune.direction})"),
            ("sampler, pruner", f"{tune.sampler}, {tune.pruner}"),
            ("trials asked", _count(asked))]
    rows += [(f"trials {name}", _count(counts.get(name)))
             for name in ("complete", "pruned", "diverged", "failed")]
    rows += [("model-epochs trained", _count(summary.get("model_epochs"))),
             ("model-epochs saved by pruning", _count(summary.get("pruning_saved")))]
    wall = summary.get("wall_time")
    rows.append(("tuning time", f"{wall:.1f} s" if isinstance(wall, (int, float)) else "—"))
    size = summary.get("population_size")
    rows.append(("trials per population (at most)", _count(size)))
    chosen = summary.get("chosen")
    if not isinstance(chosen, dict):
        rows.append(("chosen trial", "none (no trial completed)" if summary else
                     "none yet (the tuning has not finished)"))
        return rows
    if chosen.get("rule") == "one_se":
        se = chosen.get("standard_error")
        rule = (f"the 1-SE rule (SE {se:.4f}; the best was trial {chosen.get('best_number')})"
                if isinstance(se, (int, float)) else "the 1-SE rule")
    else:
        rule = "the best on validation"
    point = ", ".join(f"{p}={format_value(v)}" for p, v in chosen.get("point") or [])
    value = chosen.get("value")
    pbt = getattr(tune, "scheduler", "optuna") == "pbt"
    rows += [("chosen trial", f"{chosen.get('number')}, by {rule}"),
             ("chosen variant", str(chosen.get("variant"))),
             ("chosen trial's starting values" if pbt else "chosen values",
              point or "— (the variant's own settings)")]
    if pbt and tuning is not None:
        trial = next((t for t in tuning.trials if t.number == chosen.get("number")), None)
        schedule = trial.user_attrs.get("schedule") if trial is not None else None
        if schedule:
            rows.append(("chosen schedule (confirmed)", _schedule(schedule)))
        copies = sum(len(t.user_attrs.get("copies") or []) for t in tuning.trials)
        rows.append(("exploits (a trial copied another's state)", _count(copies)))
    rows.append((f"chosen trial's {objective_key(tune.objective)}",
                 f"{value:.4f}" if isinstance(value, (int, float)) else "—"))
    if summary.get("unconfirmed"):
        rows.append(("confirmation", f"none: {summary['unconfirmed']}"))
    return rows


def _schedule(schedule) -> str:
    """Population-based training's ``[[epoch, {path: value}], ...]`` (epochs from 0) as
    ``epochs 1–2: l2=0.001; from epoch 3: l2=0.002``."""
    from reglab.study.sweeps import format_value

    parts = []
    for i, (start, values) in enumerate(schedule):
        text = ", ".join(f"{p}={format_value(v)}" for p, v in values.items())
        if i + 1 < len(schedule):
            end = schedule[i + 1][0]
            span = f"epoch {start + 1}" if end == start + 1 else f"epochs {start + 1}–{end}"
        else:
            span = f"from epoch {start + 1}"
        parts.append(f"{span}: {text}")
    return "; ".join(parts)
