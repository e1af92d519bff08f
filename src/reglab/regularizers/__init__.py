"""Weight regularizers with Keras 3's names, formulas and configs."""

from reglab.regularizers.regularizers import (
    L1,
    L1L2,
    L2,
    ProximalL1,
    Regularizer,
    deserialize,
    get,
    l1,
    l1_l2,
    l2,
    proximal_l1,
    serialize,
)

__all__ = [
    "L1", "L1L2", "L2", "ProximalL1", "Regularizer", "deserialize", "get", "l1",
    "l1_l2", "l2", "proximal_l1", "serialize",
]
