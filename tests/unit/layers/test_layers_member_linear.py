"""Per-member products (layers/member_linear.py, layers/narrow_linear.py): each member of a
population gets the bits it gets alone, outputs and all three gradients, whatever its
position, for shapes that keep torch's batched product and for those that do not (odd
batches, narrow inputs, one unit), in float32, float64 and bfloat16."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from autograd_helpers import forward_and_grads as run
from reglab.engine import Member, Population
from reglab.layers import Dense, member_linear, narrow_linear
from reglab.optimizers import SGD, Adam

SHAPES = list(itertools.product([1, 7, 13, 16, 32], [6, 16, 64], [1, 5, 13, 20, 32]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("use_bias", [True, False])
def test_each_member_gets_its_bits_alone(dtype, use_bias):
    mismatches = []
    for rows, inputs, units in SHAPES:
        g = torch.Generator().manual_seed(rows * 1000 + inputs * 10 + units)
        members = 5
        x = torch.randn(members, rows, inputs, generator=g).to(dtype)
        kernel = torch.randn(members, inputs, units, generator=g).to(dtype)
        bias = torch.randn(members, units, generator=g).to(dtype) if use_bias else None
        upstream = torch.randn(members, rows, units, generator=g).to(dtype)
        fn = (narrow_linear.narrow_linear if narrow_linear.applies(units)
              else member_linear.member_linear)
        together = run(fn, x, kernel, bias, upstream)
        for m in range(members):
            alone = run(fn, x[m:m + 1], kernel[m:m + 1],
                        None if bias is None else bias[m:m + 1], upstream[m:m + 1])
            for name, a, b in zip(("y", "x.grad", "kernel.grad", "bias.grad"), together, alone):
                if b is not None and not torch.equal(a[m], b[0]):
                    mismatches.append((rows, inputs, units, m, name))
    assert not mismatches, mismatches[:10]


def test_the_products_match_plain_torch():
    g = torch.Generator().manual_seed(0)
    for rows, inputs, units in [(13, 6, 5), (32, 64, 20), (7, 16, 1)]:
        x = torch.randn(3, rows, inputs, generator=g, dtype=torch.float64)
        kernel = torch.randn(3, inputs, units, generator=g, dtype=torch.float64)
        bias = torch.randn(3, units, generator=g, dtype=torch.float64)
        upstream = torch.randn(3, rows, units, generator=g, dtype=torch.float64)
        fn = (narrow_linear.narrow_linear if narrow_linear.applies(units)
              else member_linear.member_linear)
        got = run(fn, x, kernel, bias, upstream)
        want = run(lambda x, k, b: x @ k + b.unsqueeze(1), x, kernel, bias, upstream)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_the_batched_product_is_kept_for_full_batches_of_a_wide_layer():
    cpu = torch.device("cpu")
    assert member_linear.batched_is_alone(32, 64, 10, cpu)
    assert member_linear.batched_is_alone(128, 64, 2, cpu)
    assert not member_linear.batched_is_alone(13, 64, 10, cpu)  # a last partial batch
    assert not member_linear.batched_is_alone(32, 6, 10, cpu)  # six features
    assert not member_linear.batched_is_alone(32, 64, 1, cpu)  # one unit


def test_aligned_blocks_start_every_member_on_64_bytes():
    t = torch.arange(3 * 13 * 5, dtype=torch.float32).view(3, 13, 5)
    blocks = member_linear.aligned_blocks(t)
    assert torch.equal(blocks, t)
    assert all(blocks[m].data_ptr() % 64 == 0 and blocks[m].is_contiguous() for m in range(3))
    aligned = torch.zeros(3, 16, 4)
    assert member_linear.aligned_blocks(aligned) is aligned
    alone = torch.zeros(1, 13, 5)  # one member: its block needs no padding
    assert member_linear.aligned_blocks(alone) is alone


SCRIPT = """
import numpy as np, torch
torch.set_num_threads(1)
from reglab.engine import Member, Population
from reglab.layers import Dense
from reglab.optimizers import SGD
rng = np.random.default_rng(0)
x = rng.normal(size=(SAMPLES, 6)).astype("float32")
y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)
def member(seed):
    return Member([Dense(HIDDEN, activation="relu", input_shape=(6,)),
                   Dense(3, activation="softmax")], SGD(0.1), seed=seed)
population = Population([member(seed) for seed in range(4)])
population.fit(x, y, batch_size=8, epochs=1, shuffle=False)
for seed in range(4):
    alone = Population([member(seed)])
    alone.fit(x, y, batch_size=8, epochs=1, shuffle=False)
    for key, value in alone.member_weights(0).items():
        if not torch.equal(torch.as_tensor(population.member_weights(seed)[key]),
                           torch.as_tensor(value)):
            print("differs", seed, key)
print("checked")
"""


@pytest.mark.parametrize("samples", [64, 60], ids=["full_batches", "partial_last"])
@pytest.mark.parametrize("hidden", [13, 20])
def test_a_narrow_first_layer_trains_each_member_as_alone_without_mkl_strict(hidden, samples):
    """A reviewer's case, in a process without ``MKL_CBWR`` (as a library user's script:
    the tests and ``reglab run`` set it, which hid this): a Dense(13) fed 6 features,
    batches of 8, SGD; the member at position 1 had another first kernel than alone (MKL's
    batched product rounded its misaligned block differently)."""
    env = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
    script = SCRIPT.replace("SAMPLES", str(samples)).replace("HIDDEN", str(hidden))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["checked"], out.stdout


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_one_unit_output_trains_each_member_as_alone(optimizer):
    """A Dense(1) sigmoid output (binary crossentropy): torch's batched product takes
    another path for several one-column products than for one, even with MKL_CBWR set."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(96, 16)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("float32")

    def member(seed):
        model = [Dense(64, activation="relu", input_shape=(16,)),
                 Dense(1, activation="sigmoid")]
        return Member(model, SGD(0.1) if optimizer == "sgd" else Adam(0.01), seed=seed)

    population = Population([member(seed) for seed in range(3)], loss="binary_crossentropy",
                            metrics=())
    population.fit(x, y, batch_size=32, epochs=2, shuffle=False)
    for seed in range(3):
        alone = Population([member(seed)], loss="binary_crossentropy", metrics=())
        alone.fit(x, y, batch_size=32, epochs=2, shuffle=False)
        for key, value in alone.member_weights(0).items():
            assert torch.equal(torch.as_tensor(population.member_weights(seed)[key]),
                               torch.as_tensor(value)), (seed, key)


def test_an_input_every_member_shares_is_aligned_once_not_per_member():
    """A first layer off the shared GEMM sees ``groups.expand(x)``: stride 0 over the
    members. Aligning it copies one block (when misaligned), not one per member."""
    shared = torch.randn(1, 13, 6).expand(45, 13, 6)
    out = member_linear.aligned_blocks(shared)
    assert out.stride(0) == 0 and out.data_ptr() == shared.data_ptr()
    offset = torch.randn(13 * 6 + 1)[1:].view(1, 13, 6).expand(45, 13, 6)  # 4 bytes in
    out = member_linear.aligned_blocks(offset)
    assert out.stride(0) == 0 and out.data_ptr() % 64 == 0 and torch.equal(out, offset)
