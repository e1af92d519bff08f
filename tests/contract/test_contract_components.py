"""Contracts of regularizers, constraints, optimizers and initializers, over every public
class: config round trips, and the population form of each piece of math equal to the
single-model form (the engine vectorizes what a user writes for one weight)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import reglab.constraints as constraints_module
import reglab.initializers as initializers_module
import reglab.optimizers as optimizers_module
import reglab.regularizers as regularizers_module
from reglab.engine import Member, Population
from reglab.engine.penalties import penalty_terms
from reglab.layers import Dense


def public(module, base):
    """The public classes (Keras's lowercase aliases of them left out)."""
    return sorted(name for name in module.__all__ if isinstance(getattr(module, name), type)
                  and issubclass(getattr(module, name), base) and getattr(module, name) is not base
                  and getattr(module, name).__name__ == name)


REGULARIZERS = {
    "L1": lambda s: regularizers_module.L1(0.01 * s),
    "L2": lambda s: regularizers_module.L2(0.02 * s),
    "L1L2": lambda s: regularizers_module.L1L2(0.01 * s, 0.03 * s),
    "ProximalL1": lambda s: regularizers_module.ProximalL1(0.05 * s, 0.01 * s),
    "GroupLasso": lambda s: regularizers_module.GroupLasso(0.1 * s),
    "OrthogonalRegularizer": lambda s: regularizers_module.OrthogonalRegularizer(0.2 * s,
                                                                                "columns"),
}
CONSTRAINTS = {
    "MaxNorm": lambda s: constraints_module.MaxNorm(0.5 * s),
    "MinMaxNorm": lambda s: constraints_module.MinMaxNorm(0.2 * s, 0.6 * s, rate=0.5),
    "NonNeg": lambda s: constraints_module.NonNeg(),
    "UnitNorm": lambda s: constraints_module.UnitNorm(axis=1),
}
OPTIMIZERS = {
    "SGD": lambda s: optimizers_module.SGD(0.1 * s, momentum=0.5, nesterov=True),
    "Adam": lambda s: optimizers_module.Adam(0.01 * s, amsgrad=True, use_ema=True),
    "AdamW": lambda s: optimizers_module.AdamW(0.01 * s, weight_decay=0.1, swa_start=1),
    "RMSprop": lambda s: optimizers_module.RMSprop(0.01 * s, centered=True, momentum=0.3),
    "Adagrad": lambda s: optimizers_module.Adagrad(0.05 * s, initial_accumulator_value=s / 5,
                                                   clipnorm=s),
    "Adadelta": lambda s: optimizers_module.Adadelta(s, rho=0.9 * s, weight_decay=0.01),
    "Adamax": lambda s: optimizers_module.Adamax(0.01 * s, beta_1=0.8 * s, use_ema=True),
    "Nadam": lambda s: optimizers_module.Nadam(0.01 * s, beta_1=0.9 * s, global_clipnorm=s),
    "Lion": lambda s: optimizers_module.Lion(
        optimizers_module.schedules.ExponentialDecay(0.003 * s, 5, 0.5), beta_2=0.9 * s),
    "Adafactor": lambda s: optimizers_module.Adafactor(0.05 * s, beta_2_decay=-0.8 * s,
                                                       clip_threshold=s),
    "Lamb": lambda s: optimizers_module.Lamb(0.01 * s, beta_1=0.8 * s, epsilon=1e-7 * s),
    "Ftrl": lambda s: optimizers_module.Ftrl(0.05 * s, l1_regularization_strength=0.01 * s,
                                             l2_shrinkage_regularization_strength=0.01,
                                             beta=0.1 * s),
    # each member with its own scale (2**20, 2**10) and growth; float32 layers (Keras allows)
    "LossScaleOptimizer": lambda s: optimizers_module.LossScaleOptimizer(
        optimizers_module.SGD(0.1 * s, momentum=0.5), initial_scale=2.0 ** int(20 * s),
        dynamic_growth_steps=int(4 * s)),
}


def test_every_public_class_has_an_example():
    assert public(regularizers_module, regularizers_module.Regularizer) == sorted(REGULARIZERS)
    assert public(constraints_module, constraints_module.Constraint) == sorted(CONSTRAINTS)
    assert public(optimizers_module, optimizers_module.Optimizer) == sorted(OPTIMIZERS)


@pytest.mark.parametrize("name", sorted(REGULARIZERS))
def test_regularizer_config_round_trip_and_lookup(name):
    reg = REGULARIZERS[name](1.0)
    clone = type(reg).from_config(reg.get_config())
    assert clone == reg and clone.get_config() == reg.get_config()
    serialized = regularizers_module.serialize(reg)
    assert regularizers_module.deserialize(serialized) == reg
    assert regularizers_module.get(serialized) == reg


@pytest.mark.parametrize("name", sorted(REGULARIZERS))
def test_regularizer_population_form_equals_the_single_weight_form(name):
    w = torch.randn(3, 4, 5, dtype=torch.float64)  # three members' (4, 5) kernels
    regs = [REGULARIZERS[name](s) for s in (1.0, 0.0, 2.5)]
    terms = penalty_terms(regs, [r.values() for r in regs], torch.float64, "cpu")
    (family, values), = terms.families
    stacked = family.penalty(w, values)
    for p, reg in enumerate(regs):
        assert float(stacked[p]) == pytest.approx(float(reg(w[p])), rel=1e-12, abs=1e-15)
    if "gradient" in family.contributes:  # the declared gradient is the penalty's gradient
        grad = torch.zeros_like(w)
        family.add_gradient(grad, w, values)
        leaf = w.clone().requires_grad_(True)
        if "proximal" in family.contributes:  # its L1 part is a proximal step, not a gradient
            gradient_part = {**values, "l1": 0.0}
            family.penalty(leaf, gradient_part).sum().backward()
        else:
            family.penalty(leaf, values).sum().backward()
        np.testing.assert_allclose(grad.numpy(), leaf.grad.numpy(), rtol=1e-12, atol=1e-12)
    if "proximal" in family.contributes:
        np.testing.assert_array_equal(family.proximal(w, 0.0, values).numpy(), w.numpy())


@pytest.mark.parametrize("name", sorted(CONSTRAINTS))
def test_constraint_config_round_trip_and_population_form(name):
    constraint = CONSTRAINTS[name](1.0)
    clone = type(constraint).from_config(constraint.get_config())
    assert clone.get_config() == constraint.get_config()
    assert constraints_module.get(constraints_module.serialize(constraint)).get_config() == \
        constraint.get_config()
    members = [CONSTRAINTS[name](s) for s in (1.0, 2.0)]
    w = torch.randn(2, 4, 5, dtype=torch.float64)
    values = {k: torch.tensor([m.values()[k] for m in members], dtype=torch.float64).view(-1, 1, 1)
              for k in constraint.values()}
    stacked = constraint.apply(w, values, lambda axes: [a % 2 + 1 for a in axes])
    for p, member in enumerate(members):
        np.testing.assert_allclose(stacked[p].numpy(), member(w[p]).numpy(), rtol=1e-12)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_config_round_trip(name):
    optimizer = OPTIMIZERS[name](1.0)
    clone = type(optimizer).from_config(optimizer.get_config())
    assert clone.get_config() == optimizer.get_config()
    assert clone.structure() == optimizer.structure()


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_population_of_two_equals_two_populations_of_one(name):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(24, 4)), rng.integers(0, 3, 24)

    def members(scales):
        return [Member([Dense(3, activation="softmax", input_shape=(4,))], OPTIMIZERS[name](s),
                       seed=int(s * 10)) for s in scales]

    both = Population(members([1.0, 0.5]))
    result = both.fit(x, y, batch_size=8, epochs=3, validation_data=(x, y))
    for p, scale in enumerate([1.0, 0.5]):
        alone = Population(members([scale]))
        expected = alone.fit(x, y, batch_size=8, epochs=3, validation_data=(x, y))
        assert result.members[p].history == expected.members[0].history
        for key, value in alone.member_weights(0).items():
            assert torch.equal(both.member_weights(p)[key], value)


@pytest.mark.parametrize("name", sorted(initializers_module._BY_NAME))
def test_initializer_config_round_trip_and_determinism(name):
    initializer = initializers_module.get(name)
    serialized = initializers_module.serialize(initializer)
    assert initializers_module.get(serialized) is initializer
    assert type(initializer).from_config(initializer.get_config()) == initializer
    first = initializer((4, 6), torch.Generator().manual_seed(3), torch.float32)
    again = initializer((4, 6), torch.Generator().manual_seed(3), torch.float32)
    assert torch.equal(first, again) and first.shape == (4, 6)
