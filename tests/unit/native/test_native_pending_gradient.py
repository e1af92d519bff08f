"""The first kernel's gradient left pending until Adam's step (native/pending_gradient.py):
made member by member inside the step it gives the bits of the gradient made whole (checked
against torch's own products) and then Adam's native step; training with it gives the
weights training without it gives, where the step makes it and where the engine must make it
whole first (clipping, decoupled decay, penalties the step does not fold, other optimizers,
members that diverge mid-step)."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
import torch

from reglab import native, optimizers
from reglab.engine import Member, Population
from reglab.layers import Dense, Dropout
from reglab.native import adam, pending_gradient
from reglab.native.pending_gradient import PendingKernelGradient
from reglab.regularizers import L1L2, GroupLasso, ProximalL1


@pytest.fixture
def fused(monkeypatch):
    monkeypatch.setenv("REGLAB_NATIVE", "1")
    if not pending_gradient.fused_step_available():
        pytest.skip("no C compiler or no BLAS sgemm in torch's library here")


def _case(members, rows, n_in, units, groups, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(groups), rows, n_in, generator=g)
    dy = torch.randn(members, rows, units, generator=g)
    w = torch.randn(members, n_in, units, generator=g)
    m = torch.randn(members, n_in, units, generator=g) * 0.1
    v = torch.rand(members, n_in, units, generator=g) * 0.01
    return x, dy, w, m, v


@pytest.mark.parametrize("members, rows, n_in, units, groups", [
    (45, 32, 784, 64, tuple(slice(9 * i, 9 * i + 9) for i in range(5))),
    (4, 1, 5, 16, (slice(0, 1), slice(1, 4))),
    (3, 128, 33, 48, (slice(0, 3),)),
    (5, 7, 20, 16, (slice(0, 2), slice(2, 2), slice(2, 5)))])  # an empty group
@pytest.mark.parametrize("with_parts", [True, False])
def test_the_fused_step_is_the_whole_gradient_and_then_adam_bit_for_bit(
        fused, members, rows, n_in, units, groups, with_parts):
    x, dy, w, m, v = _case(members, rows, n_in, units, groups, rows + n_in)
    pending = PendingKernelGradient(x, dy, groups)
    grad = pending.materialize()
    # the gradient made whole: torch's own product for each member, bit for bit
    for g, who in enumerate(groups):
        for p in range(who.start, who.stop):
            assert torch.equal(grad[p], torch.mm(x[g].t(), dy[p])), p
    # each member its own hyperparameters and step; beta_1 on both sides of lerp's 0.5
    hyper = {}
    for p in range(members):
        hyper.setdefault((1e-3 * (p + 1), 0.9 if p % 2 else 0.3, 0.999, 1e-7, p + 1),
                         []).append(p)
    table = adam.coefficients(hyper, members)
    sign = torch.tensor([0.01 * (p % 2) for p in range(members)]) if with_parts else None
    decay = torch.tensor([0.02 * (p % 3 == 0) for p in range(members)]) if with_parts else None
    whole = [t.clone() for t in (w, m, v)]
    native.library().reglab_adam_step(
        1, adam.pointers([whole[0]]), adam.pointers([grad]), adam.pointers([whole[1]]),
        adam.pointers([whole[2]]), (ctypes.c_int64 * 1)(n_in * units), members, table,
        adam.pointers([sign]), adam.pointers([decay]))
    pending.adam_step(w, m, v, table, sign, decay)
    for name, mine, theirs in zip("wmv", (w, m, v), whole):
        assert torch.equal(mine, theirs), name


def test_the_cases_it_does_not_take_keep_a_whole_gradient(fused):
    x, dy, w, _, _ = _case(4, 8, 12, 16, (slice(0, 4),), 0)
    groups = (slice(0, 4),)
    assert PendingKernelGradient.applies(x, w, dy, groups)
    assert not PendingKernelGradient.applies(x, w, dy, (torch.arange(4),))  # not a slice
    assert not PendingKernelGradient.applies(x.double(), w.double(), dy.double(), groups)
    assert not PendingKernelGradient.applies(x, w.transpose(1, 2).contiguous().transpose(1, 2),
                                             dy, groups)
    odd = torch.randn(4, 12, 10)  # 120 floats a member: not whole 16-float blocks
    assert not PendingKernelGradient.applies(x, odd, torch.randn(4, 8, 10), groups)


def test_without_the_native_kernels_nothing_is_left_pending(monkeypatch):
    monkeypatch.setenv("REGLAB_NATIVE", "0")
    x, dy, w, _, _ = _case(2, 4, 8, 16, (slice(0, 2),), 1)
    assert not PendingKernelGradient.applies(x, w, dy, (slice(0, 2),))


def _members(optimizer, first_regularizer=None, seeds=(0, 0, 1, 1, 1, 2), inputs=50):
    return [Member([Dense(32, activation="relu", input_shape=(inputs,),
                          kernel_regularizer=first_regularizer(p) if first_regularizer else None),
                    Dropout(0.1 * (p % 3)), Dense(10, activation="softmax",
                                                  kernel_regularizer=L1L2(l2=1e-3))],
                   optimizer(p), seed=s, name=f"m{p}") for p, s in enumerate(seeds)]


def _l1_l2(p):
    return L1L2(l1=1e-3 * (p % 2), l2=1e-2 * (p % 3 != 1))


def _adam(p):
    return optimizers.Adam(learning_rate=1e-3 * (1 + p), beta_1=0.9 if p % 2 else 0.4)


#: (name, optimizer per member, first kernel's regularizer per member, whether Adam's step
#: makes the pending gradient)
CASES = [
    ("adam, l1 and l2 folded", _adam, _l1_l2, True),
    ("adam, no penalty", _adam, None, True),
    ("adamw: l2 not folded (decoupled decay)", lambda p: optimizers.AdamW(1e-3, weight_decay=0.01),
     _l1_l2, False),
    ("adamw without penalties", lambda p: optimizers.AdamW(1e-3, weight_decay=0.01), None, True),
    ("clipnorm", lambda p: optimizers.Adam(1e-3, clipnorm=0.5), _l1_l2, False),
    ("amsgrad", lambda p: optimizers.Adam(1e-3, amsgrad=True), _l1_l2, False),
    ("sgd", lambda p: optimizers.SGD(0.05, momentum=0.9), _l1_l2, False),
    ("group lasso (its own gradient)", _adam, lambda p: GroupLasso(1e-3), False),
]


def _train(case, pending_on, monkeypatch, x=None, y=None):
    _, optimizer, regularizer, _ = case
    rng = np.random.default_rng(0)
    if x is None:
        x, y = rng.normal(size=(90, 50)).astype(np.float32), rng.integers(0, 10, 90)
    population = Population(_members(optimizer, regularizer, inputs=x.shape[1]))
    with monkeypatch.context() as patch:
        if not pending_on:
            patch.setattr(PendingKernelGradient, "applies", staticmethod(lambda *a: False))
        result = population.fit(x, y, batch_size=16, epochs=2)
    return ({m: population.member_weights(m) for m in population.member_ids},
            [(r.status, r.history) for r in result.members])


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_training_with_a_pending_gradient_gives_the_same_weights(fused, monkeypatch, case):
    made, stepped = [], []
    real_materialize, real_step = PendingKernelGradient.materialize, PendingKernelGradient.adam_step
    monkeypatch.setattr(PendingKernelGradient, "materialize",
                        lambda self: made.append(1) or real_materialize(self))
    monkeypatch.setattr(PendingKernelGradient, "adam_step",
                        lambda self, *a: stepped.append(1) or real_step(self, *a))
    weights, logs = _train(case, True, monkeypatch)
    assert bool(stepped) == case[3] and bool(made) != case[3]  # which path each step took
    weights_off, logs_off = _train(case, False, monkeypatch)
    assert logs == logs_off
    for m, own in weights_off.items():
        for key, value in own.items():
            assert torch.equal(weights[m][key], value), (m, key)


def test_a_member_that_diverges_mid_step_leaves_the_others_the_same_weights(fused, monkeypatch):
    # one member's learning rate makes its loss overflow: it is dropped after the backward,
    # with the pending gradient made whole for the members kept
    def optimizer(p):
        return optimizers.Adam(1e30 if p == 2 else 1e-3)
    case = ("diverging", optimizer, _l1_l2, True)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(90, 50)).astype(np.float32) * 50, rng.integers(0, 10, 90)
    made = []
    real = PendingKernelGradient.materialize
    monkeypatch.setattr(PendingKernelGradient, "materialize",
                        lambda self: made.append(1) or real(self))
    weights, logs = _train(case, True, monkeypatch, x, y)
    weights_off, logs_off = _train(case, False, monkeypatch, x, y)
    assert made, "the divergence check did not make the pending gradient whole"
    assert [status for status, _ in logs] == ["done", "done", "diverged", "done", "done", "done"]
    assert logs == logs_off
    for m, own in weights_off.items():
        for key, value in own.items():
            assert torch.equal(weights[m][key], value), (m, key)


def test_proximal_l1_beside_members_without_it_keeps_the_same_weights(fused, monkeypatch):
    # a kernel of 300 x 32 floats a member: the penalties run on the rows of the members
    # that have one (their gradient part folded into the step), the others untouched
    case = ("proximal beside none", _adam, lambda p: ProximalL1(1e-3) if p % 2 else None, True)
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(90, 300)).astype(np.float32), rng.integers(0, 10, 90)
    stepped = []
    real = PendingKernelGradient.adam_step
    monkeypatch.setattr(PendingKernelGradient, "adam_step",
                        lambda self, *a: stepped.append(1) or real(self, *a))
    weights, logs = _train(case, True, monkeypatch, x, y)
    assert stepped
    weights_off, logs_off = _train(case, False, monkeypatch, x, y)
    assert logs == logs_off
    for m, own in weights_off.items():
        for key, value in own.items():
            assert torch.equal(weights[m][key], value), (m, key)


def test_a_step_interrupted_in_its_update_leaves_no_gradient_behind(fused, monkeypatch):
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(90, 50)).astype(np.float32), rng.integers(0, 10, 90)
    population = Population(_members(_adam, _l1_l2))
    population.fit(x, y, batch_size=16, epochs=1)
    real = PendingKernelGradient.adam_step

    def interrupted(self, *args):
        monkeypatch.setattr(PendingKernelGradient, "adam_step", real)
        raise KeyboardInterrupt
    monkeypatch.setattr(PendingKernelGradient, "adam_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        population.fit(x, y, batch_size=16, epochs=1)
    assert not population.state.pending_grads
    assert all(w.grad is None for w in population.state.weights.values())
    population.discard_members([population.member_ids[0]])  # fewer rows than the step had
    population.fit(x, y, batch_size=16, epochs=1)
    assert len(population.state.member_ids) == 5 and population.results[1].status == "done"
