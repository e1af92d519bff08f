"""reglab.engine.member.plan: members may differ in values only; structure errors name where."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reglab.constraints import MaxNorm, NonNeg
from reglab.engine import EarlyStoppingRule, Member, Population
from reglab.errors import ConfigError, StructureError
from reglab.layers import BatchNormalization, Dense, Dropout, Input
from reglab.optimizers.optimizers import SGD, Adam
from reglab.regularizers import l1, l2


def layers(units=8, activation="relu", extra=False, rate=0.2, strength=0.01, momentum=0.99,
           constraint=None, input_shape=(4,)):
    out = [Dense(units, activation=activation, input_shape=input_shape,
                 kernel_regularizer=l2(strength), kernel_constraint=constraint),
           Dropout(rate)]
    if extra:
        out.append(Dense(5, activation="relu"))
    out += [BatchNormalization(momentum=momentum), Dense(3, activation="softmax")]
    return out


def test_different_units_name_member_and_layer():
    members = [Member(layers()), Member(layers()), Member(layers(units=16))]
    with pytest.raises(StructureError, match=r"member 2 differs from member 0 at layer 0 "
                                             r"\(dense\): \('Dense', 16, 'relu', True\) vs "
                                             r"\('Dense', 8, 'relu', True\)"):
        Population(members)


def test_different_activation_names_member_and_layer():
    a = Member(layers())
    b = Member([Dense(8, activation="relu", input_shape=(4,)), Dropout(0.2),
                BatchNormalization(), Dense(3, activation="sigmoid")])
    with pytest.raises(StructureError, match=r"member 1 differs from member 0 at layer 3 "
                                             r"\(dense_1\).*'sigmoid'.*'softmax'"):
        Population([a, b])


def test_extra_layer_names_member_and_layers():
    with pytest.raises(StructureError, match=r"member 1 differs from member 0 in its number of "
                                             r"layers: 5 vs 4 \(\['Dense', 'Dropout', 'Dense', "
                                             r"'BatchNormalization', 'Dense'\]"):
        Population([Member(layers()), Member(layers(extra=True))])


def test_same_count_other_layer_kind_is_rejected():
    a = Member([Dense(4, input_shape=(3,)), Dropout(0.1), Dense(2, activation="softmax")])
    b = Member([Dense(4, input_shape=(3,)), BatchNormalization(), Dense(2, activation="softmax")])
    with pytest.raises(StructureError, match=r"member 1 differs from member 0 at layer 1 "
                                             r"\(dropout\)"):
        Population([a, b])


def test_other_structural_differences():
    with pytest.raises(StructureError, match=r"member 1 differs from member 0 in input shape"):
        Population([Member(layers()), Member(layers(input_shape=(5,)))])
    with pytest.raises(StructureError, match=r"member 1 differs from member 0 in its optimizer"):
        Population([Member(layers(), optimizer=SGD()), Member(layers(), optimizer=Adam())])
    with pytest.raises(StructureError, match=r"member 1 .* optimizer: \(.*'nesterov=True'\) vs "
                                             r"\(.*'nesterov=False'\)"):
        Population([Member(layers(), optimizer=SGD(momentum=0.9)),
                    Member(layers(), optimizer=SGD(momentum=0.9, nesterov=True))])
    with pytest.raises(StructureError, match=r"kind of constraint on dense\.kernel"):
        Population([Member(layers(constraint=MaxNorm(1.0))), Member(layers(constraint=NonNeg()))])


def test_members_differing_in_values_only_are_accepted_and_train():
    members = [
        Member(layers(rate=0.0, strength=0.0, momentum=0.9, constraint=MaxNorm(1.0)),
               optimizer=SGD(0.1, momentum=0.5), seed=0),
        Member(layers(rate=0.5, strength=0.1, momentum=0.99, constraint=MaxNorm(3.0)),
               optimizer=SGD(0.01, momentum=0.9), seed=1,
               early_stopping=EarlyStoppingRule(monitor="loss", patience=3)),
        Member([Input(shape=(4,))] + layers(input_shape=None, rate=0.3, constraint=MaxNorm(2.0)),
               optimizer=SGD(0.2),
               seed=1, name="third"),
    ]
    pop = Population(members, dtype=torch.float64)
    assert pop.size == 3
    assert [lp.canonical_name for lp in pop.plan.layers] == [
        "dense", "dropout", "batch_normalization", "dense_1"]
    assert pop.plan.layers[1].values == {"rate": [0.0, 0.5, 0.3]}
    assert pop.plan.names == ["member_0", "member_1", "third"]
    rng = np.random.default_rng(0)
    result = pop.fit(rng.normal(size=(16, 4)), rng.integers(0, 3, size=16), batch_size=8)
    assert [m.status for m in result.members] == ["done"] * 3


def test_l1_versus_l2_versus_none_is_a_value_difference():
    members = [Member([Dense(3, input_shape=(2,), kernel_regularizer=reg), Dense(2)])
               for reg in (None, l1(0.1), l2(0.2))]
    pop = Population(members)
    assert pop.size == 3  # one population: the kind of regularizer is a value, not structure
    assert [pop.hyperparameter(m, "dense.kernel.l1") for m in (1, 2)] == [0.1, 0.0]
    assert [pop.hyperparameter(m, "dense.kernel.l2") for m in (1, 2)] == [0.0, 0.2]


def test_config_errors_at_the_edge():
    with pytest.raises(ConfigError, match=r"Population: expected at least one member. Got 0."):
        Population([])
    with pytest.raises(ConfigError, match=r"member 0 has no input shape"):
        Population([Member([Dense(2)])])
    with pytest.raises(ConfigError, match=r"member 1: 'seed' must be an int >= 0. Got -1."):
        Population([Member(layers()), Member(layers(), seed=-1)])
    with pytest.raises(ConfigError, match=r"'dtype' must be torch.float32 or torch.float64"):
        Population([Member(layers())], dtype=torch.float16)
