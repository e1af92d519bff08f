"""The transposed product for narrow layers (layers/narrow_linear.py) against each member's
own ``x @ W + b`` in plain PyTorch, and the choice of orientation by width alone."""

from __future__ import annotations

import pytest
import torch

from reglab.layers import narrow_linear


def _run(fn, x, kernel, bias, upstream):
    leaves = [t.detach().clone().requires_grad_(True) if t is not None else None
              for t in (x, kernel, bias)]
    y = fn(*leaves)
    (y * upstream).sum().backward()
    return [y.detach()] + [None if t is None else t.grad for t in leaves]


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("members,batch,n_in,units", [(3, 7, 5, 2), (1, 33, 64, 10),
                                                       (4, 1, 3, 15)])
def test_outputs_and_gradients_match_plain_products(use_bias, dtype, members, batch, n_in,
                                                    units):
    g = torch.Generator().manual_seed(members * 100 + units)
    x = torch.randn(members, batch, n_in, generator=g, dtype=dtype)
    kernel = torch.randn(members, n_in, units, generator=g, dtype=dtype)
    bias = torch.randn(members, units, generator=g, dtype=dtype) if use_bias else None
    upstream = torch.randn(members, batch, units, generator=g, dtype=dtype)

    def plain(x, k, b):
        return torch.stack([x[m] @ k[m] + (0 if b is None else b[m]) for m in range(members)])

    got = _run(narrow_linear.narrow_linear, x, kernel, bias, upstream)
    want = _run(plain, x, kernel, bias, upstream)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for name, a, b in zip(("y", "x.grad", "kernel.grad", "bias.grad"), got, want):
        if b is None:
            assert a is None, name
            continue
        assert a.shape == b.shape and a.is_contiguous(), name
        torch.testing.assert_close(a, b, rtol=tol, atol=tol, msg=name)


def test_orientation_depends_on_width_only():
    assert narrow_linear.applies(10) and narrow_linear.applies(1)
    assert not narrow_linear.applies(narrow_linear.NARROW_UNITS)
    assert not narrow_linear.applies(64)


def test_a_member_computes_the_same_bits_in_a_population_as_alone():
    g = torch.Generator().manual_seed(0)
    x, kernel = torch.randn(6, 32, 64, generator=g), torch.randn(6, 64, 10, generator=g)
    bias = torch.randn(6, 10, generator=g)
    together = narrow_linear.narrow_linear(x, kernel, bias)
    for m in range(6):
        alone = narrow_linear.narrow_linear(x[m:m + 1], kernel[m:m + 1], bias[m:m + 1])
        assert torch.equal(together[m], alone[0])
