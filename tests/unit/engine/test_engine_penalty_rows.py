"""Penalties are computed on the rows of the members that have them (on a CPU), or on every
row (on CUDA): the values and gradients against the closed form per member, and untouched
rows for the others, either way."""

from __future__ import annotations

import pytest
import torch

from reglab.engine import penalties
from reglab.regularizers import L1, L1L2, L2
from reglab.regularizers.regularizers import _WeightPenalty


def test_active_runs_are_the_runs_of_members_with_a_strength():
    assert penalties._active_runs([True, True, False, True]) == (slice(0, 2), slice(3, 4))
    assert penalties._active_runs([False, True, True]) == (slice(1, 3),)
    assert penalties._active_runs([True, True]) is None


@pytest.mark.parametrize("shape", [(5, 3), (96, 90)], ids=["small", "runs_from"])
@pytest.mark.parametrize("by_rows", [True, False], ids=["cpu_rows", "every_row"])
def test_values_and_gradients_match_the_closed_form_member_by_member(monkeypatch, by_rows,
                                                                     shape):
    """A small tensor is computed on every row either way, a large one (RUNS_FROM
    elements per member) on the runs of members with a strength on a CPU."""
    assert (shape[0] * shape[1] >= penalties.RUNS_FROM) == (shape == (96, 90))
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
    reported, differentiable = penalties.evaluate(terms, w)
    assert differentiable is None
    # the three runs [0:1], [3:5], [6:7], or every row
    assert calls == ([1, 2, 1] if by_rows and shape == (96, 90) else [len(regs)])
    grad = torch.randn_like(w)
    before = grad.clone()
    penalties.add_gradient(terms, grad, w)
    l1 = [0.01, 0, 0, 0.002, 0, 0, 0.004]
    l2 = [0, 0, 0, 0.03, 0.5, 0, 0]
    for p in range(len(regs)):
        expected = l1[p] * w[p].abs().sum() + l2[p] * w[p].square().sum()
        torch.testing.assert_close(reported[p], expected, rtol=1e-5, atol=0)
        step = l1[p] * torch.sign(w[p]) + 2 * l2[p] * w[p]
        torch.testing.assert_close(grad[p], before[p] + step, rtol=1e-6, atol=1e-7)
        if l1[p] == 0 and l2[p] == 0:
            assert reported[p] == 0 and torch.equal(grad[p], before[p])


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
