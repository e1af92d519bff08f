"""Keras 3's confusion-matrix metrics: ``Precision``, ``Recall``, ``AUC``, the counts
(``TruePositives``, ``FalsePositives``, ``TrueNegatives``, ``FalseNegatives``) and the best
of one ratio where another reaches a value (``SensitivityAtSpecificity``,
``SpecificityAtSensitivity``, ``PrecisionAtRecall``, ``RecallAtPrecision``).

Unlike a mean metric, these are ratios of counts summed over the epoch (true positives,
false positives...), so each sample contributes counts (``(members, batch, *counts)``
from :meth:`ConfusionMetric.__call__`), the engine sums them over the epoch's batches
(``engine/epoch.py``'s ``EpochSums``) and :meth:`ConfusionMetric.totals_result` turns each
member's totals into its value, as Keras's ``result()`` does with its variables.

A prediction is positive where it is above a threshold (Keras's rule), a target where it
is not zero; every element of an output counts (a one-hot output's classes each count as
a binary decision, as in Keras without ``class_id``). Targets must have the output's shape
(``(N,)`` for a one-unit output is taken).

Example:
    >>> import torch
    >>> precision = Precision()
    >>> counts = precision(torch.tensor([[1.0, 0.0, 1.0]]).T[None],
    ...                    torch.tensor([[0.9, 0.8, 0.2]]).T[None])
    >>> float(precision.totals_result(counts.sum(dim=1))[0])
    0.5
"""

from __future__ import annotations

import numbers

import numpy as np
import torch

from reglab.backend import EPSILON  # noqa: F401 - the module's own epsilon, re-exported
from reglab.errors import ConfigError, DataError
from reglab.metric_classes import StatefulMetric, checked_arguments
from reglab.utils.tensors import divide_no_nan as _divide_no_nan


class ConfusionMetric(StatefulMetric):
    """Base: counts per sample at each of ``thresholds``; ``result`` from their totals."""

    _direction = "up"  # Keras's: larger is better (EarlyStopping's 'auto')

    #: the engine takes the object as it is (no name lookup)
    resolved = True
    #: Keras's compiled 'metrics' ignore sample weights
    weighted = False
    #: the counts each sample contributes (tp, fp, tn, fn) at each threshold
    counts = ("tp", "fp", "tn", "fn")
    default_name = "confusion"

    def __init__(self, thresholds, name):
        if name is not None and (not isinstance(name, str) or not name):
            raise ConfigError(f"{type(self).__name__}: 'name' must be a non-empty string. "
                              f"Got {name!r}.")
        self.name = name or self.default_name
        self.thresholds = torch.tensor(thresholds, dtype=torch.float64)

    @property
    def totals_shape(self) -> tuple[int, ...]:
        return (len(self.counts), len(self.thresholds))

    def _prepared(self, y_true, y_pred) -> tuple[torch.Tensor, torch.Tensor]:
        if y_true.dim() == y_pred.dim() - 1 and y_pred.shape[-1] == 1:
            y_true = y_true.unsqueeze(-1)
        if y_true.shape[-1] != y_pred.shape[-1] or y_true.dim() != y_pred.dim():
            raise DataError(f"{self.name}: the targets must have the output's shape (a 0/1 "
                            f"target per output unit; one-hot labels for a softmax). Got "
                            f"targets of shape {tuple(y_true.shape)} for outputs of shape "
                            f"{tuple(y_pred.shape)}.")
        return y_true, y_pred

    def __call__(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        """``(P, B, counts, thresholds)``: each sample's counts over its elements."""
        y_true, y_pred = self._prepared(y_true, y_pred)
        lead = y_pred.shape[:2]
        predictions = y_pred.reshape(*lead, -1, 1).to(torch.float64)
        labels = (y_true != 0).expand(y_pred.shape).reshape(*lead, -1, 1)
        above = predictions > self.thresholds.to(predictions.device)
        tp = (above & labels).sum(dim=2)
        fp = (above & ~labels).sum(dim=2)
        tn = (~above & ~labels).sum(dim=2)
        fn = (~above & labels).sum(dim=2)
        every = {"tp": tp, "fp": fp, "tn": tn, "fn": fn}
        return torch.stack([every[c] for c in self.counts], dim=2).to(y_pred.dtype)

    def totals_result(self, totals: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def get_config(self) -> dict:
        """The arguments as Keras's ``get_config`` gives them (a file holds the object so,
        and Keras and reglab both build it again from them: ``from_config``)."""
        return {"name": self.name, "dtype": "float32"}

    def is_default(self) -> bool:
        """Whether the metric is its class's defaults under its default name (it can be
        saved by that name)."""
        return self.get_config() == type(self)().get_config()

    def saved_name(self) -> str | None:
        """The name a saved model holds it by (``compile`` resolves it back), or None."""
        return self.name if self.is_default() else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def _single_threshold(owner: str, thresholds) -> list[float]:
    if thresholds is None:
        return [0.5]
    values = [thresholds] if isinstance(thresholds, numbers.Real) else list(thresholds) \
        if isinstance(thresholds, (list, tuple)) else [thresholds]
    if len(values) != 1 or not all(isinstance(v, numbers.Real) and not isinstance(v, bool)
                                   and 0 <= v <= 1 for v in values):
        raise ConfigError(f"{owner}: 'thresholds' must be one number in [0, 1] (or None: "
                          f"0.5); several thresholds are not supported yet. Got "
                          f"{thresholds!r}.")
    return [float(values[0])]


def _as_given(thresholds):
    """``thresholds`` as given (one number, a list of one, or None), in plain Python types:
    Keras's ``init_thresholds``, which its config holds."""
    if thresholds is None or isinstance(thresholds, numbers.Real):
        return None if thresholds is None else float(thresholds)
    return [float(t) for t in thresholds]


def _evenly_spaced(values: list[float]) -> bool:
    """Keras's ``is_evenly_distributed_thresholds``: three values or more, each within 1e-7
    of ``i / (n - 1)`` (those in float32)."""
    n = len(values)
    return n >= 3 and bool(np.allclose(values, np.arange(n, dtype=np.float32) / (n - 1),
                                       atol=1e-7))


def _unsupported(owner: str, **arguments) -> None:
    given = {k: v for k, v in arguments.items() if v not in (None, False)}
    if given:
        raise ConfigError(f"{owner}: {', '.join(repr(k) for k in given)} "
                          f"{'is' if len(given) == 1 else 'are'} not supported yet. Got "
                          + ", ".join(f"{k}={v!r}" for k, v in given.items()) + ".")


class _ThresholdRatio(ConfusionMetric):
    """``tp / (tp + counts[1])`` over the epoch (0 when the denominator is), a prediction
    positive above ``thresholds`` (one; default 0.5): Precision's and Recall's shape."""

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None, dtype=None):
        owner = type(self).__name__
        _unsupported(owner, top_k=top_k, class_id=class_id)
        super().__init__(_single_threshold(owner, thresholds), name)
        self.init_thresholds = _as_given(thresholds)

    def totals_result(self, totals):
        tp, other = totals[:, 0, 0], totals[:, 1, 0]
        return _divide_no_nan(tp, tp + other)

    def get_config(self):
        return {**super().get_config(), "thresholds": self.init_thresholds, "top_k": None,
                "class_id": None}


class Precision(_ThresholdRatio):
    """``tp / (tp + fp)`` over the epoch (0 when nothing is predicted positive), a
    prediction positive above ``thresholds`` (default 0.5)."""

    counts = ("tp", "fp")
    default_name = "precision"


class Recall(_ThresholdRatio):
    """``tp / (tp + fn)`` over the epoch (0 without positive targets), a prediction
    positive above ``thresholds`` (default 0.5)."""

    counts = ("tp", "fn")
    default_name = "recall"


class _ConditionCount(ConfusionMetric):
    """How many of the elements fell in one cell of the confusion matrix over the epoch (a
    prediction positive above ``thresholds``: one, default 0.5), Keras's count metrics;
    weighted by hand as Keras's (``update_state(..., sample_weight)``)."""

    _direction = None  # Keras's count metrics have none (the monitors go by the name)

    def __init__(self, thresholds=None, name=None, dtype=None):
        super().__init__(_single_threshold(type(self).__name__, thresholds), name)
        self.init_thresholds = _as_given(thresholds)

    def totals_result(self, totals):
        return totals[:, 0, 0]

    def get_config(self):
        return {**super().get_config(), "thresholds": self.init_thresholds}


class TruePositives(_ConditionCount):
    """``keras.metrics.TruePositives``: predictions above the threshold whose target is
    positive."""

    counts = ("tp",)
    default_name = "true_positives"


class FalsePositives(_ConditionCount):
    """``keras.metrics.FalsePositives``: predictions above the threshold whose target is 0."""

    counts = ("fp",)
    default_name = "false_positives"


class TrueNegatives(_ConditionCount):
    """``keras.metrics.TrueNegatives``: predictions at or below the threshold whose target
    is 0."""

    counts = ("tn",)
    default_name = "true_negatives"


class FalseNegatives(_ConditionCount):
    """``keras.metrics.FalseNegatives``: predictions at or below the threshold whose target
    is positive."""

    counts = ("fn",)
    default_name = "false_negatives"


class AUC(ConfusionMetric):
    """The area under the ROC or PR curve from ``num_thresholds`` thresholds, as Keras:
    its thresholds (``-1e-7``, ``i / (n - 1)``, ``1 + 1e-7``, or ``thresholds`` between
    those ends), its Riemann sums (``summation_method``: ``'interpolation'`` — for PR
    the Davis & Goadrich interpolation —, ``'minoring'``, ``'majoring'``) and
    ``from_logits`` (a sigmoid first)."""

    default_name = "auc"

    def __init__(self, num_thresholds=200, curve="ROC", summation_method="interpolation",
                 name=None, dtype=None, thresholds=None, multi_label=False, num_labels=None,
                 label_weights=None, from_logits=False):
        _unsupported("AUC", multi_label=multi_label, num_labels=num_labels,
                     label_weights=label_weights)
        if isinstance(thresholds, np.ndarray):
            thresholds = thresholds.tolist()
        if thresholds is not None:
            if not isinstance(thresholds, (list, tuple)) or not all(
                    isinstance(t, numbers.Real) and not isinstance(t, bool) and 0 <= t <= 1
                    for t in thresholds):
                raise ConfigError(f"AUC: 'thresholds' must be a list of numbers in [0, 1]. "
                                  f"Got {thresholds!r}.")
            inner = sorted(float(t) for t in thresholds)
        else:
            if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, numbers.Integral) \
                    or num_thresholds <= 1:
                raise ConfigError(f"AUC: 'num_thresholds' must be an integer > 1. Got "
                                  f"{num_thresholds!r}.")
            inner = [(i + 1) * 1.0 / (num_thresholds - 1) for i in range(num_thresholds - 2)]
        curve = curve.upper() if isinstance(curve, str) else curve
        if curve not in ("ROC", "PR"):
            raise ConfigError(f"AUC: 'curve' must be 'ROC' or 'PR'. Got {curve!r}.")
        method = summation_method.lower() if isinstance(summation_method, str) else None
        if method not in ("interpolation", "minoring", "majoring"):
            raise ConfigError(f"AUC: 'summation_method' must be 'interpolation', 'minoring' "
                              f"or 'majoring'. Got {summation_method!r}.")
        self.curve, self.summation_method = curve, method
        self.from_logits = bool(from_logits)
        self.init_from_thresholds = thresholds is not None
        self.num_thresholds = len(inner) + 2
        #: Keras's ``_thresholds_distributed_evenly``: its counting then clips predictions
        #: to [0, 1] first (a linear head's outputs below 0 count as 0, above 1 as 1)
        self.clips = thresholds is None or _evenly_spaced([0.0, *inner, 1.0])
        super().__init__([0.0 - EPSILON, *inner, 1.0 + EPSILON], name)

    def __call__(self, y_true, y_pred):
        if self.from_logits:
            y_pred = torch.sigmoid(y_pred)
        if self.clips:
            y_pred = y_pred.clamp(0.0, 1.0)
        return super().__call__(y_true, y_pred)

    def get_config(self):
        config = {**super().get_config(), "num_thresholds": self.num_thresholds,
                  "curve": self.curve, "summation_method": self.summation_method,
                  "multi_label": False, "num_labels": None, "label_weights": None,
                  "from_logits": self.from_logits}
        if self.init_from_thresholds:  # Keras's: without the two ends it adds again
            config["thresholds"] = self.thresholds[1:-1].tolist()
        return config

    def totals_result(self, totals):
        tp, fp, tn, fn = (totals[:, i].to(torch.float64) for i in range(4))
        if self.curve == "PR" and self.summation_method == "interpolation":
            return self._interpolated_pr(tp, fp, fn).to(totals.dtype)
        recall = _divide_no_nan(tp, tp + fn)
        if self.curve == "ROC":
            x, y = _divide_no_nan(fp, fp + tn), recall
        else:
            x, y = recall, _divide_no_nan(tp, tp + fp)
        if self.summation_method == "interpolation":
            heights = (y[:, :-1] + y[:, 1:]) / 2.0
        elif self.summation_method == "minoring":
            heights = torch.minimum(y[:, :-1], y[:, 1:])
        else:
            heights = torch.maximum(y[:, :-1], y[:, 1:])
        return ((x[:, :-1] - x[:, 1:]) * heights).sum(dim=-1).to(totals.dtype)

    @staticmethod
    def _interpolated_pr(tp, fp, fn):
        """Davis & Goadrich's interpolation of the PR curve, Keras's formula."""
        dtp = tp[:, :-1] - tp[:, 1:]
        p = tp + fp
        dp = p[:, :-1] - p[:, 1:]
        slope = _divide_no_nan(dtp, torch.clamp(dp, min=0))
        intercept = tp[:, 1:] - slope * p[:, 1:]
        both = (p[:, :-1] > 0) & (p[:, 1:] > 0)
        ratio = torch.where(both, _divide_no_nan(p[:, :-1], torch.clamp(p[:, 1:], min=0)),
                            torch.ones_like(p[:, 1:]))
        increments = _divide_no_nan(slope * (dtp + intercept * torch.log(ratio)),
                                    torch.clamp(tp[:, 1:] + fn[:, 1:], min=0))
        return increments.sum(dim=-1)


class _AtConstraint(ConfusionMetric):
    """The largest value of one ratio over the thresholds where another reaches ``value``
    (0 where none does), Keras's ``SensitivitySpecificityBase``: ``num_thresholds`` evenly
    spaced thresholds from 0 to 1, predictions clipped to [0, 1] (a prediction is positive
    above a threshold: 0 never is), or one threshold of 0.5 for ``num_thresholds=1``. The
    ratios in float32, as Keras computes them."""

    #: Keras's name of ``value``
    argument = ""

    def __init__(self, value, num_thresholds=200, class_id=None, name=None, dtype=None):
        owner = type(self).__name__
        _unsupported(owner, class_id=class_id)
        checked_arguments(owner, None, dtype)
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
            raise ConfigError(f"{owner}: '{self.argument}' must be a number in [0, 1]. Got "
                              f"{value!r}.")
        if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, numbers.Integral) \
                or num_thresholds <= 0:
            raise ConfigError(f"{owner}: 'num_thresholds' must be an integer > 0. Got "
                              f"{num_thresholds!r}.")
        value, num_thresholds = float(value), int(num_thresholds)
        self.value, self.num_thresholds = value, num_thresholds
        self.clips = num_thresholds > 1
        if self.clips:
            inner = [(i + 1) * 1.0 / (num_thresholds - 1) for i in range(num_thresholds - 2)]
            thresholds = [0.0, *inner, 1.0]
        else:
            thresholds = [0.5]
        super().__init__(thresholds, name)

    def __call__(self, y_true, y_pred):
        return super().__call__(y_true, y_pred.clamp(0.0, 1.0) if self.clips else y_pred)

    def ratios(self, tp, fp, tn, fn) -> tuple[torch.Tensor, torch.Tensor]:
        """``(constrained, maximized)`` per threshold."""
        raise NotImplementedError

    def totals_result(self, totals):
        tp, fp, tn, fn = (totals[:, i].to(torch.float32) for i in range(4))
        constrained, maximized = self.ratios(tp, fp, tn, fn)
        feasible = constrained >= self.value
        best = torch.where(feasible, maximized, torch.zeros_like(maximized))
        return best.amax(dim=-1).clamp(min=0).to(totals.dtype)

    def get_config(self):
        return {**super().get_config(), "num_thresholds": self.num_thresholds,
                "class_id": None, self.argument: self.value}

    def saved_name(self) -> None:
        return None  # no name resolves to it: a file holds its arguments

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.argument}={self.value!r}, num_thresholds="
                f"{self.num_thresholds}, name={self.name!r})")


def _sensitivity(tp, fn):
    return _divide_no_nan(tp, tp + fn)


def _specificity(tn, fp):
    return _divide_no_nan(tn, tn + fp)


class SensitivityAtSpecificity(_AtConstraint):
    """``keras.metrics.SensitivityAtSpecificity``: the best ``tp / (tp + fn)`` where
    ``tn / (tn + fp) >= specificity``."""

    argument, default_name = "specificity", "sensitivity_at_specificity"

    def __init__(self, specificity, num_thresholds=200, class_id=None, name=None, dtype=None):
        super().__init__(specificity, num_thresholds, class_id, name, dtype)

    def ratios(self, tp, fp, tn, fn):
        return _specificity(tn, fp), _sensitivity(tp, fn)


class SpecificityAtSensitivity(_AtConstraint):
    """``keras.metrics.SpecificityAtSensitivity``: the best ``tn / (tn + fp)`` where
    ``tp / (tp + fn) >= sensitivity``."""

    argument, default_name = "sensitivity", "specificity_at_sensitivity"

    def __init__(self, sensitivity, num_thresholds=200, class_id=None, name=None, dtype=None):
        super().__init__(sensitivity, num_thresholds, class_id, name, dtype)

    def ratios(self, tp, fp, tn, fn):
        return _sensitivity(tp, fn), _specificity(tn, fp)


class PrecisionAtRecall(_AtConstraint):
    """``keras.metrics.PrecisionAtRecall``: the best ``tp / (tp + fp)`` where
    ``tp / (tp + fn) >= recall``."""

    argument, default_name = "recall", "precision_at_recall"

    def __init__(self, recall, num_thresholds=200, class_id=None, name=None, dtype=None):
        super().__init__(recall, num_thresholds, class_id, name, dtype)

    def ratios(self, tp, fp, tn, fn):
        return _sensitivity(tp, fn), _divide_no_nan(tp, tp + fp)


class RecallAtPrecision(_AtConstraint):
    """``keras.metrics.RecallAtPrecision``: the best ``tp / (tp + fn)`` where
    ``tp / (tp + fp) >= precision``."""

    argument, default_name = "precision", "recall_at_precision"

    def __init__(self, precision, num_thresholds=200, class_id=None, name=None, dtype=None):
        super().__init__(precision, num_thresholds, class_id, name, dtype)

    def ratios(self, tp, fp, tn, fn):
        return _divide_no_nan(tp, tp + fp), _sensitivity(tp, fn)
