"""Penalties are computed on the rows of the members that have them (on a CPU), or on every
row (on CUDA): the values and gradients against the closed form per member, and untouched
rows for the others, either way."""

from __future__ import annotations

import pytest
import torch

from reglab.engine import penalties
from reglab.regularizers import L1, L1L2, L2


def test_active_runs_are_the_runs_of_members_with_a_strength():
    assert penalties._active_runs([True, True, False, True]) == (slice(0, 2), slice(3, 4))
    assert penalties._active_runs([False, True, True]) == (slice(1, 3),)
    assert penalties._active_runs([True, True]) is None


@pytest.mark.parametrize("by_rows", [True, False], ids=["cpu_rows", "every_row"])
def test_values_and_gradients_match_the_closed_form_member_by_member(monkeypatch, by_rows):
    regs = [L1(0.01), None, L1(0.0), L1L2(l1=0.002, l2=0.03), L2(0.5), None, L1(0.004)]
    values = [{} if r is None else dict(r.values()) for r in regs]
    monkeypatch.setattr(penalties, "computes_by_rows", lambda device: by_rows)
    terms = penalties.penalty_terms(regs, values, torch.float32, "cpu")
    assert (terms.rows == [None]) is not by_rows  # one family, its members in three runs
    w = torch.randn(len(regs), 5, 3, generator=torch.Generator().manual_seed(0))
    reported, differentiable = penalties.evaluate(terms, w)
    assert differentiable is None
    grad = torch.randn_like(w)
    before = grad.clone()
    penalties.add_gradient(terms, grad, w)
    l1 = [0.01, 0, 0, 0.002, 0, 0, 0.004]
    l2 = [0, 0, 0, 0.03, 0.5, 0, 0]
    for p in range(len(regs)):
        expected = l1[p] * w[p].abs().sum() + l2[p] * w[p].square().sum()
        torch.testing.assert_close(reported[p], expected, rtol=1e-6, atol=0)
        step = l1[p] * torch.sign(w[p]) + 2 * l2[p] * w[p]
        torch.testing.assert_close(grad[p], before[p] + step, rtol=1e-6, atol=1e-7)
        if l1[p] == 0 and l2[p] == 0:
            assert reported[p] == 0 and torch.equal(grad[p], before[p])
