"""Keras 3's correlation metrics, each sample's correlation over its last axis averaged over
the samples (``keras.metrics.PearsonCorrelation``, ``ConcordanceCorrelation``), and
``LogCoshError``: mean metrics whose per-sample functions follow Keras's formulas term for
term (population standard deviations and variances; the concordance's covariance term
centres the targets on the predictions' mean, as Keras's code does).

Example:
    >>> import torch
    >>> y_true = torch.tensor([[[0.0, 1.0, 0.5], [1.0, 1.0, 0.2]]])
    >>> y_pred = torch.tensor([[[0.1, 0.9, 0.5], [1.0, 0.9, 0.2]]])
    >>> [round(v, 4) for v in concordance_correlation(y_true, y_pred)[0].tolist()]
    [0.9756, 0.9877]
"""

from __future__ import annotations

import torch

from reglab.backend import EPSILON
from reglab.errors import ConfigError
from reglab.metric_classes import MeanMetricWrapper


def _same_rank(y_true: torch.Tensor, y_pred: torch.Tensor):
    """Keras's ``squeeze_or_expand_to_same_rank`` for the engine's ``(P, B, ...)``."""
    y_true = y_true.to(y_pred.dtype)
    if y_true.dim() == y_pred.dim() - 1 and y_pred.shape[-1] == 1:
        y_true = y_true.unsqueeze(-1)
    elif y_pred.dim() == y_true.dim() - 1 and y_true.shape[-1] == 1:
        y_pred = y_pred.unsqueeze(-1)
    return y_true, y_pred


def pearson_correlation(y_true: torch.Tensor, y_pred: torch.Tensor, axis=-1) -> torch.Tensor:
    """Each sample's Pearson correlation of targets and predictions over ``axis``."""
    y_true, y_pred = _same_rank(y_true, y_pred)
    true_norm = y_true - y_true.mean(dim=axis, keepdim=True)
    pred_norm = y_pred - y_pred.mean(dim=axis, keepdim=True)
    true_norm = true_norm / true_norm.std(dim=axis, keepdim=True, correction=0)
    pred_norm = pred_norm / pred_norm.std(dim=axis, keepdim=True, correction=0)
    return (true_norm * pred_norm).mean(dim=axis)


def concordance_correlation(y_true: torch.Tensor, y_pred: torch.Tensor,
                            axis=-1) -> torch.Tensor:
    """Each sample's concordance correlation over ``axis``, Keras's formula."""
    y_true, y_pred = _same_rank(y_true, y_pred)
    true_mean = y_true.mean(dim=axis, keepdim=True)
    pred_mean = y_pred.mean(dim=axis, keepdim=True)
    true_var = (y_true - true_mean).var(dim=axis, keepdim=True, correction=0)
    pred_var = (y_pred - pred_mean).var(dim=axis, keepdim=True, correction=0)
    covariance = (y_true - pred_mean) * (y_pred - pred_mean)
    norm = true_var + pred_var + (true_mean - pred_mean) ** 2
    return (2 * covariance / (norm + EPSILON)).mean(dim=axis)


# Keras's objects of these names maximize them (the monitors' mode 'auto')
pearson_correlation._direction = "up"
concordance_correlation._direction = "up"


def log_cosh(y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
    """Each sample's mean ``log(cosh(y_pred - y_true))`` (the ``log_cosh`` loss's value)."""
    from reglab import losses

    return losses.samplewise(losses.LogCosh().per_sample(y_true, y_pred))


class _Correlation(MeanMetricWrapper):
    engine_form = True
    _direction = "up"

    def __init__(self, name=None, dtype=None, axis=-1):
        if axis != -1:
            raise ConfigError(f"{type(self).__name__}: only axis=-1 (the last axis, Keras's "
                              f"default) is supported. Got axis={axis!r}.")
        super().__init__(type(self).function, name, dtype, axis=-1)

    def saved_name(self):
        return self.name if self.name == self.default_name else None


class PearsonCorrelation(_Correlation):
    """``keras.metrics.PearsonCorrelation``: each sample's Pearson correlation over its
    last axis, averaged."""

    default_name = "pearson_correlation"
    function = staticmethod(pearson_correlation)


class ConcordanceCorrelation(_Correlation):
    """``keras.metrics.ConcordanceCorrelation``: each sample's concordance correlation over
    its last axis, averaged."""

    default_name = "concordance_correlation"
    function = staticmethod(concordance_correlation)


class LogCoshError(MeanMetricWrapper):
    """``keras.metrics.LogCoshError``: the mean ``log(cosh(y_pred - y_true))``."""

    default_name = "logcosh"
    engine_form = True
    _direction = "down"

    def __init__(self, name=None, dtype=None):
        super().__init__(log_cosh, name, dtype)
