"""The native penalty kernels against closed-form math in float64 and against the torch
path they replace; a row's result independent of its neighbours and of where it starts;
the fallbacks (disabled, no compiler, a failing build, cases the kernels do not take)."""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from reglab import native
from reglab.native import penalty as native_penalty
from reglab.regularizers.penalty import add_penalty_gradient_, weight_penalty

HAS_COMPILER = shutil.which("cc") is not None or shutil.which("gcc") is not None


@pytest.fixture
def kernels(monkeypatch):
    monkeypatch.setenv("REGLAB_NATIVE", "1")
    if native.library() is None:
        if HAS_COMPILER:
            pytest.fail("a C compiler is here but the native kernels did not build")
        pytest.skip("no C compiler: the native kernels are not built here")
    return native.library()


def _weights(rows, n, seed=0):
    return torch.randn(rows, n, generator=torch.Generator().manual_seed(seed)) * 0.1


# 1 and 13 elements (a scalar tail only), 4097 (a block and one), 50,176 (the first kernel
# of the 784-64 layer)
SIZES = [1, 13, 64, 4097, 50176]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("terms", ["l1", "l2", "both", "floats"])
def test_value_is_the_closed_form_in_float64(kernels, n, terms):
    rows = 3
    w = _weights(rows, n)
    l1 = torch.tensor([0.01, 0.5, 0.0]) if terms in ("l1", "both") else 0.0
    l2 = torch.tensor([0.03, 0.0, 2.0]) if terms in ("l2", "both") else 0.0
    if terms == "floats":
        l1, l2 = 0.01, 0.002
    value = native_penalty.weight_penalty(w, l1, l2)
    assert value is not None and value.dtype == torch.float32 and value.shape == (rows,)
    w64 = w.double()
    l1_64 = torch.as_tensor(l1, dtype=torch.float64).float().double()
    l2_64 = torch.as_tensor(l2, dtype=torch.float64).float().double()
    expected = l1_64 * w64.abs().sum(-1) + l2_64 * w64.square().sum(-1)
    torch.testing.assert_close(value.double(), expected.expand(rows), rtol=2e-7, atol=0)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("terms", ["l1", "l2", "both", "floats"])
def test_gradient_is_torchs_bit_for_bit_with_signed_zeros_and_non_finite_weights(
        kernels, monkeypatch, n, terms):
    rows = 4
    w = _weights(rows, n, seed=1)
    special = torch.tensor([-0.0, 0.0, float("inf"), -float("inf"), float("nan")])
    w.view(-1)[:min(5, w.numel())] = special[:min(5, w.numel())]
    l1 = torch.tensor([0.01, 0.5, 0.0, 3e-3]) if terms in ("l1", "both") else 0.0
    l2 = torch.tensor([0.03, 0.0, 0.0, 1e-4]) if terms in ("l2", "both") else 0.0
    if terms == "floats":
        l1, l2 = 0.01, 0.002
    grad = torch.randn(rows, n, generator=torch.Generator().manual_seed(2))
    grad.view(-1)[::7] = -0.0
    by_kernel, by_torch = grad.clone(), grad.clone()
    assert native_penalty.add_penalty_gradient_(by_kernel, w, l1, l2)
    monkeypatch.setenv("REGLAB_NATIVE", "0")
    add_penalty_gradient_(by_torch, w, l1, l2)
    for r in range(rows):
        # rows whose strengths are all zero are left as they were (torch adds 0 * w: a
        # -0.0 becomes +0.0, an infinite weight NaN)
        idle = all(float(v[r] if isinstance(v, torch.Tensor) else v) == 0 for v in (l1, l2))
        expected = grad[r] if idle else by_torch[r]
        assert np.array_equal(by_kernel[r].numpy().view(np.uint32),
                              expected.numpy().view(np.uint32)), f"row {r}"


@pytest.mark.parametrize("n", [13, 64, 4097])
def test_a_row_gets_the_same_bits_alone_and_among_others_at_any_offset(kernels, n):
    """Rows of 13 floats start 52 bytes apart: each row of a stack is computed from other
    alignments than the same row alone."""
    rows = 7
    w = _weights(rows, n, seed=3)
    l1 = torch.rand(rows, generator=torch.Generator().manual_seed(4))
    l2 = torch.rand(rows, generator=torch.Generator().manual_seed(5))
    grad = torch.randn(rows, n, generator=torch.Generator().manual_seed(6))
    values = native_penalty.weight_penalty(w, l1, l2)
    stacked = grad.clone()
    native_penalty.add_penalty_gradient_(stacked, w, l1, l2)
    for r in range(rows):
        alone_w = torch.empty(n + 1)[1:].copy_(w[r]).unsqueeze(0)  # a 4-byte offset
        alone = grad[r:r + 1].clone()
        assert torch.equal(native_penalty.weight_penalty(alone_w, l1[r:r + 1], l2[r:r + 1]),
                           values[r:r + 1])
        native_penalty.add_penalty_gradient_(alone, alone_w, l1[r:r + 1], l2[r:r + 1])
        assert torch.equal(alone[0], stacked[r])


def test_rows_without_a_strength_are_not_read(kernels):
    w = _weights(4, 100)
    w[1] = float("nan")
    w[3] = float("inf")
    l1 = torch.tensor([0.1, 0.0, 0.2, 0.0])
    l2 = torch.tensor([0.0, 0.0, 0.3, 0.0])
    value = native_penalty.weight_penalty(w, l1, l2)
    assert value[1] == 0 and value[3] == 0 and torch.isfinite(value).all()
    grad = torch.zeros(4, 100)
    native_penalty.add_penalty_gradient_(grad, w, l1, l2)
    assert torch.equal(grad[1], torch.zeros(100)) and torch.equal(grad[3], torch.zeros(100))


def test_cases_the_kernels_do_not_take_fall_back_to_torch(kernels):
    w = _weights(3, 10)
    assert native_penalty.weight_penalty(w.double(), 0.1, 0.0) is None
    assert native_penalty.weight_penalty(w.t(), 0.1, 0.0) is None  # not contiguous
    assert native_penalty.weight_penalty(w, torch.tensor([0.1, 0.2, 0.3],
                                                         dtype=torch.float64), 0.0) is None
    assert native_penalty.weight_penalty(w, torch.tensor([0.1, 0.2]), 0.0) is None
    leaf = w.clone().requires_grad_()
    assert native_penalty.weight_penalty(leaf, 0.1, 0.2) is None  # autograd needs a graph
    total = weight_penalty(leaf, 0.1, 0.2, member_axis=0).sum()
    total.backward()  # the torch path: differentiable
    torch.testing.assert_close(leaf.grad, 0.1 * torch.sign(w) + 0.4 * w)
    with torch.no_grad():
        assert native_penalty.weight_penalty(leaf, 0.1, 0.2) is not None
    assert not native_penalty.add_penalty_gradient_(torch.zeros(3, 11), w, 0.1, 0.0)
    assert not native_penalty.add_penalty_gradient_(w, w, 0.1, 0.0)  # grad is the weights


def test_disabled_by_the_environment(monkeypatch):
    monkeypatch.setenv("REGLAB_NATIVE", "0")
    assert native.library() is None
    assert native_penalty.weight_penalty(_weights(2, 5), 0.1, 0.0) is None
    expected = 0.1 * _weights(2, 5).abs().sum(-1)
    torch.testing.assert_close(weight_penalty(_weights(2, 5), 0.1, 0.0, member_axis=0),
                               expected)


def test_a_failing_build_warns_once_and_leaves_the_torch_path(monkeypatch, tmp_path):
    failing = tmp_path / "cc"
    failing.write_text("#!/bin/sh\necho 'cc: error: no such thing' >&2\nexit 1\n")
    failing.chmod(0o755)
    monkeypatch.setenv("CC", str(failing))
    monkeypatch.setenv("REGLAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("REGLAB_NATIVE", "1")
    native._load.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="no such thing"):
            assert native.library() is None
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert native.library() is None  # tried once per process
        torch.testing.assert_close(weight_penalty(_weights(2, 5), 0.0, 0.5, member_axis=0),
                                   0.5 * _weights(2, 5).square().sum(-1))
        assert not list((tmp_path / "cache").rglob("*.so"))  # no half-built library left
    finally:
        native._load.cache_clear()


@pytest.fixture
def fresh_build(monkeypatch, tmp_path):
    """A build from nothing: the kernels enabled, the machine's compiler, the cache under
    ``tmp_path`` unless the test says otherwise, temp files under ``tmp_path / "tmp"``, and
    this process's loaded library forgotten before and after."""
    if not HAS_COMPILER:
        pytest.skip("no C compiler")
    monkeypatch.setenv("REGLAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("REGLAB_NATIVE", "1")
    monkeypatch.delenv("CC", raising=False)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    native._load.cache_clear()
    yield tmp_path
    native._load.cache_clear()


def test_the_build_is_cached_and_reused(fresh_build):
    assert native.library() is not None
    (built,) = list((fresh_build / "cache").rglob("*.so"))
    stamp = built.stat().st_mtime_ns
    native._load.cache_clear()
    assert native.library() is not None
    assert list((fresh_build / "cache").rglob("*.so")) == [built]
    assert built.stat().st_mtime_ns == stamp


def test_an_unwritable_cache_falls_back_to_a_private_temp_dir(fresh_build, monkeypatch):
    blocker = fresh_build / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("REGLAB_CACHE_DIR", str(blocker))  # mkdir under a file fails
    assert native.library() is not None
    assert len(list((fresh_build / "tmp").rglob("kernels-*.so"))) == 1


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
def test_a_cache_others_can_write_is_not_trusted(fresh_build, monkeypatch):
    """A library waiting in a directory anyone could write to might have been planted: it
    is neither loaded nor added to; the kernels are built in a fresh private directory."""
    compiler = native._compiler()
    sources = [Path(native.__file__).parent / n for n in native._SOURCES]
    name = native._build(compiler, sources).name  # what a build here is called
    shared = fresh_build / "shared"
    (shared / "native").mkdir(parents=True)
    (shared / "native").chmod(0o777)
    (shared / "native" / name).write_bytes(b"planted: not the library we built")
    monkeypatch.setenv("REGLAB_CACHE_DIR", str(shared))
    path = native._build(compiler, sources)
    assert path.parent.parent == fresh_build / "tmp"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # loading the planted file would fail and warn
        assert native.library() is not None
    assert [p.name for p in (shared / "native").iterdir()] == [name]


def test_cc_with_arguments_is_split_into_words(fresh_build, monkeypatch):
    monkeypatch.setenv("CC", f"{shutil.which('cc') or shutil.which('gcc')} -std=gnu11")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert native.library() is not None


def test_cpu_signature_tells_arm_cores_apart(monkeypatch):
    """ARM's /proc/cpuinfo has no 'model name' or 'flags': its 'Features' and 'CPU part'
    decide what -march=native builds for."""
    def cpuinfo(part, features):
        return (f"processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: {features}\n"
                f"CPU implementer\t: 0x41\nCPU architecture: 8\nCPU part\t: {part}\n")
    texts = iter([cpuinfo("0xd0c", "fp asimd"), cpuinfo("0xd40", "fp asimd sve")])
    monkeypatch.setattr(native.Path, "read_text", lambda self: next(texts))
    assert native._cpu_signature() != native._cpu_signature()
