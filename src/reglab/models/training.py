"""``fit``/``evaluate``/``predict`` of ``Sequential``: Keras's protocol around the engine.

The engine trains one member; this module translates its hooks into Keras's
callback calls (``on_epoch_end(epoch, logs)`` with Keras's log names,
``model.stop_training``, learning-rate changes made by callbacks) and keeps
``History``. Per-batch logs are computed only when a callback reads them.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping

import numpy as np

from reglab import losses as losses_module
from reglab.callbacks.backup_and_restore import BackupAndRestore
from reglab.callbacks.callback import CallbackList, overrides
from reglab.callbacks.history import History
from reglab.callbacks.progbar_logger import ProgbarLogger, print_progress
from reglab.engine.data import Data, check_count
from reglab.engine.data import prepare as prepare_data
from reglab.engine.population import check_validation_freq, validates
from reglab.errors import ConfigError
from reglab.models import fit_data

_SPLIT_KEYS = ("data_loss", "penalty")


def _keras_logs(logs: dict) -> tuple[dict, dict]:
    """Splits engine logs into Keras's keys and reglab's penalty split; Keras's in its
    order (its ``pythonify_logs`` sorts them all by name, validation logs among them)."""
    keras, split = {}, {}
    for key, value in logs.items():
        bare = key.removeprefix("val_")
        (split if bare in _SPLIT_KEYS else keras)[key] = value
    return {key: keras[key] for key in sorted(keras)}, split


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
        self.batch_begin = callbacks.wants("on_train_batch_begin")
        self.batch_end = callbacks.wants("on_train_batch_end")
        # Users' callbacks get real dicts (one wait for the device per batch, as in Keras);
        # the progress bar alone reads lazily, at most every 0.1 s.
        self.eager_logs = any(overrides(c, "on_train_batch_end") and
                              not isinstance(c, ProgbarLogger) for c in callbacks.callbacks)

    resumed = False

    def on_train_begin(self, population):
        self.population = population
        if self.resumed and self.model.optimizer.schedule is None:
            # a backup taken (Population._resume): what callbacks see of the learning rate is
            # what the backed-up run had reached (a schedule's follows the restored steps)
            self.model.optimizer.learning_rate = population.hyperparameter(0, "learning_rate")

    def _sync_learning_rate(self):
        if self.model.optimizer.schedule is not None:  # the rate follows the schedule
            return
        population, lr = self.population, self.model.optimizer.learning_rate
        if population.hyperparameter(0, "learning_rate") != lr:  # a callback changed it
            population.set_hyperparameter(0, "learning_rate", lr)

    def on_epoch_begin(self, epoch):
        self.callbacks.on_epoch_begin(epoch, {})
        self._sync_learning_rate()

    def on_train_batch_begin(self, step):
        if self.batch_begin:
            self.callbacks.on_train_batch_begin(step, {})
            self._sync_learning_rate()

    def on_train_batch_end(self, step):
        if self.batch_end:
            logs = (_keras_logs(self.population.running_logs().get(0, {}))[0]
                    if self.eager_logs else _LazyLogs(self.population))
            self.callbacks.on_train_batch_end(step, logs)
            self._sync_learning_rate()  # a rate set there trains the next batch, as Keras
        if self.model.stop_training:  # Keras: the epoch ends after this batch
            self.population.end_epoch_requested = True

    def on_epoch_end(self, epoch, logs_by_member):
        logs, split = _keras_logs(logs_by_member.get(0, {}))
        self.model._last_penalty_logs = split
        self.last_logs = logs
        self.callbacks.on_epoch_end(epoch, logs)
        # backed up here, as Keras backs up at on_epoch_end: before a stopped member is parked
        # (parking at a stop puts its EMA or SWA average in its weights, Keras's end of fit)
        for callback in self.callbacks.callbacks:
            if isinstance(callback, BackupAndRestore):
                callback.backup(self.population)
        if self.model.stop_training:
            self.population.stop_requested.add(0)

    def on_diverged(self, epoch: int, step: int, logs: dict | None, validated: bool) -> None:
        """The bad batch and its epoch end for the callbacks as Keras ends them: the batch's
        running logs count it (Keras's running mean: an infinite loss makes the epoch's
        infinite, a NaN one NaN), which a ``TerminateOnNaN`` acts on, and the epoch's logs
        are those. Keras then validates the weights after the bad batch; reglab has stopped
        with the weights before it, so the ``val_`` values are NaN. History keeps the epoch."""
        keras = _keras_logs(logs)[0] if logs else {}
        if keras and self.batch_end:
            self.callbacks.on_train_batch_end(step, dict(keras))
        if not keras:
            keras = dict.fromkeys(list(getattr(self, "last_logs", None) or ())
                                  or ["loss", *self.model.logged_metric_names], float("nan"))
        keys = sorted({k for k in keras if not k.startswith("val_")}
                      | ({f"val_{k}" for k in keras if not k.startswith("val_")}
                         if validated else set()))
        self.last_logs = {key: keras.get(key, float("nan")) for key in keys}
        self.callbacks.on_epoch_end(epoch, dict(self.last_logs))

    def on_test_begin(self):
        self.callbacks.on_test_begin({})

    def on_test_end(self, logs_by_member):
        self.callbacks.on_test_end(_keras_logs(logs_by_member.get(0, {}))[0])


class _BatchHooks:
    """Engine observer for the callbacks' per-batch hooks of evaluation (``test``) or
    prediction (``predict``), for member 0; given to the engine only when a callback has
    them (the running logs cost a wait for the device per batch)."""

    def __init__(self, callbacks: CallbackList, split=None):
        self.callbacks, self.split = callbacks, split

    @staticmethod
    def wanted(callbacks: CallbackList, kind: str) -> bool:
        return callbacks.wants(f"on_{kind}_batch_begin") or \
            callbacks.wants(f"on_{kind}_batch_end")

    def on_test_batch_begin(self, step):
        self.callbacks.on_test_batch_begin(step, {})

    def on_test_batch_end(self, step, logs_by_member):
        self.callbacks.on_test_batch_end(step, _keras_logs(logs_by_member.get(0, {}))[0])

    def on_predict_batch_begin(self, step):
        self.callbacks.on_predict_batch_begin(step, {})

    def on_predict_batch_end(self, step, outputs):
        outputs = outputs[0].cpu().numpy()  # member 0's, as arrays (Keras: its backend's)
        self.callbacks.on_predict_batch_end(
            step, {"outputs": outputs if self.split is None else self.split(outputs)})


def _callback_list(where: str, model, callbacks, params: dict, extra=()) -> CallbackList:
    """The user's ``callbacks`` (one, a list or None), then reglab's own ``extra``."""
    if callbacks is not None and not isinstance(callbacks, (list, tuple)):
        callbacks = [callbacks]
    return CallbackList([*(callbacks or []), *extra], model, params, where)


def _verbose(verbose, where: str = "fit") -> int:
    if verbose == "auto":
        return 1
    if verbose not in (0, 1, 2):
        raise ConfigError(f"{where}: 'verbose' must be 'auto', 0, 1 or 2. Got {verbose!r}.")
    return verbose


def _check_own_optimizer(model, where: str) -> None:
    """Keras's refusal to train a model with an optimizer built on another model's weights
    (its 'Unknown variable'): its steps and moments are that model's."""
    if getattr(model, "_optimizer_elsewhere", False):
        optimizer = model.optimizer
        raise ValueError(
            f"{where}: this model was compiled with an optimizer ({type(optimizer).__name__}) "
            f"that has already trained another model ({optimizer.iterations} steps): its "
            f"state belongs to that model's weights, and Keras refuses it here too ('Unknown "
            f"variable'). Compile this model with a new optimizer, e.g. "
            f"{type(optimizer).__name__}.from_config(optimizer.get_config()).")


def _ensure_ready(model, x_shape):
    if not model._compiled or model.loss is None:
        raise ConfigError("Sequential: call model.compile(optimizer=..., loss=...) before "
                          "training or evaluating the model.")
    if model._input_shape is None and x_shape is not None:
        model._input_shape = tuple(x_shape[1:])
    population = model._build()
    model._loss_built = True
    return population


def fit(model, x, y, batch_size, epochs, verbose, callbacks, validation_split, validation_data,
        shuffle, class_weight, sample_weight, initial_epoch, steps_per_epoch,
        validation_batch_size, validation_freq=1, validation_steps=None):
    model._call_activity = None  # Keras's layer losses are of the last model(x)
    verbose = _verbose(verbose)
    if batch_size is not None:
        _check_batch_size("fit", batch_size)
    if validation_steps is not None:
        validation_steps = check_count("fit", "validation_steps", validation_steps)
    check_validation_freq(validation_freq, "fit")
    if validation_split and fit_data.is_flow(fit_data.single_input(x)):  # Keras refuses it too
        raise ConfigError("fit: 'validation_split' needs arrays, not an ImageDataGenerator "
                          "flow. Give the generator validation_split=... and pass "
                          "flow(..., subset='validation') as validation_data.")
    data = fit_data.resolve_inputs(x, y, batch_size, shuffle, sample_weight, steps_per_epoch)
    if data.generator is not None and validation_split:
        raise ConfigError("fit: 'validation_split' needs arrays, not a generator. Pass "
                          "validation_data instead.")
    if validation_split and validation_data is None:
        (data.x, data.y, data.sample_weight), validation_data = \
            fit_data.validation_split_arrays(data.x, data.y, data.sample_weight,
                                             validation_split)
    # Keras validates on the first validation_steps batches only: a flow's own, else of
    # validation_batch_size or batch_size
    validation_data, came_in = fit_data.resolve_validation(
        validation_data, validation_steps, validation_batch_size or batch_size or 32)
    # a dataset validates in the batches it came in, as Keras reads it
    validation_batch_size = validation_batch_size or came_in
    if data.x is not None:
        fit_data.refuse_non_finite("fit", "x", data.x)
    if steps_per_epoch is not None and data.generator is None:  # arrays read as Keras 3 does
        data = fit_data.array_batches(data, check_count("fit", "steps_per_epoch",
                                                        steps_per_epoch), model.seed,
                                      batch_size)
    if isinstance(validation_data, (list, tuple)) and validation_data:
        fit_data.refuse_non_finite("fit: validation_data", "x", validation_data[0])
    if class_weight is not None and data.y is not None:
        data.sample_weight = fit_data.class_weights_to_sample_weights(data.y, class_weight,
                                                                      data.sample_weight)
    given = callbacks if isinstance(callbacks, (list, tuple)) else \
        ([] if callbacks is None else [callbacks])
    if data.generator is not None and any(isinstance(c, BackupAndRestore) for c in given):
        # refused before any backup is written that a next run could not resume from
        raise ConfigError("fit: BackupAndRestore needs arrays or an ImageDataGenerator flow "
                          "read whole (without steps_per_epoch); arrays or a flow read "
                          "steps_per_epoch batches at a time, a generator, a DataLoader "
                          "or PyDataset, or a flow whose generator uses "
                          "channel_shift_range, brightness_range, preprocessing_function, "
                          "zca_whitening, samplewise standardization with a warp, or a "
                          "constant fill that standardizes differently per channel (read "
                          "batch by batch, in Keras's order) cannot be resumed mid-stream.")
    first_epoch = None
    if data.generator is not None and (epochs > initial_epoch or model._input_shape is None):
        # read the first epoch now: it may build the model (not when no epoch will run and
        # the model is built: Keras's empty History, nothing read)
        first_epoch = fit_data.next_epoch_from_generator(data.generator, data.steps_per_epoch)
    shape = (np.shape(data.x) if data.x is not None
             else None if first_epoch is None else first_epoch[0].shape)
    population = _ensure_ready(model, shape)
    _check_own_optimizer(model, "fit")
    population.reset_divergence()  # a Keras model trains again after a non-finite loss
    model.stop_training = False
    # a History among the callbacks is the one fit returns and fills, as Keras's
    history = next((c for c in given if isinstance(c, History)), None)
    own = [] if history is not None else [History()]
    history = history or own[0]
    model.history = history
    steps = (data.steps_per_epoch if data.generator is not None
             else math.ceil(len(data.x) / data.batch_size))
    progress = [ProgbarLogger(verbose)] if verbose else []
    callback_list = _callback_list("fit", model, callbacks,
                                   {"verbose": verbose, "epochs": epochs, "steps": steps},
                                   [*own, *progress])
    bridge = _KerasBridge(model, callback_list)
    model._resume_state = None
    # The training data checked before any callback runs, as Keras's fit builds the model
    # from it first: a fit refused for its data leaves a CSVLogger's file or a backup as
    # they were. Then the optimizer is built, as Keras builds it there.
    if data.generator is None:
        prepared = prepare_data(population, data.x, data.y, data.sample_weight, "fit")
    elif first_epoch is not None:
        xe, ye, we, sizes = first_epoch
        if class_weight is not None:
            we = fit_data.class_weights_to_sample_weights(ye, class_weight, we)
        first_epoch = (prepare_data(population, xe, ye, we, "fit"), None, None, sizes)
    model._build_optimizer()
    callback_list.on_train_begin({})
    resume, model._resume_state = model._resume_state, None  # set by BackupAndRestore
    if isinstance(resume, dict):  # taken as Keras takes its backup (Population._resume)
        resume = {**resume, "model_backup": True}
    bridge.resumed = resume is not None
    observers, eval_batch_size = [bridge], validation_batch_size
    if _BatchHooks.wanted(callback_list, "test"):  # Keras's validation batches, then
        observers.append(_BatchHooks(callback_list))
        eval_batch_size = validation_batch_size or data.batch_size
    elif _batch_dependent(model):  # values that depend on them: Keras's batches too
        eval_batch_size = validation_batch_size or data.batch_size
    options = dict(validation_data=validation_data, observers=observers,
                   eval_batch_size=eval_batch_size, validation_freq=validation_freq)
    if not population.state.members.trainable:
        warnings.warn("fit: the model has no trainable weights (every layer is frozen); "
                      "it is evaluated but not trained, as in Keras.", stacklevel=3)
    built_for = model._built_signature
    model._fitting = True  # the population is not rebuilt under the fit
    results = []
    try:
        if data.generator is None:
            results.append(population.fit(prepared, None, batch_size=data.batch_size,
                                          epochs=epochs, shuffle=data.shuffle,
                                          sample_weight=data.sample_weight,
                                          initial_epoch=initial_epoch, augment=data.augment,
                                          resume=resume, **options))
        else:
            for epoch in range(initial_epoch, epochs):
                if epoch > initial_epoch:
                    first_epoch = fit_data.next_epoch_from_generator(data.generator,
                                                                     data.steps_per_epoch)
                xe, ye, we, sizes = first_epoch
                if class_weight is not None and epoch > initial_epoch:  # the first: prepared
                    we = fit_data.class_weights_to_sample_weights(ye, class_weight, we)
                # One fit per epoch: the weight averages (EMA, SWA) are applied once, at the end.
                results.append(population.fit(xe, ye, batch_size=max(sizes), epochs=epoch + 1,
                                              shuffle=False, sample_weight=we,
                                              initial_epoch=epoch, finalize=False,
                                              batch_sizes=sizes, **options))
                if model.stop_training or results[-1].members[0].status == "diverged":
                    break
            if results:
                population.finalize_averages(xe.x if isinstance(xe, Data) else xe, max(sizes))
            if hasattr(data.generator, "finish"):
                data.generator.finish()
    finally:
        model._fitting = False
        # a backup goes on with the random streams it was trained with, as Keras's brings
        # its seed generators' state: the model's seed is the one the population took
        model.seed = population.plan.seeds[0]
    if model._signature() != built_for:
        warnings.warn("fit: a layer's 'trainable' (or the optimizer's "
                      "exclude_from_weight_decay) changed during fit; it takes effect at "
                      "the next fit (Keras applies it from the next step).", stacklevel=3)
    member = results[-1].members[0] if results else None  # none: no epoch to run
    if member is not None and member.status == "diverged":
        epoch, step = member.diverged_at
        if epoch not in history.epoch:
            bridge.on_diverged(epoch, step, member.diverged_logs, validation_data is not None
                               and validates(epoch, validation_freq))
        warnings.warn(f"fit: the loss became NaN or infinite at epoch {epoch + 1}, batch "
                      f"{step + 1}; training stopped there and the weights are those before "
                      "that batch. Lower the learning rate or the penalties (or look for "
                      "NaN or infinity in the batches a generator gave).", stacklevel=3)
    model._hold_metric_states()  # as Keras's objects end the fit
    callback_list.on_train_end(getattr(bridge, "last_logs", {}))
    return history


def _batch_dependent(model) -> bool:
    """Whether the loss or a compiled metric may give one value per batch (a function, a
    loss object, a reduction other than the mean), which Keras averages over the batches:
    then the validation's value depends on how the data is cut, and fit validates in
    Keras's batches (else in larger ones, the same values)."""
    from reglab.metrics import FunctionMetric

    if _loss_batch_dependent(model.loss):
        return True
    for metric in model._population_metrics or ():
        given = getattr(metric, "metric", None)  # a weighted metric's own
        if isinstance(metric, FunctionMetric) or (
                given is not None and callable(given) and not getattr(given, "resolved", False)):
            return True
    return False


def _loss_batch_dependent(loss) -> bool:
    """Whether a batch's ``loss`` value is not the mean of its samples' values: a ``'sum'``
    or a weighted mean (``'mean_with_sample_weight'``), or a user's function or ``call``,
    which may return one value for the whole batch."""
    from reglab.models.outputs import PackedLoss

    if isinstance(loss, PackedLoss):
        return any(_loss_batch_dependent(part) for part in loss.losses)
    if isinstance(loss, losses_module.ScaledLoss):
        return _loss_batch_dependent(loss.loss)
    if not isinstance(loss, losses_module.Loss):
        return loss is not None
    return (loss.reduction in ("sum", "mean_with_sample_weight")
            or isinstance(loss, losses_module.LossFunctionWrapper)
            or type(loss).call is not losses_module.Loss.call
            and not type(loss).__module__.startswith("reglab."))


def _check_batch_size(where, batch_size):
    check_count(where, "batch_size", batch_size)


def evaluate(model, x, y, batch_size, verbose, sample_weight, return_dict, steps=None,
             callbacks=None):
    model._call_activity = None  # Keras's layer losses are of the last model(x)
    verbose = _verbose(verbose, "evaluate")
    if batch_size is not None:
        _check_batch_size("evaluate", batch_size)
    x, y, sample_weight, batch_size = fit_data.resolve_eval_inputs(
        "evaluate", x, y, sample_weight, steps, batch_size)
    if y is None:
        raise ConfigError("evaluate: expected targets y (or an iterator of (x, y) batches). "
                          "Got None.")
    batches = math.ceil(len(x) / (batch_size or 32))
    callback_list = _callback_list("evaluate", model, callbacks,
                                   {"verbose": verbose, "epochs": 1, "steps": batches})
    population = _ensure_ready(model, np.shape(x))
    callback_list.on_test_begin({})
    observers = [_BatchHooks(callback_list)] if _BatchHooks.wanted(callback_list, "test") \
        else []
    started = time.perf_counter()
    logs = population.evaluate(x, y, batch_size=batch_size or 32,
                               sample_weight=sample_weight, observers=observers)[0]
    keras_logs, _ = _keras_logs(logs)
    model._hold_metric_states()
    callback_list.on_test_end(keras_logs)
    print_progress(verbose, batches, time.perf_counter() - started, keras_logs)
    return _result(model, keras_logs, return_dict)


def _result(model, keras_logs: dict, return_dict: bool):
    """What Keras's evaluate and *_on_batch return: the logs, the loss alone without
    metrics, else ``[loss, *metrics]`` in the compiled order; for several outputs, as
    Keras's ``_flatten_metrics_in_order`` lists them, the outputs' own losses in the
    outputs' order and then the other logs by name (the metrics' names it looks up first
    are not log keys there)."""
    if return_dict:
        return keras_logs
    if not model.logged_metric_names:
        return keras_logs["loss"]
    names = model.logged_metric_names
    parts = getattr(model.loss, "parts", None)
    if parts is not None:
        first = [part.loss_name for part in parts]
        names = first + sorted(name for name in names if name not in first)
    return [keras_logs["loss"]] + [keras_logs[name] for name in names]


def train_on_batch(model, x, y, sample_weight, class_weight, return_dict):
    """One optimizer step on one batch, as Keras 3's ``train_on_batch``: the loss (penalties
    included) and metrics of that batch, computed in the step's forward pass (metrics do
    not accumulate across calls). Weight averages (EMA, SWA) are not applied, as Keras
    applies them at the end of ``fit`` only."""
    x, y, sample_weight = fit_data.batch_arrays("train_on_batch", x, y, sample_weight)
    if y is None:
        raise ConfigError("train_on_batch: expected targets y. Got None.")
    if class_weight is not None:
        sample_weight = fit_data.class_weights_to_sample_weights(y, class_weight,
                                                                 sample_weight)
    population = _ensure_ready(model, np.shape(x))
    _check_own_optimizer(model, "train_on_batch")
    population.reset_divergence()
    learning_rate = model.optimizer.learning_rate
    if model.optimizer.schedule is None and \
            population.hyperparameter(0, "learning_rate") != learning_rate:  # set by the user
        population.set_hyperparameter(0, "learning_rate", learning_rate)
    # one epoch of one unshuffled batch: the member's random streams go on from the epochs
    # it has trained, as they would in fit
    result = population.fit(x, y, batch_size=max(len(x), 1), epochs=1, shuffle=False,
                            sample_weight=sample_weight, finalize=False)
    member = result.members[0]
    if member.status == "diverged":
        warnings.warn("train_on_batch: the loss became NaN or infinite; the weights are those "
                      "before the batch. Lower the learning rate or the penalties.",
                      stacklevel=3)
        nan = float("nan")  # the batch's values, as Keras returns them (an inf loss is inf)
        keras_logs = _keras_logs(member.diverged_logs or {})[0]
        return _result(model, {"loss": keras_logs.get("loss", nan),
                               **{name: keras_logs.get(name, nan)
                                  for name in model.logged_metric_names}}, return_dict)
    logs = {key: values[-1] for key, values in member.history.items() if values}
    keras_logs, model._last_penalty_logs = _keras_logs(logs)
    return _result(model, keras_logs, return_dict)


def predict(model, x, batch_size, steps=None, callbacks=None, verbose=0):
    model._call_activity = None  # Keras's layer losses are of the last model(x)
    if batch_size is not None:
        _check_batch_size("predict", batch_size)
    verbose = _verbose(verbose, "predict")
    x, _, _, batch_size = fit_data.resolve_eval_inputs("predict", x, None, None, steps,
                                                       batch_size)
    batches = math.ceil(len(x) / (batch_size or 32))
    callback_list = _callback_list(
        "predict", model, callbacks, {"verbose": verbose, "epochs": 1, "steps": batches})
    if model._input_shape is None:
        model._input_shape = tuple(np.shape(x)[1:])
    population = model._build()
    callback_list.on_predict_begin({})
    observers = [_BatchHooks(callback_list, getattr(model, "_split", None))] \
        if _BatchHooks.wanted(callback_list, "predict") else []
    started = time.perf_counter()
    outputs = population.predict(x, batch_size=batch_size or 32, observers=observers)[0]
    callback_list.on_predict_end({})
    print_progress(verbose, batches, time.perf_counter() - started)
    return outputs
