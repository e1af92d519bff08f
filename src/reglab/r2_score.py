"""Keras 3's ``R2Score``: the coefficient of determination of each output column over the
epoch, ``1 - SS_res / SS_tot``, optionally averaged over the columns and adjusted for the
number of regressors.

Each sample contributes a row per column (``(5, columns)``): its target ``y``, ``y²``, the
squared residual ``(y - y_pred)²``, a weight of 1, and a count of 1 that sample weights do
not touch (Keras's ``num_samples``, which counts every element of the targets); the engine
sums them over an epoch, as it does a confusion metric's counts, and
:meth:`R2Score.totals_result` turns each member's sums into its score with Keras's formula:
a column whose targets do not vary scores 0 (Keras's ``where(isinf(...), 0, ...)``).

A compiled metric logs one number per epoch, so ``compile`` takes ``R2Score`` with
``class_aggregation`` ``'uniform_average'`` (the default) or ``'variance_weighted_average'``;
``None`` (a score per column) is for use by hand.

Example:
    >>> r2 = R2Score()
    >>> r2.update_state([[1.0], [2.0], [3.0]], [[1.0], [2.0], [2.0]])
    >>> round(float(r2.result()), 4)
    0.5
"""

from __future__ import annotations

import numbers
import warnings

import torch

from reglab.errors import ConfigError
from reglab.metric_classes import (
    StatefulMetric,
    checked_arguments,
    per_column_targets,
    refuse_per_column_logs,
)

AGGREGATIONS = (None, "uniform_average", "variance_weighted_average")
#: the rows a sample contributes per column; the last is not weighted
_Y, _Y2, _RESIDUAL, _WEIGHT, _COUNT = range(5)


class R2Score(StatefulMetric):
    """``1 - Σ w (y - ŷ)² / Σ w (y - ȳ)²`` per output column over the epoch (Keras's
    ``R2Score``); ``class_aggregation``: ``'uniform_average'`` (the columns' mean),
    ``'variance_weighted_average'`` (weighted by each column's ``SS_tot``) or None (per
    column, by hand only); ``num_regressors``: the adjusted score's ``p``."""

    _direction = "up"  # Keras's: larger is better (EarlyStopping's 'auto')
    resolved = True  # compile takes the object as it is
    weighted = False  # Keras's compiled 'metrics' ignore sample weights
    #: the engine sizes the totals from the first batch: ``(5, columns)``
    totals_shape = None
    default_name = "r2_score"

    def __init__(self, class_aggregation="uniform_average", num_regressors=0, name=None,
                 dtype=None):
        if class_aggregation not in AGGREGATIONS:
            raise ConfigError(f"R2Score: 'class_aggregation' must be one of None, "
                              f"'uniform_average', 'variance_weighted_average'. Got "
                              f"{class_aggregation!r}.")
        if isinstance(num_regressors, bool) or not isinstance(num_regressors, numbers.Integral) \
                or num_regressors < 0:
            raise ConfigError(f"R2Score: 'num_regressors' must be an integer >= 0. Got "
                              f"{num_regressors!r}.")
        name = checked_arguments("R2Score", name, dtype)
        self.class_aggregation, self.num_regressors = class_aggregation, int(num_regressors)
        self.name = name or self.default_name

    def check_compiled(self, y_true_shape, y_pred_shape, where: str) -> None:
        """Refuses, at compile, what would not give one number per epoch."""
        refuse_per_column_logs(self, where, "class_aggregation",
                               "'uniform_average' or 'variance_weighted_average'",
                               y_pred_shape, "columns")

    def __call__(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        """``(P, B, 5, columns)`` rows (see the module); ``y_true`` ``(P, B, columns)`` or
        shared by the members ``(1, B, columns)``, ``(.., B)`` for one column."""
        if y_true.dim() == y_pred.dim() - 1 and y_pred.shape[-1:] == (1,):
            y_true = y_true.unsqueeze(-1)
        y_true = per_column_targets(self.name, y_true, y_pred, "columns").to(torch.float32)
        y_pred = y_pred.to(torch.float32)
        ones = torch.ones_like(y_pred)
        return torch.stack([y_true, y_true * y_true, (y_true - y_pred) ** 2, ones, ones],
                           dim=2)

    def weigh(self, rows: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``rows`` ``(..., B, 5, columns)`` times each sample's weight ``(..., B)``, but the
        count (Keras's ``num_samples`` counts elements, not weight)."""
        weights = weights.reshape(*weights.shape, 1, 1).to(rows.dtype)
        weighted = rows[..., :_COUNT, :] * weights
        return torch.cat([weighted, rows[..., _COUNT:, :]], dim=-2)

    def reset_state(self) -> None:
        """As Keras: the sums back to zero, their shape kept."""
        if self._state is not None:
            self._state = torch.zeros_like(self._state)

    def totals_result(self, totals: torch.Tensor) -> torch.Tensor:
        """``(P,)`` scores from ``(P, 5, columns)`` sums (``(P, columns)`` for
        ``class_aggregation=None``), in float32 as Keras computes them."""
        totals = totals.to(torch.float32)
        y, y2, residual, count = (totals[:, i] for i in (_Y, _Y2, _RESIDUAL, _WEIGHT))
        mean = y / count
        total = y2 - y * mean
        raw = 1 - residual / total
        raw = torch.where(torch.isinf(raw), torch.zeros_like(raw), raw)
        if self.class_aggregation == "uniform_average":
            score = raw.mean(dim=-1)
        elif self.class_aggregation == "variance_weighted_average":
            score = (total * raw).sum(dim=-1) / total.sum(dim=-1)
        else:
            score = raw
        if self.num_regressors:
            score = self._adjusted(score, totals[:, _COUNT].sum(dim=-1))
        return score

    def _adjusted(self, score: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
        """Keras's adjusted R², member by member (its warnings where it falls back)."""
        p = float(self.num_regressors)
        adjusted = score.clone()
        for m, n in enumerate(samples.tolist()):
            if p > n - 1:
                warnings.warn("More independent predictors than datapoints in adjusted R2 "
                              "score. Falling back to standard R2 score.", stacklevel=3)
            elif p == n - 1:
                warnings.warn("Division by zero in Adjusted R2 score. Falling back to "
                              "standard R2 score.", stacklevel=3)
            else:
                n32 = torch.tensor(n, dtype=torch.float32)
                adjusted[m] = 1.0 - (1.0 - score[m]) * (n32 - 1.0) / (n32 - p - 1.0)
        return adjusted

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": "float32",
                "class_aggregation": self.class_aggregation,
                "num_regressors": self.num_regressors}

    def __repr__(self) -> str:
        return (f"R2Score(class_aggregation={self.class_aggregation!r}, num_regressors="
                f"{self.num_regressors!r}, name={self.name!r})")
