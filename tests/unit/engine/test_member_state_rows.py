"""Parking and merging rows of the member tree (engine/member_state.py): several members
taken at once equal each taken alone, own their storage, and cross devices in one copy per
tensor (the CUDA profile's thousands of synchronizing copies at P = 450); merged rows come
back in member-id order whatever the mix of present and parked members."""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from reglab.engine import member_state as tree

KEYS = [(0, "kernel"), (0, "bias"), (1, "kernel")]
SHAPES = {(0, "kernel"): (5, 4), (0, "bias"): (4,), (1, "kernel"): (4, 3)}


def _state(member_ids):
    g = torch.Generator().manual_seed(0)
    p = len(member_ids)
    tensors = {family: {k: torch.randn((p, *SHAPES[k]), generator=g) for k in KEYS}
               for family in ("weights", "optimizer/m")}
    scalars = {"steps": [10 * m for m in member_ids], "epochs": [m for m in member_ids]}
    return tree.MemberState(list(member_ids), tensors, scalars, frozenset(KEYS))


class _CountCopies(TorchDispatchMode):
    """Counts the device-crossing copies (``aten._to_copy``) dispatched inside it."""

    def __init__(self):
        super().__init__()
        self.copies = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._to_copy.default:
            self.copies += 1
        return func(*args, **(kwargs or {}))


def test_rows_taken_together_equal_each_taken_alone_and_own_their_storage():
    state = _state([3, 7, 1, 9])
    together = tree.take_rows(state, [9, 3, 1])
    for m in (9, 3, 1):
        p = state.member_ids.index(m)
        alone = tree.take_row(state, m)
        assert together[m]["scalars"] == {"steps": 10 * m, "epochs": m}
        for family in ("weights", "optimizer/m"):
            for key in KEYS:
                row = together[m]["tensors"][family][key]
                assert torch.equal(row, state.tensors[family][key][p])
                assert torch.equal(row, alone["tensors"][family][key])
                # a copy of its own: no neighbour's bytes ride along when it is pickled
                assert row.untyped_storage().nbytes() == row.numel() * row.element_size()
    together[9]["tensors"]["weights"][KEYS[0]].fill_(123.0)
    assert not bool((state.tensors["weights"][KEYS[0]] == 123.0).any())


def test_rows_cross_devices_in_one_copy_per_tensor_not_per_member():
    state = _state(list(range(12)))
    with _CountCopies() as counter:
        rows = tree.take_rows(state, list(range(12)), device="meta")
    tensors = 2 * len(KEYS)
    assert counter.copies == tensors  # 12 members: still one copy per tensor
    assert rows[5]["tensors"]["weights"][KEYS[0]].device.type == "meta"
    with _CountCopies() as counter:
        tree.take_rows(state, [4], device="meta")
    assert counter.copies == tensors

    on_meta = tree.MemberState([0, 2], {f: {k: t[:2].to("meta") for k, t in family.items()}
                                        for f, family in state.tensors.items()},
                               {"steps": [0, 20], "epochs": [0, 2]}, frozenset(KEYS))
    parked = tree.take_rows(state, [1, 3, 4, 5])  # CPU rows, merged into a meta state
    with _CountCopies() as counter:
        merged = tree.merge(on_meta, parked)
    assert counter.copies == tensors
    assert merged.member_ids == [0, 1, 2, 3, 4, 5]
    assert merged.tensors["weights"][KEYS[0]].shape == (6, 5, 4)


def test_merge_puts_present_and_parked_rows_in_member_order_and_fills_what_is_missing():
    state = _state([0, 1, 2, 3, 4, 5])
    parked = tree.take_rows(state, [0, 2, 5])
    del parked[5]["tensors"]["optimizer/m"]  # parked before its optimizer slot existed
    del parked[2]["scalars"]["steps"]
    present = tree.select(state, [4, 1, 3])  # rows in another order than the ids
    merged = tree.merge(present, parked)
    assert merged.member_ids == [0, 1, 2, 3, 4, 5]
    assert merged.scalars["steps"] == [0, 10, 0, 30, 40, 50]  # member 2: the declared default
    for key in KEYS:
        for m in range(6):
            assert torch.equal(merged.tensors["weights"][key][m], state.tensors["weights"][key][m])
            expected = (torch.zeros(SHAPES[key]) if m == 5
                        else state.tensors["optimizer/m"][key][m])
            assert torch.equal(merged.tensors["optimizer/m"][key][m], expected)
    assert all(merged.tensors["weights"][k].requires_grad for k in KEYS)
    only_weights = tree.merge(present, parked, ["weights"])
    assert list(only_weights.tensors) == ["weights"]
    assert torch.equal(only_weights.tensors["weights"][KEYS[2]],
                       merged.tensors["weights"][KEYS[2]])
