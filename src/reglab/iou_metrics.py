"""Keras 3's intersection-over-union metrics: ``IoU``, ``MeanIoU``, ``BinaryIoU``,
``OneHotIoU`` and ``OneHotMeanIoU``.

Each sample contributes its ``(num_classes, num_classes)`` confusion counts (rows the true
class, columns the predicted one) over its elements: a classifier's one, a segmentation
map's every pixel. Class ids come as Keras reads them: integers as given (a float cast
toward zero, as Keras's integer metric dtype casts it), the argmax of one-hot targets or of
scores (``sparse_y_true`` / ``sparse_y_pred`` False), or for ``BinaryIoU`` a prediction at
or above ``threshold``; ids outside ``[0, num_classes)`` and ``ignore_class`` are not
counted. The engine sums the counts over an epoch and :meth:`IoU.totals_result` gives each
member ``sum(IoU of the target classes) / (their number with a non-empty union + 1e-7)``,
Keras's formula, in float32. By hand, sample weights weigh the counts, cast toward zero as
Keras's integer metric casts them (with its warning) unless ``dtype='float32'``.

Example:
    >>> m = MeanIoU(num_classes=2)
    >>> m.update_state([0, 0, 1, 1], [0, 1, 0, 1])
    >>> round(float(m.result()), 4)
    0.3333
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
import torch

from reglab.backend import EPSILON
from reglab.errors import ConfigError, DataError
from reglab.losses import as_tensors
from reglab.metric_classes import StatefulMetric

_INTEGER_DTYPES = (None, "int", "int32", "int64", torch.int32, torch.int64)


def _integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _class_count(owner: str, num_classes) -> int:
    if not _integer(num_classes) or num_classes < 1:
        raise ConfigError(f"{owner}: 'num_classes' must be an integer >= 1. Got "
                          f"{num_classes!r}.")
    return int(num_classes)


class IoU(StatefulMetric):
    """``keras.metrics.IoU``: the mean IoU of ``target_class_ids`` (see the module)."""

    _direction = "up"  # Keras's: larger is better (EarlyStopping's 'auto')
    resolved = True  # compile takes the object as it is
    weighted = False  # Keras's compiled 'metrics' ignore sample weights
    default_name = "io_u"

    def __init__(self, num_classes, target_class_ids, name=None, dtype=None,
                 ignore_class=None, sparse_y_true=True, sparse_y_pred=True, axis=-1):
        owner = type(self).__name__
        self.num_classes = _class_count(owner, num_classes)
        if isinstance(target_class_ids, np.ndarray):
            target_class_ids = target_class_ids.tolist()
        ids = list(target_class_ids) if isinstance(target_class_ids, (list, tuple)) else None
        if not ids or not all(_integer(i) and 0 <= i < self.num_classes for i in ids):
            raise ConfigError(f"{owner}: 'target_class_ids' must be a non-empty list of class "
                              f"ids in [0, {self.num_classes}). Got {target_class_ids!r}.")
        if ignore_class is not None and not _integer(ignore_class):
            raise ConfigError(f"{owner}: 'ignore_class' must be an integer or None. Got "
                              f"{ignore_class!r}.")
        if axis != -1:
            raise ConfigError(f"{owner}: only axis=-1 (the last axis, Keras's default) is "
                              f"supported. Got axis={axis!r}.")
        if dtype not in (*_INTEGER_DTYPES, "float32", torch.float32):
            raise ConfigError(f"{owner}: 'dtype' must be an integer dtype (Keras's default: "
                              f"sample weights cast toward zero) or 'float32'. Got {dtype!r}.")
        if name is not None and (not isinstance(name, str) or not name):
            raise ConfigError(f"{owner}: 'name' must be a non-empty string. Got {name!r}.")
        self.target_class_ids = [int(i) for i in ids]
        self.ignore_class = None if ignore_class is None else int(ignore_class)
        self.sparse_y_true, self.sparse_y_pred = bool(sparse_y_true), bool(sparse_y_pred)
        self.integer_weights = dtype in _INTEGER_DTYPES
        self.name = name or self.default_name

    @property
    def totals_shape(self) -> tuple[int, int]:
        return (self.num_classes, self.num_classes)

    def _ids(self, values: torch.Tensor, sparse: bool) -> torch.Tensor:
        """``(P, B, elements)`` class ids (int64) of targets or predictions."""
        if not sparse:
            values = values.argmax(dim=-1)
        values = values.reshape(*values.shape[:2], -1)
        return values.to(torch.int64) if values.is_floating_point() else values.long()

    def predicted_ids(self, y_pred: torch.Tensor) -> torch.Tensor:
        return self._ids(y_pred, self.sparse_y_pred)

    def __call__(self, y_true: torch.Tensor, y_pred: torch.Tensor,
                 element_weights: torch.Tensor | None = None) -> torch.Tensor:
        """``(P, B, num_classes, num_classes)``: each sample's confusion counts, each element
        counted once or, by hand, with its weight (``element_weights``, ``(B, elements)``)."""
        true = self._ids(y_true, self.sparse_y_true)
        pred = self.predicted_ids(y_pred)
        if true.shape[1:] != pred.shape[1:] or true.shape[0] not in (1, pred.shape[0]):
            raise DataError(f"{self.name}: the targets and predictions give different numbers "
                            f"of class ids per sample ({true.shape[-1]} and {pred.shape[-1]}); "
                            f"give sparse_y_pred=False for scores, sparse_y_true=False for "
                            f"one-hot targets. Got targets of shape {tuple(y_true.shape[1:])} "
                            f"for outputs of shape {tuple(y_pred.shape[1:])}.")
        true = true.expand(pred.shape)
        classes = self.num_classes
        counted = (true >= 0) & (true < classes) & (pred >= 0) & (pred < classes)
        if self.ignore_class is not None:
            counted &= true != self.ignore_class
        cell = torch.where(counted, true * classes + pred, torch.zeros_like(true))
        counts = torch.zeros(*pred.shape[:2], classes * classes, dtype=torch.float32,
                             device=pred.device)
        amount = counted.to(torch.float32)
        if element_weights is not None:
            amount = amount * element_weights.to(torch.float32).reshape(amount.shape[1:])
        counts.scatter_add_(2, cell, amount)
        return counts.view(*pred.shape[:2], classes, classes)

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        """Keras's: weights per sample, or per element (a segmentation map's pixels, 0 to
        leave one out), cast toward zero unless the metric's dtype is float."""
        y_true, y_pred = as_tensors(y_true, y_pred)
        weights = None if sample_weight is None else torch.as_tensor(
            np.asarray(sample_weight, dtype=np.float64))
        samples = y_pred.shape[0] if y_pred.dim() else 1
        if weights is None or weights.numel() in (1, samples) or samples == 0:
            return super().update_state(y_true, y_pred, sample_weight)
        elements = self.predicted_ids(y_pred.unsqueeze(0)).shape[-1]
        if weights.numel() != samples * elements:
            raise ConfigError(f"{self.name}.update_state: 'sample_weight' must have one "
                              f"weight per sample ({samples}) or per element "
                              f"({samples * elements}). Got {weights.numel()}.")
        weights = self._integer_weights(weights).reshape(samples, elements)
        self._accumulate(self(y_true.unsqueeze(0), y_pred.unsqueeze(0), weights)[0].to(
            torch.float64))

    def of_mixed_targets(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        """The counts against soft targets (MixUp, CutMix, LabelSmoothing make them from
        class ids): each sample's class is its target's largest value, as reglab's
        accuracy reads them."""
        if self.sparse_y_true:
            y_true = y_true.argmax(dim=-1)
        return self(y_true, y_pred)

    def weigh(self, rows: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Each sample's counts times its weight, the weight cast toward zero first as
        Keras's integer metric casts it (and warns), unless the metric's dtype is float."""
        weights = self._integer_weights(weights)
        return rows * weights.reshape(*weights.shape, 1, 1).to(rows.dtype)

    def _integer_weights(self, weights: torch.Tensor) -> torch.Tensor:
        """``weights`` cast toward zero (with Keras's warning) for an integer metric."""
        if self.integer_weights and weights.is_floating_point():
            if bool((weights != weights.trunc()).any()):
                warnings.warn("You are passing weight as `float`, but dtype is `int`. This may "
                              "result in an incorrect weight due to type casting Consider "
                              "using integer weights.", stacklevel=4)
            weights = weights.trunc()
        return weights

    def reset_state(self) -> None:
        if self._state is not None:
            self._state = torch.zeros_like(self._state)

    def totals_result(self, totals: torch.Tensor) -> torch.Tensor:
        """``(P,)`` from ``(P, C, C)`` confusion counts: Keras's formula, in float32."""
        totals = totals.to(torch.float32)
        predicted, actual = totals.sum(dim=1), totals.sum(dim=2)
        hits = totals.diagonal(dim1=1, dim2=2)
        ids = torch.tensor(self.target_class_ids, device=totals.device)
        union = (predicted + actual - hits)[:, ids]
        hits = hits[:, ids]
        valid = union > 1e-9
        iou = torch.where(valid, hits / (union + EPSILON), torch.zeros_like(hits))
        return iou.sum(dim=-1) / (valid.to(torch.float32).sum(dim=-1) + EPSILON)

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": "int32" if self.integer_weights else "float32",
                "num_classes": self.num_classes, "target_class_ids": self.target_class_ids,
                "ignore_class": self.ignore_class, "sparse_y_true": self.sparse_y_true,
                "sparse_y_pred": self.sparse_y_pred, "axis": -1}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(num_classes={self.num_classes}, target_class_ids="
                f"{self.target_class_ids}, name={self.name!r})")


class MeanIoU(IoU):
    """``keras.metrics.MeanIoU``: the mean IoU of every class."""

    default_name = "mean_io_u"

    def __init__(self, num_classes, name=None, dtype=None, ignore_class=None,
                 sparse_y_true=True, sparse_y_pred=True, axis=-1):
        super().__init__(num_classes, list(range(_class_count("MeanIoU", num_classes))), name,
                         dtype, ignore_class, sparse_y_true, sparse_y_pred, axis)

    def get_config(self):
        config = super().get_config()
        del config["target_class_ids"]
        return config


class BinaryIoU(IoU):
    """``keras.metrics.BinaryIoU``: class 1 where the prediction is at or above
    ``threshold``, else 0; the mean IoU of ``target_class_ids`` of the two."""

    default_name = "binary_io_u"

    def __init__(self, target_class_ids=(0, 1), threshold=0.5, name=None, dtype=None):
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
            raise ConfigError(f"BinaryIoU: 'threshold' must be a number. Got {threshold!r}.")
        super().__init__(2, target_class_ids, name, dtype)
        self.threshold = float(threshold)

    def predicted_ids(self, y_pred):
        at_least = y_pred.to(torch.float32) >= self.threshold
        return at_least.reshape(*at_least.shape[:2], -1).to(torch.int64)

    def get_config(self):
        return {"target_class_ids": self.target_class_ids, "threshold": self.threshold,
                "name": self.name, "dtype": "int32" if self.integer_weights else "float32"}


class OneHotIoU(IoU):
    """``keras.metrics.OneHotIoU``: :class:`IoU` of one-hot targets (their argmax) and, by
    default, scores (their argmax)."""

    default_name = "one_hot_io_u"

    def __init__(self, num_classes, target_class_ids, name=None, dtype=None,
                 ignore_class=None, sparse_y_pred=False, axis=-1):
        super().__init__(num_classes, target_class_ids, name, dtype, ignore_class, False,
                         sparse_y_pred, axis)

    def get_config(self):
        config = super().get_config()
        del config["sparse_y_true"]
        return config


class OneHotMeanIoU(MeanIoU):
    """``keras.metrics.OneHotMeanIoU``: :class:`MeanIoU` of one-hot targets and, by
    default, scores."""

    default_name = "one_hot_mean_io_u"

    def __init__(self, num_classes, name=None, dtype=None, ignore_class=None,
                 sparse_y_pred=False, axis=-1):
        super().__init__(num_classes, name, dtype, ignore_class, False, sparse_y_pred, axis)

    def get_config(self):
        config = super().get_config()
        del config["sparse_y_true"]
        return config
