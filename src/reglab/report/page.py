"""``report.html``: one self-contained page (every plot embedded as PNG, no script, no network),
and the same plots as PNG files under ``plots/``.

The page is rendered with jinja2 with autoescaping on, so every string that comes from the
user (variant names, the study file, errors) is escaped.
"""

from __future__ import annotations

import base64
import concurrent.futures
import datetime
import hashlib
import json
import math
import multiprocessing
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from reglab.report import PLOTS_DIR, REPORT_NAME
from reglab.report.collect import StudyResults, collect, study_file_text
from reglab.storage.sqlite_store import COPIES_META
from reglab.study import precision
from reglab.study.report_table import (
    baseline_replaced,
    finite_mean,
    format_number,
    higher_is_better,
    left_out,
    left_out_lines,
    left_out_words,
    passed_over_words,
    ranking_decimals,
)
from reglab.utils.atomic import atomic_open

#: the list of PNG names the last report wrote into ``plots/`` (the ones it may replace)
WRITTEN = ".reglab-plots.json"
SECTIONS = (("verdict", "Verdict"), ("curves", "Learning curves"), ("gap", "Generalization gap"),
            ("weights", "Weights"), ("paths", "Regularization paths"),
            ("augmentation", "Data augmentation"), ("run-info", "What was run"))
#: a tuning study's own section, shown right after the verdict
TUNING_SECTION = ("tuning", "Tuning")
#: a study with data regimes: where each technique pays, right after the verdict
REGIMES_SECTION = ("regimes", "Data regimes")


def page_sections(tuning: bool, regimes: bool = False) -> tuple[tuple[str, str], ...]:
    """The sections shown, in order: :data:`SECTIONS`, with :data:`TUNING_SECTION` (a tuning
    study) or :data:`REGIMES_SECTION` (a study with data regimes) after the verdict."""
    extra = (TUNING_SECTION,) if tuning else ()
    extra += (REGIMES_SECTION,) if regimes else ()
    return (SECTIONS[0], *extra, *SECTIONS[1:])


@dataclass(frozen=True)
class EmbeddedFigure:
    file: str
    data: str  # base64 PNG
    width: int
    height: int
    alt: str
    caption: str


def _interval(summary, digits: int = 4) -> str:
    if summary is None:
        return "—"
    return (f"{format_number(summary.mean, digits)} ({format_number(summary.ci_low, digits - 1)}–"
            f"{format_number(summary.ci_high, digits - 1)})")


#: the longest file name a figure gets (file systems allow 255 bytes)
MAX_SLUG = 100


def _slug(text: str) -> str:
    """A file name for ``text``: letters and digits joined by '-', at most ``MAX_SLUG``
    characters (a long one ends in a hash of the whole text, so that names stay distinct)."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "figure"
    if len(slug) > MAX_SLUG:
        digest = hashlib.sha256(text.encode()).hexdigest()[:10]
        slug = f"{slug[:MAX_SLUG - 11]}-{digest}"
    return slug


class _Figures:
    """Saves each figure as ``plots/<name>.png`` and keeps it for embedding."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.sections: dict[str, list[EmbeddedFigure]] = {
            s: [] for s, _ in page_sections(tuning=True, regimes=True)}
        self.used: set[str] = set()

    def remove_stale(self) -> None:
        """Deletes the PNGs an earlier report wrote (listed in :data:`WRITTEN`) that this one
        did not, and lists this one's: any other file in ``plots/`` is the user's and stays."""
        manifest = self.directory / WRITTEN
        try:
            earlier = set(json.loads(manifest.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):  # none yet, or unreadable: delete nothing
            earlier = set()
        for stem in earlier - self.used:
            if isinstance(stem, str) and _slug(stem) == stem:  # a name of ours, no path
                (self.directory / f"{stem}.png").unlink(missing_ok=True)
        _atomic_write(manifest, json.dumps(sorted(self.used)).encode("utf-8"))

    def add(self, section: str, name: str, figure, alt: str, caption: str) -> None:
        from reglab.report.figures import png_bytes

        width, height = (int(round(v)) for v in figure.get_size_inches() * figure.dpi)
        self.add_png(section, name, png_bytes(figure), width, height, alt, caption)

    def add_png(self, section: str, name: str, data: bytes, width: int, height: int, alt: str,
                caption: str) -> None:
        file = _slug(name)
        while file in self.used:
            file += "-1"
        self.used.add(file)
        _atomic_write(self.directory / f"{file}.png", data)
        self.sections[section].append(EmbeddedFigure(
            f"{file}.png", base64.b64encode(data).decode("ascii"), width, height, alt, caption))


def _atomic_write(path: Path, data: bytes) -> None:
    with atomic_open(path) as handle:
        handle.write(data)


def _verdict_rows(results: StudyResults) -> tuple[list[dict], dict | None, list[str]]:
    """The table's rows, the best row (None when nothing is chosen) and the notes under the
    table: the variants without a row (every run diverged or failed) and those passed over
    for the best because some seeds did."""
    ranking = results.ranking
    if ranking is None:
        return [], None, []
    missing = left_out(results.runs)
    notes = left_out_lines(ranking, missing)
    replaced = baseline_replaced(results.runs, "baseline", ranking.baseline)
    if replaced:  # "note: no run of the baseline ... compares with 'ok' instead"
        notes.insert(0, "No" + replaced.strip().removeprefix("note: no") + ".")
    if ranking.passed_over:
        notes.append(("Not chosen" if ranking.best is None else "Passed over for the best")
                     + ", better on validation but not every seed finished: "
                     + passed_over_words(ranking) + ".")
    rows = []
    digits, delta_digits = ranking_decimals(ranking)
    for row in ranking.rows:
        v = row.verdict
        c = v.comparison
        rows.append({
            "label": row.label,
            "test": _interval(v.summary, digits),
            "gap": _interval(row.gap, digits),
            "delta": "" if c is None else
            f"{format_number(c.mean_difference, delta_digits, True)} ("
            f"{format_number(c.ci_low, delta_digits - 1, True)}…"
            f"{format_number(c.ci_high, delta_digits - 1, True)})",
            "p": "" if v.p_holm is None else format_number(v.p_holm, 3),
            "p_equivalence": "" if v.p_equivalence is None else format_number(v.p_equivalence, 3),
            "wilcoxon": "" if c is None else format_number(c.wilcoxon_p, 3),  # computed here
            "n": v.summary.n,
            "verdict": v.verdict,
            "note": f" (without {left_out_words(missing[row.label])})"
            if row.label in missing else "",
            "css": {"better": "better", "worse": "worse", "baseline": "baseline",
                    "equivalent": "equivalent"}.get(v.verdict, "ns"),
        })
    if ranking.best is None:
        return rows, None, notes
    best_row = next(r for r in rows if r["label"] == ranking.best)
    record = results.by_label()[ranking.best][0]
    summary = ranking.row(ranking.best).verdict.summary
    best = {**best_row, "test": format_number(summary.mean, digits),
            "ci": f"{format_number(summary.ci_low, digits - 1)}–"
                  f"{format_number(summary.ci_high, digits - 1)}",
            "settings": json.dumps(record.hyperparameters, sort_keys=True)}
    return rows, best, notes


def _sparsity(results: StudyResults) -> dict:
    layers = results.kernel_layers()
    rows = []
    for label, runs in results.by_label().items():
        cells = []
        for layer in layers:
            for stat in ("zeros", "small"):
                mean = finite_mean(r.metrics.get(f"{layer}.{stat}") for r in runs)
                cells.append("—" if math.isnan(mean) else f"{100 * mean:.1f}%")
        rows.append({"label": label, "kind": results.l1_kind(runs[0].variant), "cells": cells})
    return {"layers": layers, "rows": rows}


def _populations(results: StudyResults) -> list[dict]:
    """Each population's variants, runs trained (and twins: runs finished as copies of one of
    its runs, see StudyPlan.twins) and wall time."""
    walls = results.meta.get("population_wall_time") or {}
    copies = results.meta.get(COPIES_META) or {}
    out = []
    for key in dict.fromkeys(r.population for r in results.runs):
        runs = [r for r in results.runs if r.population == key]
        variants = ", ".join(dict.fromkeys(r.variant for r in runs))
        twins = sum(r.run_id in copies for r in runs)
        wall = walls.get(key)
        out.append({"key": key, "variants": variants,
                    "runs": f"{len(runs) - twins} (+{twins} twins)" if twins else len(runs),
                    "wall": "—" if wall is None else f"{wall:.1f} s"})
    return out


def _training_images(spec, count: int = 16):
    """The first training images as ``(N, H, W, C)``, or (None, why not)."""
    from reglab.study.spec import BUILTIN_DATASETS

    name = spec.data.dataset
    try:
        if name in BUILTIN_DATASETS:
            from reglab import datasets

            (x, _), _ = getattr(datasets, name).load_data()
            return x[:count, ..., None].astype("float32") / 255.0, ""
        from reglab.study.build import load_study_data

        data = load_study_data(spec, with_test=False)  # the store keeps no test file's place
    except Exception as error:  # the report still renders without the grid
        return None, f"The training images could not be loaded: {error}"
    if data.image_shape is not None:
        return data.x_train[:count].reshape(-1, *data.image_shape), ""
    if data.x_train.ndim == 4:  # samples read as the model's images: (N, H, W) of an
        return data.x_train[:count], ""  # archive, to an input_shape of [H, W, 1]
    return None, "The training data are not images."


def _augmentation_pngs(spec, augmentations) -> tuple[list[tuple[str, bytes, int, int]], str]:
    """The augmentation grids as PNGs (run in a child process: it is the only figure that
    needs torch, whose import alone costs seconds)."""
    from reglab.report import figures as draw

    images, note = _training_images(spec)
    if images is None:
        return [], note
    out = []
    for names, figure in draw.augmentation_grid(augmentations, images):
        width, height = (int(round(v)) for v in figure.get_size_inches() * figure.dpi)
        out.append((names, draw.png_bytes(figure), width, height))
    return out, "" if out else "The training images have no displayable channel count."


def _die_with_parent(parent: int) -> None:
    """The augmentation child's first act: ask Linux to kill it when the report's process
    dies (a ``kill -9`` of ``reglab report`` left it waiting on the pool's pipe for ever,
    holding the terminal's or a pipeline's stdout), and end at once if that already
    happened."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # no prctl: the check below still runs
        pass
    if os.getppid() != parent:
        os._exit(0)


def _start_augmentation(results: StudyResults):
    """Starts the augmentation grids beside the other figures: a forked child where fork is
    available and torch is not loaded yet (forking a process with torch's threads is unsafe),
    else in this process. Returns a callable that waits for ``_augmentation_pngs``' result."""
    import sys

    augmentations = results.augmentations()
    if not augmentations:
        return lambda cancel=False: ([], "No variant augments its training data.")
    if "torch" in sys.modules or sys.platform != "linux" or threading.active_count() > 1:
        result = _augmentation_pngs(results.spec, augmentations)
        return lambda cancel=False: result
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=1, mp_context=multiprocessing.get_context("fork"),
        initializer=_die_with_parent, initargs=(os.getpid(),))
    future = pool.submit(_augmentation_pngs, results.spec, augmentations)

    def wait(cancel: bool = False):
        try:
            return None if cancel else future.result()
        finally:
            pool.shutdown(cancel_futures=cancel)
    return wait


def _gap_words(results: StudyResults) -> str:
    """The gap figure's panels in words: 'Train − test accuracy and test − train loss'."""
    if results.metric is None:
        return "Test − train loss"
    title = results.gap_title()
    return f"{title[0].upper()}{title[1:]} and test − train loss"


def render_figures(results: StudyResults, plots: Path) -> tuple[_Figures, list, str, dict | None]:
    """Draws every figure into ``plots/``; returns them, the path choices, a note on
    augmentation and the Tuning section (None for a grid study: see ``_draw_tuning``). User
    strings are drawn as text (``figures.plain``), never as math markup."""
    from reglab.report import figures as draw

    augmentation = _start_augmentation(results)
    try:
        return _draw_all(results, plots, draw, augmentation)
    except BaseException:
        augmentation(cancel=True)  # no child left behind
        raise


def _draw_tuning(results: StudyResults, saved: _Figures) -> dict | None:
    """The Tuning section (its table, figures and notes), for a tuning study whose Optuna
    journal exists; None otherwise."""
    from reglab.report import tuning as draw

    path = draw.journal_file(results)
    if path is None:
        return None
    notes = []
    try:
        trials = draw.read_trials(results, path)
    except Exception as error:  # the page still renders, with the store's summary
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        return {"rows": draw.summary_rows(results, None),
                "notes": [f"Optuna's journal ({path.name}) could not be read: {reason}"],
                "unconfirmed": _unconfirmed(results)}
    objective = trials.objective
    pbt = (" With population-based training a trial's parameters are its starting values: "
           "every few epochs the worst trials copy the best ones' state and perturb their "
           "values (the chosen trial's schedule is in the table).") if trials.pbt else ""
    figure = draw.optimization_history(trials)
    if figure is not None:
        saved.add("tuning", "tuning-history", figure, "tuning: optimization history",
                  f"Each trial's {objective} (the mean over its seeds) by trial number, colored "
                  "by variant; gray ×: a pruned trial's last value reported before it was "
                  "stopped; line: the best complete trial so far; ring: the chosen trial. "
                  "Failed trials have no value and are not drawn.")
    figure = draw.parameter_panels(trials)
    if figure is not None:
        saved.add("tuning", "tuning-parameters", figure, "tuning: parameters against the objective",
                  f"{objective} of each complete trial against each parameter it drew "
                  "(<variant>:<path>, or the choice of variant), colored by variant; log axis "
                  "for parameters searched on a log scale, choices at positions (spread a "
                  f"little); ring: the chosen trial.{pbt}")
    figure, text = draw.importances(trials)
    if figure is None:
        notes.append(text)
    else:
        saved.add("tuning", "tuning-importances", figure, "tuning: parameter importances", text)
    figure = draw.intermediate_values(trials)
    if figure is not None:
        saved.add("tuning", "tuning-intermediate-values", figure,
                  "tuning: intermediate values per epoch",
                  f"Each trial's {objective} per epoch as Optuna was told it (the mean over "
                  "its seeds), the values its pruner decides on: complete trials colored by "
                  "variant, pruned trials gray, ending in × at the last epoch they trained."
                  + (" A jump is where a trial copied another's state." if trials.pbt else ""))
    if not trials.trials:
        notes.append("The journal holds no trial yet.")
    return {"rows": draw.summary_rows(results, trials), "notes": notes,
            "unconfirmed": _unconfirmed(results)}


def _unconfirmed(results: StudyResults) -> str | None:
    """Why the chosen trial was not confirmed on fresh seeds (no test set); None when it was
    (or is to be)."""
    summary = results.meta.get("tuning")
    return summary.get("unconfirmed") if isinstance(summary, dict) else None


def _regime_views(results: StudyResults) -> list[tuple[str, StudyResults]]:
    """``(label, results)`` per data regime; ``[('', results)]`` for a study without."""
    if not results.has_regimes:
        return [("", results)]
    return [(regime.label, results.view(regime)) for regime in results.regimes]


def _draw_regimes(results: StudyResults, saved: _Figures) -> None:
    """The Data regimes section's panels (a study with data regimes only)."""
    from reglab.report import regimes as draw
    from reglab.study.regimes import regime_axes

    axes = regime_axes(results.spec.data)
    x = ("the share of training labels replaced" if "train_size" not in axes else
         "the number of training samples (log axis)"
         + (", one line per noise level" if "label_noise" in axes else ""))
    figure = draw.delta_panels(results)
    if figure is not None:
        saved.add("regimes", "regimes-delta", figure, "Δ test accuracy per data regime",
                  "Each technique's test accuracy minus the baseline's of the same data regime "
                  f"(paired by seed), mean and 95 % t interval over seeds, against {x}. "
                  "Filled markers: a better or worse verdict in that regime (Holm within the "
                  "regime); hollow: equivalent (within the minimum effect), or no verdict.")
    figure = draw.gap_panels(results)
    if figure is not None:
        saved.add("regimes", "regimes-gap", figure, "generalization gap per data regime",
                  "Train − test accuracy at the kept epoch, mean and 95 % t interval over "
                  f"seeds, against {x}; dashed: the baseline's. Training accuracy is measured "
                  "on the labels the model trained on, noisy ones included: a network that "
                  "memorizes wrong labels has a large gap, one that ignores them a negative "
                  "one.")


def _draw_all(results: StudyResults, plots: Path, draw, augmentation):
    saved = _Figures(plots)
    tuning = _draw_tuning(results, saved)
    if results.has_regimes:
        _draw_regimes(results, saved)
    choices = []
    for regime, view in _regime_views(results):
        choices += _draw_view(view, saved, draw, regime)
    grids, augmentation_note = augmentation()
    for names, data, width, height in grids:
        saved.add_png("augmentation", f"augmentation-{names}", data, width, height,
                      f"augmented training images: {names}",
                      f"{names}: the first training images (top row) and three random draws "
                      "of the study's augmentation (seeded).")
    saved.remove_stale()
    return saved, choices, augmentation_note, tuning


def _draw_view(results: StudyResults, saved: _Figures, draw, regime: str = "") -> list:
    """The learning curves, gap, weights and regularization paths of one data regime's runs
    (``regime`` '': the whole study, without regimes); returns the paths' choices."""
    name = f"-{regime}" if regime else ""  # the figures' files and captions name the regime
    where = f"data regime {regime}: " if regime else ""
    for kind in ("loss", results.metric):
        figure = None if kind is None else draw.learning_curves(results, kind)
        if figure is not None:
            saved.add("curves", f"learning-curves-{kind}{name}", figure,
                      f"learning curves: {kind}{f' ({regime})' if regime else ''}",
                      f"{where}Training (solid) and validation (dashed) {kind} per variant"
                      f"{', penalties included as Keras reports it' if kind == 'loss' else ''}; "
                      "mean ± 1 SD over the seeds still training at each epoch; dotted lines: "
                      "epochs at which early stopping ended a run. A swept variant shows its "
                      "best point on validation.")
    figure = draw.generalization_gap(results)
    if figure is not None:
        saved.add("gap", f"generalization-gap{name}", figure,
                  f"generalization gap per variant{f' ({regime})' if regime else ''}",
                  f"{where}{_gap_words(results)} at the kept epoch, mean and 95 % t interval "
                  "over seeds (positive: a run fits its training data better than the test "
                  "data, as in the table); dashed: the baseline's mean.")
    figure = draw.weight_histograms(results)
    if figure is not None:
        saved.add("weights", f"first-layer-weights{name}", figure,
                  f"first-layer weight histograms{f' ({regime})' if regime else ''}",
                  f"{where}First-layer kernel weights at the kept epoch, all seeds pooled, log "
                  "count. L1 piles weights at zero; L2 shrinks them all.")
    choices = []
    for title, figure, chosen in draw.regularization_paths(results):
        choices.extend(chosen)
        picks = "; ".join(
            f"{c.line + ': ' if c.line else ''}best {c.best:.3g}"
            + (f", 1-SE {c.one_se:.3g}" if c.one_se is not None else "") for c in chosen)
        tutorial = next((c.tutorial for c in chosen if c.tutorial is not None), None)
        picks = picks or "nothing (no validation data, or no point whose seeds all finished)"
        saved.add("paths", f"path-{title}{name}", figure,
                  f"regularization path: {title}{f' ({regime})' if regime else ''}",
                  f"{where}{title}: mean ± 1 SE over seeds against the swept value. Chosen on "
                  f"validation: {picks}"
                  f"{f'; the tutorial uses {tutorial:.3g}' if tutorial is not None else ''}.")
    return choices


def _places_are_free(directory: Path) -> None:
    """Raises ReglabError, before any drawing, where the page or the plots cannot go: a
    directory named as the page, a file named as the plots' directory."""
    from reglab.errors import ReglabError

    page, plots = directory / REPORT_NAME, directory / PLOTS_DIR
    if page.is_dir():
        raise ReglabError(f"{page}: expected the report's page, a file. Got a directory; "
                          "move it away.")
    if plots.exists() and not plots.is_dir():
        raise ReglabError(f"{plots}: expected the directory of the report's plots. Got a "
                          "file; move it away.")


def write_report(directory: str | Path) -> Path:
    """Writes ``directory/report.html`` and ``directory/plots/*.png``; returns the page's path.

    Raises:
        DataError: ``directory`` holds no study.
    """
    import jinja2

    from reglab.report.figures import quiet_drawing
    from reglab.stats import MIN_SEEDS

    results = collect(directory)
    _places_are_free(results.directory)
    with quiet_drawing():
        saved, _, augmentation_note, tuning = render_figures(results,
                                                             results.directory / PLOTS_DIR)
    rows, best, notes = _verdict_rows(results)
    verdicts = []  # one table per data regime (none without regimes: rows and best above)
    if results.has_regimes:
        for _, view in _regime_views(results):
            regime_rows, regime_best, regime_notes = _verdict_rows(view)
            verdicts.append({"title": view.regimes[0].describe(), "ranking": view.ranking,
                             "rows": regime_rows, "best": regime_best, "notes": regime_notes,
                             "min_effect": f"{view.ranking.min_effect.value:.4g}"})
    versions = results.meta.get("versions") or {}
    statuses: dict[str, int] = {}
    for record in results.runs:
        statuses[record.status] = statuses.get(record.status, 0) + 1
    kept = results.meta.get("study_file") or {}
    sections = page_sections(tuning is not None, results.has_regimes)
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("reglab.report", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined)
    html = environment.get_template("report.html").render(
        name=results.spec.name, description=results.spec.description,
        plan=results.plan_description(),
        generated=datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        sections=sections, numbers={key: i for i, (key, _) in enumerate(sections, 1)},
        titles=dict(sections), tuning=tuning, ranking=results.ranking, rows=rows, best=best, notes=notes,
        verdicts=verdicts,
        min_effect="" if results.ranking is None else f"{results.ranking.min_effect.value:.4g}",
        min_seeds=MIN_SEEDS,
        figures=saved.sections, sparsity=_sparsity(results),
        augmentation_note=augmentation_note,
        seeds=", ".join(str(s) for s in results.spec.seeds),
        epochs=results.spec.training.epochs, metric=results.metric or "data_loss",
        gap_heading="train − test" if higher_is_better(f"test_{results.metric or 'data_loss'}")
        else "test − train",
        statuses=", ".join(f"{n} {s}" for s, n in statuses.items()) or "none",
        versions=", ".join(f"{k} {v}" for k, v in versions.items()) or "—",
        device=results.meta.get("device") or "—",
        precision=precision.describe(results.spec.training.precision,
                                     results.meta.get("precision"),
                                     results.meta.get("precision_reason")),
        directory=str(results.directory),
        populations=_populations(results),
        failures=[{"run_id": r.run_id, "status": r.status, "error": (r.error or "")[:300]}
                  for r in results.runs if r.status in ("failed", "diverged")],
        study_path=kept.get("path", "") if isinstance(kept, dict) else "",
        study_text=study_file_text(results))
    path = results.directory / REPORT_NAME
    _atomic_write(path, html.encode("utf-8"))
    return path
