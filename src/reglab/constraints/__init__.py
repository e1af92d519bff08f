"""Weight constraints with Keras 3's names and formulas."""

from reglab.constraints.constraints import (
    Constraint,
    MaxNorm,
    MinMaxNorm,
    NonNeg,
    UnitNorm,
    get,
    serialize,
)

# Keras's lowercase aliases.
max_norm = MaxNorm
non_neg = NonNeg
unit_norm = UnitNorm
min_max_norm = MinMaxNorm

__all__ = [
    "Constraint", "MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm", "get", "serialize",
    "max_norm", "non_neg", "unit_norm", "min_max_norm",
]
