"""reglab.regularizers: the penalty functions and regularizer objects vs closed forms (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reglab.errors import ConfigError
from reglab.regularizers import L1, L1L2, L2, ProximalL1, deserialize, get, serialize
from reglab.regularizers.penalty import activity_penalty, soft_threshold, weight_penalty

F64 = torch.float64


def rand(*shape, seed=0):
    return torch.tensor(np.random.default_rng(seed).normal(size=shape), dtype=F64)


def test_weight_penalty_single_model():
    w = rand(4, 3)
    a, b = 0.013, 0.27
    expected = a * np.abs(w.numpy()).sum() + b * (w.numpy() ** 2).sum()
    np.testing.assert_allclose(float(weight_penalty(w, a, b)), expected, rtol=1e-14)
    assert float(weight_penalty(w)) == 0.0


@pytest.mark.parametrize("member_axis", [0, 1, 2])
def test_weight_penalty_per_member_along_any_axis(member_axis):
    w = rand(3, 4, 5, seed=member_axis)
    members = w.shape[member_axis]
    l1 = torch.linspace(0.0, 0.3, members, dtype=F64)
    l2 = torch.linspace(0.5, 0.0, members, dtype=F64)
    got = weight_penalty(w, l1, l2, member_axis=member_axis)
    assert got.shape == (members,)
    arr = np.moveaxis(w.numpy(), member_axis, 0)
    expected = [float(l1[p]) * np.abs(arr[p]).sum() + float(l2[p]) * (arr[p] ** 2).sum()
                for p in range(members)]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-14)


def test_weight_penalty_gradient_is_keras_gradient():
    """d/dw (l1 |w| + l2 w^2) = l1 sign(w) + 2 l2 w (no one-half in Keras's L2)."""
    w = rand(2, 6).requires_grad_(True)
    l1, l2 = torch.tensor([0.1, 0.0], dtype=F64), torch.tensor([0.0, 0.3], dtype=F64)
    weight_penalty(w, l1, l2, member_axis=0).sum().backward()
    expected = (l1.view(2, 1) * torch.sign(w) + 2 * l2.view(2, 1) * w).detach()
    np.testing.assert_allclose(w.grad.numpy(), expected.numpy(), rtol=1e-14)


def test_activity_penalty_is_divided_by_batch_size():
    outputs = rand(3, 7, 4)  # (P, B, F)
    l1, l2 = torch.tensor([0.1, 0.0, 0.2], dtype=F64), torch.tensor([0.0, 0.4, 0.05], dtype=F64)
    got = activity_penalty(outputs, l1, l2, batch_axis=1, member_axis=0)
    arr = outputs.numpy()
    expected = [(float(l1[p]) * np.abs(arr[p]).sum() + float(l2[p]) * (arr[p] ** 2).sum()) / 7
                for p in range(3)]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-14)
    single = activity_penalty(outputs[0], 0.1, 0.0, batch_axis=0)
    np.testing.assert_allclose(float(single), expected[0], rtol=1e-14)


def test_soft_threshold_per_member():
    w = rand(3, 50, seed=3)
    threshold = torch.tensor([[0.0], [0.5], [5.0]], dtype=F64)
    got = soft_threshold(w, threshold).numpy()
    arr, t = w.numpy(), threshold.numpy()
    expected = np.sign(arr) * np.maximum(np.abs(arr) - t, 0.0)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got[0], arr[0])  # a zero threshold changes nothing
    assert np.all(got[2] == 0)  # everything within 5 of zero lands exactly on zero
    assert 0 < np.count_nonzero(got[1] == 0) < 50
    exact = soft_threshold(torch.tensor([-0.5, 0.5, 0.25], dtype=F64), 0.5)
    assert exact.tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("reg, a, b", [
    (L1(), 0.01, 0.0), (L2(), 0.0, 0.01), (L1(0.3), 0.3, 0.0), (L2(0.2), 0.0, 0.2),
    (L1L2(), 0.0, 0.0), (L1L2(l1=0.1, l2=0.05), 0.1, 0.05), (ProximalL1(0.2, 0.1), 0.2, 0.1),
])
def test_regularizer_objects_follow_keras_formulas_and_defaults(reg, a, b):
    w = rand(5, 2, seed=4)
    expected = a * np.abs(w.numpy()).sum() + b * (w.numpy() ** 2).sum()
    np.testing.assert_allclose(float(reg(w)), expected, rtol=1e-14)


def test_regularizer_configs_and_lookup():
    assert L1(0.3).get_config() == {"l1": 0.3}
    assert L2(0.3).get_config() == {"l2": 0.3}
    assert L1L2(0.1, 0.2).get_config() == {"l1": 0.1, "l2": 0.2}
    assert isinstance(get("l2"), L2) and get("l2").l2 == 0.01
    assert get(None) is None
    reg = L1L2(0.1, 0.2)
    assert deserialize(serialize(reg)) == reg
    assert "proximal" in ProximalL1.contributes and "proximal" not in L1.contributes
    with pytest.raises(ConfigError, match=r"unknown regularizer 'l1_l3'.*Did you mean 'l1l2'"):
        get("l1_l3")
    with pytest.raises(ConfigError, match=r"unknown regularizer 'l1_l2'"):
        get("l1_l2")  # Keras refuses it too: it would be a penalty of no strength
    with pytest.raises(ConfigError, match=r"L2: 'l2' must be a non-negative float. Got -1"):
        L2(-1)


def test_none_strength_is_keras_s_default():
    """Keras 3's L1(None) and L2(None) take the default 0.01, and L1L2's None terms are 0
    (reglab refused None)."""
    from reglab import regularizers

    assert regularizers.L1(None).get_config() == {"l1": 0.01}
    assert regularizers.L2(None).get_config() == {"l2": 0.01}
    assert regularizers.l2(None).get_config() == {"l2": 0.01}
    assert regularizers.L1L2(l1=None, l2=0.1).get_config() == {"l1": 0.0, "l2": 0.1}
    assert regularizers.L1L2(None, None).get_config() == {"l1": 0.0, "l2": 0.0}
