"""Keras 3's ``keras.saving``: ``register_keras_serializable`` and ``custom_object_scope``
for a user's own regularizer classes, and ``save_model`` / ``load_model``.

A model file holds reglab's built-in classes by name and never code; a regularizer of the
user's (a :class:`reglab.regularizers.Regularizer` subclass with ``get_config``) is saved by
its class name once registered (``@register_keras_serializable()``, as in Keras), and loaded
where it is registered again or passed in ``custom_objects``. Other custom objects (layers,
losses, functions) are not saved: a model holding one is refused at ``save``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from reglab.errors import ConfigError

#: ``"package>name"`` -> the registered class
_REGISTERED: dict[str, type] = {}


def _check_regularizer_class(obj: Any, where: str) -> type:
    from reglab.regularizers import Regularizer

    if not (isinstance(obj, type) and issubclass(obj, Regularizer)):
        raise ConfigError(f"{where}: only Regularizer subclasses (with get_config) can be "
                          f"saved and loaded by name; reglab's files hold its built-in classes "
                          f"otherwise. Got {obj!r}.")
    return obj


def register_keras_serializable(package: str = "Custom", name: str | None = None):
    """Keras's decorator: makes a Regularizer subclass savable, known by its class name (and
    as ``"package>name"``, Keras's registered name)."""
    from reglab import regularizers

    def register(cls):
        _check_regularizer_class(cls, "register_keras_serializable")
        registered = f"{package}>{name or cls.__name__}"
        regularizers.register(cls, registered)
        _REGISTERED[registered] = cls
        return cls
    return register


def get_registered_object(name: str, custom_objects: dict | None = None,
                          module_objects: dict | None = None) -> Any:
    """The class registered (or in ``custom_objects``) under ``name``, or None."""
    for table in (custom_objects or {}, _REGISTERED, module_objects or {}):
        if name in table:
            return table[name]
    return None


def get_registered_name(obj: Any) -> str:
    """The ``"package>name"`` an object was registered under, else its ``__name__``."""
    for registered, cls in _REGISTERED.items():
        if cls is obj:
            return registered
    return getattr(obj, "__name__", type(obj).__name__)


@contextlib.contextmanager
def custom_object_scope(custom_objects: dict[str, Any] | None,
                        where: str = "custom_object_scope") -> Iterator[None]:
    """Within the block, the Regularizer subclasses of ``custom_objects`` (by class name or
    key) are known to configs and files, as Keras's scope makes them."""
    from reglab.regularizers import regularizers

    objects = dict(custom_objects or {})
    if not all(isinstance(key, str) for key in objects):
        raise ConfigError(f"{where}: 'custom_objects' must map names to classes. Got "
                          f"{custom_objects!r}.")
    for key, obj in objects.items():
        _check_regularizer_class(obj, f"{where}: 'custom_objects'[{key!r}]")
    saved = dict(regularizers._CLASS_NAMES)
    try:
        for key, cls in objects.items():
            regularizers._CLASS_NAMES[key] = cls
            regularizers._CLASS_NAMES.setdefault(cls.__name__, cls)
        yield
    finally:
        regularizers._CLASS_NAMES.clear()
        regularizers._CLASS_NAMES.update(saved)


CustomObjectScope = custom_object_scope


def save_model(model, filepath, overwrite=True, zipped=None, **kwargs) -> None:
    """``model.save(filepath, overwrite, zipped)``."""
    from reglab.models import save_model as save

    save(model, filepath, overwrite, zipped, **kwargs)


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):  # noqa: A002
    """:func:`reglab.models.load_model`."""
    from reglab.models import load_model as load

    return load(filepath, custom_objects, compile, safe_mode)
