"""The engine's CUDA path, run on the CPU: penalties on every row, one fused Adam call on the
stacked tensors, divergence checked every few steps, the per-member first-layer product.
Those are the device decisions a GPU takes (no GPU in CI); together they must train every
member as the CPU path does, to round-off, and find the same diverged member."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reglab.engine import Member, Population
from reglab.engine import epoch as epoch_module
from reglab.engine import penalties as penalties_module
from reglab.layers import Dense, Dropout
from reglab.layers import shared_input as shared_input_module
from reglab.optimizers import Adam
from reglab.optimizers import optimizers as optimizers_module
from reglab.regularizers import L1, L1L2, L2, ProximalL1


def members():
    regs = [None, L1(1e-3), L2(1e-2), L1L2(1e-3, 1e-2), ProximalL1(1e-3), None]
    rates = [0.0, 0.0, 0.3, 0.0, 0.0, 0.5]
    out = [Member([Dense(16, activation="relu", input_shape=(8,), kernel_regularizer=reg),
                   Dropout(rate), Dense(3, activation="softmax", kernel_regularizer=reg)],
                  Adam(0.01), seed=seed)
           for seed in (0, 1) for reg, rate in zip(regs, rates)]
    out.append(Member([Dense(16, activation="relu", input_shape=(8,)), Dropout(0.0),
                       Dense(3, activation="softmax")], Adam(1e200), seed=2))  # overflows
    return out


def train():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8))
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)
    pop = Population(members(), dtype=torch.float64)
    result = pop.fit(x, y, batch_size=16, epochs=3, validation_data=(x[:50], y[:50]))
    return pop, result


def test_the_cuda_path_trains_as_the_cpu_path(monkeypatch):
    cpu_pop, cpu = train()
    monkeypatch.setattr(penalties_module, "computes_by_rows", lambda device: False)
    monkeypatch.setattr(optimizers_module, "_fuses_stacked", lambda device: True)
    monkeypatch.setattr(epoch_module, "divergence_check_steps", lambda device: 5)
    monkeypatch.setattr(shared_input_module, "applies", lambda units, x: False)
    gpu_pop, gpu = train()
    assert [m.status for m in cpu.members] == [m.status for m in gpu.members]
    assert cpu.members[-1].status == "diverged"
    assert cpu.members[-1].diverged_at == gpu.members[-1].diverged_at
    for mine, theirs in zip(cpu.members[:-1], gpu.members[:-1], strict=True):
        for key in mine.history:
            np.testing.assert_allclose(theirs.history[key], mine.history[key], rtol=1e-9,
                                       err_msg=key)
    for member in range(len(cpu.members) - 1):
        expected, actual = cpu_pop.member_weights(member), gpu_pop.member_weights(member)
        for key in expected:
            np.testing.assert_allclose(actual[key].numpy(), expected[key].numpy(), rtol=1e-9,
                                       atol=1e-12, err_msg=str((member, key)))


@pytest.mark.parametrize("stacked", [False, True])
def test_a_changed_learning_rate_holds_on_both_adam_paths(monkeypatch, stacked):
    """The Adam groups are read once per set of hyperparameters: a change (as a callback
    makes) must reach the step, whether the members' slices or the stacked tensors are
    updated."""
    monkeypatch.setattr(optimizers_module, "_fuses_stacked", lambda device: stacked)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(64, 8)), rng.integers(0, 3, 64)

    def run(change):
        pop = Population(members()[:2], dtype=torch.float64)
        pop.fit(x, y, batch_size=16, epochs=1)
        if change:
            for member in range(2):
                pop.set_hyperparameter(member, "learning_rate", 1e-12)
        before = [pop.member_weights(m) for m in range(2)]
        pop.fit(x, y, batch_size=16, epochs=2, initial_epoch=1)
        return before, [pop.member_weights(m) for m in range(2)]

    def moved(before, after):
        return max(float((a[key] - b[key]).abs().max()) for b, a in zip(before, after)
                   for key in b)
    assert moved(*run(change=True)) < 1e-9  # the tiny rate took effect at once
    assert moved(*run(change=False)) > 1e-3
