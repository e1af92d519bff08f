"""Regularizers over a population: grouped by family, each family computed for all members.

For one weight (or one layer's output), the members' regularizers are grouped by their
:meth:`~reglab.regularizers.Regularizer.family`; each family's values (strengths) are
stacked into per-member values (zero for members of another family, see
:mod:`reglab.engine.values`), and its math runs once on the stacked tensor. A family
whose values are zero for every present member is skipped. On a CPU it runs on the rows
of the members with a non-zero value only (one slice per run of such members) when each
member's tensor is large (:data:`RUNS_FROM` elements or more); for smaller tensors, and on
other devices (CUDA), on every row, since each operation's dispatch costs more than the
arithmetic of the other rows, whose values are zero (a family's penalty and gradient
vanish at zero values, for finite weights). A member's rows get the same per-row math
either way. Regularizers without a family
(user-defined callables) are evaluated member by member, with autograd.

What a family contributes is what its regularizer declares in ``contributes``: a
``'value'`` (added to the reported loss, and differentiated by autograd unless it also
declares ``'gradient'``), a ``'gradient'`` added to the weight's gradient by the update
chain, a ``'proximal'`` step after the optimizer's.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from reglab.engine.values import Value, is_active, member_values


@dataclass
class PenaltyTerms:
    """The regularization of one tensor for the present members."""

    #: (the family's regularizer, its per-member values), families with a non-zero value
    families: list[tuple[Any, dict[str, Value]]] = field(default_factory=list)
    #: per member, a regularizer evaluated member by member (or None); None when none has one
    custom: list[Any] | None = None
    #: per family, the runs of members whose values are not all zero, as slices; None when
    #: that is every member, or off the CPU. Value and gradient are computed on those rows
    #: only.
    rows: list[tuple[slice, ...] | None] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.families) or self.custom is not None

    @property
    def differentiable(self) -> bool:
        """Whether :func:`evaluate` gives a part for autograd to differentiate."""
        return self.custom is not None or bool(self.without_capability("gradient"))

    def with_capability(self, capability: str) -> list[tuple[Any, dict[str, Value]]]:
        return [(reg, values) for reg, values in self.families if capability in reg.contributes]

    def without_capability(self, capability: str) -> list[tuple[Any, dict[str, Value]]]:
        return [(reg, values) for reg, values in self.families
                if capability not in reg.contributes]


def penalty_terms(regularizers: Sequence[Any], values: Sequence[dict[str, float]],
                  dtype: torch.dtype, device) -> PenaltyTerms:
    """Groups the present members' ``regularizers`` (with their ``values``) into terms."""
    terms = PenaltyTerms()
    by_rows = computes_by_rows(device)
    families: dict[Any, Any] = {}
    member_families = [_family_of(reg) for reg in regularizers]
    for reg, family in zip(regularizers, member_families):
        if family is not None and family not in families:
            families[family] = reg
    for family, representative in families.items():
        names = list(representative.values())
        stacked = {}
        for name in names:
            column = [vals.get(name, 0.0) if own == family else 0.0
                      for own, vals in zip(member_families, values)]
            stacked[name] = member_values(column, dtype, device)
        if any(is_active(v) for v in stacked.values()) or not names:
            terms.families.append((representative, stacked))
            # Every row only where zero values are exact no-ops, and off the CPU; a family
            # without values is its own members' rows, whatever the device.
            exact_elsewhere = bool(names) and representative.vanishes_at_zero
            terms.rows.append(_active_runs([
                own == family and (not names or any(member_vals.get(name, 0.0) != 0
                                                    for name in names))
                for own, member_vals in zip(member_families, values)])
                if by_rows or not exact_elsewhere else None)
    custom = [reg if reg is not None and family is None else None
              for reg, family in zip(regularizers, member_families)]
    if any(reg is not None for reg in custom):
        terms.custom = custom
    return terms


#: per-member tensor size (elements) from which a CPU computes a family on its members'
#: runs only; below it, on every row at once. Measured at P = 45 (the 784-64-10 model, L1
#: and L2 members in two runs per seed group): the 640-element second kernel on every row
#: took a batch-32 step from 8.79 to 8.40 ms; the 50,176-element first kernel stays by runs.
RUNS_FROM = 8192


def _runs(reg, rows: tuple[slice, ...] | None, w: torch.Tensor) -> tuple[slice, ...] | None:
    """``rows``, or None (every row) for a family whose zero values are exact no-ops on a
    tensor smaller than :data:`RUNS_FROM` per member, or whose math leaves zero-valued rows
    unread (``skips_zero_rows``: one call then costs what its own rows would)."""
    if rows is None or not reg.vanishes_at_zero or not w.shape[0]:
        return rows
    if w.numel() // w.shape[0] < RUNS_FROM:
        return None
    skips = getattr(reg, "skips_zero_rows", None)
    return None if skips is not None and skips(w) else rows


def _family_of(reg) -> Any:
    """The regularizer's family, or None: no regularizer, a plain callable, or a
    :class:`~reglab.regularizers.Regularizer` evaluated member by member."""
    family = getattr(reg, "family", None) if reg is not None else None
    return family() if callable(family) else None


def computes_by_rows(device) -> bool:
    """Whether families are computed on their members' rows only (on a CPU), rather than
    on every row (elsewhere; see the module docstring)."""
    return torch.device(device).type == "cpu"


def _active_runs(active: list[bool]) -> tuple[slice, ...] | None:
    """The runs of ``True`` in ``active`` as slices; None when every member is active."""
    if all(active):
        return None
    runs, start = [], None
    for position, flag in enumerate([*active, False]):
        if flag and start is None:
            start = position
        elif not flag and start is not None:
            runs.append(slice(start, position))
            start = None
    return tuple(runs)


def _rows_of(values: dict[str, Value], rows: slice) -> dict[str, Value]:
    return {name: v[rows] if isinstance(v, torch.Tensor) else v for name, v in values.items()}


def family_penalty(reg, values: dict[str, Value], rows: tuple[slice, ...] | None,
                   w: torch.Tensor) -> torch.Tensor:
    """``reg.penalty`` per member, computed on the active rows only (zero elsewhere): the
    same per-row math, so a member's value does not depend on its neighbours."""
    rows = _runs(reg, rows, w)
    if rows is None:
        return reg.penalty(w, values)
    total = w.new_zeros(w.shape[0])
    for run in rows:
        total[run] = reg.penalty(w[run], _rows_of(values, run))
    return total


def evaluate(terms: PenaltyTerms, w: torch.Tensor) -> tuple[torch.Tensor | None,
                                                          torch.Tensor | None]:
    """``(reported, differentiable)`` penalties of the stacked ``w`` ``(P, ...)``, each
    ``(P,)`` or None: ``reported`` is the families whose gradient the update chain adds
    (computed without autograd), ``differentiable`` the rest (for the backward pass)."""
    reported = differentiable = None
    for (reg, values), rows in zip(terms.families, terms.rows):
        if "gradient" in reg.contributes:
            with torch.no_grad():
                term = family_penalty(reg, values, rows, w)
            reported = term if reported is None else reported + term
        else:
            term = family_penalty(reg, values, rows, w)
            differentiable = term if differentiable is None else differentiable + term
    if terms.custom is not None:
        term = torch.stack([reg(w[p]) if reg is not None else w.new_zeros(())
                            for p, reg in enumerate(terms.custom)])
        differentiable = term if differentiable is None else differentiable + term
    return reported, differentiable


def add_gradient(terms: PenaltyTerms, grad: torch.Tensor, w: torch.Tensor,
                 include_decay: bool = True, include_sign: bool = True) -> None:
    """Adds to ``grad`` the gradients of the families that declare ``'gradient'``; without
    their linear parts (:func:`coupled_decay`) unless ``include_decay``, and without their
    sign parts (:func:`coupled_sign`) unless ``include_sign``."""
    for (reg, values), rows in zip(terms.families, terms.rows):
        if "gradient" not in reg.contributes:
            continue
        kwargs = {}
        if not include_decay and _coupled(reg, values, "decay") is not None:
            kwargs["include_decay"] = False
        if not include_sign and _coupled(reg, values, "sign_coefficient") is not None:
            kwargs["include_sign"] = False
        rows = _runs(reg, rows, w)
        if rows is None:
            reg.add_gradient(grad, w, values, **kwargs)
        else:
            for run in rows:
                reg.add_gradient(grad[run], w[run], _rows_of(values, run), **kwargs)


#: the families whose gradient is its linear and sign parts and nothing else
_COUPLED_PARTS_ONLY = ("l1_l2", "proximal_l1")


def gradient_is_folded(terms: PenaltyTerms, decay_folded: bool, sign_folded: bool) -> bool:
    """Whether :func:`add_gradient` adds nothing once the optimizer's step adds the linear
    part (``decay_folded``) and the sign part (``sign_folded``): every family with a
    gradient is the built-in L1/L2 math (whose gradient is those two parts) with no active
    part left out of the step. A family of other math counts as adding something."""
    for reg, values in terms.with_capability("gradient"):
        if reg.family() not in _COUPLED_PARTS_ONLY:  # (a subclass's math is another family)
            return False
        for part, folded in (("decay", decay_folded), ("sign_coefficient", sign_folded)):
            c = getattr(reg, part)(values)
            if not folded and c is not None and is_active(c):
                return False
    return True


def proximal_steps(terms: PenaltyTerms, w: torch.Tensor, step_size) -> None:
    """Applies, in place, the proximal step of the families that declare ``'proximal'``
    (``step_size``: the optimizer's, a float or a tensor with a member axis), on their
    rows (see :func:`penalty_terms`)."""
    for (reg, values), rows in zip(terms.families, terms.rows):
        if "proximal" not in reg.contributes or not any(is_active(v) for v in values.values()):
            continue
        rows = _runs(reg, rows, w)
        if rows is None:
            w.copy_(reg.proximal(w, step_size, values))
            continue
        for run in rows:
            size = step_size[run] if isinstance(step_size, torch.Tensor) and \
                step_size.dim() and step_size.shape[0] == w.shape[0] else step_size
            w[run] = reg.proximal(w[run], size, _rows_of(values, run))


def coupled_decay(terms: PenaltyTerms) -> list[float] | None:
    """Each member's coefficient ``c`` of the linear part ``c * w`` of its penalties'
    gradient (the families whose regularizer declares :meth:`decay`), as floats that
    hold the training dtype's value exactly; None when it is zero for every member."""
    return _coupled_total(terms, "decay")


def coupled_sign(terms: PenaltyTerms) -> list[float] | None:
    """Each member's coefficient ``s`` of the part ``s * sign(w)`` of its penalties'
    gradient (the families whose regularizer declares :meth:`sign_coefficient`), as
    :func:`coupled_decay`."""
    return _coupled_total(terms, "sign_coefficient")


def _coupled_total(terms: PenaltyTerms, part: str) -> list[float] | None:
    total = None
    for reg, values in terms.with_capability("gradient"):
        c = _coupled(reg, values, part)
        if c is not None and is_active(c):
            total = c if total is None else total + c
    return None if total is None else total.reshape(-1).tolist()


#: per coupled part: the regularizer's method and the ``add_gradient`` flag that leaves it out
_PARTS = {"decay": "include_decay", "sign_coefficient": "include_sign"}


def _coupled(reg, values: dict[str, Value], part: str) -> Value | None:
    """``reg.decay(values)`` or ``reg.sign_coefficient(values)``, or None when its
    ``add_gradient`` cannot leave that part out (a subclass that overrides it without the
    flag keeps its whole gradient). The sign part, which the step adds before the linear
    part, only where the linear part can be left out too: else the chain would add the
    linear part first."""
    method = getattr(reg, part, None)
    flags = [_PARTS[part]] + (["include_decay"] if part == "sign_coefficient" else [])
    if method is None or not all(_separates(type(reg), flag) for flag in flags):
        return None
    return method(values)


@functools.cache
def _separates(cls: type, flag: str) -> bool:
    return flag in inspect.signature(cls.add_gradient).parameters
