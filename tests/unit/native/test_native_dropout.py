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
    """Every bit, a NaN's included (torch's vectorized cast writes each bfloat16 NaN as
    0xFFFF)."""
    assert a.dtype == b.dtype and a.shape == b.shape
    bits = torch.int16 if a.dtype == torch.bfloat16 else torch.int32
    assert torch.equal(a.view(bits), b.view(bits))


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


@pytest.mark.parametrize("rows", [[0, 2, 1], [0, -1, 1], [3, 0, 0]])
def test_a_member_row_outside_the_draws_is_an_index_error(kernels, rows):
    # the torch path's index_select raises for such rows; the kernel reads no memory past
    # the draws and says so the same way
    x, rate, draws, _ = _inputs(torch.float32, [0, 1, 0])  # 2 rows of draws
    with pytest.raises(IndexError, match="2 rows of draws"):
        native_dropout.dropout(x, 1.0 - rate.view(-1, 1, 1), draws, torch.tensor(rows))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_second_derivatives_are_the_torch_paths(kernels, dtype):
    # create_graph: the backward runs the torch path, itself differentiable, with the
    # forward's draws (a gradient penalty through dropout)
    rows = [0, 1, 0, 2, 1]
    x, rate, draws, _ = _inputs(dtype, rows)
    x = torch.where(torch.isfinite(x), x, 1.0)
    grads = []
    for fused in (True, False):
        xs = x.clone().requires_grad_(True)
        keep = 1.0 - rate.view(-1, 1, 1)
        if fused:
            y = native_dropout.dropout(xs, keep, draws, torch.tensor(rows))
        else:
            from reglab.layers.regularization import dropout

            y = dropout(xs, rate.view(-1, 1, 1),
                        draws.index_select(0, torch.tensor(rows))).to(dtype)
        (first,) = torch.autograd.grad((y.float() ** 2).sum(), xs, create_graph=True)
        first.float().sum().backward()
        grads.append((first.detach(), xs.grad))
    _same_bits(grads[0][0], grads[1][0])
    _same_bits(grads[0][1], grads[1][1])


def test_the_backward_uses_the_kernels_of_its_forward(kernels, monkeypatch):
    x, rate, draws, grad = _inputs(torch.float32, [0, 1, 0])
    xs = x.clone().requires_grad_(True)
    y = native_dropout.dropout(xs, 1.0 - rate.view(-1, 1, 1), draws, torch.tensor([0, 1, 0]))
    monkeypatch.setenv("REGLAB_NATIVE", "0")  # switched off between forward and backward
    y.backward(grad)
    expected = _reference(x, rate, draws, [0, 1, 0], grad)[1]
    _same_bits(xs.grad, expected)


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
    # the training step's (engine/direct_step.py) and the autograd Function's
    def counting(original):
        def counted(*args):
            y = original(*args)
            fused.append(y is not None)
            return y
        return counted

    for name in ("dropout", "dropout_and_backward"):
        monkeypatch.setattr(native_dropout, name, counting(getattr(native_dropout, name)))
    for flag in ("1", "0"):
        monkeypatch.setenv("REGLAB_NATIVE", flag)
        population = Population(_members())
        population.fit(x, y, batch_size=16, epochs=2)
        states.append({k: w.detach().clone() for k, w in population.state.weights.items()})
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert fused[:20] == [True] * 20 and not any(fused[20:])  # 2 layers x 5 steps x 2 epochs

