"""GroupLasso: the closed form, whole units driven to zero, and its place in study files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reglab.engine import Member, Population
from reglab.errors import ConfigError
from reglab.layers import Dense
from reglab.optimizers import SGD
from reglab.regularizers import GroupLasso, get
from reglab.study import parse_study
from reglab.study.build import build_member
from reglab.study.plan import plan_study


def test_closed_form_per_output_unit():
    w = torch.tensor([[3.0, 1.0, 0.0], [4.0, 1.0, 0.0]], dtype=torch.float64)  # (in=2, units=3)
    expected = 0.5 * math.sqrt(2) * (5.0 + math.sqrt(2) + 0.0)
    assert float(GroupLasso(0.5)(w)) == pytest.approx(expected, rel=1e-15)
    by_rows = 0.5 * math.sqrt(3) * (math.sqrt(10) + math.sqrt(17))
    assert float(GroupLasso(0.5, axis=0)(w)) == pytest.approx(by_rows, rel=1e-15)


def test_strong_group_lasso_empties_whole_units_that_l2_keeps():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6))
    y = (x[:, 0] > 0).astype(np.int64)

    def member(reg):
        return Member([Dense(8, activation="relu", input_shape=(6,), kernel_regularizer=reg),
                       Dense(2, activation="softmax")], SGD(0.05), seed=0)

    population = Population([member(GroupLasso(0.05)), member(None)])
    population.fit(x, y, batch_size=16, epochs=60)
    norms = [np.linalg.norm(population.member_weights(m)[(0, "kernel")].numpy(), axis=0)
             for m in (0, 1)]
    assert norms[0].sum() < 0.5 * norms[1].sum()  # the penalized units shrink as groups
    assert (norms[0] < 0.05).sum() >= 2  # some units are (nearly) gone


def test_registered_by_name_and_usable_in_study_files(tmp_path):
    assert isinstance(get("group_lasso"), GroupLasso)
    with pytest.raises(ConfigError, match="GroupLasso: 'strength' must be a non-negative"):
        GroupLasso(-1.0)
    study = tmp_path / "study.toml"
    study.write_text("""
[data]
dataset = "fashion_mnist"
[model]
input_shape = [784]
layers = [{ type = "Dense", units = 8, activation = "relu" },
          { type = "Dense", units = 10, activation = "softmax" }]
[training]
epochs = 1
[variants.baseline]
[variants.group]
kernel_regularizer = { type = "GroupLasso", strength = [1e-4, 1e-3] }
""")
    plan = plan_study(parse_study(study))
    assert len(plan.populations) == 1  # a value, not structure: one population
    run = plan.populations[0].runs[-1]
    member = build_member(plan.spec, run, (784,))
    assert member.layers[0].kernel_regularizer == GroupLasso(1e-3)
