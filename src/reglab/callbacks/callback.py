"""Keras's callback protocol: ``Callback`` and the list that dispatches to callbacks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class Callback:
    """Base class of callbacks, with Keras 3's hooks; override the ones you need.

    ``self.model`` is the model being trained (set by :meth:`set_model`), and
    ``self.params`` holds ``verbose``, ``epochs`` and ``steps``. A callback stops
    training by setting ``self.model.stop_training = True``.

    Example:
        >>> class PrintLoss(Callback):
        ...     def on_epoch_end(self, epoch, logs=None):
        ...         print(epoch, round(logs["loss"], 2))
    """

    def __init__(self):
        self.model = None
        self.params: dict[str, Any] = {}

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_batch_begin(self, batch, logs=None): ...
    def on_batch_end(self, batch, logs=None): ...

    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs=logs)  # Keras's backwards-compatible alias

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs=logs)

    def on_test_begin(self, logs=None): ...
    def on_test_end(self, logs=None): ...
    def on_test_batch_begin(self, batch, logs=None): ...
    def on_test_batch_end(self, batch, logs=None): ...
    def on_predict_begin(self, logs=None): ...
    def on_predict_end(self, logs=None): ...
    def on_predict_batch_begin(self, batch, logs=None): ...
    def on_predict_batch_end(self, batch, logs=None): ...


_ALIASES = {"on_train_batch_begin": "on_batch_begin", "on_train_batch_end": "on_batch_end"}


def overrides(callback: Callback, hook: str) -> bool:
    """True when ``callback`` defines ``hook`` (or its Keras alias) itself, on its class or
    as an instance attribute, rather than inheriting the base class's no-op."""
    for name in (hook, _ALIASES.get(hook)):
        if name is None:
            continue
        if name in vars(callback):
            return True
        method = getattr(type(callback), name, None)
        if method is not None and method is not getattr(Callback, name, None):
            return True
    return False


class CallbackList:
    """Calls each hook on every callback, in order."""

    def __init__(self, callbacks: Iterable[Callback], model, params: dict[str, Any],
                 where: str = "fit"):
        self.callbacks = list(callbacks)
        for callback in self.callbacks:
            if not hasattr(callback, "set_model"):
                from reglab.errors import ConfigError

                raise ConfigError(f"{where}: 'callbacks' must be reglab.callbacks.Callback "
                                  f"objects. Got {callback!r}.")
            callback.set_model(model)
            callback.set_params(params)

    def wants(self, hook: str) -> bool:
        return any(overrides(c, hook) for c in self.callbacks)

    def __getattr__(self, hook: str):
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        if hook.endswith(("batch_begin", "batch_end")):  # Keras passes a batch's logs by name
            def dispatch(batch, logs=None):
                for callback in self.callbacks:
                    getattr(callback, hook)(batch, logs=logs)
            return dispatch

        def dispatch(*args, **kwargs):  # the others' by position, as Keras
            for callback in self.callbacks:
                getattr(callback, hook)(*args, **kwargs)
        return dispatch
