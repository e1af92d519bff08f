"""Monitored logs: which way one improves (Keras 3's ``mode='auto'``) and what counts as an
improvement, for ``EarlyStopping`` (the engine's rule), ``ModelCheckpoint``,
``ReduceLROnPlateau`` and the study files' check of an ``early_stopping.monitor`` (which must
not import torch, so the rule lives here rather than in the engine)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from reglab.errors import ConfigError

#: logs that improve upwards under 'auto' (besides any name ending in 'accuracy')
MAXIMIZED = ("acc", "accuracy", "auc", "precision", "recall", "f1", "cosine_similarity",
             "pearson_correlation", "concordance_correlation", "f1_score", "fbeta_score",
             "r2_score", "io_u", "mean_io_u", "binary_io_u", "one_hot_io_u",
             "one_hot_mean_io_u", "precision_at_recall", "recall_at_precision",
             "sensitivity_at_specificity", "specificity_at_sensitivity")
#: the metrics by name that compile takes and Keras's metric objects minimize (their
#: ``_direction`` is 'down': the errors and the losses taken as metrics), besides any name
#: ending in 'loss' or 'crossentropy'
MINIMIZED = ("mse", "mae", "mape", "msle", "mean_squared_error", "mean_absolute_error",
             "mean_absolute_percentage_error", "mean_squared_logarithmic_error",
             "root_mean_squared_error", "logcosh", "poisson", "hinge", "squared_hinge",
             "categorical_hinge", "kl_divergence", "kld")


def direction(monitor: str, mode: str = "auto", maximized_metrics: tuple[str, ...] = (),
              where: str = "EarlyStopping", compiled: Mapping[str, str] | None = None) -> str:
    """'min' or 'max': ``mode`` itself, or for 'auto' as Keras 3 resolves it (losses are
    minimized, and so are errors; accuracies maximized); a ConfigError naming ``where`` when 'auto' cannot
    tell. ``compiled``: the model's metric objects' directions by logged name ('up' or
    'down', Keras's ``_direction``), which decide before the names (``AUC(name="area")``)."""
    if mode != "auto":
        return mode
    name = monitor.removeprefix("val_")
    if name != "loss" and compiled and name in compiled:
        return "max" if compiled[name] == "up" else "min"
    if name == "loss" or name.endswith(("loss", "crossentropy")) or name in MINIMIZED:
        return "min"
    if name in maximized_metrics or name in MAXIMIZED or name.endswith("accuracy"):
        return "max"
    raise ConfigError(
        f"{where}: cannot tell whether monitor={monitor!r} should be maximized or "
        "minimized. Pass mode='max' to stop on the highest value, or mode='min' for the lowest.")


def check_monitored(where: str, monitor: str, mode: str, logs: dict) -> None:
    """Keras 3's check at a callback's first epoch end under ``mode='auto'``: the monitor
    must be the loss or a logged metric (with or without ``val_``), whose direction Keras
    then takes from the metric; else a ConfigError (a ValueError, as Keras raises) rather
    than a run that monitors nothing (``monitor='val_acc'`` beside a metric logged as
    'accuracy')."""
    if mode != "auto":
        return
    name = monitor.removeprefix("val_")
    logged = sorted({key.removeprefix("val_") for key in logs})
    if name == "loss" or name in logged:
        return
    raise ConfigError(
        f"{where}: cannot tell whether monitor={monitor!r} should be maximized or minimized: "
        f"it is neither the loss nor a compiled metric (logged: {', '.join(logged)}). Monitor "
        "one of those, or pass mode='max' to use the highest value, mode='min' the lowest.")


def is_improvement(current: float, reference: float | None, min_delta: float, mode: str) -> bool:
    """Keras's ``_is_improvement``: better than ``reference`` by more than ``min_delta``.
    As in Keras, the shifted value is formed in Python's float and the comparison made in
    float32 (``keras.ops.less`` / ``greater`` take two Python floats as float32 tensors):
    0.20 - 0.01 is not above 0.19 there, nor is 2.0 - 1e-9 below 2.0."""
    if reference is None:
        return True
    shifted = current + min_delta if mode == "min" else current - min_delta
    with np.errstate(over="ignore"):  # beyond float32's range: +-inf, as torch rounds it
        shifted, reference = np.float32(shifted), np.float32(reference)
    return bool(shifted < reference if mode == "min" else shifted > reference)
