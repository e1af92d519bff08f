"""Where models without an explicit seed get theirs: ``set_random_seed``, as in Keras."""

from __future__ import annotations

import random

import numpy as np

from reglab.errors import ConfigError

#: the stream models draw their seeds from after :func:`set_random_seed`; None before,
#: when they draw from Python's own ``random`` (so ``random.seed(n)`` alone repeats them,
#: as it repeats Keras's)
_source: random.Random | None = None


def set_random_seed(seed: int) -> None:
    """Keras's ``set_random_seed``: seeds Python's ``random``, NumPy's global generator and
    torch's, and makes every model created afterwards draw its seed deterministically
    from ``seed``.

    Example:
        >>> set_random_seed(0); a = next_seed(); set_random_seed(0); a == next_seed()
        True
    """
    global _source
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) \
            or not 0 <= seed < 2**32:  # NumPy's seeds, as Keras's check through it
        raise ConfigError(f"set_random_seed: 'seed' must be an int in [0, 2**32). Got "
                          f"{seed!r} (of type {type(seed).__name__}).")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    import torch

    torch.manual_seed(seed)
    _source = random.Random(seed)
    _batch_calls.seed(f"layer calls {seed}")


#: where a layer called on an array (``Dropout(0.5)(x, training=True)``) without a seed of
#: its own takes one: a stream apart, so that such a call leaves the seeds of the models
#: made afterwards as they were; reproducible after :func:`set_random_seed`
_batch_calls = random.Random()


def layer_call_seed() -> int:
    """A seed for a layer called on an array, from its own stream (see above)."""
    return _batch_calls.randrange(2**31)


def next_seed() -> int:
    """A seed for a new model: reproducible after :func:`set_random_seed` (or after
    ``random.seed``, when it was never called)."""
    return (_source or random).randrange(2**31)
