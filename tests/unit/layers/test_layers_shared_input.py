"""The shared-input GEMM (layers/shared_input.py) against each member's own product,
written here in plain PyTorch: the same outputs and gradients, bitwise where the
member's columns fill whole vector tiles, to round-off otherwise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autograd_helpers import forward_and_grads as run
from reglab.engine import Member, Population
from reglab.layers import Dense, Dropout, Flatten, shared_input
from reglab.layers.shared_input import MemberGroups, shared_input_linear


def reference(x, kernel, bias, rows):
    """Each member alone: ``x[row] @ kernel[m] + bias[m]``, one product per member, the bias
    added as Keras adds it (in a half-precision dtype, after the product's rounding)."""
    return torch.stack([x[row] @ kernel[m] if bias is None else
                        (torch.addmm(bias[m], x[row], kernel[m]) if x.dtype not in HALF
                         else (x[row] @ kernel[m]) + bias[m]) for m, row in enumerate(rows)])


HALF = (torch.bfloat16, torch.float16)


@pytest.mark.parametrize("rows", [[0, 0, 0, 1, 1, 2], [1, 0, 2, 0, 1, 0], [0, 2, 2], [0]],
                         ids=["contiguous", "interleaved", "empty-group", "one"])
@pytest.mark.parametrize("units", [32, 5])
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_outputs_and_gradients_match_each_member_alone(rows, units, use_bias, dtype):
    g = torch.Generator().manual_seed(len(rows) * units)
    groups = max(rows) + 1
    x = torch.rand(groups, 11, 24, generator=g).to(dtype)
    kernel = torch.randn(len(rows), 24, units, generator=g).to(dtype)
    bias = torch.randn(len(rows), units, generator=g).to(dtype) if use_bias else None
    upstream = torch.randn(len(rows), 11, units, generator=g).to(dtype)
    member_groups = MemberGroups.from_rows(rows, "cpu")
    got = run(lambda x, k, b: shared_input_linear(x, k, b, member_groups), x, kernel, bias,
              upstream)
    want = run(lambda x, k, b: reference(x, k, b, rows), x, kernel, bias, upstream)
    for name, a, b in zip(("y", "x.grad", "kernel.grad", "bias.grad"), got, want):
        if b is None:
            assert a is None, name
        elif units % shared_input.COLUMN_TILE == 0 and name in ("y", "kernel.grad"):
            assert torch.equal(a, b), name
        else:
            # bfloat16 keeps 8 mantissa bits; x.grad sums the group's members in one
            # rounding here and in one per member there
            scale = 1.0 if dtype == torch.float32 else float(b.abs().max())
            tol = 1e-5 if dtype == torch.float32 else 2e-2
            torch.testing.assert_close(a, b, rtol=tol, atol=tol * scale, msg=name)


def test_groups_record_contiguous_members_as_slices():
    groups = MemberGroups.from_rows([0, 0, 1, 0], "cpu")
    assert groups.members[0].tolist() == [0, 1, 3]
    assert groups.members[1] == slice(2, 3)
    assert groups.expand(torch.arange(2.0).view(2, 1)).flatten().tolist() == [0, 0, 1, 0]


def test_a_population_of_several_seeds_takes_the_shared_gemm(monkeypatch):
    calls = []
    original = shared_input.forward_grouped  # both training paths' (engine/direct_step.py)

    def spy(x, kernel, bias, groups, relu=False):
        calls.append((tuple(x.shape), len(groups.members)))
        return original(x, kernel, bias, groups, relu)

    monkeypatch.setattr(shared_input, "forward_grouped", spy)
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 4, 4)).astype("float32"), rng.integers(0, 3, 40)
    members = [Member([Flatten(input_shape=(4, 4)), Dense(16, activation="relu"),
                       Dropout(rate), Dense(3, activation="softmax")], "adam", seed=seed)
               for seed in (0, 1) for rate in (0.0, 0.5)]
    Population(members).fit(x, y, batch_size=20, epochs=1)
    # two training batches, grouped by seed; the Dense(3) output is not a multiple of 16
    assert calls == [((2, 20, 16), 2), ((2, 20, 16), 2)]


@pytest.mark.parametrize("rows", [[0, 0, 1, 1], [0, 1, 0, 1]], ids=["contiguous", "interleaved"])
def test_float32_weights_with_a_bfloat16_input_compute_in_bfloat16(rows):
    """Mixed precision: the weights stay float32 and are cast while laid side by side; the
    result is the all-bfloat16 product and the gradients come back in float32."""
    g = torch.Generator().manual_seed(5)
    x = torch.rand(2, 9, 12, generator=g).bfloat16()
    kernel = torch.randn(4, 12, 16, generator=g)
    bias = torch.randn(4, 16, generator=g)
    upstream = torch.randn(4, 9, 16, generator=g).bfloat16()
    groups = MemberGroups.from_rows(rows, "cpu")
    y, _, grad_kernel, grad_bias = run(lambda x, k, b: shared_input_linear(x, k, b, groups),
                                       x, kernel, bias, upstream)
    want = run(lambda x, k, b: reference(x, k.bfloat16(), b.bfloat16(), rows), x, kernel, bias,
               upstream)
    assert y.dtype == torch.bfloat16 and torch.equal(y, want[0])
    assert grad_kernel.dtype == grad_bias.dtype == torch.float32
    assert torch.equal(grad_kernel, want[2])
    torch.testing.assert_close(grad_bias, want[3], rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("b,n_in,units", [(128, 784, 64), (32, 784, 16), (80, 300, 32)])
@pytest.mark.parametrize("compute", [torch.float32, torch.bfloat16],
                         ids=["per-member", "side-by-side"])
def test_a_member_gets_the_same_bits_in_a_group_of_one_and_of_nine(threads, b, n_in, units,
                                                                   compute):
    """The tutorial's shapes and others, with torch's 1 and 2 intra-op threads: a member's
    outputs and kernel gradient alone and among eight neighbours, in float32 (one product
    per member) and with float32 weights computed in bfloat16 (the group's kernels cast
    side by side into one GEMM)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(b + units)
        x = torch.rand(1, b, n_in, generator=g).to(compute)
        kernel = torch.randn(9, n_in, units, generator=g)
        bias = torch.randn(9, units, generator=g)
        upstream = torch.randn(9, b, units, generator=g).to(compute)
        nine = run(lambda x, k, c: shared_input_linear(x, k, c, MemberGroups.single(9, "cpu")),
                   x, kernel, bias, upstream)
        for m in (0, 4, 8):
            one = run(lambda x, k, c: shared_input_linear(x, k, c, MemberGroups.single(1, "cpu")),
                      x, kernel[m:m + 1], bias[m:m + 1], upstream[m:m + 1])
            assert torch.equal(one[0][0], nine[0][m])
            assert torch.equal(one[2][0], nine[2][m])
    finally:
        torch.set_num_threads(previous)
