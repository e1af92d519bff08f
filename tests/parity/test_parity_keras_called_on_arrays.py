"""Regularizers and constraints called directly on arrays (what a reader checking the
slides' formulas does with ``model.get_weights()``), side by side with Keras (torch
backend)."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import reglab  # noqa: E402

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

W = np.array([[1.0, -2.0, 0.0], [0.5, 3.0, -0.25]], dtype="float32")


@pytest.mark.parametrize(("name", "arguments"), [
    ("L1", dict(l1=0.1)), ("L2", dict(l2=0.1)), ("L1L2", dict(l1=0.1, l2=0.2)),
    ("l1", {}), ("l2", {}), ("l1_l2", {})])
@pytest.mark.parametrize("given", ["array", "list", "variable"])
def test_a_regularizer_called_on_weights_gives_keras_s_penalty(name, arguments, given):
    value = {"array": W, "list": W.tolist(), "variable": None}[given]
    if value is None:
        model = reglab.Sequential([reglab.layers.Dense(3, input_shape=(2,))])
        model.layers[0].kernel.assign(W)
        value = model.layers[0].kernel
    got = getattr(reglab.regularizers, name)(**arguments)(value)
    expected = getattr(keras.regularizers, name)(**arguments)(W)
    assert float(got) == pytest.approx(float(keras.ops.convert_to_numpy(expected)), rel=1e-6)


@pytest.mark.parametrize(("name", "arguments"), [
    ("MaxNorm", dict(max_value=1.5)), ("MaxNorm", dict(max_value=1.0, axis=1)),
    ("NonNeg", {}), ("UnitNorm", {}), ("MinMaxNorm", dict(min_value=0.5, max_value=1.2))])
def test_a_constraint_called_on_weights_gives_keras_s_weights(name, arguments):
    got = getattr(reglab.constraints, name)(**arguments)(W)
    expected = keras.ops.convert_to_numpy(getattr(keras.constraints, name)(**arguments)(W))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-6, atol=1e-7)
