"""The report's figures, drawn with matplotlib's object API on the Agg canvas (no pyplot state).

Each function takes a :class:`reglab.report.collect.StudyResults` and returns a
:class:`Figure` (or None when the study has nothing to show for it). Bands are explained in
the figures' captions on the page: learning curves show mean ± 1 standard deviation over
seeds; regularization paths show mean ± 1 standard error, the unit of glmnet's 1-SE rule.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
from dataclasses import dataclass

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullLocator

from reglab.study.report_table import higher_is_better, left_out, metric_keys, variant_label

SMALL = 1e-3
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _margins(figure: Figure, left: float = 0.55, right: float = 0.15, bottom: float = 0.5,
             top: float = 0.3, wspace: float = 0.25, hspace: float = 0.45) -> None:
    """Fixed margins in inches (matplotlib's layout engines cost more than the drawing)."""
    width, height = figure.get_size_inches()
    figure.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height,
                           top=1 - top / height, wspace=wspace, hspace=hspace)


@contextlib.contextmanager
def quiet_drawing():
    """Matplotlib's own warnings while the report draws stay out of the user's terminal: a
    log axis stretched by a sweep's huge values (a diverging 1e300) overflows its ticks'
    ``exp``, and a name in a script the font lacks (CJK) is drawn as boxes (the page's text
    names it whole)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "overflow encountered", RuntimeWarning,
                                module="matplotlib")
        warnings.filterwarnings("ignore", "Glyph .* missing from font", UserWarning)
        yield


def png_bytes(figure: Figure) -> bytes:
    """The figure as PNG bytes (Agg)."""
    buffer = io.BytesIO()
    with quiet_drawing():
        figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def plain(text: str) -> str:
    """A user string as literal text: matplotlib reads ``$...$`` as math markup."""
    return str(text).replace("$", r"\$")


def short(text: str, width: int) -> str:
    """``plain(text)`` cut to ``width`` characters in its middle (an ellipsis there), so that
    a long variant name keeps its start and end and stays within its panel's title."""
    text = str(text)
    if len(text) > width:
        keep = width - 1
        text = text[:(keep + 1) // 2] + "…" + text[len(text) - keep // 2:]
    return plain(text)


def _color(index: int) -> str:
    return _COLORS[index % len(_COLORS)]


# ---- learning curves -------------------------------------------------------------------------


def _epoch_matrix(results, runs, key: str) -> np.ndarray:
    """``(epochs, runs)`` of ``key``, nan where a run has no such epoch."""
    series = [[e.get(key, math.nan) for e in results.epochs.get(r.run_id, [])] for r in runs]
    length = max((len(s) for s in series), default=0)
    matrix = np.full((length, len(series)), np.nan)
    for j, values in enumerate(series):
        matrix[: len(values), j] = np.asarray(values, dtype=float)
    return matrix


def _mean_sd(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    counts = np.sum(~np.isnan(matrix), axis=1)
    safe = np.where(np.isnan(matrix), 0.0, matrix)
    mean = safe.sum(axis=1) / np.maximum(counts, 1)
    squares = np.where(np.isnan(matrix), 0.0, (matrix - mean[:, None]) ** 2).sum(axis=1)
    sd = np.sqrt(squares / np.maximum(counts - 1, 1))
    mean[counts == 0] = np.nan
    sd[counts < 2] = 0.0
    return mean, sd


def learning_curves(results, kind: str) -> Figure | None:
    """One panel per variant: training (solid) and validation (dashed) ``kind`` (``'loss'``,
    penalties included as Keras logs it, or a metric such as ``'accuracy'``) over epochs, mean
    ± 1 SD over the seeds still training; dotted lines at early-stopping epochs."""
    groups = results.by_label()
    labels = [label for label in results.curve_labels()
              if any(results.epochs.get(r.run_id) for r in groups[label])]
    if not labels:
        return None
    columns = min(4, len(labels))
    rows = math.ceil(len(labels) / columns)
    figure = _figure(3.2 * columns, 2.4 * rows + 0.3)
    _margins(figure, bottom=0.75, hspace=0.5)
    # Losses are not shared: a strong penalty's loss would flatten every other panel.
    axes = figure.subplots(rows, columns, squeeze=False, sharex=True, sharey=kind != "loss")
    for ax in axes.flat[len(labels):]:
        ax.set_visible(False)
    for ax, label in zip(axes.flat, labels):
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.xaxis.set_tick_params(labelbottom=True)
        runs = groups[label]
        for key, style, name in ((kind, "-", "train"), (f"val_{kind}", "--", "validation")):
            matrix = _epoch_matrix(results, runs, key)
            if matrix.size == 0 or np.all(np.isnan(matrix)):
                continue
            mean, sd = _mean_sd(matrix)
            epochs = np.arange(1, len(mean) + 1)
            color = "#1f77b4" if name == "train" else "#d62728"
            ax.plot(epochs, mean, style, color=color, lw=1.6, label=name,
                    marker="o" if len(epochs) == 1 else None, ms=4)  # one epoch: a point
            ax.fill_between(epochs, mean - sd, mean + sd, color=color, alpha=0.18, lw=0)
        stops = [r.stopped_epoch for r in runs
                 if r.status == "stopped_early" and r.stopped_epoch is not None]
        for i, stop in enumerate(stops):
            ax.axvline(stop + 1, color="#555555", ls=":", lw=1,
                       label="early stop" if i == 0 else None)
        ax.set_title(short(label, 40), fontsize=9)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("epoch", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel(kind, fontsize=8)
    shared_legend(figure, axes.flat[: len(labels)])
    return figure


def shared_legend(figure, axes, extra=()) -> None:
    """One legend below a figure's panels: each name once, in the order the panels first
    show it, then the ``extra`` ``(handle, name)`` pairs."""
    handles, names = [], []
    for ax in axes:
        for handle, name in zip(*ax.get_legend_handles_labels()):
            if name not in names:
                handles.append(handle)
                names.append(name)
    for handle, name in extra:
        handles.append(handle)
        names.append(name)
    if handles:
        figure.legend(handles, names, loc="lower center", ncols=len(names), fontsize=8,
                      frameon=False)


# ---- generalization gap ----------------------------------------------------------------------


def generalization_gap(results) -> Figure | None:
    """Per variant: the ranked metric's gap as the table gives it (train − test accuracy,
    test − train error) and test − train loss, mean with its 95 % t interval (the loss's
    alone when the study ranks on it)."""
    if results.ranking is None:
        return None
    labels = [row.label for row in results.ranking.rows]
    panels = [("gap_loss", "test − train loss")]
    if results.metric is not None:
        panels.insert(0, (results.gap, results.gap_title()))
    figure = _figure(4.75 * len(panels) + 0.06 * max(len(label) for label in labels),
                     0.9 + 0.26 * len(labels))
    _margins(figure, left=0.3 + 0.065 * max(len(label) for label in labels), bottom=0.35,
             wspace=0.08)
    axes = figure.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    positions = np.arange(len(labels))[::-1]
    for ax, (metric, title) in zip(axes, panels):
        for y, label in zip(positions, labels):
            summary = results.summary(label, metric)
            if summary is None:
                continue
            low = summary.mean - summary.ci_low if math.isfinite(summary.ci_low) else 0.0
            high = summary.ci_high - summary.mean if math.isfinite(summary.ci_high) else 0.0
            color = "#7f7f7f" if label == results.ranking.baseline else "#1f77b4"
            ax.errorbar(summary.mean, y, xerr=[[low], [high]], fmt="o", color=color, ms=4,
                        capsize=2, lw=1)
        baseline = results.summary(results.ranking.baseline, metric)
        if baseline is not None:
            ax.axvline(baseline.mean, color="#7f7f7f", ls="--", lw=1)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(labelsize=8)
    axes[0].set_yticks(positions, [plain(label) for label in labels])
    return figure


# ---- weights ---------------------------------------------------------------------------------


def weight_histograms(results) -> Figure | None:
    """First-layer kernel weights of the baseline and the penalty-only variants, pooled over
    seeds, on a log-count axis (so that L1's spike at zero shows)."""
    groups = results.by_label()
    pooled = {}
    for label in results.penalty_labels():
        arrays = [results.kernels[r.run_id][1].ravel() for r in groups[label]
                  if r.run_id in results.kernels]
        if arrays:
            pooled[label] = np.concatenate(arrays)
    if not pooled:
        return None
    extent = max(float(np.abs(w).max()) for w in pooled.values()) or 1.0
    edges = np.linspace(-extent, extent, 122)  # 121 bins: the middle one is centred on zero
    columns = min(4, len(pooled))
    rows = math.ceil(len(pooled) / columns)
    figure = _figure(3.2 * columns, 2.5 * rows)
    _margins(figure, left=0.6, hspace=0.45, wspace=0.12)
    axes = figure.subplots(rows, columns, squeeze=False, sharex=True, sharey=True)
    for ax in axes.flat[len(pooled):]:
        ax.set_visible(False)
    for i, (ax, (label, weights)) in enumerate(zip(axes.flat, pooled.items())):
        counts, _ = np.histogram(weights, bins=edges)
        ax.stairs(counts, edges, fill=True, color=_color(i), alpha=0.85, baseline=0.8)
        ax.set_yscale("log")
        ax.yaxis.set_minor_locator(NullLocator())  # minor ticks cost more than they tell
        ax.set_ylim(bottom=0.8)
        zeros = float(np.mean(weights == 0)) * 100
        small = float(np.mean(np.abs(weights) < SMALL)) * 100
        ax.set_title(f"{short(label, 22)}: {small:.1f}% |w|<1e-3, {zeros:.1f}% exactly 0",
                     fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("first-layer kernel weight", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("count (log)", fontsize=8)
    return figure


# ---- regularization paths --------------------------------------------------------------------


@dataclass(frozen=True)
class PathChoice:
    """What a regularization path chose, on validation accuracy."""

    variant: str
    path: str
    line: str  # the other swept values of this line ('' for a one-dimensional sweep)
    best: float
    one_se: float | None  # None where larger is not stronger regularization
    tutorial: float | None


def _get(tree, path: str):
    for key in path.split("."):
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def _without(tree: dict, paths) -> dict:
    tree = copy.deepcopy(tree)
    for path in paths:
        *parents, leaf = path.split(".")
        node = tree
        for key in parents:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)
    return tree


def tutorial_value(results, variant, path: str) -> float | None:
    """The value at ``path`` of a variant without sweeps that is otherwise the same as the
    swept ``variant`` outside its swept values (e.g. ``l1 = 0.01`` for a sweep of
    ``kernel_regularizer.l1``)."""
    swept = [s.path for s in variant.sweeps]
    reference = json.dumps(_without(variant.changes, swept), sort_keys=True)
    for other in results.spec.variants:
        if other.sweeps:
            continue
        value = _get(other.changes, path)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and \
                json.dumps(_without(other.changes, swept), sort_keys=True) == reference:
            return float(value)
    return None


# Swept values for which larger means stronger regularization: where glmnet's 1-SE rule (the
# largest value within one SE of the best) applies. Elsewhere only the best is marked.
STRENGTHS = ("l1", "l2", "dropout", "rate", "stddev")


def is_strength(path: str) -> bool:
    return path.split(".")[-1] in STRENGTHS


def _mean_se(values: list[float]) -> tuple[float, float]:
    finite = np.asarray([v for v in values if isinstance(v, (int, float)) and math.isfinite(v)])
    if finite.size == 0:
        return math.nan, math.nan
    se = float(finite.std(ddof=1) / math.sqrt(finite.size)) if finite.size > 1 else 0.0
    return float(finite.mean()), se


def regularization_paths(results) -> list[tuple[str, Figure, list[PathChoice]]]:
    """One figure per swept value: test accuracy (validation dashed), generalization gap,
    first-layer sparsity and weight norm against the swept value, mean ± 1 SE over seeds,
    with the best value on validation, the largest within one SE of it (glmnet's 1-SE rule,
    only where larger is stronger regularization: see :data:`STRENGTHS`) and the tutorial's
    value marked."""
    from reglab.stats import one_standard_error_rule

    ranked, chosen_on = metric_keys(results.spec.training.metrics)
    first = results.first_layer()
    panels = [(ranked, ranked.replace("_", " ")),
              (results.gap, f"generalization gap ({results.gap_title()})")]
    if first is not None:
        panels += [(f"{first}.small", f"{first}: share |w| < 1e-3"),
                   (f"{first}.l2_norm", f"{first}: kernel L2 norm")]
    lost = left_out(results.runs)
    out = []
    for variant in results.swept_variants():
        runs = [r for r in results.finished if r.variant == variant.name]
        if not runs:
            continue
        for sweep in variant.sweeps:
            lines: dict[str, dict[float, list]] = {}
            for record in runs:
                others = ",".join(f"{k.split('.')[-1]}={v:.3g}" for k, v in record.point.items()
                                  if k != sweep.path)
                lines.setdefault(others, {}).setdefault(record.point[sweep.path], []).append(
                    record)
            xs_all = sorted({x for line in lines.values() for x in line})
            positive = [x for x in xs_all if x > 0]
            tutorial = tutorial_value(results, variant, sweep.path)
            figure = _figure(12, 3.0)
            _margins(figure, left=0.5, bottom=0.5, wspace=0.3)
            axes = figure.subplots(1, len(panels), sharex=True)
            choices = []
            for i, (line, points) in enumerate(lines.items()):
                xs = sorted(points)
                color = _color(i)
                name = f"{plain(line)}: " if line else ""
                val = [_mean_se([r.metrics.get(chosen_on, math.nan) for r in points[x]])
                       for x in xs]
                for ax, (metric, _) in zip(axes, panels):
                    value = metric if callable(metric) else (
                        lambda m, key=metric: m.get(key, math.nan))
                    stats = [_mean_se([value(r.metrics) for r in points[x]]) for x in xs]
                    mean = np.array([m for m, _ in stats])
                    se = np.array([s for _, s in stats])
                    ax.plot(xs, mean, "o-", color=color, ms=3, lw=1.4,
                            label=f"{name}test" if metric == ranked else None)
                    ax.fill_between(xs, mean - se, mean + se, color=color, alpha=0.18, lw=0)
                    if metric == ranked:
                        ax.plot(xs, [m for m, _ in val], "--", color=color, lw=1,
                                label=f"{name}validation")
                # a point some of whose seeds diverged or failed is never chosen (as the
                # table's best: report_table.rank_variants)
                eligible = [math.nan if variant_label(points[x][0]) in lost else m
                            for x, (m, _) in zip(xs, val)]
                if all(math.isnan(m) for m in eligible):
                    continue  # no validation data (or no point whose seeds all finished)
                best, one_se = one_standard_error_rule(
                    xs, eligible, [0.0 if math.isnan(s) else s for _, s in val],
                    higher_is_better=higher_is_better(chosen_on))
                one_se_value = xs[one_se] if is_strength(sweep.path) else None
                choices.append(PathChoice(variant.name, sweep.path, line, xs[best],
                                          one_se_value, tutorial))
                for ax in axes:
                    first_axis = ax is axes[0]
                    ax.axvline(xs[best], color=color, lw=1.6, alpha=0.8,
                               label=f"{name}best (validation)" if first_axis else None)
                    if one_se_value is not None:
                        ax.axvline(one_se_value, color=color, ls="--", lw=1.6, alpha=0.8,
                                   label=f"{name}1-SE rule" if first_axis else None)
            for ax, (_, title) in zip(axes, panels):
                if tutorial is not None:
                    ax.axvline(tutorial, color="#555555", ls=":", lw=1.4,
                               label="tutorial's value" if ax is axes[0] else None)
                scale = ""
                if positive and len(positive) == len(xs_all):
                    ax.set_xscale("log")
                    ax.xaxis.set_minor_locator(NullLocator())
                    scale = " (log)"
                elif positive:  # a sweep that includes 0: log beyond the smallest positive value
                    ax.set_xscale("symlog", linthresh=min(positive))
                    scale = " (symlog)"
                ax.set_title(title, fontsize=9)
                ax.set_xlabel(plain(sweep.path.split(".")[-1]) + scale, fontsize=8)
                ax.grid(alpha=0.3)
                ax.tick_params(labelsize=8)
            axes[0].legend(fontsize=7)
            out.append((f"{variant.name}: {sweep.path}", figure, choices))
    return out


# ---- augmentation ----------------------------------------------------------------------------


def augmentation_grid(augmentations: list[tuple[str, dict]], images: np.ndarray,
                      columns: int = 8, draws: int = 3) -> list[tuple[str, Figure]]:
    """Per augmentation (``(variant names, ImageDataGenerator arguments)``, see
    :meth:`StudyResults.augmentations`): a row of original training images, then ``draws``
    rows of the same images augmented (seeded, so the page is reproducible).

    ``images`` are ``(N, H, W, C)`` training images, shown as they are in [0, 1] or 0-255,
    else stretched over their own range (standardized images); none are drawn unless ``C``
    is 1, 3 or 4."""
    import torch

    from reglab.augment import AffineSpec, random_affine

    out = []
    originals = np.asarray(images[:columns], dtype=np.float32)
    if originals.shape[-1] not in (1, 3, 4):
        return []  # not displayable as grey or colour images
    originals = torch.as_tensor(originals)
    low, top = float(originals.min()), float(originals.max())
    # [0, 1] or raw 0-255 pixels as they are; any other range (standardized images, floats
    # past 1) stretched from its own lowest to its highest value
    if low >= 0.0 and top <= 1.0:
        low, top = 0.0, 1.0
    elif low >= 0.0 and top <= 255.0:
        low, top = 0.0, 255.0
    scale = (top - low) or 1.0
    for names, augment in augmentations:
        spec = AffineSpec(**augment)
        generator = torch.Generator().manual_seed(0)
        rows = [originals] + [random_affine(originals, spec, generator) for _ in range(draws)]
        figure = _figure(1.1 * columns, 1.15 * len(rows))
        _margins(figure, left=0.3, right=0.05, bottom=0.05, top=0.05, wspace=0.05, hspace=0.05)
        axes = figure.subplots(len(rows), columns, squeeze=False)
        for r, (row_axes, batch) in enumerate(zip(axes, rows)):
            for ax, image in zip(row_axes, np.clip((batch.numpy() - low) / scale, 0.0, 1.0)):
                ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray",
                          vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
            row_axes[0].set_ylabel("original" if r == 0 else f"draw {r}", fontsize=8)
        out.append((names, figure))
    return out
