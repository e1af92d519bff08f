"""Keras 3's ``FBetaScore`` and ``F1Score``: per class, the F-beta score of the epoch's
counts (true positives, false positives, false negatives), optionally averaged.

As Keras, a prediction is positive where it is the row's largest value (and not 0 to
within 1e-9) when ``threshold`` is None, else where it is above ``threshold``; targets
are one-hot (or multi-label) rows of the output's shape, ``(batch, classes)``. Each sample
contributes a row of counts per class (``(4, classes)``: tp, fp, fn and the target, whose
sums weight ``average='weighted'``); the engine sums them over an epoch, as it does a
confusion metric's, and :meth:`FBetaScore.totals_result` turns each member's sums into
its score with Keras's formula and epsilon.

A compiled metric logs one number per epoch, so ``compile`` takes these with ``average``
``'micro'``, ``'macro'`` or ``'weighted'``; ``average=None`` (Keras's default, a score per
class) is for use by hand (``update_state`` / ``result``).

Example:
    >>> import torch
    >>> f1 = F1Score(average="macro")
    >>> f1.update_state(torch.eye(3), torch.tensor([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1],
    ...                                             [0.6, 0.3, 0.1]]))
    >>> round(float(f1.result()), 4)
    0.5556
"""

from __future__ import annotations

import torch

from reglab.backend import EPSILON
from reglab.errors import ConfigError
from reglab.metric_classes import (
    StatefulMetric,
    checked_arguments,
    per_column_targets,
    refuse_per_column_logs,
)

AVERAGES = (None, "micro", "macro", "weighted")


class FBetaScore(StatefulMetric):
    """``(1 + beta²) · precision · recall / (beta² · precision + recall)`` per class over
    the epoch; ``average``: None (per class, by hand only), ``'micro'`` (of the counts
    summed over classes), ``'macro'`` (the classes' mean) or ``'weighted'`` (weighted by
    each class's share of the targets)."""

    _direction = "up"  # Keras's: larger is better (EarlyStopping's 'auto')
    resolved = True  # compile takes the object as it is
    weighted = False  # Keras's compiled 'metrics' ignore sample weights
    #: the engine sizes the totals from the first batch: ``(4, classes)``
    totals_shape = None
    default_name = "fbeta_score"

    def __init__(self, average=None, beta=1.0, threshold=None, name=None, dtype=None):
        owner = type(self).__name__
        if average not in AVERAGES:
            raise ConfigError(f"{owner}: 'average' must be one of None, 'micro', 'macro', "
                              f"'weighted'. Got {average!r}.")
        if not isinstance(beta, float) or not beta > 0.0:
            raise ConfigError(f"{owner}: 'beta' must be a Python float > 0 (as Keras). Got "
                              f"{beta!r}.")
        if threshold is not None and (not isinstance(threshold, float)
                                      or not 0.0 < threshold <= 1.0):
            raise ConfigError(f"{owner}: 'threshold' must be None (the row's largest value "
                              f"is positive) or a Python float in (0, 1]. Got {threshold!r}.")
        name = checked_arguments(owner, name, dtype)
        self.average, self.beta, self.threshold = average, beta, threshold
        self.name = name or self.default_name

    def check_compiled(self, y_true_shape, y_pred_shape, where: str) -> None:
        """Refuses, at compile, what would not give one number per epoch."""
        refuse_per_column_logs(self, where, "average", "'micro', 'macro' or 'weighted'",
                               y_pred_shape, "classes")

    def __call__(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        """``(P, B, 4, classes)``: each sample's tp, fp, fn and target per class; ``y_true``
        one-hot or multi-label, ``(P, B, classes)`` or ``(1, B, classes)`` shared by the
        members."""
        y_true = per_column_targets(self.name, y_true, y_pred, "classes")
        y_pred = y_pred.to(torch.float32)
        if self.threshold is None:
            largest = y_pred.amax(dim=-1, keepdim=True)
            positive = (y_pred >= largest) & (y_pred.abs() > 1e-9)
        else:
            positive = y_pred > self.threshold
        predicted = positive.to(torch.float32)
        target = y_true.to(torch.float32)
        return torch.stack([predicted * target, predicted * (1 - target),
                            (1 - predicted) * target, target], dim=2)

    def of_mixed_targets(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        """The counts against soft targets (MixUp, CutMix, LabelSmoothing): each sample's
        class is its target's largest value, as reglab's accuracy reads them (Keras's own
        label smoothing, inside the loss, leaves the metrics the hard labels)."""
        hard = torch.nn.functional.one_hot(y_true.argmax(dim=-1), y_true.shape[-1])
        return self(hard.to(y_pred.dtype), y_pred)

    def reset_state(self) -> None:
        """As Keras: the counts back to zero, their shape kept (``result()`` then gives a
        zero per class for ``average=None``)."""
        if self._state is not None:
            self._state = torch.zeros_like(self._state)

    def totals_result(self, totals: torch.Tensor) -> torch.Tensor:
        """``(P,)`` scores from ``(P, 4, classes)`` sums (``(P, classes)`` for
        ``average=None``), in float32 as Keras computes them."""
        totals = totals.to(torch.float32)
        if self.average == "micro":
            totals = totals.sum(dim=-1, keepdim=True)
        tp, fp, fn, target = totals.unbind(dim=1)
        precision = tp / (tp + fp + EPSILON)
        recall = tp / (tp + fn + EPSILON)
        beta_2 = self.beta ** 2
        score = precision * recall / (beta_2 * precision + recall + EPSILON) * (1 + beta_2)
        if self.average == "weighted":
            weights = target / (target.sum(dim=-1, keepdim=True) + EPSILON)
            return (score * weights).sum(dim=-1)
        if self.average is not None:
            return score.mean(dim=-1)
        return score

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": "float32", "average": self.average,
                "beta": self.beta, "threshold": self.threshold}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(average={self.average!r}, threshold="
                f"{self.threshold!r}, name={self.name!r})")


class F1Score(FBetaScore):
    """:class:`FBetaScore` with ``beta = 1``: the harmonic mean of precision and recall."""

    default_name = "f1_score"

    def __init__(self, average=None, threshold=None, name=None, dtype=None):
        super().__init__(average=average, beta=1.0, threshold=threshold, name=name,
                         dtype=dtype)

    def get_config(self) -> dict:
        config = super().get_config()
        del config["beta"]
        return config
