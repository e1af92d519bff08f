"""Keras 3's accuracy and regression metrics, per sample, for one model or a population."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from reglab import correlation_metrics
from reglab.confusion_metrics import (  # noqa: F401 - re-exported
    AUC,
    ConfusionMetric,
    FalseNegatives,
    FalsePositives,
    Precision,
    PrecisionAtRecall,
    Recall,
    RecallAtPrecision,
    SensitivityAtSpecificity,
    SpecificityAtSensitivity,
    TrueNegatives,
    TruePositives,
)
from reglab.correlation_metrics import (  # noqa: F401 - re-exported
    ConcordanceCorrelation,
    LogCoshError,
    PearsonCorrelation,
    concordance_correlation,
    pearson_correlation,
)
from reglab.errors import ConfigError, DataError, unknown_name
from reglab.f_score_metrics import F1Score, FBetaScore  # noqa: F401 - re-exported
from reglab.iou_metrics import (  # noqa: F401 - re-exported
    BinaryIoU,
    IoU,
    MeanIoU,
    OneHotIoU,
    OneHotMeanIoU,
)
from reglab.losses import (  # noqa: F401 - Keras's metrics module exports them too
    as_tensors,
    binary_crossentropy,
    binary_focal_crossentropy,
    categorical_crossentropy,
    categorical_focal_crossentropy,
    categorical_hinge,
    hinge,
    huber,
    kl_divergence,
    log_cosh,
    mean_absolute_percentage_error,
    mean_squared_logarithmic_error,
    poisson,
    sparse_categorical_crossentropy,
    squared_hinge,
)
from reglab.r2_score import R2Score  # noqa: F401 - re-exported

Metric = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _argmax(t: torch.Tensor) -> torch.Tensor:
    """``t.argmax(dim=-1)``, the first maximal index, read from ``max``'s indices (the same
    index by torch's definition; on a CPU ``max`` is ~3x faster over 10 classes)."""
    return t.max(dim=-1).indices


def categorical_accuracy(y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
    """1.0 where ``argmax(y_true) == argmax(y_pred)``."""
    return (_argmax(y_true) == _argmax(y_pred)).to(y_pred.dtype)


def sparse_categorical_accuracy(y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
    """1.0 where the integer target equals ``argmax(y_pred)`` (the target's argmax for the
    soft targets of MixUp, CutMix or LabelSmoothing, as Keras's accuracy on mixed labels)."""
    if y_true.dim() == y_pred.dim() and y_pred.shape[-1] > 1 and \
            y_true.shape[-1] == y_pred.shape[-1]:
        return categorical_accuracy(y_true, y_pred)
    if y_true.dim() == y_pred.dim() and y_true.shape[-1] == 1:
        y_true = y_true.squeeze(-1)
    if y_true.dtype != torch.long:
        y_true = y_true.long()
    return (y_true == _argmax(y_pred)).to(y_pred.dtype)


def binary_accuracy(y_true, y_pred, threshold: float = 0.5) -> torch.Tensor:
    """Mean over the last axis of ``y_true == (y_pred > threshold)``, the targets as they are
    (Keras 3's ``binary_accuracy``: a target other than 0 and 1, a regression's, never
    counts as a hit)."""
    if y_true.dim() == y_pred.dim() - 1:
        y_true = y_true.unsqueeze(-1)
    hits = (y_true.to(y_pred.dtype) == (y_pred > threshold).to(y_pred.dtype))
    return hits.to(y_pred.dtype).mean(dim=-1)


def _binary_accuracy_of_mixed_targets(y_true, y_pred, threshold: float = 0.5) -> torch.Tensor:
    """:func:`binary_accuracy` of targets that reglab's batch transforms mixed (MixUp, CutMix,
    LabelSmoothing on the batch): each target counts on its side of 0.5."""
    if y_true.is_floating_point():
        y_true = y_true > 0.5
    return binary_accuracy(y_true, y_pred, threshold)


#: the training step calls a metric's ``of_mixed_targets`` (where it has one) on the targets
#: of a batch its batch transforms made
binary_accuracy.of_mixed_targets = _binary_accuracy_of_mixed_targets


def _in_top_k(labels: torch.Tensor, y_pred: torch.Tensor, k: int) -> torch.Tensor:
    """1.0 where the label's score is at least the k-th largest of its row (ties count, as
    Keras's ``ops.in_top_k``; every class when k is the number of classes or more)."""
    k = min(int(k), y_pred.shape[-1])
    kth = y_pred.topk(k, dim=-1).values[..., -1:]
    picked = y_pred.gather(-1, labels.long().expand(y_pred.shape[:-1]).unsqueeze(-1))
    return (picked >= kth).squeeze(-1).to(y_pred.dtype)


def sparse_top_k_categorical_accuracy(y_true, y_pred, k: int = 5) -> torch.Tensor:
    """1.0 where the integer target is among the ``k`` highest scores (Keras's
    ``sparse_top_k_categorical_accuracy``, ``k=5`` by name)."""
    y_true, y_pred = as_tensors(y_true, y_pred)
    if y_true.dim() == y_pred.dim() and y_pred.shape[-1] > 1 and \
            y_true.shape[-1] == y_pred.shape[-1]:
        # soft targets (MixUp, CutMix, LabelSmoothing on the batch): their largest class, as
        # sparse_categorical_accuracy takes them
        return _in_top_k(_argmax(y_true), y_pred, k)
    if y_true.dim() == y_pred.dim() and y_true.shape[-1] == 1:
        y_true = y_true.squeeze(-1)
    return _in_top_k(y_true, y_pred, k)


def top_k_categorical_accuracy(y_true, y_pred, k: int = 5) -> torch.Tensor:
    """1.0 where the one-hot target's class is among the ``k`` highest scores (Keras's
    ``top_k_categorical_accuracy``)."""
    y_true, y_pred = as_tensors(y_true, y_pred)
    if y_true.dim() != y_pred.dim() or y_true.shape[-1] != y_pred.shape[-1]:
        raise DataError(
            f"top_k_categorical_accuracy: expected one-hot targets of the output's "
            f"{y_pred.shape[-1]} classes, shaped as the output {tuple(y_pred.shape)}. Got "
            f"targets of shape {tuple(y_true.shape)}; integer labels take "
            "sparse_top_k_categorical_accuracy.")
    return _in_top_k(_argmax(y_true), y_pred, k)


def accuracy(y_true, y_pred) -> torch.Tensor:
    """keras.metrics.Accuracy: exact equality, averaged over the last axis."""
    return (y_true.to(y_pred.dtype) == y_pred).to(y_pred.dtype).mean(dim=-1)


def _errors(y_true, y_pred) -> torch.Tensor:
    if y_true.dim() == y_pred.dim() - 1:  # (N,) targets of a one-unit output
        y_true = y_true.unsqueeze(-1)
    return y_pred - y_true.to(y_pred.dtype)


def _squared_errors(y_true, y_pred) -> torch.Tensor:
    """The engine's ``mse``: the mean of ``(y_true - y_pred)**2`` over each sample's values
    (everything after the member and batch axes)."""
    error = _errors(y_true, y_pred)
    return error.square().reshape(*error.shape[:2], -1).mean(dim=-1)


def _absolute_errors(y_true, y_pred) -> torch.Tensor:
    """The engine's ``mae``: the mean of ``|y_true - y_pred|`` over each sample's values."""
    error = _errors(y_true, y_pred)
    return error.abs().reshape(*error.shape[:2], -1).mean(dim=-1)


def mean_squared_error(y_true, y_pred) -> torch.Tensor:
    """``keras.metrics.mean_squared_error``: ``mean((y_true - y_pred)**2)`` over the last
    axis. As a metric of ``compile`` it is the mean over each sample's values."""
    return _errors(*as_tensors(y_true, y_pred)).square().mean(dim=-1)


def mean_absolute_error(y_true, y_pred) -> torch.Tensor:
    """``keras.metrics.mean_absolute_error``: ``mean(|y_true - y_pred|)`` over the last axis.
    As a metric of ``compile`` it is the mean over each sample's values."""
    return _errors(*as_tensors(y_true, y_pred)).abs().mean(dim=-1)


_BY_NAME: dict[str, Metric] = {
    "categorical_accuracy": categorical_accuracy,
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
    "binary_accuracy": binary_accuracy,
    "mean_squared_error": _squared_errors,
    "mse": _squared_errors,
    "mean_absolute_error": _absolute_errors,
    "mae": _absolute_errors,
    "sparse_top_k_categorical_accuracy": sparse_top_k_categorical_accuracy,
    "top_k_categorical_accuracy": top_k_categorical_accuracy,
}


def label_of(metric) -> Any:
    """The name a metric given to ``compile`` is logged under: a function's ``__name__``, a
    loss object's ``name`` (Keras logs ``losses.Huber()`` as ``huber_loss``), else the
    metric itself (a name as written)."""
    from reglab import losses

    if isinstance(metric, losses.Loss):
        return metric.name
    if callable(metric):
        return getattr(metric, "__name__", type(metric).__name__)
    return metric


def _is_loss_function(fn) -> bool:
    """Whether ``fn`` is one of reglab's loss functions (``reglab.losses.huber``), one of
    Keras's (``keras.losses.huber``), or an object of a built-in loss class (as Keras's
    ``losses.ALL_OBJECTS`` holds them)."""
    from reglab import losses

    if any(fn is function for function in losses.keras_functions()):
        return True
    if isinstance(fn, losses.Loss):
        return type(fn).__module__ == losses.__name__
    module = getattr(fn, "__module__", None) or ""
    return callable(fn) and not isinstance(fn, type) and module.startswith("keras.src.losses")


class FunctionMetric:
    """A user's function ``fn(y_true, y_pred)`` as a metric, as Keras's ``MeanMetricWrapper``
    wraps one in ``compile(metrics=[fn])``: called on one member's batch at a time
    (``(B, ...)`` targets as given and predictions, as Keras calls it), its values averaged
    over any axes after the batch's, then over the epoch — each sample counting once, a
    scalar result counting once for its batch (Keras's ``Mean``) —, unweighted (Keras's
    ``metrics``). ``fn`` may use torch, numpy or ``keras.ops`` on the torch backend. Logged
    under ``fn.__name__`` (``lambda`` for a lambda, as Keras)."""

    resolved = True
    weighted = False
    #: per member, the sum of the values and how many there were (Keras's Mean)
    totals_shape = (2,)

    def __init__(self, fn):
        self.fn = fn
        name = label_of(fn)
        self.__name__ = "lambda" if name == "<lambda>" else name
        #: Keras's MeanMetricWrapper minimizes a wrapped loss function or built-in loss
        #: object ('down'); others have no direction (the monitors then go by the name)
        self._direction = "down" if _is_loss_function(fn) else None

    def _one(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        """``(n, 2)``: ``[value, 1]`` for each sample (or once for a scalar)."""
        values = self.fn(y_true, y_pred)
        if not isinstance(values, torch.Tensor):
            values = torch.as_tensor(np.asarray(values))
        values = values.detach().to(y_pred.dtype)
        if values.dim() > 1:
            values = values.reshape(values.shape[0], -1).mean(dim=-1)
        values = values.reshape(-1)
        return torch.stack([values, torch.ones_like(values)], dim=-1)

    def __call__(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        """``(P, n, 2)``, one member at a time (``y_true`` shared or one row per member)."""
        rows = [self._one(y_true[p if y_true.shape[0] > 1 else 0], y_pred[p])
                for p in range(y_pred.shape[0])]
        widest = max(r.shape[0] for r in rows)
        if any(r.shape[0] != widest for r in rows):  # a scalar for some members only
            rows = [torch.cat([r, r.new_zeros(widest - r.shape[0], 2)]) for r in rows]
        return torch.stack(rows)

    @staticmethod
    def totals_result(totals: torch.Tensor) -> torch.Tensor:
        return totals[:, 0] / totals[:, 1]

    def __repr__(self) -> str:
        return f"FunctionMetric({self.__name__})"


#: this module's metric functions, which compile takes by their names
_OWN_FUNCTIONS = (categorical_accuracy, sparse_categorical_accuracy, binary_accuracy, accuracy,
                  mean_squared_error, mean_absolute_error, sparse_top_k_categorical_accuracy,
                  top_k_categorical_accuracy, pearson_correlation, concordance_correlation)

def _loss_metric(cls):
    """A loss's per-sample values as a metric by name (Keras's ``metrics=["mape"]``: the
    same function wrapped as a mean), each sample's the mean over its values."""
    def metric(y_true, y_pred):
        from reglab.losses import samplewise

        return samplewise(cls().per_sample(y_true, y_pred))
    metric.__name__ = cls.name
    return metric


def _loss_metrics() -> dict[str, Metric]:
    from reglab import losses

    found = {}
    for names, cls in ((("mean_absolute_percentage_error", "mape"),
                        losses.MeanAbsolutePercentageError),
                       (("mean_squared_logarithmic_error", "msle"),
                        losses.MeanSquaredLogarithmicError),
                       (("poisson",), losses.Poisson), (("hinge",), losses.Hinge),
                       (("squared_hinge",), losses.SquaredHinge),
                       (("categorical_hinge",), losses.CategoricalHinge),
                       (("kl_divergence",), losses.KLDivergence),
                       (("categorical_crossentropy",), losses.CategoricalCrossentropy),
                       (("sparse_categorical_crossentropy",),
                        losses.SparseCategoricalCrossentropy),
                       (("binary_crossentropy",), losses.BinaryCrossentropy)):
        metric = _loss_metric(cls)
        found.update({name: metric for name in names})
    return found


_BY_NAME.update(_loss_metrics())


def _cosine_similarity(y_true, y_pred):
    """Keras's ``cosine_similarity`` metric: the loss's value with its sign turned (1 where
    the two point the same way), each sample's."""
    from reglab.losses import CosineSimilarity, samplewise

    return samplewise(-CosineSimilarity().per_sample(y_true, y_pred))


_cosine_similarity.__name__ = "cosine_similarity"
_BY_NAME["cosine_similarity"] = _cosine_similarity
# Keras resolves these names to its correlation metrics
_BY_NAME["pearson_correlation"] = correlation_metrics._pearson_of_members
_BY_NAME["concordance_correlation"] = correlation_metrics._concordance_of_members

#: the confusion-matrix metrics by name, as compile takes them (``metrics=["auc"]``)
#: (and the counts by their class's name too: 'TruePositives', looked up in lower case)
_CONFUSION = {key: cls for cls in (Precision, Recall, AUC, TruePositives, FalsePositives,
                                   TrueNegatives, FalseNegatives)
              for key in (cls.default_name, cls.__name__.lower())}

#: Keras's other names of this module's metrics: ``keras.metrics.get`` takes a metric
#: class's name ("MeanSquaredError") and a few upper-case aliases ("MSE"); the class
#: computes what the function of that name does (a mean of its per-sample values)
_KERAS_NAMES = {
    "BinaryAccuracy": "binary_accuracy", "CategoricalAccuracy": "categorical_accuracy",
    "SparseCategoricalAccuracy": "sparse_categorical_accuracy",
    "TopKCategoricalAccuracy": "top_k_categorical_accuracy",
    "SparseTopKCategoricalAccuracy": "sparse_top_k_categorical_accuracy",
    "MeanSquaredError": "mse", "MSE": "mse", "MeanAbsoluteError": "mae", "MAE": "mae",
    "MeanAbsolutePercentageError": "mape", "MAPE": "mape",
    "MeanSquaredLogarithmicError": "msle", "MSLE": "msle",
    "BinaryCrossentropy": "binary_crossentropy", "BCE": "binary_crossentropy",
    "bce": "binary_crossentropy", "CategoricalCrossentropy": "categorical_crossentropy",
    "SparseCategoricalCrossentropy": "sparse_categorical_crossentropy",
    "KLDivergence": "kl_divergence", "Poisson": "poisson", "Hinge": "hinge",
    "SquaredHinge": "squared_hinge", "CategoricalHinge": "categorical_hinge",
    "CosineSimilarity": "cosine_similarity",
}


#: the metric classes Keras's ``get`` builds from their class name or its snake_case (the
#: ones whose arguments all have defaults), as compile takes them by name
_CLASSES_BY_NAME = {key: cls for cls, names in (
    (R2Score, ("r2_score",)), (PearsonCorrelation, ()), (ConcordanceCorrelation, ()),
    (LogCoshError, ("log_cosh_error",)), (BinaryIoU, ("binary_io_u",)),
    (F1Score, ("f1_score",)), (FBetaScore, ("fbeta_score",)))
    for key in (cls.__name__, *names)}


class Named:
    """A metric that compile logs under another name than its identifier's own: Keras logs
    a name as written (``"AUC"``, ``"MSE"``) and the second of two alike as ``mse_1``.
    Resolved as its identifier is; ``__name__`` is the name the logs carry."""

    def __init__(self, identifier, name: str):
        self.identifier, self.__name__ = identifier, name

    def resolved_for(self, y_true_shape, y_pred_shape, where):
        fn = resolve(self.identifier, y_true_shape, y_pred_shape, where)
        if getattr(fn, "resolved", False):  # an object of its own (AUC()): named here
            fn.__name__ = self.__name__
        return fn

    @property
    def _direction(self) -> str | None:
        """'up' or 'down' as Keras's object of that identifier has it (``AUC``: up;
        ``MSE``: down), for the monitoring callbacks' mode 'auto'; None where unknown."""
        from reglab import monitors

        try:
            fn = resolve(self.identifier, (1,), (1, 2), "compile: 'metrics'")
        except ConfigError:  # not a metric's name (an output's prefixed log)
            return None
        if getattr(fn, "_direction", None):
            return fn._direction
        canonical = str(_KERAS_NAMES.get(self.identifier, self.identifier)).lower()
        try:
            return "up" if monitors.direction(canonical) == "max" else "down"
        except ConfigError:
            return None

    def saved_name(self) -> str | None:
        """The name a saved model's compile config holds: the identifier as written."""
        return self.identifier if isinstance(self.identifier, str) else None

    def __repr__(self) -> str:
        return f"Named({self.identifier!r}, {self.__name__!r})"


def _equal_elements(y_true, y_pred) -> torch.Tensor:
    """The engine's exact accuracy (Keras's ``Accuracy``): per sample ``(P, B)``, the share
    of its values equal to the target's (a one-unit output's ``(B,)`` targets taken)."""
    if y_true.dim() == y_pred.dim() - 1 and y_pred.shape[-1] == 1:
        y_true = y_true.unsqueeze(-1)
    equal = (y_true.to(y_pred.dtype) == y_pred).to(y_pred.dtype)
    return equal.reshape(*equal.shape[:2], -1).mean(dim=-1)


def engine_function(name: str) -> Metric:
    """The per-sample function of a metric class (member axis first): the one ``compile``
    takes by ``name``, or Keras's ``Accuracy``'s exact equality (``'exact_accuracy'``, which
    no name resolves to)."""
    return _equal_elements if name == "exact_accuracy" else _BY_NAME[name]


def resolve(name: str, y_true_shape: tuple, y_pred_shape: tuple, where="metrics") -> Metric:
    """Resolves a metric name; ``'accuracy'``/``'acc'`` by shapes, as Keras 3 does.

    ``y_pred_shape[-1] == 1`` means binary; a target without the class axis
    (or with a trailing 1) means sparse; otherwise categorical.
    """
    if hasattr(name, "resolved_for"):  # a weighted metric: its own metric resolved
        return name.resolved_for(y_true_shape, y_pred_shape, where)
    if getattr(name, "resolved", False):  # already a metric for these shapes
        if hasattr(name, "check_compiled"):  # one that takes only some (F1Score)
            name.check_compiled(y_true_shape, y_pred_shape, where)
        return name
    if callable(name):  # one of this module's functions, by its name; else a user's
        if not any(name is fn for fn in _OWN_FUNCTIONS):
            return FunctionMetric(name)
        name = name.__name__
    if isinstance(name, str) and name.lower() in ("accuracy", "acc"):
        if y_pred_shape[-1] == 1:
            return binary_accuracy
        if len(y_true_shape) != len(y_pred_shape) or y_true_shape[-1] == 1:
            return sparse_categorical_accuracy
        return categorical_accuracy
    fn = _BY_NAME.get(name)
    if fn is None and isinstance(name, str):
        fn = _BY_NAME.get(_KERAS_NAMES.get(name, ""))
    if fn is None and isinstance(name, str) and name.lower() in _CONFUSION:
        return _CONFUSION[name.lower()]()  # compile(metrics=["auc"]): Keras's defaults
    if fn is None and name in ("RootMeanSquaredError", "root_mean_squared_error"):
        return RootMeanSquaredError()
    if fn is None and isinstance(name, str) and name in _CLASSES_BY_NAME:
        metric = _CLASSES_BY_NAME[name]()  # Keras's get(): the class with its defaults
        if hasattr(metric, "check_compiled"):  # as the object's (F1Score: average=None)
            metric.check_compiled(y_true_shape, y_pred_shape, f"{where} ({name!r})")
        return metric
    if fn is None:
        raise unknown_name(where, "metric", name,
                           list(_BY_NAME) + ["accuracy", *sorted(_CONFUSION),
                                             "root_mean_squared_error", *_KERAS_NAMES,
                                             *_CLASSES_BY_NAME])
    return fn


from reglab.metric_classes import (  # noqa: E402 - Keras's classes, after the functions they use
    Accuracy,
    BinaryAccuracy,
    BinaryCrossentropy,
    CategoricalAccuracy,
    CategoricalCrossentropy,
    CategoricalHinge,
    CosineSimilarity,
    Hinge,
    KLDivergence,
    Mean,
    MeanAbsoluteError,
    MeanAbsolutePercentageError,
    MeanMetricWrapper,
    MeanSquaredError,
    MeanSquaredLogarithmicError,
    Poisson,
    RootMeanSquaredError,
    SparseCategoricalAccuracy,
    SparseCategoricalCrossentropy,
    SparseTopKCategoricalAccuracy,
    SquaredHinge,
    Sum,
    TopKCategoricalAccuracy,
    WeightedMetric,  # noqa: E402, F401 - compile's weighted_metrics
)


def _metric_classes() -> dict[str, type]:
    """Keras's names of the metric classes: each class's name, its snake_case and the short
    aliases (``mse``, ``bce``...), as ``keras.metrics.get`` reads them."""
    classes = {name: globals()[name] for name in __all__
               if name[:1].isupper() and isinstance(globals()[name], type)}
    from reglab.utils.naming import snake_case  # Keras's to_snake_case (MeanIoU: mean_io_u)

    found = {**classes, **{snake_case(name): cls for name, cls in classes.items()}}
    found.update(mse=MeanSquaredError, mae=MeanAbsoluteError, mape=MeanAbsolutePercentageError,
                 msle=MeanSquaredLogarithmicError, bce=BinaryCrossentropy)
    return found


def serialize(metric) -> dict[str, Any]:
    """``{'module', 'class_name', 'config', 'registered_name'}`` as Keras writes a metric."""
    if type(metric).__name__ not in __all__ or not hasattr(metric, "get_config"):
        raise ConfigError(f"metrics.serialize: expected one of reglab's metric objects. Got "
                          f"{metric!r}.")
    return {"module": "keras.metrics", "class_name": type(metric).__name__,
            "config": metric.get_config(), "registered_name": None}


def deserialize(config: dict[str, Any] | str):
    """The inverse of :func:`serialize`; a name as :func:`get` takes it."""
    if isinstance(config, str):
        return get(config)
    classes = _metric_classes()
    name = config.get("class_name") if isinstance(config, dict) else None
    if not isinstance(name, str) or not isinstance(config.get("config", {}), dict):
        raise ConfigError("metrics.deserialize: expected a dict with a 'class_name' and a "
                          f"'config' dict. Got {config!r}.")
    if classes.get(name) is None or classes[name].__name__ != name:
        raise unknown_name("metrics.deserialize", "metric class", name,
                           [n for n, cls in classes.items() if cls.__name__ == n])
    return classes[name].from_config(config.get("config") or {})


def get(identifier: Any):
    """Keras's ``metrics.get``: None for None; a metric class's name, its snake_case or a
    short alias (``"accuracy"``, ``"auc"``, ``"mse"``) its object with its defaults (Keras's
    ``"accuracy"`` is the exact-equality ``Accuracy``; ``compile`` reads that name by the
    targets' shapes instead); a config dict its object; a callable as it is, a class
    instantiated."""
    if identifier is None:
        return None
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        classes = _metric_classes()
        if identifier not in classes:
            raise unknown_name("metrics.get", "metric", identifier, classes)
        return classes[identifier]()
    if isinstance(identifier, type):
        return identifier()
    if callable(identifier):
        return identifier
    raise ConfigError(f"metrics.get: expected a metric's name, config, function or object. "
                      f"Got {identifier!r}.")


__all__ = [
    "AUC", "Accuracy", "BinaryAccuracy", "BinaryCrossentropy", "BinaryIoU",
    "CategoricalAccuracy", "CategoricalCrossentropy", "CategoricalHinge",
    "ConcordanceCorrelation", "CosineSimilarity", "F1Score", "FBetaScore", "FalseNegatives",
    "FalsePositives", "Hinge", "IoU", "KLDivergence", "LogCoshError", "Mean",
    "MeanAbsoluteError", "MeanAbsolutePercentageError", "MeanIoU", "MeanMetricWrapper",
    "MeanSquaredError", "MeanSquaredLogarithmicError", "OneHotIoU", "OneHotMeanIoU",
    "PearsonCorrelation", "Poisson", "Precision", "PrecisionAtRecall", "R2Score", "Recall",
    "RecallAtPrecision", "RootMeanSquaredError", "SensitivityAtSpecificity",
    "SparseCategoricalAccuracy", "SparseCategoricalCrossentropy",
    "SparseTopKCategoricalAccuracy", "SpecificityAtSensitivity", "SquaredHinge", "Sum",
    "TopKCategoricalAccuracy",
    "TrueNegatives", "TruePositives", "accuracy", "binary_accuracy", "categorical_accuracy",
    "concordance_correlation", "mean_absolute_error", "mean_squared_error",
    "pearson_correlation", "sparse_categorical_accuracy", "sparse_top_k_categorical_accuracy",
    "top_k_categorical_accuracy",
]
