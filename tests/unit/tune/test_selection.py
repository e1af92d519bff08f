"""Choosing the trial to confirm: the best, or the 1-SE rule's."""

from __future__ import annotations

import math

import optuna
import pytest

from reglab.study.spec import parse_study
from reglab.tune.selection import select, standard_error

STUDY = """
name = "t"
[data]
dataset = "fashion_mnist"
validation_split = 0.1
[model]
input_shape = [784]
layers = [{ type = "Dense", units = 10, activation = "softmax" }]
[training]
epochs = 2
[tune]
trials = 9
seeds = SEEDS
select = "SELECT"
one_se = "kernel_regularizer.l2"
[variants.baseline]
[variants.l2]
kernel_regularizer = { type = "L2", l2 = { log = [1e-6, 1e-1] } }
[variants.drop]
dropout = { linear = [0.0, 0.5] }
"""


def spec_for(select_rule: str, seeds: int = 1):
    text = STUDY.replace("SELECT", select_rule).replace("SEEDS", str(seeds))
    if select_rule == "best":
        text = text.replace('one_se = "kernel_regularizer.l2"\n', "")
    return parse_study("s.toml", text)


def study_with(trials, direction="maximize", validation=None):
    study = optuna.create_study(direction=direction)
    variant = optuna.distributions.CategoricalDistribution(["baseline", "l2", "drop"])
    for name, value, params, seed_values in trials:
        distributions = {"variant": variant}
        full = {"variant": name}
        for key, v in params.items():
            full[f"{name}:{key}"] = v
            distributions[f"{name}:{key}"] = optuna.distributions.FloatDistribution(
                1e-6, 1e-1, log=True) if key.endswith("l2") else \
                optuna.distributions.FloatDistribution(0.0, 0.5)
        study.add_trial(optuna.trial.create_trial(
            params=full, distributions=distributions, value=value,
            user_attrs={"seed_values": seed_values}))
    if validation:
        study.set_user_attr("validation_samples", validation)
    return study


TRIALS = [
    ("l2", 0.900, {"kernel_regularizer.l2": 1e-5}, [0.89, 0.91]),
    ("l2", 0.895, {"kernel_regularizer.l2": 1e-3}, [0.89, 0.90]),
    ("l2", 0.880, {"kernel_regularizer.l2": 1e-2}, [0.87, 0.89]),
    ("drop", 0.899, {"dropout": 0.5}, [0.89, 0.908]),
    ("baseline", 0.85, {}, [0.85, 0.85]),
]


def test_best_takes_the_highest_validation_value():
    chosen = select(spec_for("best"), study_with(TRIALS))
    assert (chosen.number, chosen.rule, chosen.variant) == (0, "best", "l2")
    assert chosen.point == (("kernel_regularizer.l2", 1e-5),)


def test_best_of_a_minimized_objective_is_the_lowest():
    spec = spec_for("best")
    spec = type(spec)(**{**spec.__dict__, "tune": type(spec.tune)(
        **{**spec.tune.__dict__, "direction": "minimize"})})
    chosen = select(spec, study_with(TRIALS, direction="minimize"))
    assert chosen.number == 4


def test_one_se_takes_the_strongest_penalty_within_one_standard_error_of_the_best():
    chosen = select(spec_for("one_se", seeds=2), study_with(TRIALS))
    se = standard_error(study_with(TRIALS).trials[0], None)
    assert se == pytest.approx(0.01)  # sd of (0.89, 0.91), 0.0141, over sqrt(2)
    # 1e-3 is within 0.01 of 0.900; 1e-2 is not; dropout is another variant
    assert (chosen.number, chosen.rule, chosen.best_number) == (1, "one_se", 0)
    assert chosen.standard_error == pytest.approx(se)


def test_one_se_with_one_seed_uses_the_binomial_error_of_the_validation_split():
    trials = [(n, v, p, [v]) for n, v, p, _ in TRIALS]
    chosen = select(spec_for("one_se"), study_with(trials, validation=100))
    se = math.sqrt(0.9 * 0.1 / 100)  # 0.03: 1e-2 (0.880) is within it
    assert chosen.standard_error == pytest.approx(se)
    assert chosen.number == 2


def test_nothing_completed_selects_nothing():
    assert select(spec_for("best"), optuna.create_study()) is None
