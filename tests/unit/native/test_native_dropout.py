"""Dropout by the native kernels: torch's bits forward and backward, in float32 and in
bfloat16 (where torch computes in float32 and rounds once), for every member's own rate and
its seed group's draws, NaN, infinities and signed zeros included; and training under
mixed_bfloat16 gives the torch path's weights bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reglab import mixed_precision, native
from reglab.engine import Member, Population
from reglab.layers import Dense, Dropout
from reglab.native import dropout as native_dropout


@pytest.fixture(autouse=True)
def reset_global_policy():
    yield
    mixed_precision.set_global_policy("float32")


@pytest.fixture
def kernels(monkeypatch):
    monkeypatch.setenv("REGLAB_NATIVE", "1")
    if native.library() is None:
        pytest.skip("no C compiler: the native kernels are not built here")


def _inputs(dtype, rows):
    g = torch.Generator().manual_seed(7)
    members, shape = len(rows), (6, 19)  # 19: rows that are no multiple of a vector
    x = torch.randn((members, *shape), generator=g) * 3
    x[0, 0, :4] = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0])
    x[1, 1, :2] = torch.tensor([-0.0, 1e-40])  # a subnormal
    rate = torch.tensor([0.5, 0.0, 0.2, 0.9, 0.3][:members], dtype=torch.float32)
    draws = torch.rand((max(rows) + 1, *shape), generator=g)
    draws[0, 0, :3] = torch.tensor([0.5, 0.0, 0.99999994])  # at the threshold, the ends
    grad = torch.randn((members, *shape), generator=g)
    grad[2, 0, :2] = torch.tensor([float("nan"), -float("inf")])
    return x.to(dtype), rate, draws, grad.to(dtype)


def _reference(x, rate, draws, rows, grad):
    """The torch path as the Dropout layer runs it: the draws laid out per member, the
    layer's dropout(), and under bfloat16 the cast of its float32 result back."""
    from reglab.layers.regularization import dropout

    x = x.clone().requires_grad_(True)
    uniform = draws.index_select(0, torch.tensor(rows)) if len(set(rows)) > 1 or \
        draws.shape[0] > 1 else draws
    y = dropout(x, rate.view(-1, 1, 1), uniform).to(x.dtype)
    y.backward(grad)
    return y.detach(), x.grad


def _same_bits(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    nan = torch.isnan(a.float())
    assert torch.equal(nan, torch.isnan(b.float()))
    assert torch.equal(a[~nan].view(torch.int16 if a.dtype == torch.bfloat16 else torch.int32),
                       b[~nan].view(torch.int16 if b.dtype == torch.bfloat16 else torch.int32))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows", [[0, 1, 0, 2, 1], [0, 0, 0]])
def test_forward_and_backward_are_torchs_bits(kernels, dtype, rows):
    x, rate, draws, grad = _inputs(dtype, rows)
    expected_y, expected_grad = _reference(x, rate, draws, rows, grad)
    xs = x.clone().requires_grad_(True)
    group = None if draws.shape[0] == 1 else torch.tensor(rows)
    y = native_dropout.dropout(xs, 1.0 - rate.view(-1, 1, 1), draws, group)
    assert y is not None and y.dtype == dtype
    y.backward(grad)
    _same_bits(y.detach(), expected_y)
    _same_bits(xs.grad, expected_grad)
    kept = (draws[torch.tensor(rows)] < (1.0 - rate).view(-1, 1, 1))
    assert torch.equal(y.detach()[1], x[1])  # rate 0: every unit kept, unscaled
    assert bool((y.detach()[~kept] == 0).all() | torch.isnan(y.detach()[~kept]).any())


def test_cases_the_kernels_do_not_take_fall_back(kernels):
    x, rate, draws, _ = _inputs(torch.float32, [0, 1, 0])
    keep, group = 1.0 - rate.view(-1, 1, 1), torch.tensor([0, 1, 0])
    assert native_dropout.dropout(x.double(), keep, draws, group) is None
    assert native_dropout.dropout(x.half(), keep, draws, group) is None
    assert native_dropout.dropout(x, keep.double(), draws, group) is None
    assert native_dropout.dropout(x.transpose(1, 2), keep, draws, group) is None
    assert native_dropout.dropout(x, keep, draws[:, :1], group) is None  # a noise_shape
    assert native_dropout.dropout(x, keep, draws, None) is None  # 2 groups, no rows
    assert native_dropout.dropout(x, keep[:2], draws, group) is None


def _members():
    return [Member([Dense(32, activation="relu", input_shape=(20,)), Dropout(rate),
                    Dense(16, activation="relu"), Dropout(rate / 2),
                    # 16 classes (3 used): rows of multiples of 16, where Adam's kernel is
                    # torch's bit for bit (tests/unit/native/test_native_training.py)
                    Dense(16, activation="softmax", dtype="float32")], "adam", seed=p % 3)
            for p, rate in enumerate([0.5, 0.0, 0.2, 0.3, 0.5])]


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_training_gives_the_torch_paths_weights(kernels, monkeypatch, policy):
    mixed_precision.set_global_policy(policy)  # reset by reset_global_policy
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 20)).astype("float32")
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 1)
    states, fused = [], []
    original = native_dropout.dropout

    def counted(*args):
        y = original(*args)
        fused.append(y is not None)
        return y

    monkeypatch.setattr(native_dropout, "dropout", counted)
    for flag in ("1", "0"):
        monkeypatch.setenv("REGLAB_NATIVE", flag)
        population = Population(_members())
        population.fit(x, y, batch_size=16, epochs=2)
        states.append({k: w.detach().clone() for k, w in population.state.weights.items()})
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert fused[:20] == [True] * 20 and not any(fused[20:])  # 2 layers x 5 steps x 2 epochs

