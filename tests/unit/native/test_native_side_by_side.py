"""The mixed-precision first layer's kernels laid side by side (float32 -> bfloat16) and its
gradient taken back (bfloat16 -> float32) by the C kernels, and its two-byte outputs and
output gradients moved between the two layouts: torch's copies bit for bit, and training
with them gives the weights training without them gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reglab import mixed_precision, native
from reglab.engine import Member, Population
from reglab.layers import Dense, Dropout
from reglab.native import side_by_side


@pytest.fixture
def kernels(monkeypatch):
    monkeypatch.setenv("REGLAB_NATIVE", "1")
    if native.library() is None:
        pytest.skip("no C compiler: the native kernels are not built here")


def _awkward(shape, seed=0) -> torch.Tensor:
    """Random float32 values with the cases a cast can get wrong spread through them."""
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(shape, generator=g) * 10 ** torch.randint(-6, 6, shape, generator=g)
    special = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e-40,
                            -1e-45, 3.4e38, -3.4e38, 1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8),
                            1 + 2**-8 + 2**-20, 2.0**-126, 65504.0, 1.0])
    flat = t.view(-1)
    where = torch.randperm(flat.numel(), generator=g)[: min(flat.numel(), 400)]
    flat[where] = special[torch.arange(where.numel()) % special.numel()]
    return t


@pytest.mark.parametrize("members, rows, width, who", [
    (45, 784, 64, slice(9, 18)), (5, 7, 16, slice(0, 5)), (6, 3, 10, slice(2, 5)),
    (4, 33, 48, slice(3, 4)), (3, 1, 80, slice(0, 2))])
def test_laying_side_by_side_is_torchs_cast_bit_for_bit(kernels, members, rows, width, who):
    t = _awkward((members, rows, width))
    reference = torch.empty(rows, who.stop - who.start, width, dtype=torch.bfloat16)
    reference.copy_(t.permute(1, 0, 2)[:, who])
    side = torch.full_like(reference, 7.0)
    assert side_by_side.lay(t[who], side)
    assert torch.equal(side.view(torch.int16), reference.view(torch.int16))


@pytest.mark.parametrize("members, rows, width, who", [
    (45, 784, 64, slice(9, 18)), (6, 3, 10, slice(2, 5)), (3, 1, 80, slice(0, 2))])
def test_taking_back_is_exact_and_touches_only_the_group(kernels, members, rows, width, who):
    k = who.stop - who.start
    side = _awkward((rows, k, width), seed=1).to(torch.bfloat16)
    side.view(torch.int16)[0, 0, :3] = torch.tensor([0x7FC1, -1, -32767], dtype=torch.int16)
    dest = torch.full((members, rows, width), 5.0)
    reference = dest.clone()
    reference.permute(1, 0, 2)[:, who] = side
    assert side_by_side.take(side, dest[who])
    assert torch.equal(dest.view(torch.int32), reference.view(torch.int32))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("members, rows, width, who", [
    (45, 128, 64, slice(9, 18)), (6, 3, 10, slice(2, 5)), (3, 1, 80, slice(0, 2))])
def test_two_byte_blocks_move_between_the_layouts_bit_for_bit(kernels, dtype, members, rows,
                                                             width, who):
    k = who.stop - who.start
    blocks = _awkward((members, rows, width), seed=2).to(dtype)
    blocks.view(torch.int16)[who.start, 0, :2] = torch.tensor([0x7FC1, -1], dtype=torch.int16)
    side = torch.full((rows, k, width), 3.0, dtype=dtype)
    assert side_by_side.lay(blocks[who], side)
    assert torch.equal(side.view(torch.int16),
                       blocks.permute(1, 0, 2)[:, who].contiguous().view(torch.int16))
    dest = torch.full((members, rows, width), 5.0, dtype=dtype)
    reference = dest.clone()
    reference.permute(1, 0, 2)[:, who] = side
    assert side_by_side.take(side, dest[who])
    assert torch.equal(dest.view(torch.int16), reference.view(torch.int16))


def test_cases_the_kernels_do_not_take_are_left_to_torch(kernels):
    members = torch.randn(3, 4, 16)
    side = torch.empty(4, 3, 16, dtype=torch.bfloat16)
    untouched = side.clone()
    for wrong_members, wrong_side in [
            (members.double(), side), (members, side.float()), (members, side.half()),
            (members[:, :, ::2], torch.empty(4, 3, 8, dtype=torch.bfloat16)),  # strided rows
            (members.transpose(1, 2), torch.empty(16, 3, 4, dtype=torch.bfloat16)),
            (members, torch.empty(3, 4, 16, dtype=torch.bfloat16)),  # not (rows, k, width)
            (members, torch.empty(4, 16, 3, dtype=torch.bfloat16).transpose(1, 2)),
            (members[:0], torch.empty(4, 0, 16, dtype=torch.bfloat16))]:
        assert not side_by_side.lay(wrong_members, wrong_side)
    assert not side_by_side.take(side, members.double())
    assert not side_by_side.take(side, torch.empty(3, 4, 16, dtype=torch.float16))
    assert not side_by_side.lay(members.half(), side)  # two dtypes of two bytes
    weights = torch.zeros(3, 4, 16, requires_grad=True)
    assert not side_by_side.take(side, weights)  # autograd must see an in-place write
    assert torch.equal(side.view(torch.int16), untouched.view(torch.int16))


def test_without_the_kernels_the_functions_say_so(monkeypatch):
    monkeypatch.setenv("REGLAB_NATIVE", "0")
    side = torch.empty(4, 3, 16, dtype=torch.bfloat16)
    assert not side_by_side.lay(torch.randn(3, 4, 16), side)
    assert not side_by_side.take(side, torch.empty(3, 4, 16))


def _members():
    # two seed groups of two: the first layer's 32-unit kernels are laid side by side
    return [Member([Dense(32, activation="relu", input_shape=(784,)), Dropout(0.1 * p),
                    Dense(10, activation="softmax", dtype="float32")],
                   "adam", seed=p % 2, name=f"m{p}") for p in range(4)]


def _train():
    rng = np.random.default_rng(0)
    x, y = rng.random((96, 784), dtype=np.float32), rng.integers(0, 10, 96)
    population = Population(sorted(_members(), key=lambda m: m.seed))
    population.fit(x, y, batch_size=32, epochs=2)
    return {key: w.detach().clone() for key, w in population.state.weights.items()}


def test_mixed_bfloat16_training_gets_the_torch_copies_weights(kernels, monkeypatch):
    mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        calls = []
        real = side_by_side._call
        monkeypatch.setattr(side_by_side, "_call", lambda *a: calls.append(
            (a[0], side_by_side._kind(a[1], a[2]))) or real(*a))
        with_kernels = _train()
        # the kernels' casts, the outputs taken from the GEMM, the gradients laid for it
        assert {("lay", "bf16"), ("take", "bf16"), ("lay", "u16"), ("take", "u16")} <= \
            set(calls)
        # only these kernels off (the others round a 10-element row otherwise)
        monkeypatch.setattr(side_by_side, "_call", lambda *a: False)
        with_torch = _train()
    finally:
        mixed_precision.set_global_policy("float32")
    assert with_kernels.keys() == with_torch.keys()
    for key in with_kernels:
        assert torch.equal(with_kernels[key], with_torch[key]), key
