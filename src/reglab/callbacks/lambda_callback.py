"""``LambdaCallback``: Keras 3's callback built from plain functions."""

from __future__ import annotations

from reglab.callbacks.callback import Callback
from reglab.errors import ConfigError, did_you_mean

# Hooks that may be given through ``**kwargs`` (Keras's other Callback methods,
# including its aliases ``on_batch_begin``/``on_batch_end`` of the train-batch hooks).
_OTHER_HOOKS = ("on_test_begin", "on_test_end", "on_predict_begin", "on_predict_end",
                "on_test_batch_begin", "on_test_batch_end", "on_predict_batch_begin",
                "on_predict_batch_end", "on_batch_begin", "on_batch_end")
_NAMED_HOOKS = ("on_epoch_begin", "on_epoch_end", "on_train_begin", "on_train_end",
                "on_train_batch_begin", "on_train_batch_end")


class LambdaCallback(Callback):
    """A callback whose hooks are the functions given, as Keras 3.

    The functions take the hook's positional arguments: ``on_epoch_begin`` and
    ``on_epoch_end`` take ``(epoch, logs)``; ``on_train_begin`` and ``on_train_end``
    take ``(logs)``; ``on_train_batch_begin`` and ``on_train_batch_end`` take
    ``(batch, logs)``. Other hooks (``on_test_begin=...``, Keras's aliases
    ``on_batch_begin``/``on_batch_end``) are passed as keyword arguments. Unlike Keras,
    a keyword that names no hook, or a value that is not callable, raises
    ``ConfigError`` rather than being silently ignored.

    Example:
        >>> seen = []
        >>> callback = LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(epoch))
        >>> callback.on_epoch_end(0, {})
        >>> seen
        [0]
    """

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None,
                 on_train_end=None, on_train_batch_begin=None, on_train_batch_end=None,
                 **kwargs):
        super().__init__()
        for name in kwargs:
            if name not in _OTHER_HOOKS:
                raise ConfigError(
                    f"LambdaCallback: keyword arguments must name callback hooks "
                    f"({', '.join(_NAMED_HOOKS + _OTHER_HOOKS)}). Got {name!r}."
                    f"{did_you_mean(name, _NAMED_HOOKS + _OTHER_HOOKS)}")
        named = dict(zip(_NAMED_HOOKS, (on_epoch_begin, on_epoch_end, on_train_begin,
                                        on_train_end, on_train_batch_begin, on_train_batch_end)))
        hooks = {**kwargs, **{k: v for k, v in named.items() if v is not None}}
        for name, function in hooks.items():
            if not callable(function):
                raise ConfigError(f"LambdaCallback: '{name}' must be a function. "
                                  f"Got {function!r}.")
        self.__dict__.update(hooks)

    # ``fit`` dispatches batch hooks only to callbacks whose class overrides them, and
    # the functions above live on the instance; these methods make the class override
    # them. They forward to Keras's aliases ``on_batch_begin``/``on_batch_end`` when
    # given, and are shadowed by ``on_train_batch_begin``/``on_train_batch_end``.
    def on_train_batch_begin(self, batch, logs=None):
        alias = self.__dict__.get("on_batch_begin")
        if alias is not None:
            alias(batch, logs=logs)

    def on_train_batch_end(self, batch, logs=None):
        alias = self.__dict__.get("on_batch_end")
        if alias is not None:
            alias(batch, logs=logs)
