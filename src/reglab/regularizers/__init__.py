"""Weight regularizers with Keras 3's names, formulas and configs, and reglab's own."""

from reglab.regularizers.group_lasso import GroupLasso
from reglab.regularizers.orthogonal import OrthogonalRegularizer
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
    register,
    registered,
    serialize,
)

register(GroupLasso, "group_lasso")
group_lasso = GroupLasso
register(OrthogonalRegularizer, "orthogonal_regularizer")
orthogonal_regularizer = OrthogonalRegularizer

__all__ = [
    "GroupLasso", "L1", "L1L2", "L2", "OrthogonalRegularizer", "ProximalL1", "Regularizer",
    "deserialize", "get", "group_lasso", "l1", "l1_l2", "l2", "orthogonal_regularizer",
    "proximal_l1", "register", "registered", "serialize",
]
