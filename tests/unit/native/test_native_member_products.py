"""The shared first layer's per-member float32 products made from C in one call per seed
group (native/member_products.py): torch's own addmm / mm results bit for bit, the cases the
loops do not take left to torch, and training with them giving the weights training without
them gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reglab import native
from reglab.engine import Member, Population
from reglab.layers import Dense, Dropout
from reglab.native import member_products
from reglab.native.pending_gradient import PendingKernelGradient
from reglab.regularizers import L1L2


@pytest.fixture
def loops(monkeypatch):
    monkeypatch.setenv("REGLAB_NATIVE", "1")
    if not member_products.available():
        pytest.skip("no C compiler or no BLAS sgemm in torch's library here")


def _torch_addmm(x, kernels, biases):
    out = torch.empty(kernels.shape[0], x.shape[0], kernels.shape[2])
    for m in range(kernels.shape[0]):
        if biases is None:
            torch.mm(x, kernels[m], out=out[m])
        else:
            torch.addmm(biases[m], x, kernels[m], out=out[m])
    return out


def _torch_kernel_grad(x, dy):
    out = torch.empty(dy.shape[0], x.shape[1], dy.shape[2])
    for m in range(dy.shape[0]):
        torch.mm(x.t(), dy[m], out=out[m])
    return out


@pytest.mark.parametrize("members, rows, n_in, units, who", [
    (45, 32, 784, 64, slice(9, 18)), (5, 128, 784, 64, slice(0, 5)),
    (4, 1, 5, 16, slice(1, 3)), (3, 7, 33, 10, slice(0, 3)), (6, 13, 1, 48, slice(5, 6)),
    (2, 300, 20, 1, slice(0, 2))])
@pytest.mark.parametrize("with_bias", [True, False])
def test_the_loops_are_torchs_products_bit_for_bit(loops, members, rows, n_in, units, who,
                                                   with_bias):
    g = torch.Generator().manual_seed(rows * units + n_in)
    x = torch.randn(rows, n_in, generator=g)
    kernels = torch.randn(members, n_in, units, generator=g)  # a slice of the stack: strided
    biases = torch.randn(members, units, generator=g) if with_bias else None
    dy = torch.randn(members, rows, units, generator=g)
    k = who.stop - who.start
    out = torch.full((k, rows, units), float("nan"))
    assert member_products.addmm(x, kernels[who], None if biases is None else biases[who], out)
    assert torch.equal(out, _torch_addmm(x, kernels[who], None if biases is None else
                                         biases[who]))
    grad = torch.full((k, n_in, units), float("nan"))
    assert member_products.kernel_grad(x, dy[who], grad)
    assert torch.equal(grad, _torch_kernel_grad(x, dy[who]))


@pytest.mark.parametrize("with_bias", [True, False])
def test_the_loops_relu_is_torchs_relu_of_the_products_bit_for_bit(loops, with_bias):
    """The relu made on each member's block (Dense(activation="relu")'s forward) is
    torch.relu of the product, bit for bit, also where a bias row is NaN of either sign or
    infinite (x and kernels of either sign: about half the outputs negative)."""
    g = torch.Generator().manual_seed(11)
    x, kernels = torch.randn(32, 50, generator=g), torch.randn(6, 50, 16, generator=g)
    biases = torch.randn(6, 16, generator=g) if with_bias else None
    if with_bias:
        biases[1, :4] = torch.tensor([float("nan"), -float("nan"), float("inf"),
                                      -float("inf")])
    out = torch.full((6, 32, 16), float("nan"))
    assert member_products.addmm(x, kernels, biases, out, relu=True)
    expected = torch.relu(_torch_addmm(x, kernels, biases))
    assert 0.3 < (expected == 0).float().mean() < 0.7
    assert torch.equal(out.view(torch.int32), expected.view(torch.int32))


def test_a_grouped_relu_is_torchs_where_the_loops_run_and_where_they_do_not(loops,
                                                                               monkeypatch):
    """shared_input.forward_grouped(relu=True): the native loops' relu on some groups and
    torch's over the output where a group falls back (an interleaved group, the loops off)
    give torch.relu of the products without it, bit for bit."""
    from reglab.layers.shared_input import MemberGroups, forward_grouped

    g = torch.Generator().manual_seed(12)
    x = torch.randn(2, 20, 30, generator=g)
    kernels, biases = torch.randn(5, 30, 16, generator=g), torch.randn(5, 16, generator=g)
    for rows in ([0, 0, 0, 1, 1], [0, 1, 0, 1, 0]):
        groups = MemberGroups.from_rows(rows, "cpu")
        plain = forward_grouped(x, kernels, biases, groups)
        expected = torch.relu(plain).view(torch.int32)
        assert torch.equal(forward_grouped(x, kernels, biases, groups, relu=True)
                           .view(torch.int32), expected)
        with monkeypatch.context() as off:
            off.setattr(member_products, "addmm", lambda *args: False)
            assert torch.equal(forward_grouped(x, kernels, biases, groups, relu=True)
                               .view(torch.int32), expected)


def test_special_values_pass_through_as_in_torch(loops):
    x = torch.tensor([[1.0, float("inf")], [float("nan"), 0.0], [-0.0, 3e38]])
    kernels = torch.tensor([[[2.0, 0.0], [1.0, -1.0]], [[0.0, 1e-40], [3e38, 1.0]]])
    out = torch.empty(2, 3, 2)
    assert member_products.addmm(x, kernels, None, out)
    expected = _torch_addmm(x, kernels, None)
    assert torch.equal(out.isnan(), expected.isnan())
    assert torch.equal(out.nan_to_num(), expected.nan_to_num())


def test_cases_the_loops_do_not_take_are_left_to_torch(loops):
    x, kernels, biases = torch.randn(4, 8), torch.randn(3, 8, 16), torch.randn(3, 16)
    out = torch.full((3, 4, 16), 7.0)
    for args in [(x.double(), kernels.double(), biases.double(), out.double()),
                 (x.t().contiguous().t(), kernels, biases, out),  # x not contiguous
                 (x, kernels, biases, torch.full((3, 16, 4), 7.0).transpose(1, 2)),
                 (x, kernels.transpose(1, 2).contiguous().transpose(1, 2), biases, out),
                 (x, kernels, biases.t().contiguous().t(), out),
                 (x, kernels[:0], biases[:0], out[:0]), (x[:0], kernels, biases, out[:, :0]),
                 # shapes that do not fit together: nothing written out of bounds
                 (x, kernels, biases, out[:2]), (x, kernels, biases, out[:, :3]),
                 (x[:, :5], kernels, biases, out), (x, kernels, biases[:, :8], out),
                 (x, kernels[:, :, :8], biases, out)]:
        assert not member_products.addmm(*args)
    assert torch.equal(out, torch.full((3, 4, 16), 7.0))
    dy, grad = torch.randn(3, 4, 16), torch.full((3, 8, 16), 7.0)
    assert not member_products.kernel_grad(x, dy.transpose(1, 2).contiguous().transpose(1, 2),
                                           grad)
    assert not member_products.kernel_grad(x.half(), dy.half(), grad.half())
    for wrong_dy, wrong_grad in [(dy[:, :3], grad), (dy, grad[:2]), (dy, grad[:, :7]),
                                 (dy[:, :, :8], grad)]:
        assert not member_products.kernel_grad(x, wrong_dy, wrong_grad)
    weights = torch.zeros(3, 8, 16, requires_grad=True)
    assert not member_products.kernel_grad(x, dy, weights)  # autograd must see the write
    assert torch.equal(grad, torch.full((3, 8, 16), 7.0))


def test_reduced_precision_float32_products_are_left_to_torch(loops):
    # torch's own float32 products are then oneDNN's bfloat16 ones, not the BLAS sgemm
    before = torch.backends.mkldnn.matmul.fp32_precision
    torch.backends.mkldnn.matmul.fp32_precision = "bf16"
    try:
        assert not member_products.available()
        assert not member_products.addmm(torch.randn(4, 8), torch.randn(2, 8, 16), None,
                                         torch.empty(2, 4, 16))
    finally:
        torch.backends.mkldnn.matmul.fp32_precision = before
    assert member_products.available()


def test_without_the_native_kernels_the_functions_say_so(monkeypatch):
    monkeypatch.setenv("REGLAB_NATIVE", "0")
    assert native.library() is None
    assert not member_products.available()
    assert not member_products.addmm(torch.randn(4, 8), torch.randn(2, 8, 16), None,
                                     torch.empty(2, 4, 16))
    assert not member_products.kernel_grad(torch.randn(4, 8), torch.randn(2, 4, 16),
                                           torch.empty(2, 8, 16))


def _members():
    # two seed groups (one of three, one of two and a group of one), 32 units: the shared
    # first layer's per-member float32 products
    return [Member([Dense(32, activation="relu", input_shape=(784,),
                          kernel_regularizer=L1L2(l1=1e-4 * (p % 2), l2=1e-3)),
                    Dropout(0.1 * p), Dense(10, activation="softmax")],
                   "adam", seed=min(p // 3, 2), name=f"m{p}") for p in range(6)]


def _train():
    rng = np.random.default_rng(0)
    x, y = rng.random((100, 784), dtype=np.float32), rng.integers(0, 10, 100)
    population = Population(_members())
    population.fit(x, y, batch_size=32, epochs=2)
    return {key: w.detach().clone() for key, w in population.state.weights.items()}


def test_training_with_the_loops_gets_torchs_weights(loops, monkeypatch):
    calls = []
    real_addmm, real_grad = member_products.addmm, member_products.kernel_grad
    monkeypatch.setattr(member_products, "addmm",
                        lambda *a: calls.append("addmm") or real_addmm(*a))
    monkeypatch.setattr(member_products, "kernel_grad",
                        lambda *a: calls.append("grad") or real_grad(*a))
    # the kernel's gradient made by Adam's step, member by member, with the same sgemm
    real_step = PendingKernelGradient.adam_step
    monkeypatch.setattr(PendingKernelGradient, "adam_step",
                        lambda self, *a: calls.append("grad") or real_step(self, *a))
    with_loops = _train()
    assert {"addmm", "grad"} <= set(calls)
    monkeypatch.setattr(member_products, "available", lambda: False)
    with_torch = _train()
    assert with_loops.keys() == with_torch.keys()
    for key in with_loops:
        assert torch.equal(with_loops[key], with_torch[key]), key


def test_a_one_by_one_product_is_left_to_torch(loops):
    # torch makes a (1, 1) product otherwise than its sgemm: its own call, its own bits
    g = torch.Generator().manual_seed(3)
    x, kernels, biases = torch.randn(1, 300, generator=g), torch.randn(2, 300, 1, generator=g), \
        torch.randn(2, 1, generator=g)
    out = torch.full((2, 1, 1), 7.0)
    assert not member_products.addmm(x, kernels, biases, out)
    assert not member_products.kernel_grad(torch.randn(300, 1, generator=g),
                                           torch.randn(2, 300, 1, generator=g), out)
    assert torch.equal(out, torch.full((2, 1, 1), 7.0))


def test_tensors_whose_memory_is_not_their_values_are_left_to_torch(loops):
    x, kernels, out = torch.randn(4, 8), torch.randn(2, 8, 16), torch.full((2, 4, 16), 7.0)
    assert not member_products.addmm(x, torch._neg_view(kernels), None, out)
    assert not member_products.addmm(x, torch._efficientzerotensor(2, 8, 16), None, out)
    assert not member_products.kernel_grad(torch._neg_view(x), torch.randn(2, 4, 16),
                                           torch.empty(2, 8, 16))
    assert torch.equal(out, torch.full((2, 4, 16), 7.0))


def test_a_write_counts_as_in_place_for_autograd(loops):
    # a tensor autograd saved and the loops overwrote: backward refuses, as after torch's out=
    w = torch.randn(2, 4, 16, requires_grad=True)
    saved = w.exp()
    assert member_products.addmm(torch.randn(4, 8), torch.randn(2, 8, 16), None,
                                 saved.detach())
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        saved.sum().backward()


def test_a_double_backward_is_torchs(loops):
    # the kernel's gradient with a graph (a gradient penalty): the loops stand aside, and the
    # per-member torch calls refuse as they always did, rather than cut the graph silently
    from reglab.layers.shared_input import MemberGroups, shared_input_linear

    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 8, 20, generator=g, requires_grad=True)
    kernel = torch.randn(3, 20, 16, generator=g, requires_grad=True)
    bias = torch.randn(3, 16, generator=g, requires_grad=True)
    y = shared_input_linear(x, kernel, bias, MemberGroups.single(3, "cpu"))
    with pytest.raises(RuntimeError, match="out="):
        torch.autograd.grad((y ** 2).sum(), kernel, create_graph=True)
    assert not member_products.kernel_grad(x[0].detach(), torch.randn(3, 8, 16,
                                                                      requires_grad=True),
                                           torch.empty(3, 20, 16))
