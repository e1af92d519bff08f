"""Training with the native kernels: each member as alone, bit for bit, and the same
weights as the torch path (the penalty gradient is torch's, bit for bit, and so is Adam's
step on rows whose length is a multiple of torch's vector width; only the reported
penalty's summation order differs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reglab import native
from reglab.engine import Member, Population
from reglab.layers import Dense, Dropout
from reglab.regularizers import L1, L1L2, L2


def _members():
    # the first kernel has 784 * 16 = 12,544 elements per member: past RUNS_FROM, so its
    # family runs on every row through the kernels, which skip the members without it
    regs = [L1(0.01), None, L1L2(l1=0.001, l2=0.01), L2(0.02)]
    return [Member([Dense(16, activation="relu", input_shape=(784,), kernel_regularizer=reg),
                    Dropout(0.2),
                    # 16 classes (10 used): every row a multiple of 16 elements, where torch's
                    # fused Adam has no scalar tail
                    Dense(16, activation="softmax", kernel_regularizer=reg)],
                   "adam", seed=p % 2, name=f"m{p}") for p, reg in enumerate(regs)]


def _data():
    rng = np.random.default_rng(0)
    return rng.random((96, 784), dtype=np.float32), rng.integers(0, 10, 96)


def _state(population):
    return {key: w.detach().clone() for key, w in population.state.weights.items()}


@pytest.fixture
def kernels(monkeypatch):
    monkeypatch.setenv("REGLAB_NATIVE", "1")
    if native.library() is None:
        pytest.skip("no C compiler: the native kernels are not built here")


def test_each_member_trains_as_alone_bit_for_bit(kernels):
    x, y = _data()
    together = Population(_members())
    together.fit(x, y, batch_size=32, epochs=2)
    stacked = _state(together)
    for p, member in enumerate(_members()):
        alone = Population([member])
        alone.fit(x, y, batch_size=32, epochs=2)
        for key, w in _state(alone).items():
            assert torch.equal(w[0], stacked[key][p]), (member.name, key)


def test_the_same_weights_as_the_torch_path(kernels, monkeypatch):
    x, y = _data()
    with_kernels = Population(_members())
    history = with_kernels.fit(x, y, batch_size=32, epochs=2)
    monkeypatch.setenv("REGLAB_NATIVE", "0")
    with_torch = Population(_members())
    reference = with_torch.fit(x, y, batch_size=32, epochs=2)
    a, b = _state(with_kernels), _state(with_torch)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for mine, theirs in zip(history.members, reference.members):
        np.testing.assert_allclose(mine.history["loss"], theirs.history["loss"], rtol=1e-6)
        assert (mine.history["penalty"] == [0.0, 0.0]) == (mine.name == "m1")


def _fit_state(members, x, y):
    population = Population(members)
    result = population.fit(x, y, batch_size=32, epochs=2)
    return _state(population), [r.history["loss"] for r in result.members]


class _OwnGradient(L1L2):
    """An L1L2 whose add_gradient takes no include_sign (nor include_decay): it keeps its
    whole gradient, so nothing of it may be folded into the optimizer."""

    def add_gradient(self, grad, w, values):
        super().add_gradient(grad, w, values)


def _mixed_members(optimizer):
    from reglab.regularizers import ProximalL1

    regs = [L1(0.01), None, L1L2(l1=0.001, l2=0.01), ProximalL1(0.003, l2=0.002),
            _OwnGradient(l1=0.002, l2=0.001)]
    return [Member([Dense(16, activation="relu", input_shape=(784,), kernel_regularizer=reg,
                          bias_regularizer=L1(0.004) if p == 0 else None),
                    Dense(16, activation="softmax", kernel_regularizer=reg)],
                   optimizer(), seed=p % 2, name=f"m{p}") for p, reg in enumerate(regs)]


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_l1_folded_into_adams_step_gives_the_weights_of_the_chain(kernels, monkeypatch,
                                                                  optimizer):
    """The sign part of L1's gradient added inside the native Adam step: the weights of
    the chain that adds it first, bit for bit (AdamW's decayed weights keep the chain; so do
    ProximalL1 and a subclass whose add_gradient cannot leave the part out)."""
    from reglab.optimizers import Adam, AdamW

    make = {"adam": lambda: Adam(1e-3), "adamw": lambda: AdamW(1e-3, weight_decay=0.01)}
    x, y = _data()
    members = _mixed_members(make[optimizer])
    folded_population = Population(members)
    assert folded_population.state.coupled_sign or optimizer == "adamw"
    folded, losses = _fit_state(_mixed_members(make[optimizer]), x, y)
    monkeypatch.setattr(Adam, "folds_coupled_sign", lambda self, device, dtype: False)
    chained, chain_losses = _fit_state(_mixed_members(make[optimizer]), x, y)
    assert all(torch.equal(folded[k], chained[k]) for k in folded)
    assert losses == chain_losses


def test_a_declined_kernel_adds_the_folded_sign_part_before_torchs_step(kernels, monkeypatch):
    from reglab.native import adam as native_adam
    from reglab.optimizers import Adam

    x, y = _data()
    monkeypatch.setattr(native_adam, "step", lambda *a, **k: False)  # torch's fused Adam
    folded, _ = _fit_state(_mixed_members(lambda: Adam(1e-3)), x, y)
    monkeypatch.setattr(Adam, "folds_coupled_sign", lambda self, device, dtype: False)
    chained, _ = _fit_state(_mixed_members(lambda: Adam(1e-3)), x, y)
    assert all(torch.equal(folded[k], chained[k]) for k in folded)


class _SignOnly(L1L2):
    """Can leave its sign part out but not its linear part: folding the sign would put it
    after the linear part, so it is not folded (the chain's order, bit for bit)."""

    def add_gradient(self, grad, w, values, include_sign=True):
        super().add_gradient(grad, w, values, include_sign=include_sign)


class _HalfSign(L1):
    """Declares another sign coefficient than L1's: a family of its own."""

    def sign_coefficient(self, values):
        return values["l1"] * 0.5


class _OldAdam:
    """An Adam subclass written before ``sign`` existed: its apply names ``decay`` only."""

    @staticmethod
    def make():
        from reglab.optimizers import Adam

        class OldAdam(Adam):
            def apply(self, params, grads, slots, members, decay=None):
                super().apply(params, grads, slots, members, decay=decay)

        return OldAdam(1e-3)


def _one_layer(reg, optimizer="adam", seed=0):
    return Member([Dense(16, activation="softmax", input_shape=(784,), kernel_regularizer=reg)],
                  optimizer, seed=seed)


def test_a_subclass_that_cannot_leave_its_linear_part_out_keeps_the_chains_order(
        kernels, monkeypatch):
    from reglab.optimizers import Adam

    x, y = _data()
    folded, _ = _fit_state([_one_layer(_SignOnly(l1=0.01, l2=0.02))], x, y)
    monkeypatch.setattr(Adam, "folds_coupled_sign", lambda self, device, dtype: False)
    chained, _ = _fit_state([_one_layer(_SignOnly(l1=0.01, l2=0.02))], x, y)
    assert all(torch.equal(folded[k], chained[k]) for k in folded)


def test_a_subclass_with_its_own_sign_coefficient_is_its_own_family(kernels):
    x, y = _data()
    together, _ = _fit_state([_one_layer(L1(0.01)), _one_layer(_HalfSign(0.01))], x, y)
    alone, _ = _fit_state([_one_layer(_HalfSign(0.01))], x, y)
    assert all(torch.equal(together[k][1], alone[k][0]) for k in alone)


def test_an_adam_subclass_without_sign_in_its_apply_keeps_the_chain(kernels, monkeypatch):
    from reglab.optimizers import Adam

    x, y = _data()
    population = Population([_one_layer(L1(0.01), _OldAdam.make())])
    assert not population.state.coupled_sign
    old, _ = _fit_state([_one_layer(L1(0.01), _OldAdam.make())], x, y)
    monkeypatch.setattr(Adam, "folds_coupled_sign", lambda self, device, dtype: False)
    chained, _ = _fit_state([_one_layer(L1(0.01), Adam(1e-3))], x, y)
    assert all(torch.equal(old[k], chained[k]) for k in old)
