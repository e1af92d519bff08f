"""The report's data-regime panels: where each technique pays, as the data change.

For a study that sweeps ``[data] train_size`` and/or ``label_noise`` (see
:mod:`reglab.study.regimes`), :func:`regime_records` first computes plain records (one per
technique and regime: Δ test accuracy against the baseline of the same regime, paired by
seed, with its 95 % interval and verdict; the generalization gap with its 95 % interval),
then :func:`delta_panels` and :func:`gap_panels` draw them: one panel per technique, the
number of training samples on a log axis (or, when only the noise is swept, the share of
replaced labels), one line per noise level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullLocator

from reglab.report.figures import _color, _figure, _margins, plain, shared_legend, short
from reglab.study.regimes import format_regime_value

#: verdicts drawn with a filled marker (the others hollow)
DECIDED = ("better", "worse")


@dataclass(frozen=True)
class RegimePoint:
    """One technique in one data regime."""

    label: str  # the variant label (a sweep point is its own)
    line: str  # the noise level's name ('' when the noise is not swept)
    x: float  # training samples, or the share of replaced labels
    delta: float  # mean paired difference to the regime's baseline (nan for the baseline)
    delta_low: float
    delta_high: float
    verdict: str
    gap: float  # mean generalization gap (train − test accuracy)
    gap_low: float
    gap_high: float


def _x_axis(results) -> str:
    """'train_size' when the study sweeps it, else 'label_noise'."""
    from reglab.study.regimes import regime_axes

    return "train_size" if "train_size" in regime_axes(results.spec.data) else "label_noise"


def line_name(value) -> str:
    """A noise level as the legend shows it."""
    return f"noise {format_regime_value(value)}"


def regime_records(results) -> list[RegimePoint]:
    """Every technique in every regime, as plain records (nothing drawn)."""
    axis = _x_axis(results)
    points = []
    for regime in results.regimes:
        if axis == "train_size":
            x = regime.train_samples
            line = line_name(regime.regime["label_noise"]) if "label_noise" in regime.regime \
                else ""
        else:
            x = regime.label_noise_rate if math.isfinite(regime.label_noise_rate) else 0.0
            line = ""
        for row in regime.ranking.rows:
            verdict = row.verdict
            comparison = verdict.comparison
            gap = row.gap
            points.append(RegimePoint(
                row.label, line, x,
                math.nan if comparison is None else comparison.mean_difference,
                math.nan if comparison is None else comparison.ci_low,
                math.nan if comparison is None else comparison.ci_high,
                verdict.verdict,
                math.nan if gap is None else gap.mean,
                math.nan if gap is None else gap.ci_low,
                math.nan if gap is None else gap.ci_high))
    return points


def _order(results, points: list[RegimePoint]) -> list[str]:
    """Techniques in the study file's order (the runs' order), the baseline first."""
    from reglab.study.report_table import variant_label

    present = {p.label for p in points}
    labels = [label for label in dict.fromkeys(variant_label(r) for r in results.runs)
              if label in present]
    baselines = [r.ranking.baseline for r in results.regimes]
    first = [b for b in dict.fromkeys(baselines) if b in labels]
    return first + [label for label in labels if label not in first]


def _grid(count: int) -> tuple[int, int]:
    columns = min(4, count)
    return math.ceil(count / columns), columns


def _errorbar(ax, xs, mean, low, high, color, offset, filled, label):
    xs = np.asarray(xs, dtype=float) * offset
    mean, low, high = (np.asarray(v, dtype=float) for v in (mean, low, high))
    ok = np.isfinite(mean)
    below = np.where(np.isfinite(low), mean - low, 0.0)
    above = np.where(np.isfinite(high), high - mean, 0.0)
    ax.plot(xs[ok], mean[ok], "-", color=color, lw=1.4, label=label)
    ax.errorbar(xs[ok], mean[ok], yerr=[below[ok], above[ok]], fmt="none", ecolor=color,
                elinewidth=1, capsize=2)
    for x, y, full in zip(xs[ok], mean[ok], np.asarray(filled)[ok]):
        ax.plot([x], [y], "o", color=color, ms=6, mfc=color if full else "white", mew=1.2)


def _style_x(ax, axis: str, xs: list[float]) -> None:
    if axis == "train_size":
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticks(sorted(set(xs)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.set_xlabel("training samples (log)", fontsize=8)
    else:
        ax.set_xlabel("share of training labels replaced", fontsize=8)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=7)


def _draw(results, points: list[RegimePoint], labels: list[str], value: str,
          ylabel: str, baseline_reference: bool) -> Figure:
    """One panel per label; Δ panels each on their own scale (a technique that costs 20
    points would flatten one that gains 2), gap panels on one."""
    axis = _x_axis(results)
    lines = list(dict.fromkeys(p.line for p in points))
    rows, columns = _grid(len(labels))
    figure = _figure(3.3 * columns, 2.6 * rows + 0.45)
    _margins(figure, left=0.65, bottom=0.8, top=0.3, hspace=0.55,
             wspace=0.12 if value == "gap" else 0.3)
    axes = figure.subplots(rows, columns, squeeze=False, sharex=True, sharey=value == "gap")
    for ax in axes.flat[len(labels):]:
        ax.set_visible(False)
    xs_all = [p.x for p in points if math.isfinite(p.x)]
    spread = {line: 1.0 + 0.035 * (i - (len(lines) - 1) / 2) for i, line in enumerate(lines)}
    if axis != "train_size":
        spread = {line: 1.0 for line in lines}
    baselines = {r.ranking.baseline for r in results.regimes}
    for ax, label in zip(axes.flat, labels):
        for i, line in enumerate(lines):
            mine = sorted((p for p in points if p.label == label and p.line == line),
                          key=lambda p: p.x)
            if not mine:
                continue
            color = _color(i)
            _errorbar(ax, [p.x for p in mine], [getattr(p, value) for p in mine],
                      [getattr(p, f"{value}_low") for p in mine],
                      [getattr(p, f"{value}_high") for p in mine], color, spread[line],
                      [value == "gap" or p.verdict in DECIDED for p in mine],
                      plain(line) or None)
            if baseline_reference and label not in baselines:
                base = sorted((p for p in points if p.label in baselines and p.line == line),
                              key=lambda p: p.x)
                ax.plot([p.x for p in base], [getattr(p, value) for p in base], "--",
                        color=color, lw=0.9, alpha=0.7)
        if value == "delta":
            ax.axhline(0.0, color="#555555", lw=0.9)
        ax.set_title(short(label, 40), fontsize=9)
        _style_x(ax, axis, xs_all)
        if axis == "train_size":
            ax.xaxis.set_tick_params(labelbottom=True)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel, fontsize=8)
    extra = []
    if value == "delta":  # what the markers say
        from matplotlib.lines import Line2D

        extra = [(Line2D([], [], ls="none", marker="o", ms=5, color="#555555", mfc=face,
                         mew=1.2), name)
                 for name, face in (("better or worse", "#555555"),
                                    ("equivalent, or no verdict", "white"))]
    shared_legend(figure, axes.flat[: len(labels)], extra)
    return figure


def delta_panels(results) -> Figure | None:
    """Per technique: Δ test accuracy against the baseline of the same regime (paired by
    seed), mean and 95 % t interval, against the training samples (log), one line per noise
    level; filled markers where the verdict is better or worse."""
    points = regime_records(results)
    labels = [label for label in _order(results, points)
              if any(math.isfinite(p.delta) for p in points if p.label == label)]
    if not labels:
        return None
    return _draw(results, points, labels, "delta", "Δ test accuracy vs baseline", False)


def gap_panels(results) -> Figure | None:
    """Per technique (the baseline first): the generalization gap, train − test accuracy,
    mean and 95 % t interval, against the training samples, one line per noise level; dashed:
    the baseline's gap at the same noise level."""
    points = regime_records(results)
    labels = [label for label in _order(results, points)
              if any(math.isfinite(p.gap) for p in points if p.label == label)]
    if not labels:
        return None
    return _draw(results, points, labels, "gap", "train − test accuracy", True)
