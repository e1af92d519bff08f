"""A functional model with several outputs, trained by a population that has one.

The population's last layer packs the outputs side by side (each sample's outputs
flattened, :class:`reglab.layers.core.PackedOutputs`), and the targets come packed the same
way (one column for integer labels, the output's size otherwise). :class:`PackedLoss` is
Keras's total, ``sum_k loss_weight_k * loss_k(y_k, output_k)``; :class:`OutputMetric` is a
metric, or one output's own loss, on one output's part, logged under Keras's names
(``<output>_loss``, ``<output>_<metric>``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from reglab import losses as losses_module
from reglab import metrics as metrics_module
from reglab.errors import ConfigError, DataError


@dataclass(frozen=True)
class OutputPart:
    """Where one output sits in the packed outputs and in the packed targets."""

    name: str
    shape: tuple[int, ...]
    offset: int  # in the packed outputs
    target_offset: int  # in the packed targets
    sparse: bool  # integer labels: one target column

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def loss_name(self) -> str:
        """The log of this output's own loss, as Keras names it (``<output>_loss``)."""
        return f"{self.name}_loss"

    @property
    def target_size(self) -> int:
        return 1 if self.sparse else self.size

    def prediction(self, packed: torch.Tensor) -> torch.Tensor:
        part = packed[..., self.offset:self.offset + self.size]
        return part.reshape(*packed.shape[:-1], *self.shape)

    def target(self, packed: torch.Tensor) -> torch.Tensor:
        part = packed[..., self.target_offset:self.target_offset + self.target_size]
        if self.sparse:
            return part[..., 0].round().long()
        return part.reshape(*packed.shape[:-1], *self.shape)


def parts_for(names: list[str], shapes: list[tuple[int, ...]], losses: list) -> list[OutputPart]:
    parts, offset, target_offset = [], 0, 0
    for name, shape, loss in zip(names, shapes, losses):
        part = OutputPart(name, tuple(shape), offset, target_offset,
                          loss.target_kind == "sparse")
        parts.append(part)
        offset, target_offset = offset + part.size, target_offset + part.target_size
    return parts


class PackedLoss(losses_module.Loss):
    """Keras's loss of a model with several outputs: the weighted sum of each output's."""

    name = "loss"
    target_kind = "packed"  # the engine takes the targets as they come (checked per output)

    def __init__(self, parts: list[OutputPart], losses: list, weights: list[float]):
        self.parts, self.losses, self.weights = parts, losses, weights

    def per_sample(self, y_true, y_pred):
        total = None
        for part, loss, weight in zip(self.parts, self.losses, self.weights):
            value = loss.per_sample(part.target(y_true), part.prediction(y_pred))
            value = value if weight == 1.0 else value * weight
            total = value if total is None else total + value
        return total


class OutputMetric:
    """A metric function (or an output's own loss) on one output's part of the packed
    outputs and targets, named as Keras logs it."""

    resolved = True  # reglab.metrics.resolve takes it as it is

    def __init__(self, name: str, fn, part: OutputPart, weighted: bool = False):
        self.__name__, self.fn, self.part = name, fn, part
        #: weighted by the sample weights, as Keras weighs an output's own loss (its
        #: compiled metrics are not)
        self.weighted = weighted
        if hasattr(fn, "totals_result"):  # a metric of totals (a user's function, AUC...)
            self.totals_shape, self.totals_result = fn.totals_shape, fn.totals_result

    def __call__(self, y_true, y_pred):
        return self.fn(self.part.target(y_true), self.part.prediction(y_pred))

    def __repr__(self) -> str:
        return f"<OutputMetric {self.__name__}>"


def _per_output(where: str, value, names: list[str], what: str, partial: bool = False) -> list:
    """``value`` as one entry per output: a dict by output name, a list in the outputs'
    order, or (``single``) one value for every output. A ``partial`` dict may leave outputs
    out (None for them), as Keras's metrics dict does."""
    if isinstance(value, dict):
        unknown = sorted(set(map(str, value)) - set(names))
        missing = [] if partial else [name for name in names if name not in value]
        if unknown and partial:
            raise ConfigError(f"{where}: '{what}' as a dict is keyed by the outputs' names "
                              f"{names}. Got {unknown[0]!r} among its keys "
                              f"{sorted(map(str, value))}.")
        if unknown or missing:
            raise ConfigError(f"{where}: '{what}' as a dict needs one entry per output, keyed by "
                              f"the outputs' names {names}. Got keys {sorted(map(str, value))}.")
        return [value.get(name) for name in names]
    if isinstance(value, (list, tuple)):
        if len(value) != len(names):
            raise ConfigError(f"{where}: the model has {len(names)} outputs {names}; '{what}' as "
                              f"a list needs one entry per output. Got {len(value)}.")
        return list(value)
    return [value] * len(names)


def compile_outputs(names: list[str], shapes: list[tuple[int, ...]], loss, loss_weights,
                    metrics) -> tuple[PackedLoss, list[OutputMetric], list[OutputPart]]:
    """Keras's compile arguments for several outputs: ``loss`` one for all, a list or a dict
    by output name; ``loss_weights`` a list or dict (1.0 each by default); ``metrics`` a list
    with one entry per output (a name, a list of names, or None) or a dict by output name."""
    where = "compile"
    losses = [losses_module.resolve(value, where=f"{where}: 'loss' ({name})")
              for value, name in zip(_per_output(where, loss, names, "loss"), names)]
    for name, output_loss in zip(names, losses):
        if output_loss.reduction not in ("sum_over_batch_size", "mean"):
            raise ConfigError(f"{where}: 'loss' ({name}): a model with several outputs takes "
                              "each output's loss with reduction 'sum_over_batch_size' or "
                              f"'mean' (others are not supported yet). Got reduction="
                              f"{output_loss.reduction!r} in {output_loss!r}.")
    weights = [1.0] * len(names) if loss_weights is None else \
        _per_output(where, loss_weights, names, "loss_weights")
    for name, weight in zip(names, weights):
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) \
                or not math.isfinite(weight) or weight < 0:
            raise ConfigError(f"{where}: 'loss_weights' ({name}) must be a number >= 0. "
                              f"Got {weight!r}.")
    weights = [float(w) for w in weights]
    parts = parts_for(names, shapes, losses)
    tracked = [OutputMetric(part.loss_name, loss.per_sample, part, weighted=True)
               for part, loss in zip(parts, losses)]
    if metrics is not None and not isinstance(metrics, (list, tuple, dict)):
        raise ConfigError(f"{where}: 'metrics' must be a list (one entry per output) or a dict "
                          f"by output name. Got {metrics!r}.")
    if metrics:
        if isinstance(metrics, (list, tuple)) and len(metrics) != len(names):
            raise ConfigError(f"{where}: the model has {len(names)} outputs {names}; 'metrics' "
                              f"as a list needs one entry per output (a name, a list of names, "
                              f"or None), as in Keras. Got {list(metrics)!r}.")
        entries_by_part = list(zip(parts, _per_output(where, metrics, names, "metrics",
                                                      partial=True)))
        # Keras keys the metrics by output name and flattens them in the order of the names
        # (the outputs' own losses come first, in the outputs' order)
        entries_by_part.sort(key=lambda pair: pair[0].name)
        for part, entry in entries_by_part:
            entries = [] if entry is None else [entry] if isinstance(entry, str) else entry
            for metric in entries:
                label = metrics_module.label_of(metric)
                if not isinstance(label, str):
                    raise ConfigError(f"{where}: 'metrics' ({part.name}) must be metric names "
                                      f"such as 'accuracy'. Got {metric!r}.")
                true_shape = (1,) if part.sparse else (1, *part.shape)
                fn = metrics_module.resolve(metric if callable(metric) else label, true_shape,
                                            (1, *part.shape),
                                            where=f"{where}: 'metrics' ({part.name})")
                # Keras logs a name as written ('AUC', 'acc'), an object by its own name
                if not isinstance(metric, str) and getattr(fn, "resolved", False):
                    label = getattr(fn, "__name__", label)
                tracked.append(OutputMetric(f"{part.name}_{label}", fn, part))
    return PackedLoss(parts, losses, weights), tracked, parts


def parts_of(where: str, value, names: list[str], argument: str, of: str) -> list:
    """``value`` as one array per model input or output (``of``): a list in their order,
    or a dict by their names, as Keras takes them."""
    if isinstance(value, dict):
        if sorted(map(str, value)) != sorted(names):
            raise DataError(f"{where}: '{argument}' as a dict needs one array per model {of}, "
                            f"keyed by the {of}s' names {names}. Got keys "
                            f"{sorted(map(str, value))}.")
        return [value[name] for name in names]
    if isinstance(value, (list, tuple)) and len(value) == len(names):
        return list(value)
    got = f"a list of {len(value)}" if isinstance(value, (list, tuple)) else \
        type(value).__name__
    raise DataError(f"{where}: the model has {len(names)} {of}s {names}; '{argument}' must be "
                    f"a list of {len(names)} arrays (or a dict by {of} name). Got {got}.")


def side_by_side(where: str, arrays: list[np.ndarray], names: list[str], what: str,
                 float64: bool) -> np.ndarray:
    """``(N, ...)`` arrays flattened per sample and laid side by side, float32 (float64
    when ``float64``), once they are checked to hold the same number of samples."""
    if len({len(a) for a in arrays}) > 1:
        raise DataError(f"{where}: the {what} must hold the same number of samples. Got "
                        f"{[len(a) for a in arrays]} for {names}.")
    dtype = np.float64 if float64 else np.float32
    return np.concatenate([a.reshape(len(a), -1).astype(dtype, copy=False) for a in arrays],
                          axis=1)


def pack_targets(where: str, y, parts: list[OutputPart], losses: list) -> np.ndarray:
    """The targets of a model's outputs (a list in the outputs' order, or a dict by name),
    checked per output as the engine checks one, laid side by side in float32 (float64 if a
    target is)."""
    from reglab.engine import data as data_module

    names = [part.name for part in parts]
    values = parts_of(where, y, names, "y", "output")
    columns = []
    for part, loss, value in zip(parts, losses, values):
        here = f"{where}: output {part.name!r}"
        array = data_module.as_numpy(here, "y", value)
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        if not tensor.is_floating_point() and tensor.dtype != torch.bool:
            tensor = tensor.long()
        else:
            tensor = tensor.double()
        data_module._check_labels(here, loss, tensor, part.shape)
        tensor = data_module._canonical_targets(here, loss, tensor, part.shape)
        columns.append(tensor.double().numpy())
    return side_by_side(where, columns, names, "targets",
                        any(np.asarray(v).dtype == np.float64 for v in values))


def split_outputs(packed: np.ndarray, parts: list[OutputPart]) -> list[np.ndarray]:
    """The packed predictions ``(N, total)`` as one array per output."""
    return [packed[:, part.offset:part.offset + part.size].reshape(len(packed), *part.shape)
            for part in parts]


def output_config(loss: PackedLoss, metrics: list[OutputMetric],
                  saved: Callable[[str, Any], Any] = lambda name, fn: name) -> dict[str, Any]:
    """What compile was given, for saving: per output its loss, weight and metrics, each
    metric as ``saved(its name without the output's, its function or object)`` gives it."""
    names = [part.name for part in loss.parts]
    per_output = {name: [saved(m.__name__[len(name) + 1:], m.fn) for m in metrics
                         if m.part.name == name and m.__name__ != m.part.loss_name]
                  for name in names}
    return {"losses": loss.losses, "loss_weights": list(loss.weights),
            "metrics": [per_output[name] for name in names]}
