"""What a report shows, read from a study's store: runs, epochs, kernels, ranking, metadata.

Nothing here draws; :mod:`reglab.report.figures` turns a :class:`StudyResults` into
figures and :mod:`reglab.report.page` into HTML. No torch, no matplotlib.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reglab.errors import DataError
from reglab.storage import SQLiteStore
from reglab.storage.sqlite_store import COPIES_META, DB_NAME
from reglab.study.plan import is_trial_run, plan_study
from reglab.study.regimes import regime_axes, regime_label
from reglab.study.report_table import (
    FINAL_OK,
    Ranking,
    RegimeRanking,
    chosen_on,
    finite_mean,
    higher_is_better,
    metric_keys,
    rank_regimes,
    run_regime,
    variant_label,
)
from reglab.study.spec import StudySpec

L1_TYPES = {"l1": "subgradient", "l1l2": "subgradient", "l1_l2": "subgradient",
            "proximall1": "proximal"}


@dataclass
class StudyResults:
    """A finished (or partly finished) study, as the report needs it."""

    directory: Path
    spec: StudySpec
    runs: list  # every RunRecord, in the study's order
    epochs: dict[str, list[dict]]  # run_id -> per-epoch logs
    ranking: Ranking | None  # None for a study with data regimes: see ``regimes``
    meta: dict = field(default_factory=dict)
    kernels: dict[str, tuple[str, np.ndarray]] = field(default_factory=dict)
    #: each data regime's ranking, in the study's order (one, labelled '', without regimes)
    regimes: list[RegimeRanking] = field(default_factory=list)

    # -- data regimes ---------------------------------------------------------------------

    @property
    def has_regimes(self) -> bool:
        """Whether the study sweeps its data regime (``[data] train_size`` or
        ``label_noise`` with two or more values)."""
        return bool(regime_axes(self.spec.data))

    def view(self, regime: RegimeRanking) -> StudyResults:
        """The results of one data regime's runs, as a study of its own: its ranking, and its
        runs' epochs and kernels (what the figures of a study without regimes draw)."""
        runs = [r for r in self.runs if regime_label(run_regime(r)) == regime.label]
        ids = {r.run_id for r in runs}
        return StudyResults(self.directory, self.spec, runs,
                            {k: v for k, v in self.epochs.items() if k in ids},
                            regime.ranking, self.meta,
                            {k: v for k, v in self.kernels.items() if k in ids}, [regime])

    # -- groupings ------------------------------------------------------------------------

    @property
    def finished(self) -> list:
        """Runs that trained to the end (done or stopped early)."""
        return [r for r in self.runs if r.status in FINAL_OK]

    def by_label(self) -> dict[str, list]:
        """Finished runs grouped by variant label (a sweep point is its own label), in order.
        Computed once (the runs do not change); callers must not modify it."""
        return self._groups

    @functools.cached_property
    def _groups(self) -> dict[str, list]:
        groups: dict[str, list] = {}
        for record in self.finished:
            groups.setdefault(variant_label(record), []).append(record)
        return groups

    def variant_changes(self) -> dict[str, dict]:
        """Each variant's changes as written (sweeps unexpanded)."""
        return {v.name: v.changes for v in self.spec.variants}

    def swept_variants(self) -> list:
        return [v for v in self.spec.variants if v.sweeps]

    @property
    def metric(self) -> str | None:
        """The study's first metric as the logs name it ('accuracy', 'acc', ...)."""
        return next(iter(self.spec.training.metrics), None)

    def curve_labels(self) -> list[str]:
        """Labels whose learning curves are drawn: every variant without a sweep, and the
        best point on validation of each swept variant (none without validation data)."""
        groups = self.by_label()
        keys = metric_keys(self.spec.training.metrics)
        keys = (keys[0], chosen_on(self.spec, keys))
        labels = []
        for variant in self.spec.variants:
            mine = [label for label, runs in groups.items() if runs[0].variant == variant.name]
            if not variant.sweeps:
                labels.extend(mine)
                continue
            scored = [(finite_mean([r.metrics.get(keys[1], math.nan) for r in groups[label]]), label)
                      for label in mine] if keys else []
            scored = [(score, label) for score, label in scored if not math.isnan(score)]
            if scored:  # the best validation value: the highest accuracy, lowest error
                pick = max if higher_is_better(keys[1]) else min
                labels.append(pick(scored, key=lambda item: item[0])[1])
        return labels

    def penalty_labels(self) -> list[str]:
        """Variants that change nothing but the kernel penalty (and the unchanged baseline):
        the ones whose weight histograms are compared."""
        changes = self.variant_changes()
        return [v.name for v in self.spec.variants
                if not v.sweeps and set(changes[v.name]) <= {"kernel_regularizer"}
                and v.name in self.by_label()]

    def summary(self, label: str, metric):
        """Mean and t interval of ``metric`` over the label's seeds (None without values):
        a run metric's key, or a function of a run's metrics (:meth:`gap`)."""
        from reglab.stats import summarize

        value = metric if callable(metric) else (lambda m: m.get(metric, math.nan))
        values = [value(r.metrics) for r in self.by_label().get(label, [])]
        values = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
        return summarize(values) if values else None

    def gap(self, metrics: dict) -> float:
        """A run's generalization gap as the table gives it, on the ranked metric: train −
        test accuracy, test − train error or loss (positive: it fits its training data
        better)."""
        from reglab.study.report_table import generalization_gap, metric_keys

        return generalization_gap(metrics, metric_keys(self.spec.training.metrics)[0])

    def gap_title(self) -> str:
        """What :meth:`gap` measures: 'train − test accuracy', 'test − train mae'..."""
        from reglab.study.report_table import higher_is_better, metric_keys

        ranked = metric_keys(self.spec.training.metrics)[0]
        name = ranked[len("test_"):]
        return f"train − test {name}" if higher_is_better(ranked) else f"test − train {name}"

    def first_layer(self) -> str | None:
        """The first layer with a kernel: the one whose kernel the runs stored, else the first
        in model order among those with kernel statistics."""
        for layer, _ in self.kernels.values():
            return layer
        layers = self.kernel_layers()
        return layers[0] if layers else None

    def kernel_layers(self) -> list[str]:
        """Every layer with kernel statistics, in model order (Keras names them dense,
        dense_1, dense_2, ...; the stored metrics are sorted by name, so dense_10 < dense_2)."""
        names: set[str] = set()
        for record in self.finished:
            names.update(key[: -len(".zeros")] for key in record.metrics if key.endswith(".zeros"))
        return sorted(names, key=_model_order)

    def l1_kind(self, variant: str) -> str:
        """'subgradient', 'proximal' or '' for a variant's kernel penalty."""
        node = self.variant_changes().get(variant, {}).get("kernel_regularizer")
        if not isinstance(node, dict):
            return ""
        return L1_TYPES.get(str(node.get("type", "")).lower(), "")

    def augmentations(self) -> list[tuple[str, dict]]:
        """``(variant names, ImageDataGenerator arguments)`` per distinct augmentation."""
        found: dict[str, tuple[list[str], dict]] = {}
        for record in self.runs:
            augment = record.hyperparameters.get("augment")
            if augment:
                names = found.setdefault(json.dumps(augment, sort_keys=True), ([], augment))[0]
                if record.variant not in names:
                    names.append(record.variant)
        return [(", ".join(names), augment) for names, augment in found.values()]

    def plan_description(self) -> str:
        if self.spec.tune is not None:
            from reglab.tune.space import describe

            return describe(self.spec)
        plan = plan_study(self.spec)
        if not self.meta.get(COPIES_META):  # a store from before twins trained each run
            plan = dataclasses.replace(plan, twins={})
        return plan.describe()


def _model_order(name: str) -> tuple[str, int]:
    base, _, suffix = name.rpartition("_")
    return (base, int(suffix)) if base and suffix.isdigit() else (name, 0)


def collect(directory: str | Path) -> StudyResults:
    """Reads the study stored in ``directory``.

    Raises:
        DataError: naming the directory, when it holds no study.
    """
    directory = Path(directory)
    if not (directory / DB_NAME).is_file():
        raise DataError(
            f"{directory}: expected a study directory with {DB_NAME} (written by `reglab run`). "
            "Got none."
        )
    with SQLiteStore(directory, read_only=True) as store:
        stored = store.study()
        if stored is None:
            raise DataError(f"{directory / DB_NAME}: holds no study yet (run `reglab run`).")
        spec = StudySpec.from_canonical(stored[1], f"{store.path}")
        # a tuning's trials are chosen among, not compared: the report's runs are its
        # confirmation's (the trials have their own section, from Optuna's journal)
        runs = [r for r in store.runs() if not is_trial_run(r.run_id)]
        epochs = {r.run_id: store.epochs(r.run_id) for r in runs}
        kernels = {}
        for record in runs:
            kernel = store.kernel(record.run_id)
            if kernel is not None:
                kernels[record.run_id] = kernel
        meta = {key: store.get_meta(key) for key in
                ("versions", "device", "precision", "precision_reason", "population_wall_time",
                 "study_file", "tuning", COPIES_META)}
        location = store.get_meta("data_location")
    if location:  # where the run read a data file (the spec keeps the name as written)
        spec = dataclasses.replace(spec, data=dataclasses.replace(spec.data, location=location))
    keys = metric_keys(spec.training.metrics)
    regimes = rank_regimes(runs, metric=keys[0], choose_on=chosen_on(spec, keys),
                           min_effect=spec.stats.min_effect, dataset=spec.data.dataset)
    ranking = regimes[0].ranking if len(regimes) == 1 and not regime_axes(spec.data) else None
    return StudyResults(directory, spec, runs, epochs, ranking, meta, kernels, regimes)


def study_file_text(results: StudyResults) -> str:
    """The study file as written when the store kept it, else the resolved study as JSON."""
    kept = results.meta.get("study_file")
    if isinstance(kept, dict) and isinstance(kept.get("text"), str):
        return kept["text"]
    return json.dumps(json.loads(results.spec.canonical_json()), indent=2)
