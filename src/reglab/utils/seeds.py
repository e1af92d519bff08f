"""Seeds derived from (seed, purpose): the one formula every random stream of reglab keys on.

Torch-free, so that data regimes (:mod:`reglab.datasets.regimes`, numpy) and the engine's
streams (:mod:`reglab.engine.rng`, torch) derive their seeds the same way.
"""

from __future__ import annotations

import hashlib


def derive_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed for ``purpose`` under ``seed``, stable across runs and platforms.

    Example:
        >>> derive_seed(0, "shuffle") == derive_seed(0, "shuffle") != derive_seed(1, "shuffle")
        True
    """
    digest = hashlib.sha256(f"reglab/{int(seed)}/{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)
