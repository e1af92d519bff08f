"""Everything with a leading member axis, in one tree, sliced by one set of functions.

A population's per-member state is a :class:`MemberState`: *families* of stacked tensors
(``weights``, each optimizer slot, the early-stopping snapshot ``best``, averaged
weights...), each a dict from a weight key ``(layer index, weight name)`` to a ``(P, ...)``
tensor, plus per-member Python values (steps taken, epochs trained, early-stopping
state) as lists of length P. A new family is declared once, with :func:`declare_family`,
and then follows the members wherever they go: :func:`select` keeps some of them,
:func:`take_rows` copies some out (to park them), :func:`merge` puts parked rows back, and
:func:`copy_rows` copies one family into another for some members.

Rows are member-major and each member's slice is contiguous, so a member's data is laid
out the same way whoever its neighbours are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

Key = tuple[int, str]
#: a parked member: ``{"tensors": {family: {key: tensor}}, "scalars": {family: value}}``
Row = dict[str, dict]

#: how a family is filled for a member that lacks it when rows are merged: 'zeros', or the
#: name of another family to copy (a member parked before its snapshot existed gets its
#: weights as its snapshot).
_FILL: dict[str, str] = {"weights": "zeros"}


#: the value of a per-member scalar for a member that has none yet (parked before it existed)
_SCALAR_DEFAULTS: dict[str, Any] = {"steps": 0, "epochs": 0}


def declare_family(name: str, fill: str = "zeros") -> None:
    """Declares a tensor family and how to fill it for a member that has none yet."""
    _FILL[name] = fill


def declare_scalar(name: str, default: Any) -> None:
    """Declares a per-member scalar and its value for a member that has none yet."""
    _SCALAR_DEFAULTS[name] = default


@dataclass
class MemberState:
    """The present members' per-member state.

    Attributes:
        member_ids: the population's member id of each row, in row order.
        tensors: ``{family: {key: (P, ...) tensor}}``.
        scalars: ``{family: [value per row]}``.
        trainable: the keys of ``tensors['weights']`` that take gradients.
    """

    member_ids: list[int]
    tensors: dict[str, dict[Key, torch.Tensor]] = field(default_factory=dict)
    scalars: dict[str, list[Any]] = field(default_factory=dict)
    trainable: frozenset = frozenset()

    @property
    def size(self) -> int:
        return len(self.member_ids)

    @property
    def weights(self) -> dict[Key, torch.Tensor]:
        return self.tensors["weights"]

    def position(self, member_id: int) -> int:
        try:
            return self.member_ids.index(member_id)
        except ValueError:
            raise ValueError(f"Population: member {member_id!r} is not training now. Members "
                             f"training: {self.member_ids}.") from None

    def scalar(self, family: str, member_id: int) -> Any:
        return self.scalars[family][self.position(member_id)]

    def add_family(self, name: str, tensors: dict[Key, torch.Tensor]) -> None:
        """Adds a family for every present member (``tensors`` already stacked)."""
        self.tensors[name] = tensors

    def _mark_trainable(self) -> None:
        for key, w in self.tensors.get("weights", {}).items():
            if key in self.trainable and not w.requires_grad:
                w.requires_grad_(True)


def select(state: MemberState, positions: Sequence[int]) -> MemberState:
    """The members at ``positions`` (in that order), every family at once.

    Gradients of weights are kept for the selected members (a member that diverges
    mid-step is dropped while the others still take their step).
    """
    positions = list(positions)
    if not state.tensors.get("weights"):
        device = torch.device("cpu")
    else:
        device = next(iter(state.tensors["weights"].values())).device
    index = torch.tensor(positions, dtype=torch.long, device=device)
    tensors = {}
    with torch.no_grad():
        for family, members in state.tensors.items():
            out = {}
            for key, t in members.items():
                kept = t.detach().index_select(0, index)
                if t.grad is not None:
                    kept.grad = t.grad.index_select(0, index)
                out[key] = kept
            tensors[family] = out
    scalars = {family: [values[p] for p in positions] for family, values in state.scalars.items()}
    new = MemberState([state.member_ids[p] for p in positions], tensors, scalars, state.trainable)
    new._mark_trainable()
    return new


def take_row(state: MemberState, member_id: int, families: Iterable[str] | None = None,
             device: str | torch.device = "cpu") -> Row:
    """One member's row (copies, detached, on ``device``), to park it or to read it."""
    return take_rows(state, [member_id], families, device)[member_id]


def take_rows(state: MemberState, member_ids: Sequence[int],
              families: Iterable[str] | None = None,
              device: str | torch.device = "cpu") -> dict[int, Row]:
    """Several members' rows (copies, detached, on ``device``), by member id.

    Each tensor crosses devices once for all of them (one gather, one transfer), not once
    per member: parking many members of a CUDA population is then a few dozen copies, not
    thousands of synchronizing ones. Each row owns its storage (pickling one member's
    weights never carries its neighbours').
    """
    device = torch.device(device)
    positions = [state.position(m) for m in member_ids]
    wanted = state.tensors if families is None else {f: state.tensors[f] for f in families
                                                     if f in state.tensors}
    rows: dict[int, Row] = {m: {"tensors": {}, "scalars": {
        family: values[p] for family, values in state.scalars.items()}}
        for m, p in zip(member_ids, positions)}
    with torch.no_grad():
        for family, members in wanted.items():
            taken: dict[int, dict[Key, torch.Tensor]] = {m: {} for m in member_ids}
            for key, t in members.items():
                t = t.detach()
                if len(positions) == 1:
                    copies = [t[positions[0]].to(device, copy=True)]
                else:
                    index = torch.tensor(positions, dtype=torch.long, device=t.device)
                    copies = [row.clone() for row in t.index_select(0, index).to(device).unbind(0)]
                for m, copy in zip(member_ids, copies):
                    taken[m][key] = copy
            for m in member_ids:
                rows[m]["tensors"][family] = taken[m]
    return rows


def _row_tensor(row: Row, family: str, key: Key, like: torch.Tensor) -> torch.Tensor:
    """The row's tensor of ``family`` at ``key`` (a declared fill where it has none), on the
    CPU when ``like`` is elsewhere (the caller moves all rows in one transfer)."""
    members = row["tensors"].get(family)
    home = like.device if like.device.type == "cpu" else torch.device("cpu")
    if members is not None and key in members:
        return members[key].to(home)
    fill = _FILL.get(family, "zeros")
    if fill != "zeros":
        return _row_tensor(row, fill, key, like)
    return torch.zeros(like.shape[1:], dtype=like.dtype, device=home)


def _merged_tensor(t: torch.Tensor, present_positions: list[int], parked_rows: list[torch.Tensor],
                   order: torch.Tensor | None) -> torch.Tensor:
    """The present rows of ``t`` followed by the parked rows (moved in one transfer), put in
    member order by ``order`` (None: already in order)."""
    parts = []
    if present_positions:
        index = torch.tensor(present_positions, dtype=torch.long, device=t.device)
        parts.append(t.detach().index_select(0, index))
    if parked_rows:
        parts.append(torch.stack(parked_rows).to(t.device))
    stacked = parts[0] if len(parts) == 1 else torch.cat(parts)
    return stacked if order is None else stacked.index_select(0, order)


def merge(state: MemberState, rows: dict[int, Row], families: Iterable[str] | None = None
          ) -> MemberState:
    """The present members and the parked ``rows``, in member-id order (``state`` is left as
    it is); ``families`` limits the result to those (e.g. only ``weights`` for inference)."""
    present = {m: p for p, m in enumerate(state.member_ids)}
    everyone = sorted(set(present) | set(rows))
    names = list(state.tensors) if families is None else [f for f in families
                                                           if f in state.tensors]
    present_ids = [m for m in everyone if m in present]
    parked_ids = [m for m in everyone if m not in present]
    where = {m: i for i, m in enumerate(present_ids + parked_ids)}
    sequence = [where[m] for m in everyone]
    order = None
    if sequence != list(range(len(everyone))):
        home = next((t.device for family in names for t in state.tensors[family].values()), None)
        order = torch.tensor(sequence, dtype=torch.long, device=home)
    positions = [present[m] for m in present_ids]
    tensors = {}
    with torch.no_grad():
        for family in names:
            tensors[family] = {
                key: _merged_tensor(t, positions, [_row_tensor(rows[m], family, key, t)
                                                   for m in parked_ids], order)
                for key, t in state.tensors[family].items()}
    scalars = {family: [values[present[m]] if m in present
                        else rows[m]["scalars"].get(family, _SCALAR_DEFAULTS.get(family))
                        for m in everyone] for family, values in state.scalars.items()}
    merged = MemberState(everyone, tensors, scalars, state.trainable)
    merged._mark_trainable()
    return merged


def copy_member(state: MemberState, source: int, target: int, keep: Iterable[str] = ()) -> None:
    """Copies the row at position ``source`` onto the row at ``target``: every tensor family
    and every per-member scalar except those named in ``keep``."""
    import copy

    kept = set(keep)
    with torch.no_grad():
        for members in state.tensors.values():
            for t in members.values():
                t[target].copy_(t[source])
    for name, values in state.scalars.items():
        if name not in kept:
            values[target] = copy.deepcopy(values[source])


def copy_rows(state: MemberState, source: str, target: str, positions: Sequence[int]) -> None:
    """Copies family ``source`` into family ``target`` for the members at ``positions``
    (creating ``target`` as a copy of ``source`` for everyone the first time)."""
    if not positions:
        return
    with torch.no_grad():
        if target not in state.tensors:
            state.tensors[target] = {k: t.detach().clone() for k, t in state.tensors[source].items()}
            return
        index = torch.tensor(list(positions), dtype=torch.long,
                             device=next(iter(state.tensors[source].values())).device)
        for key, t in state.tensors[source].items():
            state.tensors[target][key].index_copy_(0, index, t.detach().index_select(0, index))
