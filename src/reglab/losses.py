"""Keras 3's losses, per sample and reduced, for one model or a population.

Predictions carry an optional leading member axis: ``(P, B, K)`` or ``(B, K)``;
targets are shared ``(B, ...)`` or per member. Probabilities are clipped to
``[1e-7, 1 - 1e-7]`` exactly as Keras does when ``from_logits=False``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from reglab.backend import EPSILON  # keras.backend.epsilon()
from reglab.errors import ConfigError, unknown_name
from reglab.utils.tensors import by_whole_vectors, divide_no_nan


def _smoothing(owner: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ConfigError(f"{owner}: 'label_smoothing' must be a float in [0, 1]. Got {value!r}.")
    return float(value)


def _log_probs(y_pred: torch.Tensor, from_logits: bool) -> torch.Tensor:
    if from_logits:
        return torch.log_softmax(y_pred, dim=-1)
    probs = y_pred / torch.sum(y_pred, dim=-1, keepdim=True)
    return torch.log(torch.clamp(probs, EPSILON, 1.0 - EPSILON))


#: Keras 3's reductions of a batch's losses (``keras.losses.Loss``'s ``reduction``)
REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)


class Loss:
    """Base class: ``per_sample(y_true, y_pred) -> (..., B)`` and the batch's reduction.

    Args (Keras 3's, every loss class takes them by keyword):
        name: the loss's name (its class's default when None).
        reduction: how a batch's losses become one value: ``"sum_over_batch_size"`` (the
            default) and ``"mean"``, ``sum(loss * weight) / B``; ``"sum"``, their sum;
            ``"mean_with_sample_weight"``, their sum over the sum of the sample weights
            (over ``B`` without weights); ``"none"`` or None, none (a standalone call gives
            each sample's loss; a model cannot train on it).
        dtype: None or ``"float32"``: losses are computed in float32, as Keras's default.

    A subclass gives :meth:`per_sample`, or, as in Keras, :meth:`call`.
    """

    name = "loss"
    reduction = "sum_over_batch_size"
    #: 'sparse', 'categorical', 'binary', 'any' (targets shaped as the output) or
    #: 'as_given' (a user's function: any shape with the samples first)
    target_kind = "any"
    #: whether the targets are values to predict (a regression's), never class labels, even
    #: when they are whole numbers (prices, counts): a study splits them without strata
    regression = False

    def __init__(self, name: str | None = None, reduction: str | None = "sum_over_batch_size",
                 dtype: Any = None):
        owner = type(self).__name__
        if name is not None:
            if not isinstance(name, str) or not name:
                raise ConfigError(f"{owner}: 'name' must be a non-empty string. Got {name!r}.")
            self.name = name
        if not isinstance(reduction, (str, type(None))) or reduction not in REDUCTIONS:
            raise ConfigError(f"{owner}: 'reduction' must be one of "
                              f"{', '.join(map(repr, REDUCTIONS))}. Got {reduction!r}.")
        self.reduction = reduction
        if dtype not in (None, "float32", torch.float32):
            raise ConfigError(f"{owner}: 'dtype' must be None or 'float32' (losses are computed "
                              f"in float32). Got {dtype!r}.")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "call" in cls.__dict__:
            # a user's math, even below a built-in's per_sample (Keras calls call()); it
            # takes the targets as they come
            if "per_sample" not in cls.__dict__:
                cls.per_sample = Loss.per_sample
            if "target_kind" not in cls.__dict__:
                cls.target_kind = "as_given"

    def per_sample(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        """Each sample's loss, ``(..., B)``: a subclass's own, or its :meth:`call`'s values."""
        if type(self).call is Loss.call:
            raise NotImplementedError(f"{type(self).__name__}: a loss gives per_sample() or "
                                      "call(y_true, y_pred)")
        if y_true.dtype != torch.long:
            y_true = y_true.to(y_pred.dtype)
        values = torch.as_tensor(self.call(y_true, y_pred))
        batch_dims = y_pred.dim() - 1  # (P, B) for the engine, (B,) for one model
        if values.dim() == 0:
            return values.expand(y_pred.shape[:batch_dims])
        while values.dim() > batch_dims:
            values = values.mean(dim=-1)
        return values

    def call(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        """Keras's hook for a subclass: the batch's losses before the reduction, ``y_true``
        in ``y_pred``'s dtype (integer labels stay integers). A value with more axes than the
        samples is averaged over the extra ones, a scalar is every sample's loss."""
        raise NotImplementedError

    def reduce(self, values: torch.Tensor, sample_weight: torch.Tensor | None = None,
               elements: int = 1) -> torch.Tensor:
        """The batch's loss from ``values`` ``(..., B)``, each sample's loss (the mean over
        its ``elements`` values, a Conv2D output's positions), by :attr:`reduction` over the
        last axis. ``sample_weight`` broadcasts to ``values``."""
        if self.reduction in ("sum_over_batch_size", "mean") or (
                self.reduction == "mean_with_sample_weight" and sample_weight is None):
            return reduce_mean(values, sample_weight)
        total = (values if sample_weight is None else values * sample_weight).sum(dim=-1)
        if elements != 1:
            total = total * elements
        if self.reduction == "sum":
            return total
        # mean_with_sample_weight: over the weights' sum, 0 where it is 0 (Keras's
        # divide_no_nan; the divisor replaced there, so that the gradient is 0, not NaN)
        return divide_no_nan(total, sample_weight.expand_as(values).sum(dim=-1))

    def reduce_batch(self, values: torch.Tensor,
                     sample_weight: torch.Tensor | None = None) -> torch.Tensor:
        """The engine's ``(P, B, ...)`` losses (from :meth:`per_sample`) as each member's
        batch loss ``(P,)``."""
        return self.reduce(samplewise(values), sample_weight, math.prod(values.shape[2:]))

    def __call__(self, y_true, y_pred, sample_weight=None) -> torch.Tensor:
        y_true, y_pred = as_tensors(y_true, y_pred)
        if sample_weight is not None and not isinstance(sample_weight, torch.Tensor):
            sample_weight = torch.as_tensor(np.asarray(sample_weight), dtype=y_pred.dtype)
        values = self.per_sample(y_true, y_pred)
        if sample_weight is not None and sample_weight.dim() == values.dim() + 1 and \
                sample_weight.shape[-1] == 1:  # a column of weights, as Keras takes it
            sample_weight = sample_weight.squeeze(-1)
        if self.reduction in ("none", None):
            return values if sample_weight is None else values * _per_sample_weight(
                sample_weight, values)
        if values.dim() == 0:  # one value for the batch (1-D inputs), as Keras returns it
            return values if sample_weight is None else self._weighted_scalar(
                values, sample_weight.to(values.dtype))
        means = samplewise(values.unsqueeze(0))[0]  # (B,)
        weights = None if sample_weight is None else sample_weight.reshape(-1).to(means.dtype)
        return self.reduce(means, weights, elements=math.prod(values.shape[1:]))

    def _weighted_scalar(self, value: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Keras's reduction of one loss value times its sample weights: one weight gives
        the product as it is, several the product spread over them and then reduced."""
        if weight.numel() == 1:
            return value * weight.reshape(())
        weight = weight.reshape(-1)
        return self.reduce(value.expand(weight.shape[0]), weight)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Loss:
        """A new loss from :meth:`get_config`'s dict, as Keras's ``from_config``."""
        return cls(**config)

    def __repr__(self) -> str:
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({arguments})"


def check_trainable(loss: Loss, where: str) -> Loss:
    """``loss`` if a model can train on it (one value per batch), else a ConfigError that
    names ``where``."""
    if loss.reduction in ("none", None):
        raise ConfigError(f"{where}: a loss with reduction={loss.reduction!r} gives one value "
                          "per sample; a model trains on one value per batch. Use "
                          "'sum_over_batch_size' (the default), 'mean', 'sum' or "
                          f"'mean_with_sample_weight'. Got {loss!r}.")
    return loss


def _per_sample_weight(sample_weight: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Sample weights ``(B,)`` shaped to multiply ``values`` ``(B, ...)``."""
    return sample_weight.reshape(-1, *([1] * (values.dim() - 1))).to(values.dtype)


def reduce_mean(values: torch.Tensor, sample_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Keras's ``sum_over_batch_size`` over the last axis (the batch)."""
    if sample_weight is not None:
        values = values * sample_weight
    return values.sum(dim=-1) / values.shape[-1]


def samplewise(values: torch.Tensor) -> torch.Tensor:
    """The engine's ``(P, B, ...)`` per-sample losses as ``(P, B)``: the mean over what a
    sample has left (a Conv2D output's positions), so that the batch's mean is Keras's
    ``sum_over_batch_size`` over every element."""
    if values.dim() <= 2:
        return values
    return values.reshape(*values.shape[:2], -1).mean(dim=-1)


def is_soft(y_true: torch.Tensor, y_pred: torch.Tensor) -> bool:
    """Whether integer-label targets arrived as per-class (soft) targets, one per class."""
    return (y_true.is_floating_point() and y_true.dim() == y_pred.dim()
            and y_pred.shape[-1] > 1 and y_true.shape[-1] == y_pred.shape[-1])


class CategoricalCrossentropy(Loss):
    """``-sum(y_true * log(clip(y_pred)))`` over one-hot targets."""

    name = "categorical_crossentropy"
    target_kind = "categorical"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
                 reduction: str | None = "sum_over_batch_size", name: str | None = None,
                 dtype: Any = None):
        super().__init__(name, reduction, dtype)
        _last_axis(type(self).__name__, axis)
        self.from_logits = bool(from_logits)
        self.label_smoothing = _smoothing(type(self).__name__, label_smoothing)

    def per_sample(self, y_true, y_pred):
        y_true = y_true.to(y_pred.dtype)
        if self.label_smoothing:
            k = y_pred.shape[-1]
            y_true = y_true * (1.0 - self.label_smoothing) + self.label_smoothing / k
        return -torch.sum(y_true * _log_probs(y_pred, self.from_logits), dim=-1)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing, "axis": -1}


class SparseCategoricalCrossentropy(Loss):
    """Categorical crossentropy with integer targets.

    ``label_smoothing`` goes beyond Keras (whose sparse loss has none): the
    integer target is smoothed as its one-hot form would be.
    """

    name = "sparse_categorical_crossentropy"
    target_kind = "sparse"

    def __init__(self, from_logits: bool = False, ignore_class: int | None = None,
                 reduction: str | None = "sum_over_batch_size", axis: int = -1,
                 name: str | None = None, dtype: Any = None, label_smoothing: float = 0.0):
        super().__init__(name, reduction, dtype)
        _last_axis(type(self).__name__, axis)
        _no_ignore_class(type(self).__name__, ignore_class)
        self.from_logits = bool(from_logits)
        self.label_smoothing = _smoothing(type(self).__name__, label_smoothing)

    def per_sample(self, y_true, y_pred):
        if is_soft(y_true, y_pred):  # targets made soft by MixUp, CutMix or LabelSmoothing
            return CategoricalCrossentropy.per_sample(self, y_true, y_pred)
        if y_true.dim() == y_pred.dim() and y_true.shape[-1] == 1:
            y_true = y_true.squeeze(-1)
        index = y_true.long().unsqueeze(-1).expand(*y_pred.shape[:-1], 1)
        if not self.label_smoothing and not self.from_logits:
            # Keras's -sum(onehot * log(clip(p / sum(p)))) has one non-zero term: compute
            # only that one (the same value and gradient, in fewer operations).
            p = y_pred.gather(-1, index).squeeze(-1) / y_pred.sum(dim=-1)
            return -torch.log(torch.clamp(p, EPSILON, 1.0 - EPSILON))
        log_probs = _log_probs(y_pred, self.from_logits)
        picked = -log_probs.gather(-1, index).squeeze(-1)
        if not self.label_smoothing:
            return picked
        k = y_pred.shape[-1]
        s = self.label_smoothing
        return (1.0 - s) * picked - (s / k) * log_probs.sum(dim=-1)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing}


class BinaryCrossentropy(Loss):
    """Mean over the last axis of ``-(y log p + (1-y) log(1-p))``, p clipped."""

    name = "binary_crossentropy"
    target_kind = "binary"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
                 reduction: str | None = "sum_over_batch_size", name: str | None = None,
                 dtype: Any = None):
        super().__init__(name, reduction, dtype)
        _last_axis(type(self).__name__, axis)
        self.from_logits = bool(from_logits)
        self.label_smoothing = _smoothing(type(self).__name__, label_smoothing)

    def per_sample(self, y_true, y_pred):
        y_true = y_true.to(y_pred.dtype)
        if y_true.dim() == y_pred.dim() - 1:
            y_true = y_true.unsqueeze(-1)
        y_true = y_true.expand_as(y_pred)
        if self.label_smoothing:
            y_true = y_true * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        if self.from_logits:
            bce = F.binary_cross_entropy_with_logits(y_pred, y_true, reduction="none")
        else:
            bce = clipped_binary_crossentropy(y_pred, y_true)
        return bce.mean(dim=-1)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing, "axis": -1}


def clipped_binary_crossentropy(p: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
    """Elementwise ``-(y log p + (1 - y) log(1 - p))`` of ``p`` clipped to
    ``[epsilon, 1 - epsilon]``, as Keras's torch backend (``F.binary_cross_entropy``); NaN
    where ``p`` is NaN (a diverged member's), where torch's kernel would refuse the whole
    batch, every member's."""
    bce = F.binary_cross_entropy(torch.clamp(p.nan_to_num(0.5), EPSILON, 1.0 - EPSILON),
                                 y_true, reduction="none")
    return torch.where(p.isnan(), p, bce)


def _aligned(y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
    """The targets in the predictions' dtype, ``(..., B)`` widened to ``(..., B, 1)`` for a
    one-unit output."""
    y_true = y_true.to(y_pred.dtype)
    if y_true.dim() == y_pred.dim() - 1 and y_pred.shape[-1] == 1:
        y_true = y_true.unsqueeze(-1)
    return y_true


class _BuiltIn(Loss):
    """A built-in loss without arguments of its own: Keras's built-ins take ``(reduction,
    name, dtype)`` in that order (the base ``Loss`` takes ``name`` first)."""

    def __init__(self, reduction: str | None = "sum_over_batch_size", name: str | None = None,
                 dtype: Any = None):
        super().__init__(name, reduction, dtype)


class _ElementwiseMean(_BuiltIn):
    """A loss that is the mean over the last axis of one value per element (Keras's
    regression losses); a subclass gives :meth:`values`."""

    def values(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    #: whether :meth:`values` takes exp, log or softplus, which round differently on a
    #: vectorized loop's scalar tail: computed by whole vectors (utils/tensors.py)
    transcendental = False

    def per_sample(self, y_true, y_pred):
        y_true = _aligned(y_true, y_pred)
        if self.transcendental and y_pred.dim() >= 2:
            y_true, y_pred = torch.broadcast_tensors(y_true, y_pred)
            return torch.mean(by_whole_vectors(self.values, y_true, y_pred), dim=-1)
        return torch.mean(self.values(y_true, y_pred), dim=-1)


class MeanSquaredError(_ElementwiseMean):
    """``mean((y_true - y_pred)**2)`` over the last axis."""

    name = "mean_squared_error"
    regression = True

    def values(self, y_true, y_pred):
        return torch.square(y_true - y_pred)


class MeanAbsoluteError(_ElementwiseMean):
    """``mean(|y_true - y_pred|)`` over the last axis."""

    name = "mean_absolute_error"
    regression = True

    def values(self, y_true, y_pred):
        return torch.abs(y_true - y_pred)


class MeanAbsolutePercentageError(_ElementwiseMean):
    """``100 * mean(|(y_true - y_pred) / max(|y_true|, 1e-7)|)`` over the last axis."""

    name = "mean_absolute_percentage_error"
    regression = True

    def values(self, y_true, y_pred):
        return 100.0 * torch.abs((y_true - y_pred) / torch.clamp(torch.abs(y_true), min=EPSILON))


class MeanSquaredLogarithmicError(_ElementwiseMean):
    """``mean((log(max(y_pred, 1e-7) + 1) - log(max(y_true, 1e-7) + 1))**2)``."""

    name = "mean_squared_logarithmic_error"
    regression = True
    transcendental = True

    def values(self, y_true, y_pred):
        return torch.square(torch.log(torch.clamp(y_pred, min=EPSILON) + 1.0)
                            - torch.log(torch.clamp(y_true, min=EPSILON) + 1.0))


class Huber(_ElementwiseMean):
    """``0.5 * e**2`` where ``|e| <= delta``, else ``delta * |e| - 0.5 * delta**2``
    (``e = y_pred - y_true``), the mean over the last axis."""

    name = "huber_loss"
    regression = True

    def __init__(self, delta: float = 1.0, reduction: str | None = "sum_over_batch_size",
                 name: str | None = None, dtype: Any = None):
        super().__init__(reduction, name, dtype)
        if isinstance(delta, bool) or not isinstance(delta, numbers.Real) or not delta >= 0:
            raise ConfigError(f"Huber: 'delta' must be a float >= 0. Got {delta!r}.")
        self.delta = float(delta)

    def values(self, y_true, y_pred):
        error = y_pred - y_true
        absolute = torch.abs(error)
        delta = torch.tensor(self.delta, dtype=y_pred.dtype, device=y_pred.device)
        return torch.where(absolute <= delta, 0.5 * torch.square(error),
                           delta * absolute - 0.5 * torch.square(delta))

    def get_config(self):
        return {**super().get_config(), "delta": self.delta}


class LogCosh(_ElementwiseMean):
    """``log(cosh(y_pred - y_true))`` as ``e + softplus(-2e) - log 2``, the mean over the
    last axis."""

    name = "log_cosh"
    regression = True
    transcendental = True

    def values(self, y_true, y_pred):
        error = y_pred - y_true
        return error + F.softplus(-2.0 * error) - np.log(2.0).astype(np.float32).item()


class Poisson(_ElementwiseMean):
    """``mean(y_pred - y_true * log(y_pred + 1e-7))`` over the last axis."""

    name = "poisson"
    regression = True
    transcendental = True

    def values(self, y_true, y_pred):
        return y_pred - y_true * torch.log(y_pred + EPSILON)


def _hinge_targets(y_true: torch.Tensor) -> torch.Tensor:
    """Keras's: a batch's targets that are all 0 or 1 become -1 and 1. The engine's targets
    carry a member axis first (``(P, B, units)``): each member's batch is decided alone."""
    binary = (y_true == 0) | (y_true == 1)
    if y_true.dim() >= 3:
        binary = binary.reshape(y_true.shape[0], -1).all(dim=-1).view(
            -1, *([1] * (y_true.dim() - 1)))
        return torch.where(binary, 2.0 * y_true - 1.0, y_true)
    return 2.0 * y_true - 1.0 if bool(binary.all()) else y_true


class Hinge(_ElementwiseMean):
    """``mean(max(1 - y_true * y_pred, 0))`` (0/1 targets taken as -1/1)."""

    name = "hinge"

    def values(self, y_true, y_pred):
        return torch.clamp(1.0 - _hinge_targets(y_true) * y_pred, min=0.0)


class SquaredHinge(_ElementwiseMean):
    """``mean(max(1 - y_true * y_pred, 0)**2)`` (0/1 targets taken as -1/1)."""

    name = "squared_hinge"

    def values(self, y_true, y_pred):
        return torch.square(torch.clamp(1.0 - _hinge_targets(y_true) * y_pred, min=0.0))


class CategoricalHinge(_BuiltIn):
    """``max(max((1 - y_true) * y_pred) - sum(y_true * y_pred) + 1, 0)`` per sample (one-hot
    targets)."""

    name = "categorical_hinge"
    target_kind = "categorical"

    def per_sample(self, y_true, y_pred):
        y_true = _aligned(y_true, y_pred)
        positive = torch.sum(y_true * y_pred, dim=-1)
        negative = torch.amax((1.0 - y_true) * y_pred, dim=-1)
        return torch.clamp(negative - positive + 1.0, min=0.0)


class KLDivergence(_BuiltIn):
    """``sum(y_true * log(y_true / y_pred))`` per sample, both clipped to ``[1e-7, 1]``."""

    name = "kl_divergence"

    def per_sample(self, y_true, y_pred):
        y_true = torch.clamp(_aligned(y_true, y_pred), EPSILON, 1.0)
        y_pred = torch.clamp(y_pred, EPSILON, 1.0)
        return torch.sum(y_true * torch.log(y_true / y_pred), dim=-1)


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """Keras's ``normalize(x, axis=-1)``: ``x * min(rsqrt(sum(x**2)), 1 / epsilon)`` over
    the last axis (a zero vector stays zero)."""
    inverse = torch.rsqrt(torch.sum(torch.square(x), dim=-1, keepdim=True))
    return x * torch.clamp(inverse, max=1.0 / EPSILON)


class CosineSimilarity(_BuiltIn):
    """``-sum(normalize(y_true) * normalize(y_pred))`` over the last axis: -1 where the two
    point the same way, 0 where they are orthogonal (Keras's sign, so that a lower loss is
    more similar)."""

    name = "cosine_similarity"
    regression = True

    def __init__(self, axis: int = -1, reduction: str | None = "sum_over_batch_size",
                 name: str | None = None, dtype: Any = None):
        super().__init__(reduction, name, dtype)
        _last_axis(type(self).__name__, axis)

    def per_sample(self, y_true, y_pred):
        return -torch.sum(l2_normalize(_aligned(y_true, y_pred)) * l2_normalize(y_pred), dim=-1)

    def get_config(self):
        return {**super().get_config(), "axis": -1}


def _focusing(owner: str, key: str, value: Any, upper: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
            math.isfinite(value) and value >= 0 and (upper is None or value <= upper)):
        bound = f"in [0, {upper:g}]" if upper is not None else ">= 0"
        raise ConfigError(f"{owner}: '{key}' must be a number {bound}. Got {value!r}.")
    return float(value)


class BinaryFocalCrossentropy(Loss):
    """Keras's focal crossentropy for 0/1 targets: the binary crossentropy of each value
    times ``(1 - p_t)**gamma``, ``p_t = y p + (1 - y)(1 - p)`` (the probability given to
    the true class, before clipping), and with ``apply_class_balancing`` times
    ``alpha`` for class 1 and ``1 - alpha`` for class 0; the mean over the last axis."""

    name = "binary_focal_crossentropy"
    target_kind = "binary"

    def __init__(self, apply_class_balancing: bool = False, alpha: float = 0.25,
                 gamma: float = 2.0, from_logits: bool = False, label_smoothing: float = 0.0,
                 axis: int = -1, reduction: str | None = "sum_over_batch_size",
                 name: str | None = None, dtype: Any = None):
        super().__init__(name, reduction, dtype)
        owner = type(self).__name__
        _last_axis(owner, axis)
        self.apply_class_balancing = bool(apply_class_balancing)
        self.alpha = _focusing(owner, "alpha", alpha, 1.0)
        self.gamma = _focusing(owner, "gamma", gamma)
        self.from_logits = bool(from_logits)
        self.label_smoothing = _smoothing(owner, label_smoothing)

    def per_sample(self, y_true, y_pred):
        y_true = _aligned(y_true, y_pred).expand_as(y_pred)
        if self.label_smoothing:
            y_true = y_true * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        p = torch.sigmoid(y_pred) if self.from_logits else y_pred
        bce = clipped_binary_crossentropy(p, y_true)
        p_t = y_true * p + (1 - y_true) * (1 - p)
        focal = torch.pow(1.0 - p_t, self.gamma) * bce
        if self.apply_class_balancing:
            focal = (y_true * self.alpha + (1 - y_true) * (1 - self.alpha)) * focal
        return torch.mean(focal, dim=-1)

    def get_config(self):
        return {**super().get_config(), "apply_class_balancing": self.apply_class_balancing,
                "alpha": self.alpha, "gamma": self.gamma, "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing, "axis": -1}


class CategoricalFocalCrossentropy(Loss):
    """Keras's focal crossentropy for one-hot targets: ``-sum(alpha * (1 - p)**gamma *
    y_true * log(p))`` over the classes, ``p`` the predictions over their sum (the softmax
    of logits), clipped to ``[1e-7, 1 - 1e-7]``."""

    name = "categorical_focal_crossentropy"
    target_kind = "categorical"

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, from_logits: bool = False,
                 label_smoothing: float = 0.0, axis: int = -1,
                 reduction: str | None = "sum_over_batch_size", name: str | None = None,
                 dtype: Any = None):
        super().__init__(name, reduction, dtype)
        owner = type(self).__name__
        _last_axis(owner, axis)
        self.alpha = _focusing(owner, "alpha", alpha)
        self.gamma = _focusing(owner, "gamma", gamma)
        self.from_logits = bool(from_logits)
        self.label_smoothing = _smoothing(owner, label_smoothing)

    def per_sample(self, y_true, y_pred):
        y_true = y_true.to(y_pred.dtype)
        if self.label_smoothing:
            k = y_pred.shape[-1]
            y_true = y_true * (1.0 - self.label_smoothing) + self.label_smoothing / k
        p = torch.softmax(y_pred, dim=-1) if self.from_logits else y_pred
        p = torch.clamp(p / torch.sum(p, dim=-1, keepdim=True), EPSILON, 1.0 - EPSILON)
        weight = torch.pow(1.0 - p, self.gamma) * self.alpha
        return torch.sum(weight * (-y_true * torch.log(p)), dim=-1)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "gamma": self.gamma,
                "from_logits": self.from_logits, "label_smoothing": self.label_smoothing,
                "axis": -1}


_BY_NAME = {
    "categorical_crossentropy": CategoricalCrossentropy,
    "binary_focal_crossentropy": BinaryFocalCrossentropy,
    "categorical_focal_crossentropy": CategoricalFocalCrossentropy,
    "cosine_similarity": CosineSimilarity,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "mean_squared_error": MeanSquaredError,
    "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError,
    "mae": MeanAbsoluteError,
    "mean_absolute_percentage_error": MeanAbsolutePercentageError,
    "mape": MeanAbsolutePercentageError,
    "mean_squared_logarithmic_error": MeanSquaredLogarithmicError,
    "msle": MeanSquaredLogarithmicError,
    "huber": Huber,
    "log_cosh": LogCosh,
    "logcosh": LogCosh,
    "poisson": Poisson,
    "hinge": Hinge,
    "squared_hinge": SquaredHinge,
    "categorical_hinge": CategoricalHinge,
    "kl_divergence": KLDivergence,
    "kld": KLDivergence,
    # Keras's upper-case and short aliases
    "MSE": MeanSquaredError, "MAE": MeanAbsoluteError, "MAPE": MeanAbsolutePercentageError,
    "MSLE": MeanSquaredLogarithmicError, "KLD": KLDivergence, "bce": BinaryCrossentropy,
    "BCE": BinaryCrossentropy,
}
_BY_NAME.update({cls.__name__: cls for cls in (
    CategoricalCrossentropy, SparseCategoricalCrossentropy, BinaryCrossentropy,
    MeanSquaredError, MeanAbsoluteError, MeanAbsolutePercentageError,
    MeanSquaredLogarithmicError, Huber, LogCosh, Poisson, Hinge, SquaredHinge,
    CategoricalHinge, KLDivergence, CosineSimilarity, BinaryFocalCrossentropy,
    CategoricalFocalCrossentropy)})

def as_tensors(y_true, y_pred) -> tuple[torch.Tensor, torch.Tensor]:
    """Arrays (numpy, lists) as tensors, as Keras converts them; integer predictions as
    float32."""
    if not isinstance(y_pred, torch.Tensor):
        y_pred = torch.as_tensor(np.asarray(y_pred))
    if not y_pred.is_floating_point():
        y_pred = y_pred.float()
    if not isinstance(y_true, torch.Tensor):
        y_true = torch.as_tensor(np.asarray(y_true))
    return y_true, y_pred


def _last_axis(owner: str, axis) -> None:
    if axis != -1:
        raise ConfigError(f"{owner}: only axis=-1 (the classes last, Keras's default) is "
                          f"supported. Got axis={axis!r}.")


def _no_ignore_class(owner: str, ignore_class) -> None:
    if ignore_class is not None:
        raise ConfigError(f"{owner}: 'ignore_class' is not supported (only None). "
                          f"Got ignore_class={ignore_class!r}.")


# Keras's functions: each sample's loss (the last axis reduced), unlike the classes'
# instances, which give the batch's mean. compile(loss=<one of them>) takes its class.
def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0,
                             axis=-1) -> torch.Tensor:
    """``keras.losses.categorical_crossentropy``: one value per sample."""
    _last_axis("categorical_crossentropy", axis)
    return CategoricalCrossentropy(from_logits, label_smoothing).per_sample(
        *as_tensors(y_true, y_pred))


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None,
                                    axis=-1) -> torch.Tensor:
    """``keras.losses.sparse_categorical_crossentropy``: one value per sample."""
    _last_axis("sparse_categorical_crossentropy", axis)
    _no_ignore_class("sparse_categorical_crossentropy", ignore_class)
    return SparseCategoricalCrossentropy(from_logits).per_sample(*as_tensors(y_true, y_pred))


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0,
                        axis=-1) -> torch.Tensor:
    """``keras.losses.binary_crossentropy``: the mean over the last axis, per sample."""
    _last_axis("binary_crossentropy", axis)
    return BinaryCrossentropy(from_logits, label_smoothing).per_sample(
        *as_tensors(y_true, y_pred))


def mean_squared_error(y_true, y_pred) -> torch.Tensor:
    """``keras.losses.mean_squared_error``: the mean over the last axis, per sample."""
    return MeanSquaredError().per_sample(*as_tensors(y_true, y_pred))


def _function_of(cls: type[Loss], name: str):
    """Keras's function form of a loss without arguments: one value per sample."""
    def function(y_true, y_pred):
        return cls().per_sample(*as_tensors(y_true, y_pred))
    function.__name__ = function.__qualname__ = name
    function.__doc__ = f"``keras.losses.{name}``: one value per sample."
    return function


mean_absolute_error = _function_of(MeanAbsoluteError, "mean_absolute_error")
mean_absolute_percentage_error = _function_of(MeanAbsolutePercentageError,
                                              "mean_absolute_percentage_error")
mean_squared_logarithmic_error = _function_of(MeanSquaredLogarithmicError,
                                              "mean_squared_logarithmic_error")
log_cosh = _function_of(LogCosh, "log_cosh")
poisson = _function_of(Poisson, "poisson")
hinge = _function_of(Hinge, "hinge")
squared_hinge = _function_of(SquaredHinge, "squared_hinge")
categorical_hinge = _function_of(CategoricalHinge, "categorical_hinge")
kl_divergence = _function_of(KLDivergence, "kl_divergence")


def huber(y_true, y_pred, delta=1.0) -> torch.Tensor:
    """``keras.losses.huber``: one value per sample."""
    return Huber(delta).per_sample(*as_tensors(y_true, y_pred))


def cosine_similarity(y_true, y_pred, axis=-1) -> torch.Tensor:
    """``keras.losses.cosine_similarity``: one value per sample (negative: -1 is alike)."""
    return CosineSimilarity(axis).per_sample(*as_tensors(y_true, y_pred))


def binary_focal_crossentropy(y_true, y_pred, apply_class_balancing=False, alpha=0.25,
                              gamma=2.0, from_logits=False, label_smoothing=0.0,
                              axis=-1) -> torch.Tensor:
    """``keras.losses.binary_focal_crossentropy``: the mean over the last axis, per sample."""
    return BinaryFocalCrossentropy(apply_class_balancing, alpha, gamma, from_logits,
                                   label_smoothing, axis).per_sample(*as_tensors(y_true, y_pred))


def categorical_focal_crossentropy(y_true, y_pred, alpha=0.25, gamma=2.0, from_logits=False,
                                   label_smoothing=0.0, axis=-1) -> torch.Tensor:
    """``keras.losses.categorical_focal_crossentropy``: one value per sample."""
    return CategoricalFocalCrossentropy(alpha, gamma, from_logits, label_smoothing,
                                        axis).per_sample(*as_tensors(y_true, y_pred))


mse = mean_squared_error
mae, mape, msle, kld = (mean_absolute_error, mean_absolute_percentage_error,
                        mean_squared_logarithmic_error, kl_divergence)
_FUNCTIONS = {categorical_crossentropy: CategoricalCrossentropy,
              sparse_categorical_crossentropy: SparseCategoricalCrossentropy,
              binary_crossentropy: BinaryCrossentropy, mean_squared_error: MeanSquaredError,
              mean_absolute_error: MeanAbsoluteError,
              mean_absolute_percentage_error: MeanAbsolutePercentageError,
              mean_squared_logarithmic_error: MeanSquaredLogarithmicError, huber: Huber,
              log_cosh: LogCosh, poisson: Poisson, hinge: Hinge, squared_hinge: SquaredHinge,
              categorical_hinge: CategoricalHinge, kl_divergence: KLDivergence,
              cosine_similarity: CosineSimilarity,
              binary_focal_crossentropy: BinaryFocalCrossentropy,
              categorical_focal_crossentropy: CategoricalFocalCrossentropy}


def keras_functions() -> tuple:
    """Keras's loss functions as this module gives them (each sample's loss)."""
    return tuple(_FUNCTIONS)


class ScaledLoss(Loss):
    """A loss times a weight: Keras's ``loss_weights`` on a model with one output (its data
    loss scaled, and so its gradient; the weight penalties, added after, are not).

    Args:
        loss: the :class:`Loss` scaled (its name, reduction and targets are the scaled one's).
        weight: a finite number >= 0.
    """

    def __init__(self, loss: Loss, weight: float):
        self.loss, self.weight = loss, float(weight)
        self.name, self.reduction, self.target_kind = loss.name, loss.reduction, \
            loss.target_kind
        self.regression = loss.regression

    def per_sample(self, y_true, y_pred):
        return self.loss.per_sample(y_true, y_pred) * self.weight

    def __repr__(self) -> str:
        return f"ScaledLoss({self.loss!r}, {self.weight!r})"


class LossFunctionWrapper(Loss):
    """A user's function ``fn(y_true, y_pred, **kwargs) -> per-sample losses`` as a loss, as
    Keras wraps it (see :meth:`Loss.call` for how its values are read).

    Args:
        fn: the function.
        reduction, name, dtype: as :class:`Loss`'s (the name defaults to the function's).
        **kwargs: passed to ``fn`` at every call, as Keras passes them.
    """

    def __init__(self, fn, reduction: str | None = "sum_over_batch_size",
                 name: str | None = None, dtype: Any = None, **kwargs):
        if not callable(fn):
            raise ConfigError(f"LossFunctionWrapper: 'fn' must be a function "
                              f"fn(y_true, y_pred). Got {fn!r}.")
        super().__init__(name or getattr(fn, "__name__", "loss"), reduction, dtype)
        self.fn, self.fn_kwargs = fn, kwargs

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred, **self.fn_kwargs)


def get(identifier: Any):
    """Keras's ``losses.get``: None for None; for a function's name or alias (``"mse"``,
    ``"MSE"``, ``"categorical_crossentropy"``) the function, which gives each sample's loss;
    for a class's name (``"MeanSquaredError"``) or a config dict (``class_name``, ``config``)
    an instance; a callable (a function, a :class:`Loss`) as it is, a class instantiated.
    ``compile`` and the study take names through :func:`resolve`, always a :class:`Loss`.

    Raises:
        ConfigError: an unknown name (with the closest known ones), or anything else.
    """
    if identifier is None:
        return None
    if isinstance(identifier, dict):
        return deserialize(identifier, "losses.get")
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier)
        if cls is None:
            raise unknown_name("losses.get", "loss", identifier, _BY_NAME)
        if cls.__name__ == identifier:
            return cls()
        return next(fn for fn, owner in _FUNCTIONS.items() if owner is cls)
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if callable(identifier):
        return identifier
    raise ConfigError(f"losses.get: expected a loss name, config, function or "
                      f"reglab.losses.Loss. Got {identifier!r}.")


def deserialize(config: dict, where: str = "losses.deserialize") -> Loss:
    """A loss object from its serialized form (``class_name``, ``config``), Keras's or
    reglab's: its class by name, its arguments (a ``dtype`` left out: losses compute in
    float32). Raises ConfigError naming ``where`` for anything else."""
    name = config.get("class_name") if isinstance(config, dict) else None
    arguments = config.get("config") if isinstance(config, dict) else None
    if not isinstance(name, str) or not isinstance(arguments, dict):
        raise ConfigError(f"{where}: expected a loss name or a Keras loss config. Got "
                          f"{config!r}.")
    cls = type(resolve(name, where=where))
    arguments = {k: v for k, v in arguments.items() if k != "dtype"}
    try:
        return cls(**arguments)
    except TypeError as error:
        raise ConfigError(f"{where}: the arguments do not fit {cls.__name__}: {error}. Got "
                          f"{arguments!r}.") from None


def resolve(identifier: Any, where: str = "losses.resolve") -> Loss:
    """A loss as ``compile`` takes it, always a :class:`Loss`: by Keras name (a function's
    or a class's), a :class:`Loss` as is, one of Keras's functions as its class, another
    function wrapped."""
    if isinstance(identifier, Loss):
        return identifier
    for function, cls in _FUNCTIONS.items():  # one of Keras's functions above: its class
        if identifier is function:
            return cls()
    if isinstance(identifier, torch.nn.modules.loss._Loss):
        raise ConfigError(
            f"{where}: {type(identifier).__name__}() is a torch loss, called as "
            "loss(input, target); reglab's losses are called as Keras's, loss(y_true, y_pred), "
            "on probabilities unless from_logits. Use a Keras loss name ('sparse_categorical_"
            "crossentropy') or a reglab.losses.Loss, or wrap it: lambda y_true, y_pred: "
            "torch_loss(y_pred, y_true) (with the targets' dtype it expects).")
    if callable(identifier) and not isinstance(identifier, type):
        return LossFunctionWrapper(identifier)
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier)
        if cls is None:
            raise unknown_name(where, "loss", identifier, _BY_NAME)
        return cls()
    raise ConfigError(f"{where}: expected a loss name or a reglab.losses.Loss. Got {identifier!r}.")
