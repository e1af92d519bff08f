"""Keras 3's metric objects: ``update_state`` / ``result`` / ``reset_state`` called by hand,
and the mean-metric classes ``compile(metrics=[...])`` takes (``SparseCategoricalAccuracy()``,
``MeanSquaredError(name="mse")``...).

A metric the engine computes gives, for each sample, a row of totals (``totals_shape``):
``[value, 1]`` for a mean metric, the confusion counts for ``Precision``/``Recall``/``AUC``
(``confusion_metrics.py``); the engine sums the rows over an epoch and
:meth:`StatefulMetric.totals_result` turns each member's sums into its value. Called by
hand, a metric keeps those sums itself, each sample's row times its sample weight (Keras's
weighted mean; weighted confusion counts), and ``result()`` reads them: one computation of
each metric for both uses.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from reglab.errors import ConfigError, DataError
from reglab.losses import as_tensors
from reglab.utils.tensors import divide_no_nan as _divide_no_nan


def checked_arguments(owner: str, name, dtype) -> str | None:
    """A metric class's ``name`` (a non-empty string, or None for its default) after its
    ``dtype`` is checked: reglab computes its metrics in float32."""
    if name is not None and (not isinstance(name, str) or not name):
        raise ConfigError(f"{owner}: 'name' must be a non-empty string. Got {name!r}.")
    if dtype not in (None, "float32", torch.float32):
        raise ConfigError(f"{owner}: 'dtype' must be None or 'float32' (reglab computes its "
                          f"metrics in float32). Got {dtype!r}.")
    return name


def refuse_per_column_logs(metric, where: str, argument: str, choices: str,
                           y_pred_shape, columns: str) -> None:
    """A per-column metric (``F1Score``, ``R2Score``) at compile: its ``argument`` must
    reduce the columns (a compiled metric logs one number per epoch), and the outputs must
    be ``(batch, columns)``."""
    if getattr(metric, argument) is None:
        raise ConfigError(f"{where}: {metric.name}: a compiled metric logs one number per "
                          f"epoch; give {argument!r} ({choices}), or use None by hand "
                          f"(update_state / result).")
    if len(y_pred_shape) != 2:
        raise ConfigError(f"{where}: {metric.name} expects outputs of shape (batch, "
                          f"{columns}). Got {tuple(y_pred_shape)}.")


def per_column_targets(name: str, y_true: torch.Tensor, y_pred: torch.Tensor,
                       columns: str) -> torch.Tensor:
    """``y_true`` ``(P, B, columns)``, or shared by the members ``(1, B, columns)``, laid
    out as ``y_pred`` ``(P, B, columns)``; a DataError naming the metric otherwise."""
    if y_pred.dim() != 3 or y_true.dim() != 3 or y_true.shape[1:] != y_pred.shape[1:] \
            or y_true.shape[0] not in (1, y_pred.shape[0]):
        raise DataError(f"{name}: expects targets and outputs of one shape (batch, "
                        f"{columns}). Got targets of shape {tuple(y_true.shape[1:])} for "
                        f"outputs of shape {tuple(y_pred.shape[1:])}.")
    return y_true.expand(y_pred.shape)


def weigh(metric, rows: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Each sample's row of totals (``(..., B, *totals)``) times its weight (``(..., B)``),
    or as the metric weighs its own rows (``R2Score`` leaves its count unweighted)."""
    own = getattr(metric, "weigh", None)
    if own is not None:
        return own(rows, weights)
    return rows * weights.reshape(*weights.shape, *([1] * (rows.dim() - weights.dim())))


class StatefulMetric:
    """Keras's ``update_state(y_true, y_pred, sample_weight=None)``, ``result()`` and
    ``reset_state()`` over a metric of per-sample totals (see the module docstring)."""

    _state: torch.Tensor | None = None
    #: the logged name
    name: str

    @property
    def __name__(self) -> str:  # the logged name (compile reads it as a function's)
        return self.name

    @__name__.setter
    def __name__(self, value: str) -> None:  # compile's 'auc_1' for a second AUC()
        self.name = value

    def totals_result(self, totals: torch.Tensor) -> torch.Tensor:
        """``(P,)`` values from ``(P, *totals_shape)`` sums."""
        raise NotImplementedError

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        y_true, y_pred = as_tensors(y_true, y_pred)
        if y_pred.dim() and y_pred.shape[0] == 0 and y_true.numel() == 0:
            return  # an empty batch adds nothing, as Keras's
        rows = self(y_true.unsqueeze(0), y_pred.unsqueeze(0))[0].to(torch.float64)
        if sample_weight is not None:
            weights = torch.as_tensor(np.asarray(sample_weight, dtype=np.float64)).reshape(-1)
            if weights.numel() not in (1, rows.shape[0]):
                raise ConfigError(f"{self.name}.update_state: 'sample_weight' must have one "
                                  f"weight per sample ({rows.shape[0]}). Got "
                                  f"{weights.numel()}.")
            rows = weigh(self, rows, weights.expand(rows.shape[0]))
        self._accumulate(rows)

    def _accumulate(self, rows: torch.Tensor) -> None:
        """Adds a batch's rows of totals (float64, samples first) to the state."""
        total = rows.sum(dim=0)
        self._state = total if self._state is None else self._state + total

    def result(self) -> torch.Tensor:
        """Keras's ``result()``: the value of what ``update_state`` saw (0 before it saw
        anything)."""
        if self._state is None:
            return torch.tensor(0.0)
        return self.totals_result(self._state.unsqueeze(0))[0].to(torch.float32)

    def reset_state(self) -> None:
        self._state = None

    def reset_states(self) -> None:  # Keras 2's name
        self.reset_state()

    def hold_totals(self, totals: torch.Tensor) -> None:
        """Takes ``totals`` (``totals_shape``: what ``update_state`` would have summed) as
        the state: a model's compiled metric after the engine's pass, as Keras's object ends
        a fit or evaluate holding what it saw."""
        self._state = totals.detach().to("cpu", torch.float64).clone()

    @classmethod
    def from_config(cls, config: dict[str, Any]):
        """Keras's ``from_config``: the metric built from its ``get_config()``."""
        return cls(**config)


class MeanMetricWrapper(StatefulMetric):
    """Keras's ``MeanMetricWrapper``: the mean of ``fn(y_true, y_pred, **kwargs)``'s
    per-sample values (over any axes after the batch's too), as a compiled metric logged
    under ``name`` or by hand with sample weights.

    A user's ``fn`` is called on one member's batch at a time, ``(B, ...)`` targets and
    predictions, as Keras calls it (:class:`reglab.metrics.FunctionMetric`); the built-in
    classes below give one of the engine's functions, which take the members at once.
    """

    resolved = True  # compile takes the object as it is
    weighted = False  # Keras's compiled 'metrics' ignore sample weights
    totals_shape = (2,)
    default_name = "mean_metric_wrapper"
    #: whether ``fn`` is an engine function (a leading member axis); a user's is not
    engine_form = False
    #: whether by hand a 1-D pair is one value (Keras's function of it reduces its only
    #: axis: a correlation, log_cosh), not a value per element
    one_value_per_vector = False
    #: whether ``fn`` lines targets and outputs of ranks one apart up itself (Keras's
    #: squeeze_or_expand_to_same_rank: the correlations)
    lines_up_itself = False

    def __init__(self, fn: Callable | None = None, name: str | None = None, dtype: Any = None,
                 **kwargs):
        owner = type(self).__name__
        name = checked_arguments(owner, name, dtype)
        if fn is not None:
            self.fn = fn
        if not callable(getattr(self, "fn", None)):
            raise ConfigError(f"{owner}: 'fn' must be a function fn(y_true, y_pred). "
                              f"Got {fn!r}.")
        self.name = name or self.default_name
        self.fn_kwargs = kwargs
        self._one_member = None
        if not self.engine_form:
            from reglab.metrics import FunctionMetric

            self._one_member = FunctionMetric(functools.partial(self.fn, **kwargs))
        mixed = getattr(self.fn, "of_mixed_targets", None)
        if mixed is not None and self.engine_form:  # the engine's variant for mixed targets
            self.of_mixed_targets = functools.partial(self._rows, mixed)

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        y_true, y_pred = as_tensors(y_true, y_pred)
        if y_true.dim() == 1 and y_pred.dim() == 1 and self.one_value_per_vector:
            # Keras's function reduces the last axis: a vector is one value, which the
            # weights of its elements then leave as it is
            return super().update_state(y_true[None], y_pred[None])
        return super().update_state(y_true, y_pred, sample_weight)

    def _rows(self, fn, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        """``(P, B, 2)``: ``[value, 1]`` for each sample, from an engine function."""
        if y_pred.dim() == y_true.dim() - 1 and y_true.shape[-1] == 1 and y_pred.dim() > 1 \
                and not self.lines_up_itself:
            # Keras's squeeze_or_expand_to_same_rank: (B, 1) targets with (B,) outputs
            # line up, not broadcast to (B, B)
            y_pred = y_pred.unsqueeze(-1)
        values = fn(y_true, y_pred, **self.fn_kwargs)
        if values.dim() > 2:
            values = values.reshape(*values.shape[:2], -1).mean(dim=-1)
        values = values.to(y_pred.dtype)
        return torch.stack([values, torch.ones_like(values)], dim=-1)

    def __call__(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        if self._one_member is not None:  # a user's function, member by member
            return self._one_member(y_true, y_pred)
        return self._rows(self.fn, y_true, y_pred)

    def totals_result(self, totals):
        return self.finish(_divide_no_nan(totals[:, 0], totals[:, 1]))

    def finish(self, mean: torch.Tensor) -> torch.Tensor:
        """The reported value from the mean (the square root for a root mean)."""
        return mean

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": "float32", **self.fn_kwargs}

    def saved_name(self) -> str | None:
        """The metric name ``compile`` would resolve to this metric (a model saves it so),
        or None."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def _engine_function(name: str) -> Callable:
    from reglab import metrics

    return metrics.engine_function(name)


def _by_name(class_name: str, metric_name: str, default: str, doc: str, direction: str,
             **defaults):
    """A Keras mean-metric class computing reglab's engine function ``metric_name``, with
    keyword arguments ``defaults`` (passed to the function)."""

    def __init__(self, name=None, dtype=None, **kwargs):
        for key, value in kwargs.items():
            if key not in defaults:
                raise ConfigError(f"{class_name}: unexpected argument {key!r}.")
            if isinstance(defaults[key], float):  # a number, as its default
                if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                        or not math.isfinite(value):
                    raise ConfigError(f"{class_name}: {key!r} must be a finite number. Got "
                                      f"{value!r}.")
                kwargs[key] = float(value)
        MeanMetricWrapper.__init__(self, _engine_function(metric_name), name, dtype,
                                   **{**defaults, **kwargs})

    def saved_name(self):
        # 'accuracy' by name resolves by the shapes, not Keras's Accuracy (exact equality)
        same = self.name == default and self.fn_kwargs == defaults
        return self.name if same and metric_name != "exact_accuracy" else None

    return type(class_name, (MeanMetricWrapper,), {
        "__init__": __init__, "default_name": default, "saved_name": saved_name,
        "__doc__": doc, "__module__": __name__, "engine_form": True, "_direction": direction})


SparseCategoricalAccuracy = _by_name(
    "SparseCategoricalAccuracy", "sparse_categorical_accuracy", "sparse_categorical_accuracy",
    "``keras.metrics.SparseCategoricalAccuracy``: integer targets against the argmax.", "up")
CategoricalAccuracy = _by_name(
    "CategoricalAccuracy", "categorical_accuracy", "categorical_accuracy",
    "``keras.metrics.CategoricalAccuracy``: one-hot targets' argmax against the output's.",
    "up")
Accuracy = _by_name("Accuracy", "exact_accuracy", "accuracy",
                    "``keras.metrics.Accuracy``: how often predictions equal the targets.",
                    "up")
BinaryAccuracy = _by_name(
    "BinaryAccuracy", "binary_accuracy", "binary_accuracy",
    "``keras.metrics.BinaryAccuracy(threshold=0.5)``: predictions above the threshold "
    "against 0/1 targets.", "up", threshold=0.5)
MeanSquaredError = _by_name("MeanSquaredError", "mean_squared_error", "mean_squared_error",
                            "``keras.metrics.MeanSquaredError``.", "down")
MeanAbsoluteError = _by_name("MeanAbsoluteError", "mean_absolute_error", "mean_absolute_error",
                             "``keras.metrics.MeanAbsoluteError``.", "down")


MeanAbsolutePercentageError = _by_name(
    "MeanAbsolutePercentageError", "mean_absolute_percentage_error",
    "mean_absolute_percentage_error", "``keras.metrics.MeanAbsolutePercentageError``.", "down")
MeanSquaredLogarithmicError = _by_name(
    "MeanSquaredLogarithmicError", "mean_squared_logarithmic_error",
    "mean_squared_logarithmic_error", "``keras.metrics.MeanSquaredLogarithmicError``.", "down")
Hinge = _by_name("Hinge", "hinge", "hinge", "``keras.metrics.Hinge`` (0/1 targets taken as "
                 "-1/1).", "down")
SquaredHinge = _by_name("SquaredHinge", "squared_hinge", "squared_hinge",
                        "``keras.metrics.SquaredHinge`` (0/1 targets taken as -1/1).", "down")
CategoricalHinge = _by_name("CategoricalHinge", "categorical_hinge", "categorical_hinge",
                            "``keras.metrics.CategoricalHinge`` (one-hot targets).", "down")
KLDivergence = _by_name("KLDivergence", "kl_divergence", "kl_divergence",
                        "``keras.metrics.KLDivergence``.", "down")
Poisson = _by_name("Poisson", "poisson", "poisson", "``keras.metrics.Poisson``.", "down")
_CosineSimilarity = _by_name(
    "CosineSimilarity", "cosine_similarity", "cosine_similarity",
    "``keras.metrics.CosineSimilarity``: 1 where targets and predictions point the same way "
    "(the loss's value with its sign turned); ``axis=-1`` only.", "up")


class CosineSimilarity(_CosineSimilarity):
    __doc__ = _CosineSimilarity.__doc__

    def __init__(self, name=None, dtype=None, axis=-1):
        if axis != -1:
            raise ConfigError(f"CosineSimilarity: only axis=-1 (the last axis, Keras's "
                              f"default) is supported. Got axis={axis!r}.")
        super().__init__(name, dtype)


class _TopK(MeanMetricWrapper):
    """How often the target is among the ``k`` highest scores (ties count, as Keras)."""

    engine_form = True
    _direction = "up"

    def __init__(self, k: int = 5, name: str | None = None, dtype: Any = None):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"{type(self).__name__}: 'k' must be an int >= 1. Got {k!r}.")
        MeanMetricWrapper.__init__(self, _engine_function(self.default_name), name, dtype,
                                   k=int(k))

    def saved_name(self):
        return self.name if self.name == self.default_name and self.fn_kwargs["k"] == 5 \
            else None


class SparseTopKCategoricalAccuracy(_TopK):
    """``keras.metrics.SparseTopKCategoricalAccuracy(k=5)``: integer targets."""

    default_name = "sparse_top_k_categorical_accuracy"


class TopKCategoricalAccuracy(_TopK):
    """``keras.metrics.TopKCategoricalAccuracy(k=5)``: one-hot targets."""

    default_name = "top_k_categorical_accuracy"


class RootMeanSquaredError(MeanMetricWrapper):
    """``keras.metrics.RootMeanSquaredError``: the square root of the mean squared error."""

    default_name = "root_mean_squared_error"
    engine_form = True
    _direction = "down"

    def __init__(self, name: str | None = None, dtype: Any = None):
        super().__init__(_engine_function("mean_squared_error"), name, dtype)

    def finish(self, mean):
        return torch.sqrt(mean)


#: Keras's defaults of the crossentropy metrics' arguments, as their configs list them
_CROSSENTROPY_DEFAULTS = {"label_smoothing": 0, "axis": -1, "ignore_class": None}


class _CrossentropyMetric(MeanMetricWrapper):
    """A crossentropy loss's per-sample values as a mean metric."""

    loss_class: type = type(None)
    engine_form = True
    _direction = "down"

    #: the arguments besides from_logits that Keras's metric class takes (its loss takes
    #: more, which a file written for Keras could not hold)
    arguments: tuple[str, ...] = ()

    def __init__(self, name: str | None = None, dtype: Any = None, from_logits: bool = False,
                 **kwargs):
        unexpected = sorted(set(kwargs) - set(self.arguments))
        if unexpected:
            raise ConfigError(f"{type(self).__name__}: unexpected argument "
                              f"{unexpected[0]!r}; Keras's metric takes name, dtype, "
                              f"from_logits{''.join(', ' + a for a in self.arguments)}.")
        loss = self.loss_class(from_logits=from_logits, **kwargs)
        self.loss = loss
        super().__init__(lambda y_true, y_pred: loss.per_sample(y_true, y_pred), name, dtype)
        self.fn_kwargs = {}
        # every argument, as Keras's config lists them (its defaults where not given)
        self.config = {"from_logits": bool(from_logits),
                       **{a: kwargs.get(a, _CROSSENTROPY_DEFAULTS[a]) for a in self.arguments}}

    def get_config(self):
        return {"name": self.name, "dtype": "float32", **self.config}

    def saved_name(self):
        return self.name if self.name == self.default_name and not any(
            self.config.get(k) for k in ("from_logits", "label_smoothing")) else None


def _crossentropy(class_name: str, loss_name: str, arguments: tuple[str, ...]):
    from reglab import losses

    return type(class_name, (_CrossentropyMetric,), {
        "loss_class": getattr(losses, class_name), "default_name": loss_name,
        "__module__": __name__, "arguments": arguments,
        "__doc__": f"``keras.metrics.{class_name}``: the loss's per-sample values averaged."})


CategoricalCrossentropy = _crossentropy("CategoricalCrossentropy", "categorical_crossentropy",
                                        ("label_smoothing", "axis"))
SparseCategoricalCrossentropy = _crossentropy("SparseCategoricalCrossentropy",
                                              "sparse_categorical_crossentropy",
                                              ("ignore_class", "axis"))
BinaryCrossentropy = _crossentropy("BinaryCrossentropy", "binary_crossentropy",
                                   ("label_smoothing",))


class Mean(StatefulMetric):
    """``keras.metrics.Mean``: the (weighted) mean of the values given to
    ``update_state(values, sample_weight=None)``, by hand (Keras's, for custom loops)."""

    def __init__(self, name: str = "mean", dtype: Any = None):
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{type(self).__name__}: 'name' must be a non-empty string. "
                              f"Got {name!r}.")
        self.name = name

    #: how a sample's values are reduced to one (Keras's reduce_fn): Sum sums them
    reduce_sample = staticmethod(torch.mean)

    def update_state(self, values, sample_weight=None) -> None:
        """Adds ``values`` (a sample's values reduced to one per sample, Keras's rule),
        each weighted by ``sample_weight`` (one per sample, or broadcast to them)."""
        values = torch.as_tensor(np.asarray(values.detach() if isinstance(values, torch.Tensor)
                                            else values, dtype=np.float64))
        if values.dim() > 1:  # one value per sample
            values = self.reduce_sample(values.reshape(values.shape[0], -1), dim=-1)
        values = values.reshape(-1)
        weights = torch.ones_like(values)
        if sample_weight is not None:
            given = torch.as_tensor(np.asarray(sample_weight, dtype=np.float64)).reshape(-1)
            if given.numel() not in (1, values.numel()):
                raise ConfigError(f"{self.name}.update_state: 'sample_weight' must have one "
                                  f"weight per sample ({values.numel()}). Got "
                                  f"{given.numel()}.")
            weights = given.expand_as(values)
        total = torch.stack([(values * weights).sum(), weights.sum()])
        self._state = total if self._state is None else self._state + total

    def totals_result(self, totals):
        return _divide_no_nan(totals[:, 0], totals[:, 1])

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": "float32"}


class Sum(Mean):
    """``keras.metrics.Sum``: the (weighted) sum of the values given to ``update_state``."""

    reduce_sample = staticmethod(torch.sum)

    def __init__(self, name: str = "sum", dtype: Any = None):
        super().__init__(name, dtype)

    def totals_result(self, totals):
        return totals[:, 0]


class CompileMetrics:
    """Keras 3's ``compile_metrics``: a model's compiled metrics in one object, the second of
    ``model.metrics``; ``result()`` their values by name, ``reset_state()`` resets each."""

    name = "compile_metrics"

    def __init__(self, metrics: list):
        self.metrics = list(metrics)

    def result(self) -> dict[str, torch.Tensor]:
        return {metric.name: metric.result() for metric in self.metrics}

    def reset_state(self) -> None:
        for metric in self.metrics:
            metric.reset_state()

    def __repr__(self) -> str:
        return f"<CompileMetrics name=compile_metrics, {[m.name for m in self.metrics]}>"


class WeightedMetric:
    """A metric of ``compile(weighted_metrics=[...])``: each sample's value times its sample
    weight, over the weights' sum (Keras's weighted mean; a confusion metric's counts
    weighted), its unweighted mean without weights. ``metric`` is what ``compile`` was
    given (a name, a function, a metric object); it is resolved for the targets' and
    outputs' shapes as ``metrics`` are (:meth:`resolved_for`)."""

    resolved = True
    weighted = True

    def __init__(self, metric: Any, name: str, inner: Any = None):
        self.metric, self.__name__, self.inner = metric, name, inner
        mixed = getattr(inner, "of_mixed_targets", None)
        if mixed is not None:
            self.of_mixed_targets = functools.partial(self._weighted_rows, mixed)

    def resolved_for(self, y_true_shape, y_pred_shape, where: str) -> WeightedMetric:
        from reglab import metrics

        return WeightedMetric(self.metric, self.__name__,
                              metrics.resolve(self.metric, y_true_shape, y_pred_shape, where))

    @property
    def totals_shape(self) -> tuple[int, ...] | None:
        return getattr(self.inner, "totals_shape", (2,))

    def weigh(self, rows: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return weigh(self.inner, rows, weights)

    @property
    def _direction(self) -> str | None:
        """The metric's own ('up' for ``F1Score()``, 'down' for a loss function...), for the
        monitors' mode 'auto'."""
        target = self.inner if self.inner is not None else self.metric
        direction = getattr(target, "_direction", None)
        if direction is None and self.inner is None and callable(self.metric):
            from reglab.metrics import FunctionMetric

            direction = FunctionMetric(self.metric)._direction  # a loss's: 'down'
        return direction

    def __call__(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        return self._weighted_rows(self.inner, y_true, y_pred)

    def _weighted_rows(self, fn, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        values = fn(y_true, y_pred)
        if hasattr(self.inner, "totals_shape"):  # rows of totals already ([v, 1], counts)
            return values
        return torch.stack([values, torch.ones_like(values)], dim=-1)

    def totals_result(self, totals: torch.Tensor) -> torch.Tensor:
        if hasattr(self.inner, "totals_result"):
            return self.inner.totals_result(totals)
        return _divide_no_nan(totals[:, 0], totals[:, 1])

    def __repr__(self) -> str:
        return f"WeightedMetric({self.__name__})"
