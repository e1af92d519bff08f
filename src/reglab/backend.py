"""Keras 3's ``keras.backend`` functions that model code calls: ``clear_session`` (between
the models of a comparison), ``epsilon``, ``floatx``, ``image_data_format`` and ``backend``.

reglab computes on torch in float32 (mixed precision is a dtype policy:
``reglab.mixed_precision``) with channels last, so the setters take those values only.
"""

from __future__ import annotations

import gc

from reglab.errors import ConfigError

EPSILON = 1e-7  # Keras's fuzz factor, in its losses and metrics


def clear_session(free_memory: bool = True) -> None:
    """Keras's ``clear_session``: forgets the global state models draw from (the seed of
    :func:`reglab.utils.set_random_seed`: new models then draw from Python's ``random``,
    as after Keras's) and, with ``free_memory``, collects garbage and empties torch's CUDA
    cache. reglab names a model's layers within the model, so no name counters to reset."""
    from reglab.utils import random_seed

    random_seed._source = None
    if free_memory:
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def backend() -> str:
    """The backend's name: ``'torch'``."""
    return "torch"


def epsilon() -> float:
    return EPSILON


def set_epsilon(value: float) -> None:
    if value != EPSILON:
        raise ConfigError(f"set_epsilon: reglab's losses and metrics use Keras's default "
                          f"epsilon, {EPSILON}. Got {value!r}.")


def floatx() -> str:
    return "float32"


def set_floatx(value: str) -> None:
    if value != "float32":
        raise ConfigError(f"set_floatx: reglab's weights are float32 (use a mixed-precision "
                          f"policy, reglab.mixed_precision.set_global_policy, for bfloat16 or "
                          f"float16 computation). Got {value!r}.")


def image_data_format() -> str:
    return "channels_last"


def set_image_data_format(data_format: str) -> None:
    if data_format != "channels_last":
        raise ConfigError(f"set_image_data_format: reglab's images are channels_last, as "
                          f"Keras's default. Got {data_format!r}.")
