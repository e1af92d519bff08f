"""Penalties are computed on the rows of the members that have them (on a CPU), or on every
row (on CUDA): the values and gradients against the closed form per member, and untouched
rows for the others, either way."""

from __future__ import annotations

import pytest
import torch

from reglab import native as reglab_native
from reglab.engine import penalties
from reglab.regularizers import L1, L1L2, L2, Regularizer
from reglab.regularizers.regularizers import _WeightPenalty


def test_active_runs_are_the_runs_of_members_with_a_strength():
    assert penalties._active_runs([True, True, False, True]) == (slice(0, 2), slice(3, 4))
    assert penalties._active_runs([False, True, True]) == (slice(1, 3),)
    assert penalties._active_runs([True, True]) is None


@pytest.mark.parametrize("native", [True, False], ids=["native", "torch"])
@pytest.mark.parametrize("shape", [(5, 3), (96, 90)], ids=["small", "runs_from"])
@pytest.mark.parametrize("by_rows", [True, False], ids=["cpu_rows", "every_row"])
def test_values_and_gradients_match_the_closed_form_member_by_member(monkeypatch, by_rows,
                                                                     shape, native):
    """A small tensor is computed on every row either way, a large one (RUNS_FROM
    elements per member) on the runs of members with a strength on a CPU, unless the
    native kernels take it (they skip rows without a strength: one call on every row)."""
    assert (shape[0] * shape[1] >= penalties.RUNS_FROM) == (shape == (96, 90))
    monkeypatch.setenv("REGLAB_NATIVE", "1" if native else "0")
    if native and reglab_native.library() is None:
        pytest.skip("no C compiler: the native kernels are not built here")
    calls = []
    penalty = _WeightPenalty.penalty
    monkeypatch.setattr(_WeightPenalty, "penalty",
                        lambda self, w, values: (calls.append(w.shape[0]),
                                                 penalty(self, w, values))[1])
    regs = [L1(0.01), None, L1(0.0), L1L2(l1=0.002, l2=0.03), L2(0.5), None, L1(0.004)]
    values = [{} if r is None else dict(r.values()) for r in regs]
    monkeypatch.setattr(penalties, "computes_by_rows", lambda device: by_rows)
    terms = penalties.penalty_terms(regs, values, torch.float32, "cpu")
    assert (terms.rows == [None]) is not by_rows  # one family, its members in three runs
    w = torch.randn(len(regs), *shape, generator=torch.Generator().manual_seed(0))
    runs = by_rows and shape == (96, 90) and not native
    if runs or (native and shape == (96, 90)):  # rows without a strength are not read
        w[[1, 2, 5]] = float("nan")
    reported, differentiable = penalties.evaluate(terms, w)
    assert differentiable is None
    # the three runs [0:1], [3:5], [6:7], or every row
    assert calls == ([1, 2, 1] if runs else [len(regs)])
    grad = torch.randn_like(w)
    before = grad.clone()
    penalties.add_gradient(terms, grad, w)
    l1 = [0.01, 0, 0, 0.002, 0, 0, 0.004]
    l2 = [0, 0, 0, 0.03, 0.5, 0, 0]
    for p in range(len(regs)):
        if l1[p] == 0 and l2[p] == 0:
            assert reported[p] == 0 and torch.equal(grad[p], before[p])
            continue
        expected = l1[p] * w[p].abs().sum() + l2[p] * w[p].square().sum()
        torch.testing.assert_close(reported[p], expected, rtol=1e-5, atol=0)
        step = l1[p] * torch.sign(w[p]) + 2 * l2[p] * w[p]
        torch.testing.assert_close(grad[p], before[p] + step, rtol=1e-6, atol=1e-7)


def test_a_plain_callable_beside_a_family_trains_each_member_as_alone():
    """One member's kernel regularizer a plain function (evaluated member by member with
    autograd), another's an L2 (a family), a third without: the population builds, and
    each member's weights and loss are those it gets alone."""
    import numpy as np

    from reglab.engine import Member, Population
    from reglab.layers import Dense

    def square(w):
        return 0.01 * (w**2).sum()

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype("float32")
    y = rng.integers(0, 3, 40)

    def member(i, reg):
        return Member([Dense(3, activation="softmax", input_shape=(4,),
                             kernel_regularizer=reg)], "adam", seed=i)

    regs = [square, L2(0.01), None]
    population = Population([member(i, r) for i, r in enumerate(regs)])
    result = population.fit(x, y, batch_size=8, epochs=2, shuffle=False)
    for i, reg in enumerate(regs):
        alone = Population([member(i, reg)])
        alone_result = alone.fit(x, y, batch_size=8, epochs=2, shuffle=False)
        for key, value in alone.member_weights(0).items():
            assert torch.equal(torch.as_tensor(population.member_weights(i)[key]),
                               torch.as_tensor(value)), (i, key)
        assert result[i].history["loss"] == alone_result[0].history["loss"]
        assert (result[i].history["penalty"][0] > 0) == (reg is not None)


class _MeanL2(Regularizer):
    """``l2 * sum(w**2) / n`` with ``n`` a value: zero values give 0 / 0, not zero."""

    contributes = frozenset({"value"})

    def __init__(self, l2, n):
        self.l2, self.n = l2, n

    def __call__(self, w):
        return self.l2 * (w**2).sum() / self.n

    def family(self):
        return "mean_l2"

    def values(self):
        return {"l2": self.l2, "n": float(self.n)}

    def penalty(self, w, values):
        return values["l2"].reshape(-1) * (w**2).reshape(w.shape[0], -1).sum(-1) \
            / values["n"].reshape(-1)

    def get_config(self):
        return {"l2": self.l2, "n": self.n}


class _FixedL2(Regularizer):
    """A family without values (a fixed strength)."""

    contributes = frozenset({"value"})

    def __call__(self, w):
        return 0.5 * (w**2).sum()

    def family(self):
        return "fixed_l2"

    def penalty(self, w, values):
        return 0.5 * (w**2).reshape(w.shape[0], -1).sum(-1)

    def get_config(self):
        return {}


class _DoubledL2(L2):
    """An L2 subclass that rewrites the gradient (an extra ``0.01 * sign(w)``): a family
    of its own."""

    def add_gradient(self, grad, w, values, include_decay=True):
        super().add_gradient(grad, w, values, include_decay)
        grad.add_(torch.sign(w), alpha=0.01)


@pytest.mark.parametrize("make", [lambda: _MeanL2(0.01, 120), _FixedL2, lambda: _DoubledL2(0.05)],
                         ids=["zero_values_not_a_no_op", "no_values", "subclass_math"])
@pytest.mark.parametrize("hidden", [20, 1400], ids=["every_row_size", "runs_size"])
@pytest.mark.parametrize("where", ["kernel", "activity"])
def test_a_user_family_touches_only_its_own_members(make, hidden, where):
    """Reviewers' cases: a family whose zero values are not exact no-ops was computed on
    every row (the member without it got 0 / 0 and diverged); a family without values was
    applied to every member; an L2 subclass with other math, second in the family, was
    computed with the first member's L2. Each member now trains as alone."""
    import numpy as np

    from reglab.engine import Member, Population
    from reglab.layers import Dense

    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 6)).astype("float32")
    y = rng.integers(0, 3, 32)

    def member(seed, reg):
        return Member([Dense(hidden, activation="relu", input_shape=(6,),
                             **{f"{where}_regularizer": reg}), Dense(3, activation="softmax")],
                      "adam", seed=seed)

    regs = [L2(0.05), make(), None]
    result = Population([member(i, r) for i, r in enumerate(regs)]).fit(
        x, y, batch_size=8, epochs=1, shuffle=False)
    for i, reg in enumerate(regs):
        alone = Population([member(i, reg)]).fit(x, y, batch_size=8, epochs=1, shuffle=False)
        assert result[i].status == alone[0].status == "done", i
        assert result[i].history == alone[0].history, i


def test_a_group_lasso_subclass_with_other_math_is_its_own_family():
    from reglab.regularizers import GroupLasso

    class Doubled(GroupLasso):
        def penalty(self, w, values):
            return 2 * super().penalty(w, values)

    class Same(GroupLasso):
        pass

    assert GroupLasso(0.1).family() == Same(0.1).family() == ("group_lasso", -1)
    assert Doubled(0.1).family() == ("group_lasso", -1, Doubled)
    assert GroupLasso(0.1).vanishes_at_zero and not Doubled(0.1).vanishes_at_zero
    terms = penalties.penalty_terms([GroupLasso(0.1), Doubled(0.1)], [{"strength": 0.1}] * 2,
                                    torch.float32, "cpu")
    assert len(terms.families) == 2


def test_proximal_steps_on_runs_leave_the_other_rows_alone():
    from reglab.regularizers import ProximalL1

    regs = [ProximalL1(0.1), None, ProximalL1(0.2), L2(0.1)]
    values = [{} if r is None else dict(r.values()) for r in regs]
    terms = penalties.penalty_terms(regs, values, torch.float32, "cpu")
    w = torch.randn(len(regs), 96, 90, generator=torch.Generator().manual_seed(1))
    before = w.clone()
    step = torch.full((len(regs), 1, 1), 0.5)
    penalties.proximal_steps(terms, w, step)
    for p, l1 in enumerate([0.1, 0.0, 0.2, 0.0]):
        expected = torch.sign(before[p]) * torch.clamp(before[p].abs() - 0.5 * l1, min=0.0)
        assert torch.equal(w[p], expected if l1 else before[p]), p
