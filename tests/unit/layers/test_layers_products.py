"""Half-precision products on a CPU without native ones (layers/products.py).

The widened road (float32 GEMM on the exactly widened operands, one rounding) is checked
against two references written here: the exact product computed in float64 and rounded
once to the compute dtype, and torch's own half-precision operation (a scalar loop on a
CPU without AVX-512, oneDNN's kernels on one with it). Both may differ from the widened
result only where a float32 sum lands next to a rounding boundary: by one unit in the
last place, on a small fraction of the elements. A bias is added as Keras adds it,
``x @ kernel + bias``: to the rounded product, in the compute dtype (a second rounding).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from reglab.layers import products

HALF = [torch.bfloat16, torch.float16]


@pytest.fixture
def widened(monkeypatch):
    """Every half-precision product takes the widened road, whatever this CPU has."""
    monkeypatch.setattr(products, "native_half_products", lambda dtype: False)


def units_in_last_place(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """How many representable numbers of ``a``'s dtype lie between ``a`` and ``b``
    (same sign assumed for nonzero pairs: the bit patterns' distance)."""
    return (a.view(torch.int16).int() - b.view(torch.int16).int()).abs()


def spacing(t: torch.Tensor) -> torch.Tensor:
    """The distance (float64) from each element of ``t`` to the next one away from zero."""
    away = (t.view(torch.int16) + 1).view(t.dtype)
    return (away.double() - t.double()).abs()


def assert_one_rounding_of(got: torch.Tensor, exact: torch.Tensor, magnitude: torch.Tensor,
                           terms: int):
    """``got`` is ``exact`` (float64) rounded once to ``got``'s dtype (within half a unit in
    the last place), but for the float32 sums' own error (at most ``terms`` 2^-24
    ``magnitude``, the sum of the terms' absolute values), which moves the result to a
    neighbour on a few elements and further only where it is a small difference of large
    terms."""
    want = exact.to(got.dtype)
    assert got.dtype == want.dtype and got.shape == want.shape
    error = (got.double() - exact).abs()
    half_unit = 0.5 * torch.maximum(spacing(want), spacing(got))
    assert bool((error <= half_unit + terms * 2.0 ** -24 * magnitude).all())
    assert float((units_in_last_place(got, want) > 0).float().mean()) <= 0.005


def operands(dtype, *shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g).to(dtype) for shape in shapes]


@pytest.mark.parametrize("dtype", HALF)
def test_mm_and_addmm_round_the_exact_product_once(widened, dtype):
    a, b, bias = operands(dtype, (37, 130), (130, 48), (48,))
    a64, b64 = a.double(), b.double()
    size = a64.abs() @ b64.abs()
    assert_one_rounding_of(products.mm(a, b), a64 @ b64, size, 130)
    assert torch.equal(products.addmm(bias, a, b), products.mm(a, b) + bias)
    # transposed views, as the layers' gradients pass them
    assert_one_rounding_of(products.mm(a.t(), a), a64.t() @ a64, a64.abs().t() @ a64.abs(), 37)


@pytest.mark.parametrize("dtype", HALF)
def test_bmm_and_baddbmm_round_the_exact_product_once(widened, dtype):
    a, b, bias = operands(dtype, (5, 19, 70), (5, 70, 33), (5, 1, 33), seed=1)
    a64, b64 = a.double(), b.double()
    size = a64.abs() @ b64.abs()
    assert_one_rounding_of(products.bmm(a, b), a64 @ b64, size, 70)
    assert torch.equal(products.baddbmm(bias, a, b), products.bmm(a, b) + bias)


@pytest.mark.parametrize("dtype", HALF)
def test_the_bias_is_added_after_the_product_s_rounding_as_keras_adds_it(widened, dtype):
    # (1 + e)^2 = 1 + 2e + e^2 exactly in float32, rounded to 1 + 2e in the compute dtype;
    # Keras's x @ kernel + bias adds -(1 + 2e) to that rounded product: 0, where one
    # rounding of the whole (torch's addmm) would keep e^2
    eps = 2.0 ** (-7 if dtype == torch.bfloat16 else -10)
    a = torch.tensor([[1 + eps]], dtype=dtype)
    bias = torch.tensor([-(1 + 2 * eps)], dtype=dtype)
    assert products.mm(a, a).item() == 1 + 2 * eps  # the rounding itself
    assert products.addmm(bias, a, a).item() == 0.0
    assert products.baddbmm(bias.view(1, 1, 1), a.view(1, 1, 1), a.view(1, 1, 1)).item() == 0.0
    image = a.view(1, 1, 1, 1)
    assert products.conv2d(image, image, bias).item() == 0.0


@pytest.mark.parametrize("dtype", HALF)
def test_out_receives_the_rounded_product(widened, dtype):
    a, b, bias = operands(dtype, (8, 24), (24, 16), (16,), seed=2)
    a64, b64 = a.double(), b.double()
    out = torch.empty(8, 16, dtype=dtype)
    assert products.mm(a, b, out=out) is out
    assert_one_rounding_of(out, a64 @ b64, a64.abs() @ b64.abs(), 24)
    wide = torch.zeros(16, 20, dtype=dtype)
    view = wide[:, 2:10].t()  # (8, 16), not contiguous
    assert products.addmm(bias, a, b, out=view) is view
    assert torch.equal(view, products.mm(a, b) + bias)
    assert not wide[:, :2].any() and not wide[:, 10:].any()  # nothing outside the view


@pytest.mark.parametrize("dtype", HALF)
def test_operands_of_another_dtype_are_refused_as_torch_refuses_them(widened, dtype):
    """A float32 operand beside a half one would skip its rounding: refused, as torch's own
    half operations refuse mixed dtypes, and so is an ``out`` of another dtype or shape."""
    a, b, bias = operands(dtype, (4, 6), (6, 3), (3,), seed=7)
    for call in (lambda: products.mm(a, b.float()),
                 lambda: products.addmm(bias.float(), a, b),
                 lambda: products.bmm(a[None], b[None].float()),
                 lambda: products.baddbmm(bias.float(), a[None], b[None]),
                 lambda: products.conv2d(a[None, None], b.float()[None, None, :2, :2]),
                 lambda: products.mm(a, b, out=torch.empty(4, 3)),
                 lambda: products.mm(a, b, out=torch.empty(2, 4, 3, dtype=dtype))):
        with pytest.raises(RuntimeError, match="expected"):
            call()


@pytest.mark.parametrize("dtype", HALF)
def test_widened_products_agree_with_torch_s_own(widened, dtype):
    a, b, bias = operands(dtype, (33, 96), (96, 40), (40,), seed=3)
    for got, own in ((products.mm(a, b), torch.mm(a, b)),
                     (products.addmm(bias, a, b), torch.mm(a, b) + bias),
                     (products.bmm(a[None], b[None]), torch.bmm(a[None], b[None]))):
        ulps = units_in_last_place(got, own)
        assert int(ulps.max()) <= 1 and float((ulps > 0).float().mean()) <= 0.02


def conv_gradients(x, kernel, upstream):
    """The float64 gradients of ``conv2d(x, kernel, stride=(1, 2))`` for ``upstream``."""
    x = x.detach().double().clone().requires_grad_(True)
    kernel = kernel.detach().double().clone().requires_grad_(True)
    F.conv2d(x, kernel, stride=(1, 2)).backward(upstream.double())
    return x.grad, kernel.grad


@pytest.mark.parametrize("dtype", HALF)
def test_conv2d_and_its_gradients_round_once(widened, dtype):
    x, kernel, bias, upstream = operands(dtype, (2, 3, 9, 8), (5, 3, 3, 3), (5,), (2, 5, 7, 3),
                                         seed=4)
    x64, k64 = x.double(), kernel.double()
    x.requires_grad_(True)
    kernel.requires_grad_(True)
    y = products.conv2d(x, kernel, bias, stride=(1, 2), dilation=(1, 1))
    unbiased = products.conv2d(x.detach(), kernel.detach(), stride=(1, 2), dilation=(1, 1))
    assert_one_rounding_of(unbiased, F.conv2d(x64, k64, stride=(1, 2)),
                           F.conv2d(x64.abs(), k64.abs(), stride=(1, 2)), 27)
    assert torch.equal(y.detach(), unbiased + bias.view(1, -1, 1, 1))  # Keras's bias add
    y.backward(upstream)
    assert x.grad.dtype == kernel.grad.dtype == dtype
    exact = conv_gradients(x64, k64, upstream)
    size = conv_gradients(x64.abs(), k64.abs(), upstream.abs())
    assert_one_rounding_of(x.grad, exact[0], size[0], 5 * 9)
    assert_one_rounding_of(kernel.grad, exact[1], size[1], 2 * 7 * 3)


def test_float32_and_float64_products_are_torch_s_own(widened):
    for dtype in (torch.float32, torch.float64):
        a, b, bias = operands(dtype, (17, 40), (40, 24), (24,), seed=6)
        assert not products.widens(a)
        assert torch.equal(products.mm(a, b), torch.mm(a, b))
        assert torch.equal(products.addmm(bias, a, b), torch.addmm(bias, a, b))
        assert products.mm(a, b).dtype == dtype


def test_native_half_products_is_onednn_s_own_check():
    products.native_half_products.cache_clear()
    assert products.native_half_products(torch.bfloat16) \
        == torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert products.native_half_products("float16") \
        == torch.ops.mkldnn._is_mkldnn_fp16_supported()


class _ProductDtypes(TorchDispatchMode):
    """Records the dtypes of the operands of every matrix product and convolution torch runs."""

    OPS = ("mm", "addmm", "bmm", "baddbmm", "convolution", "convolution_backward")

    def __init__(self):
        super().__init__()
        self.seen: dict[str, set] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in self.OPS:
            self.seen.setdefault(name, set()).update(
                a.dtype for a in args if isinstance(a, torch.Tensor))
        return func(*args, **(kwargs or {}))


def test_a_bfloat16_population_multiplies_only_float32_on_the_widened_road(widened):
    """Training a mixed-precision MLP and CNN: with the widening on, no matrix product or
    convolution torch runs, forward or backward, sees a bfloat16 operand (every product of
    the layers goes through layers/products.py); its outputs are bfloat16 all the same."""
    from reglab.engine import Member, Population
    from reglab.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D

    policy = {"dtype": "mixed_bfloat16"}
    rng = np.random.default_rng(0)
    cases = [
        (lambda: [Flatten(input_shape=(4, 8), **policy), Dense(32, activation="relu", **policy),
                  Dropout(0.3, **policy), Dense(24, activation="relu", **policy),
                  Dense(3, activation="softmax")], rng.random((40, 4, 8), dtype="float32"),
         {"mm", "bmm"}),
        (lambda: [Conv2D(4, 3, activation="relu", input_shape=(7, 7, 1), **policy),
                  MaxPooling2D(**policy), Flatten(**policy), Dense(3, activation="softmax")],
         rng.random((40, 7, 7, 1), dtype="float32"), {"convolution", "convolution_backward"}),
    ]
    for build, x, expected in cases:
        y = rng.integers(0, 3, 40)
        population = Population([Member(build(), "adam", seed=seed) for seed in (0, 1)])
        with _ProductDtypes() as spy:
            population.fit(x, y, batch_size=16, epochs=1)
        assert expected <= set(spy.seen), spy.seen  # the spy sees the layers' products
        assert all(dtypes <= {torch.float32} for dtypes in spy.seen.values()), spy.seen
