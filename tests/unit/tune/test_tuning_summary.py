"""The tuning summary's counts: a diverged trial is counted as diverged whatever Optuna was
told (PRUNED at its last value, so that the sampler avoids its region, or FAIL when it
reported nothing), never as pruned, and saves nothing by pruning."""

from __future__ import annotations

import types

import optuna
import pytest

from reglab.tune.runner import _Tuner

State = optuna.trial.TrialState


def trial(state, value=None, **attrs):
    return optuna.trial.create_trial(
        state=state, value=value, params={}, distributions={},
        intermediate_values={0: 1.0} if state == State.PRUNED else {}, user_attrs=attrs)


@pytest.fixture
def tuner():
    study = optuna.create_study()
    for t in (trial(State.COMPLETE, 0.5, model_epochs=6),
              trial(State.PRUNED, model_epochs=2),  # pruned: saves 6 - 2
              trial(State.PRUNED, model_epochs=3, diverged=True),  # diverged after an epoch
              trial(State.FAIL, model_epochs=0, diverged=True),  # diverged at once
              trial(State.FAIL, model_epochs=1)):  # an error
        study.add_trial(t)
    spec = types.SimpleNamespace(tune=types.SimpleNamespace(seeds=2),
                                 training=types.SimpleNamespace(epochs=3))
    return types.SimpleNamespace(study=study, spec=spec, size=4,
                                 budget=types.SimpleNamespace(wall=1.5))


def test_diverged_trials_are_counted_apart_and_save_nothing_by_pruning(tuner):
    summary = _Tuner.summary(tuner)
    assert summary["trials"] == {"complete": 1, "pruned": 1, "failed": 1, "diverged": 2}
    assert summary["pruning_saved"] == 4  # only the pruned trial's 6 - 2
    assert summary["model_epochs"] == 12 and summary["asked"] == 5


def test_the_tuning_lines_and_report_say_diverged(tuner):
    from reglab.report.tuning import TuningTrials

    counted = TuningTrials("val_accuracy", "maximize", tuner.study.get_trials(), ("baseline",),
                           (), tuner.study, None, "optuna")
    assert len(counted.of_state("PRUNED")) == 1 and len(counted.diverged) == 2
