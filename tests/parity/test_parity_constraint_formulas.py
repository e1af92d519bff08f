"""Parity in float64: Keras's constraint formulas (epsilon 1e-7), one model and per member."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reglab.constraints import MaxNorm, MinMaxNorm, NonNeg, UnitNorm, get
from reglab.errors import ConfigError

F64 = torch.float64
KERAS_EPSILON = 1e-7


def np_norms(w, axis):
    return np.sqrt(np.sum(np.square(w), axis=axis, keepdims=True))


def np_max_norm(w, max_value, axis):
    norms = np_norms(w, axis)
    return w * (np.clip(norms, 0, max_value) / (KERAS_EPSILON + norms))


def np_unit_norm(w, axis):
    return w / (KERAS_EPSILON + np_norms(w, axis))


def np_min_max_norm(w, min_value, max_value, rate, axis):
    norms = np_norms(w, axis)
    desired = rate * np.clip(norms, min_value, max_value) + (1 - rate) * norms
    return w * (desired / (KERAS_EPSILON + norms))


def kernel(*shape, seed=0, scale=1.0):
    return torch.tensor(np.random.default_rng(seed).normal(scale=scale, size=shape), dtype=F64)


CASES = [
    (MaxNorm(1.0), lambda w: np_max_norm(w, 1.0, 0)),
    (MaxNorm(), lambda w: np_max_norm(w, 2.0, 0)),  # Keras's default max_value=2, axis=0
    (MaxNorm(0.5, axis=1), lambda w: np_max_norm(w, 0.5, 1)),
    (UnitNorm(), lambda w: np_unit_norm(w, 0)),
    (UnitNorm(axis=1), lambda w: np_unit_norm(w, 1)),
    (MinMaxNorm(), lambda w: np_min_max_norm(w, 0.0, 1.0, 1.0, 0)),
    (MinMaxNorm(1.5, 3.0, 0.3), lambda w: np_min_max_norm(w, 1.5, 3.0, 0.3, 0)),
    (NonNeg(), lambda w: w * (w >= 0)),
]


@pytest.mark.parametrize("constraint, formula", CASES, ids=[repr(c) for c, _ in CASES])
@pytest.mark.parametrize("scale", [0.1, 1.0, 3.0])
def test_constraint_on_one_kernel(constraint, formula, scale):
    w = kernel(6, 4, scale=scale)
    np.testing.assert_allclose(constraint(w).numpy(), formula(w.numpy()), rtol=1e-13, atol=1e-16)


def test_max_norm_over_conv_filter_axes():
    w = kernel(3, 3, 2, 5, seed=1)
    got = MaxNorm(0.7, axis=[0, 1, 2])(w).numpy()
    np.testing.assert_allclose(got, np_max_norm(w.numpy(), 0.7, (0, 1, 2)), rtol=1e-13)
    assert np.all(np_norms(got, (0, 1, 2)) <= 0.7)


def test_constraints_per_member_with_different_values():
    """The population form: (P, in, out) weights, (P, 1, 1) values, Keras axes shifted by one."""
    w = kernel(3, 6, 4, seed=2)

    def to_dims(axes):
        return [a % 2 + 1 for a in axes]

    max_values = torch.tensor([0.5, 1.0, 4.0], dtype=F64).view(3, 1, 1)
    got = MaxNorm(axis=0).apply(w, {"max_value": max_values}, to_dims).numpy()
    for p, m in enumerate((0.5, 1.0, 4.0)):
        np.testing.assert_allclose(got[p], np_max_norm(w[p].numpy(), m, 0), rtol=1e-13)
    values = {name: torch.tensor(v, dtype=F64).view(3, 1, 1) for name, v in
              {"min_value": [0.1, 1.0, 2.0], "max_value": [0.2, 1.5, 2.5],
               "rate": [1.0, 0.5, 0.0]}.items()}
    got = MinMaxNorm(axis=1).apply(w, values, to_dims).numpy()
    for p in range(3):
        args = [float(values[k][p]) for k in ("min_value", "max_value", "rate")]
        np.testing.assert_allclose(got[p], np_min_max_norm(w[p].numpy(), *args, 1), rtol=1e-13)


def test_constraint_lookup_and_errors():
    assert isinstance(get("max_norm"), MaxNorm) and get("max_norm").max_value == 2.0
    assert isinstance(get("non_neg"), NonNeg)
    with pytest.raises(ConfigError, match=r"unknown constraint 'maxnorm'"):
        get("maxnorm")
    with pytest.raises(ConfigError, match=r"MinMaxNorm: 'max_value' must be >= 'min_value'"):
        MinMaxNorm(2.0, 1.0)
