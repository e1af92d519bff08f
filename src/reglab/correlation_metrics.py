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


def _same_rank(y_true, y_pred, per_sample_rank: int = 1):
    """Keras's ``squeeze_or_expand_to_same_rank``: of two ranks one apart, the larger's last
    axis of one is dropped, but a side of one value per sample (rank ``per_sample_rank``: 1
    for Keras's ``(B,)``, 2 for the engine's ``(P, B)``) gains one instead."""
    y_true, y_pred = torch.as_tensor(y_true), torch.as_tensor(y_pred)
    if not y_pred.is_floating_point():
        y_pred = y_pred.to(torch.float32)
    y_true = y_true.to(y_pred.dtype)
    for first, second in ((0, 1), (1, 0)):
        pair = [y_true, y_pred]
        big, small = pair[first], pair[second]
        if big.dim() == small.dim() + 1 and big.shape[-1] == 1:
            if small.dim() == per_sample_rank:  # one value per sample: widened instead
                pair[second] = small.unsqueeze(-1)
            else:
                pair[first] = big.squeeze(-1)
            return pair[0], pair[1]
    return y_true, y_pred


def pearson_correlation(y_true, y_pred, axis=-1) -> torch.Tensor:
    """``keras.metrics.pearson_correlation``: each sample's Pearson correlation of targets
    and predictions over ``axis`` (arrays or tensors, samples first)."""
    return _pearson(*_same_rank(y_true, y_pred), axis)


def _pearson_of_members(y_true, y_pred, axis=-1) -> torch.Tensor:
    """:func:`pearson_correlation` of the engine's ``(P, B, ...)``."""
    return _pearson(*_same_rank(y_true, y_pred, 2), axis)


def _pearson(y_true: torch.Tensor, y_pred: torch.Tensor, axis) -> torch.Tensor:
    true_norm = y_true - y_true.mean(dim=axis, keepdim=True)
    pred_norm = y_pred - y_pred.mean(dim=axis, keepdim=True)
    true_norm = true_norm / true_norm.std(dim=axis, keepdim=True, correction=0)
    pred_norm = pred_norm / pred_norm.std(dim=axis, keepdim=True, correction=0)
    return (true_norm * pred_norm).mean(dim=axis)


def concordance_correlation(y_true, y_pred, axis=-1) -> torch.Tensor:
    """``keras.metrics.concordance_correlation``: each sample's concordance correlation over
    ``axis``, Keras's formula (arrays or tensors, samples first)."""
    return _concordance(*_same_rank(y_true, y_pred), axis)


def _concordance_of_members(y_true, y_pred, axis=-1) -> torch.Tensor:
    """:func:`concordance_correlation` of the engine's ``(P, B, ...)``."""
    return _concordance(*_same_rank(y_true, y_pred, 2), axis)


def _concordance(y_true: torch.Tensor, y_pred: torch.Tensor, axis) -> torch.Tensor:
    true_mean = y_true.mean(dim=axis, keepdim=True)
    pred_mean = y_pred.mean(dim=axis, keepdim=True)
    true_var = (y_true - true_mean).var(dim=axis, keepdim=True, correction=0)
    pred_var = (y_pred - pred_mean).var(dim=axis, keepdim=True, correction=0)
    covariance = (y_true - pred_mean) * (y_pred - pred_mean)
    norm = true_var + pred_var + (true_mean - pred_mean) ** 2
    return (2 * covariance / (norm + EPSILON)).mean(dim=axis)


# Keras's objects of these names maximize them (the monitors' mode 'auto')
_pearson_of_members._direction = _concordance_of_members._direction = "up"
_pearson_of_members.__name__ = "pearson_correlation"
_concordance_of_members.__name__ = "concordance_correlation"


def log_cosh(y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
    """Each sample's mean ``log(cosh(y_pred - y_true))`` (the ``log_cosh`` loss's value)."""
    from reglab import losses

    return losses.samplewise(losses.LogCosh().per_sample(y_true, y_pred))


class _Correlation(MeanMetricWrapper):
    engine_form = True
    one_value_per_vector = lines_up_itself = True
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
    function = staticmethod(_pearson_of_members)


class ConcordanceCorrelation(_Correlation):
    """``keras.metrics.ConcordanceCorrelation``: each sample's concordance correlation over
    its last axis, averaged."""

    default_name = "concordance_correlation"
    function = staticmethod(_concordance_of_members)


class LogCoshError(MeanMetricWrapper):
    """``keras.metrics.LogCoshError``: the mean ``log(cosh(y_pred - y_true))``."""

    default_name = "logcosh"
    engine_form = True
    one_value_per_vector = True
    _direction = "down"

    def __init__(self, name=None, dtype=None):
        super().__init__(log_cosh, name, dtype)
