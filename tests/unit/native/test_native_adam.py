"""The native Adam step against torch's fused kernel (bit for bit on rows whose length is a
multiple of its vector width, members with their own hyperparameters, steps and coupled
decay), a row's bits independent of its length's neighbours and offset, and the cases left
to torch."""

from __future__ import annotations

import pytest
import torch

from reglab import native
from reglab.native import adam as native_adam
from reglab.optimizers import Adam


@pytest.fixture
def kernels(monkeypatch):
    monkeypatch.setenv("REGLAB_NATIVE", "1")
    if native.library() is None:
        pytest.skip("no C compiler: the native kernels are not built here")


# per member: (lr, beta_1, beta_2, epsilon); beta_1 = 0.3 and 0.0 take lerp's other branch
HYPER = [(1e-3, 0.9, 0.999, 1e-7), (1e-2, 0.3, 0.99, 1e-7), (1e-3, 0.0, 0.5, 1e-4),
         (1e-3, 0.9, 0.999, 1e-7)]


def _torch_step(w, g, m, v, hyper, steps, decay):
    """torch._fused_adam_ on each member's own row, as the engine calls it without the
    kernels."""
    for p, ((lr, b1, b2, eps), step) in enumerate(zip(hyper, steps)):
        torch._fused_adam_([w[p]], [g[p]], [m[p]], [v[p]], [], [torch.full((), float(step))],
                           lr=lr, beta1=b1, beta2=b2, weight_decay=decay[p],
                           eps=eps / (1 - b2**step) ** 0.5, amsgrad=False, maximize=False)


def _groups(hyper, steps):
    groups: dict[tuple, list[int]] = {}
    for p, (h, step) in enumerate(zip(hyper, steps)):
        groups.setdefault((*h, step), []).append(p)
    return groups


def _run(n, steps_per_member, decay, native_path, seed=0):
    gen = torch.Generator().manual_seed(seed)
    rows = len(HYPER)
    w = torch.randn(rows, n, generator=gen) * 0.05
    m, v = torch.zeros(rows, n), torch.zeros(rows, n)
    for k in range(5):
        g = torch.randn(rows, n, generator=gen) * 1e-2
        steps = [s + k for s in steps_per_member]
        if native_path:
            assert native_adam.step([w], [g], [m], [v], _groups(HYPER, steps),
                                    [decay] if any(decay) else None)
        else:
            _torch_step(w, g, m, v, HYPER, steps, decay)
    return w, m, v


@pytest.mark.parametrize("n", [16, 64, 640, 50176])
@pytest.mark.parametrize("decay", [[0.0] * 4, [0.02, 0.0, 0.1, 0.004]], ids=["plain", "decay"])
def test_torchs_fused_kernel_bit_for_bit(kernels, n, decay):
    ours = _run(n, [1, 1, 3, 10], decay, native_path=True)
    theirs = _run(n, [1, 1, 3, 10], decay, native_path=False)
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)


@pytest.mark.parametrize("n", [1, 10, 13])
def test_other_lengths_close_to_torch_and_a_row_independent_of_its_place(kernels, n):
    """torch's scalar tail rounds the last elements of these rows otherwise (round-off);
    the kernel gives a row the same bits alone, at another offset, as among others."""
    decay = [0.02, 0.0, 0.1, 0.004]
    ours = _run(n, [1, 1, 3, 10], decay, native_path=True)
    theirs = _run(n, [1, 1, 3, 10], decay, native_path=False)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-9)
    gen = torch.Generator().manual_seed(7)
    w = torch.randn(4, n, generator=gen)
    g = torch.randn(4, n, generator=gen)
    m = torch.randn(4, n, generator=gen) * 0.1
    v = torch.rand(4, n, generator=gen) * 0.1
    stacked = [t.clone() for t in (w, m, v)]
    steps = [2, 2, 5, 9]
    native_adam.step([stacked[0]], [g], [stacked[1]], [stacked[2]], _groups(HYPER, steps),
                     [decay])
    for p in range(4):
        alone = [torch.empty(n + 3)[3:].copy_(t[p]).unsqueeze(0) for t in (w, m, v)]
        native_adam.step([alone[0]], [g[p:p + 1].clone()], [alone[1]], [alone[2]],
                         _groups(HYPER[p:p + 1], steps[p:p + 1]), [decay[p:p + 1]])
        for a, b in zip(alone, stacked):
            assert torch.equal(a[0], b[p])


def test_cases_left_to_torch(kernels):
    w = torch.zeros(2, 16)
    hyper = _groups(HYPER[:2], [1, 1])
    assert not native_adam.step([w.double()], [w.double()], [w.double()], [w.double()], hyper,
                                None)
    assert not native_adam.step([w], [torch.zeros(2, 8)], [w], [w], hyper, None)
    assert not native_adam.step([w[:, ::2]], [w[:, ::2]], [w[:, ::2]], [w[:, ::2]], hyper,
                                None)  # not contiguous
    assert torch.equal(w, torch.zeros(2, 16))  # nothing touched


def test_adam_steps_by_the_kernel_and_amsgrad_by_torch(kernels, monkeypatch):
    """Adam.apply takes the kernel on a CPU in float32; amsgrad (a third moment) stays
    torch's."""
    from reglab.optimizers.optimizers import OptimizerMembers

    calls = []
    real = native_adam.step
    monkeypatch.setattr(native_adam, "step", lambda *a: calls.append(1) or real(*a))
    for amsgrad in (False, True):
        opt = Adam(1e-3, amsgrad=amsgrad)
        w, g = torch.randn(2, 32), torch.randn(2, 32)
        stacked = {name: torch.zeros(2, 32) for name in opt.slots()}
        members = OptimizerMembers([opt.hyperparameters()] * 2, [1, 1], torch.float32,
                                   torch.device("cpu"))
        before = w.clone()
        opt.apply([w], [g], [stacked], members)
        assert not torch.equal(w, before)
    assert len(calls) == 1


def test_a_decay_list_of_the_wrong_length_is_refused_as_by_torch(kernels):
    """The kernel reads one coefficient per row: a short list goes to the torch path,
    which raises, rather than past the end of a buffer."""
    from reglab.optimizers.optimizers import OptimizerMembers

    opt = Adam(1e-3)
    w, g = torch.randn(4, 16), torch.randn(4, 16)
    stacked = {name: torch.zeros(4, 16) for name in opt.slots()}
    members = OptimizerMembers([opt.hyperparameters()] * 4, [1] * 4, torch.float32,
                               torch.device("cpu"))
    assert not native_adam.step([w], [g], [stacked["m"]], [stacked["v"]],
                                members.groups(Adam._FUSED_KEYS), [[0.5]])
    with pytest.raises(IndexError):
        opt.apply([w], [g], [stacked], members, decay=[[0.5]])


def test_a_weight_swapped_for_a_non_contiguous_one_in_place_is_checked_again(kernels):
    """The fitness of the weights is remembered while the same tensors on the same memory
    come back; ``w.data = ...`` keeps the object but not the memory."""
    w, g = torch.randn(2, 16), torch.randn(2, 16)
    m, v = torch.zeros(2, 16), torch.zeros(2, 16)
    hyper = _groups(HYPER[:2], [1, 1])
    assert native_adam.step([w], [g], [m], [v], hyper, None)
    w.data = torch.randn(16, 2).t()  # same object, other memory, not contiguous
    assert not native_adam.step([w], [g], [m], [v], hyper, None)


def test_two_threads_stepping_their_own_weights(kernels):
    """Two populations stepping in two Python threads: each step uses the pointer arrays of
    its own tensors (the kernel's cache of them is replaced whole, never read half-made)."""
    import gc
    import sys
    import threading

    hyper = {(1e-3, 0.9, 0.999, 1e-7, 1): [0]}

    def make(seed, n):
        g = torch.Generator().manual_seed(seed)
        return (torch.randn(1, n, generator=g), torch.zeros(1, n), torch.zeros(1, n),
                [torch.randn(1, n, generator=g) for _ in range(4)])

    def train(w, m, v, grads):
        for k in range(400):
            assert native_adam.step([w], [grads[k % 4]], [m], [v], hyper, None)

    def run(threaded):
        a, b = make(1, 256), make(2, 512)
        if threaded:
            threads = [threading.Thread(target=train, args=x) for x in (a, b)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        else:
            train(*a)
            train(*b)
        return a[0], b[0]

    alone = run(False)
    interval, collecting = sys.getswitchinterval(), gc.isenabled()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter will
    gc.disable()
    try:
        for _ in range(3):
            together = run(True)
            assert torch.equal(together[0], alone[0]) and torch.equal(together[1], alone[1])
    finally:
        sys.setswitchinterval(interval)
        if collecting:
            gc.enable()
