"""Where models without an explicit seed get theirs: ``set_random_seed``, as in Keras."""

from __future__ import annotations

import random

_source = random.Random()


def set_random_seed(seed: int) -> None:
    """Makes every model created afterwards draw its seed deterministically from ``seed``.

    Example:
        >>> set_random_seed(0); a = next_seed(); set_random_seed(0); a == next_seed()
        True
    """
    _source.seed(int(seed))


def next_seed() -> int:
    """A seed for a new model: random, or reproducible after :func:`set_random_seed`."""
    return _source.randrange(2**31)
