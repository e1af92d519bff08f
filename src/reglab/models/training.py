"""``fit``/``evaluate``/``predict`` of ``Sequential``: Keras's protocol around the engine.

The engine trains one member; this module translates its hooks into Keras's
callback calls (``on_epoch_end(epoch, logs)`` with Keras's log names,
``model.stop_training``, learning-rate changes made by callbacks) and keeps
``History``. Per-batch logs are computed only when a callback reads them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from reglab.callbacks.callback import CallbackList
from reglab.callbacks.history import History
from reglab.callbacks.progbar_logger import ProgbarLogger, format_logs
from reglab.errors import ConfigError
from reglab.models import fit_data

_SPLIT_KEYS = ("data_loss", "penalty")


def _keras_logs(logs: dict) -> tuple[dict, dict]:
    """Splits engine logs into Keras's keys and reglab's penalty split."""
    keras, split = {}, {}
    for key, value in logs.items():
        bare = key.removeprefix("val_")
        (split if bare in _SPLIT_KEYS else keras)[key] = value
    return keras, split


class _LazyLogs(Mapping):
    """Batch logs computed on first access (each computation waits for the device)."""

    def __init__(self, population):
        self._population, self._data = population, None

    def _logs(self):
        if self._data is None:
            self._data = _keras_logs(self._population.running_logs().get(0, {}))[0]
        return self._data

    def __getitem__(self, key):
        return self._logs()[key]

    def __iter__(self):
        return iter(self._logs())

    def __len__(self):
        return len(self._logs())


class _KerasBridge:
    """Engine observer that drives Keras callbacks for member 0."""

    def __init__(self, model, callbacks: CallbackList):
        self.model, self.callbacks = model, callbacks
        self.batch_hooks = callbacks.wants("on_train_batch_begin") or callbacks.wants(
            "on_train_batch_end")

    def on_train_begin(self, population):
        self.population = population

    def on_epoch_begin(self, epoch):
        state, lr = self.population.state, self.model.optimizer.learning_rate
        if state.learning_rates[0] != lr:  # a callback changed model.optimizer.learning_rate
            state.set_learning_rate(0, lr)
        self.callbacks.on_epoch_begin(epoch, {})

    def on_train_batch_begin(self, step):
        if self.batch_hooks:
            self.callbacks.on_train_batch_begin(step, {})

    def on_train_batch_end(self, step):
        if self.batch_hooks:
            self.callbacks.on_train_batch_end(step, _LazyLogs(self.population))

    def on_epoch_end(self, epoch, logs_by_member):
        logs, split = _keras_logs(logs_by_member.get(0, {}))
        self.model._last_penalty_logs = split
        self.callbacks.on_epoch_end(epoch, logs)
        if self.model.stop_training:
            self.population.stop_requested.add(0)


def _verbose(verbose) -> int:
    if verbose == "auto":
        return 1
    if verbose not in (0, 1, 2):
        raise ConfigError(f"fit: 'verbose' must be 'auto', 0, 1 or 2. Got {verbose!r}.")
    return verbose


def _ensure_ready(model, x_shape):
    if not model._compiled or model.loss is None:
        raise ConfigError("Sequential: call model.compile(optimizer=..., loss=...) before "
                          "training or evaluating the model.")
    if model._input_shape is None and x_shape is not None:
        model._input_shape = tuple(x_shape[1:])
    return model._build()


def fit(model, x, y, batch_size, epochs, verbose, callbacks, validation_split, validation_data,
        shuffle, class_weight, sample_weight, initial_epoch, steps_per_epoch,
        validation_batch_size):
    verbose = _verbose(verbose)
    data = fit_data.resolve_inputs(x, y, batch_size, shuffle, sample_weight, steps_per_epoch)
    if data.generator is not None and validation_split:
        raise ConfigError("fit: 'validation_split' needs arrays, not a generator. Pass "
                          "validation_data instead.")
    if validation_split and validation_data is None:
        (data.x, data.y, data.sample_weight), validation_data = \
            fit_data.validation_split_arrays(data.x, data.y, data.sample_weight,
                                             validation_split)
    if class_weight is not None and data.y is not None:
        data.sample_weight = fit_data.class_weights_to_sample_weights(data.y, class_weight,
                                                                      data.sample_weight)
    population = _ensure_ready(model, None if data.x is None else np.shape(data.x))
    model.stop_training = False
    history = History()
    extra = [ProgbarLogger(verbose)] if verbose else []
    steps = (data.steps_per_epoch if data.generator is not None
             else math.ceil(len(data.x) / data.batch_size))
    callback_list = CallbackList(extra + list(callbacks or []) + [history], model,
                                 {"verbose": verbose, "epochs": epochs, "steps": steps})
    bridge = _KerasBridge(model, callback_list)
    callback_list.on_train_begin({})
    options = dict(validation_data=validation_data, observers=[bridge],
                   eval_batch_size=validation_batch_size)
    if data.generator is None:
        population.fit(data.x, data.y, batch_size=data.batch_size, epochs=epochs,
                       shuffle=data.shuffle, sample_weight=data.sample_weight,
                       initial_epoch=initial_epoch, augment=data.augment, **options)
    else:
        for epoch in range(initial_epoch, epochs):
            xe, ye, we, size = fit_data.next_epoch_from_generator(data.generator,
                                                                  data.steps_per_epoch)
            if class_weight is not None:
                we = fit_data.class_weights_to_sample_weights(ye, class_weight, we)
            _ensure_ready(model, xe.shape)
            population.fit(xe, ye, batch_size=size, epochs=epoch + 1, shuffle=False,
                           sample_weight=we, initial_epoch=epoch, **options)
            if model.stop_training:
                break
    callback_list.on_train_end({})
    model.history = history
    return history


def evaluate(model, x, y, batch_size, verbose, sample_weight, return_dict):
    verbose = _verbose(verbose)
    population = _ensure_ready(model, np.shape(x))
    logs = population.evaluate(x, y, batch_size=batch_size or 32,
                               sample_weight=sample_weight)[0]
    keras_logs, _ = _keras_logs(logs)
    if verbose:
        steps = math.ceil(len(x) / (batch_size or 32))
        print(f"{steps}/{steps} - {format_logs(keras_logs)}")
    if return_dict:
        return keras_logs
    if not model.metrics_names:
        return keras_logs["loss"]
    return [keras_logs["loss"]] + [keras_logs[name] for name in model.metrics_names]


def predict(model, x, batch_size):
    if model._input_shape is None:
        model._input_shape = tuple(np.shape(x)[1:])
    population = model._build()
    return population.predict(x, batch_size=batch_size or 32)[0]
